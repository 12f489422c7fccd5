"""Constrained decoding of music spans: token ids in, masked logits out.

Owns the rules that make a generated span name a real, still-recommendable catalog track:

* :class:`TokenIdMap`  — the ids of ``<start_of_music>``/``<end_of_music>`` and of every (position, code);
* :class:`CatalogTrie` — a prefix trie over the store's code tuples, in generation order, answering
  "which codes may come next after this prefix?" while skipping excluded tracks;
* :class:`ExcludeTracks` — the played and rejected tracks of one conversation;
* :class:`MusicSpanConstraint` / :class:`NoMusicOutsideSpan` / :class:`SpanFormat` / :class:`BanTokens` —
  one ``LogitsProcessor`` per rule, composed in a ``LogitsProcessorList``;
* :func:`resolve` — a complete code tuple back to its track id.

The trie is array-based so it scales to 10⁶ tracks: the code matrix is sorted lexicographically once, so
the tracks sharing any prefix form one contiguous row range. Per depth ``k`` it keeps the start of every
distinct ``k+1``-prefix group; a node's children are the groups starting inside its range (two binary
searches), and a child is alive iff a prefix sum over non-excluded rows is non-zero on its range.

Span tracking: a batch row is *inside a span* when the last boundary token in its ids (prompt included)
is ``<start_of_music>``; the music ids after it are the prefix. Earlier, closed spans in the prompt are
thus ignored, and a prompt ending in ``<start_of_music>`` starts a constrained span.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from talkplay.expansion import music_token_ids
from talkplay.token_store import TokenStore
from talkplay.tokens import MusicVocab


class NoAllowedTrack(ValueError):
    """Every track under the span's prefix is excluded (played, rejected) or the prefix is not in the catalog."""


# ---------------------------------------------------------------------------------------------- ids


@dataclass(frozen=True)
class TokenIdMap:
    """Token ids of one vocabulary in one tokenizer.

    ``position_ids[p][code]`` is the id of that code's token; ``lookup_position[id]`` / ``lookup_code[id]``
    invert it (position -1 for ids that are not music-code tokens; boundaries included).
    """

    start_id: int
    end_id: int
    position_ids: tuple[np.ndarray, ...]  # per position: int64 ids indexed by code
    lookup_position: np.ndarray  # int32, length max_id + 1
    lookup_code: np.ndarray  # int32, length max_id + 1

    @classmethod
    def build(cls, tokenizer: Any, vocab: MusicVocab) -> TokenIdMap:
        """From an expanded tokenizer (KeyError naming a missing token otherwise)."""
        ids = music_token_ids(tokenizer, vocab)
        return cls.from_ids(ids, vocab)

    @classmethod
    def from_ids(cls, ids: Sequence[int], vocab: MusicVocab) -> TokenIdMap:
        """From ids in ``vocab.special_tokens()`` order (START, END, then position by position)."""
        ids = [int(i) for i in ids]
        expected = 2 + sum(vocab.size(p) for p in range(len(vocab)))
        if len(ids) != expected:
            raise ValueError(f"expected {expected} ids for {vocab!r}, got {len(ids)}")
        if len(set(ids)) != len(ids):
            raise ValueError("music token ids are not distinct")
        per_position, at = [], 2
        for p in range(len(vocab)):
            per_position.append(np.asarray(ids[at:at + vocab.size(p)], dtype=np.int64))
            at += vocab.size(p)
        size = max(ids) + 1
        lookup_position = np.full(size, -1, dtype=np.int32)
        lookup_code = np.full(size, -1, dtype=np.int32)
        for p, arr in enumerate(per_position):
            lookup_position[arr] = p
            lookup_code[arr] = np.arange(len(arr), dtype=np.int32)
        return cls(ids[0], ids[1], tuple(per_position), lookup_position, lookup_code)

    @property
    def n_positions(self) -> int:
        return len(self.position_ids)

    def music_ids(self) -> np.ndarray:
        """All code-token ids plus END (what may appear only inside a span)."""
        return np.concatenate([*self.position_ids, [self.end_id]])

    def decode(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        """(position, code) of each id; ValueError naming the first id that is not a music-code token."""
        out = []
        for i in ids:
            i = int(i)
            p = int(self.lookup_position[i]) if 0 <= i < len(self.lookup_position) else -1
            if p < 0:
                raise ValueError(f"token id {i} is not a music-code token")
            out.append((p, int(self.lookup_code[i])))
        return out


# ---------------------------------------------------------------------------------------------- exclusions


@dataclass(frozen=True)
class ExcludeTracks:
    """Tracks a conversation must not recommend again. Immutable: ``with_*`` return a new value."""

    played: frozenset[str] = frozenset()
    rejected: frozenset[str] = frozenset()

    def with_played(self, *track_ids: str) -> ExcludeTracks:
        return ExcludeTracks(self.played | frozenset(track_ids), self.rejected)

    def with_rejected(self, *track_ids: str) -> ExcludeTracks:
        return ExcludeTracks(self.played, self.rejected | frozenset(track_ids))

    @cached_property
    def track_ids(self) -> frozenset[str]:
        return self.played | self.rejected

    def __bool__(self) -> bool:
        return bool(self.played or self.rejected)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self.played or track_id in self.rejected

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.track_ids))

    def __len__(self) -> int:
        return len(self.track_ids)

    def rows(self, store: TokenStore) -> np.ndarray:
        """Store rows of the excluded tracks; ids the store lacks are ignored (they cannot be generated)."""
        return np.asarray(sorted(store.row(t) for t in self.track_ids if t in store), dtype=np.int64)


# ---------------------------------------------------------------------------------------------- trie


class CatalogTrie:
    """Prefix trie over a store's code tuples (positions in generation order), numpy-backed.

    Args:
        store: the token store; rows are the recommendable tracks.
    """

    def __init__(self, store: TokenStore):
        codes = np.asarray(store.codes)
        n, n_pos = codes.shape
        if n_pos == 0:
            raise ValueError("token store has no positions")
        self.store = store
        self.n_positions = n_pos
        dtype = np.int64  # not int32: searchsorted(int32 array, Python int) copies the whole array
        self.order = np.lexsort(codes.T[::-1]).astype(dtype)  # sorted slot → store row
        self.rank = np.empty(n, dtype=dtype)  # store row → sorted slot
        self.rank[self.order] = np.arange(n, dtype=dtype)
        sorted_codes = codes[self.order]
        self.columns = tuple(np.ascontiguousarray(sorted_codes[:, k]) for k in range(n_pos))
        self.starts: list[np.ndarray] = []  # per depth k: slots where the (k+1)-prefix changes, + sentinel n
        changed = np.zeros(max(n - 1, 0), dtype=bool)
        for k in range(n_pos):
            changed |= self.columns[k][1:] != self.columns[k][:-1]
            head = [0] if n else []
            self.starts.append(np.concatenate([head, np.flatnonzero(changed) + 1, [n]]).astype(dtype))
        self._alive_cache: dict[ExcludeTracks, np.ndarray | None] = {}
        self._alive_lock = threading.Lock()  # concurrent turns (scheduler, rankings) share the trie

    def __len__(self) -> int:
        return len(self.order)

    # -------------------------------------------------------------- navigation

    def node(self, prefix: Sequence[int]) -> tuple[int, int]:
        """Slot range [lo, hi) of the tracks whose codes start with ``prefix`` (empty if none)."""
        if len(prefix) > self.n_positions:
            raise ValueError(f"prefix of {len(prefix)} codes is longer than the {self.n_positions} positions")
        lo, hi = 0, len(self.order)
        for k, c in enumerate(prefix):
            col = self.columns[k][lo:hi]
            lo, hi = lo + int(np.searchsorted(col, c, "left")), lo + int(np.searchsorted(col, c, "right"))
            if lo == hi:
                break
        return lo, hi

    def _alive_prefix_sum(self, exclude: ExcludeTracks | None) -> np.ndarray | None:
        """Prefix sum (length n+1) of non-excluded slots; None when nothing in the store is excluded."""
        if not exclude:
            return None
        with self._alive_lock:
            if exclude in self._alive_cache:
                return self._alive_cache[exclude]
        rows = exclude.rows(self.store)
        if len(rows) == 0:
            cum = None
        else:
            alive = np.ones(len(self.order), dtype=np.int32)
            alive[self.rank[rows]] = 0
            cum = np.concatenate([[0], np.cumsum(alive, dtype=np.int64)])
        with self._alive_lock:
            if len(self._alive_cache) >= 8:
                self._alive_cache.pop(next(iter(self._alive_cache)))
            self._alive_cache[exclude] = cum
        return cum

    def allowed(self, prefix: Sequence[int], exclude: ExcludeTracks | None = None) -> np.ndarray:
        """Sorted codes of position ``len(prefix)`` that lead to at least one non-excluded track."""
        k = len(prefix)
        if k >= self.n_positions:
            raise ValueError(f"prefix of {k} codes is complete: no position follows")
        lo, hi = self.node(prefix)
        if lo == hi:
            return np.empty(0, dtype=np.int64)
        starts = self.starts[k]
        i0, i1 = int(np.searchsorted(starts, lo)), int(np.searchsorted(starts, hi))
        child_lo, child_hi = starts[i0:i1], starts[i0 + 1:i1 + 1]
        codes = self.columns[k][child_lo]
        cum = self._alive_prefix_sum(exclude)
        if cum is not None:
            codes = codes[cum[child_hi] > cum[child_lo]]
        return codes.astype(np.int64, copy=False)

    def rows(self, prefix: Sequence[int], exclude: ExcludeTracks | None = None) -> np.ndarray:
        """Store rows (ascending) of the non-excluded tracks under ``prefix``."""
        lo, hi = self.node(prefix)
        rows = np.sort(self.order[lo:hi]).astype(np.int64)
        if exclude:
            rows = rows[~np.isin(rows, exclude.rows(self.store))]
        return rows


def resolve(store: TokenStore, codes: Sequence[int], exclude: ExcludeTracks | None = None) -> str:
    """Track id whose full tuple equals ``codes`` (lowest row if several, excluded ones skipped).

    Raises:
        KeyError: naming the codes when no (non-excluded) track has them.
    """
    if len(codes) != len(store.vocab):
        raise ValueError(f"expected {len(store.vocab)} codes, got {len(codes)}")
    for track_id in store.tracks_with(codes):
        if not exclude or track_id not in exclude:
            return track_id
    raise KeyError(f"no {'non-excluded ' if exclude else ''}track has codes {tuple(int(c) for c in codes)}")


# ---------------------------------------------------------------------------------------------- processors


def _open_span_starts(input_ids: torch.Tensor, ids: TokenIdMap) -> list[int]:
    """Per batch row: index of the START opening the current span, or -1 when outside a span."""
    length = input_ids.shape[1]
    steps = torch.arange(1, length + 1, device=input_ids.device)
    last_start = ((input_ids == ids.start_id) * steps).max(dim=1).values - 1
    last_end = ((input_ids == ids.end_id) * steps).max(dim=1).values - 1
    inside = last_start > last_end
    return torch.where(inside, last_start, torch.full_like(last_start, -1)).tolist()


def open_spans(input_ids: torch.Tensor, ids: TokenIdMap) -> list[tuple[int, list[int]]]:
    """(batch row, music ids generated after its START) for every row inside an open span."""
    opened = _open_span_starts(input_ids, ids)
    if all(s < 0 for s in opened):
        return []
    rows = input_ids.tolist()
    return [(b, rows[b][s + 1:]) for b, s in enumerate(opened) if s >= 0]


def _keep_only(scores: torch.Tensor, row: int, keep: torch.Tensor) -> None:
    """Set every score of ``row`` to -inf except those of the ids ``keep`` (in place)."""
    masked = torch.full_like(scores[row], float("-inf"))
    masked[keep] = scores[row, keep]
    scores[row] = masked


class MusicSpanConstraint(LogitsProcessor):
    """Inside a span, only the next position's still-allowed codes (then ``<end_of_music>``) may follow.

    Outside a span it leaves the scores alone. A prefix that is not music codes in position order (a
    malformed open span in the prompt) is a ValueError; a prefix with no allowed track left (everything
    excluded) is :class:`NoAllowedTrack` — generation stops with that error rather than invent a track.
    """

    def __init__(self, ids: TokenIdMap, trie: CatalogTrie, exclude: ExcludeTracks | None = None):
        if ids.n_positions != trie.n_positions:
            raise ValueError(f"token map has {ids.n_positions} positions, trie has {trie.n_positions}")
        self.ids, self.trie, self.exclude = ids, trie, exclude

    def allowed_ids(self, span_ids: Sequence[int]) -> np.ndarray:
        """Token ids that may follow ``span_ids`` (the music ids after START)."""
        decoded = self.ids.decode(span_ids)
        for k, (p, _) in enumerate(decoded):
            if p != k:
                raise ValueError(f"music span has position {p} at index {k}: codes must come in position order")
        prefix = [c for _, c in decoded]
        if len(prefix) == self.trie.n_positions:
            return np.asarray([self.ids.end_id], dtype=np.int64)
        if len(prefix) > self.trie.n_positions:
            raise ValueError(f"music span has {len(prefix)} codes, more than {self.trie.n_positions} positions")
        codes = self.trie.allowed(prefix, self.exclude)
        if len(codes) == 0:
            raise NoAllowedTrack(f"no allowed track continues music prefix {tuple(prefix)} "
                                 f"({len(self.exclude or ())} tracks excluded)")
        return self.ids.position_ids[len(prefix)][codes]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        spans = open_spans(input_ids, self.ids)
        if not spans:
            return scores
        out = scores.clone()
        for b, span in spans:
            keep = torch.as_tensor(self.allowed_ids(span), device=scores.device)
            _keep_only(out, b, keep)
        return out


class NoMusicOutsideSpan(LogitsProcessor):
    """Outside a span, music-code tokens and ``<end_of_music>`` are forbidden (``<start_of_music>`` is not)."""

    def __init__(self, ids: TokenIdMap):
        self.ids = ids
        self._music = torch.as_tensor(ids.music_ids())

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        outside = torch.tensor([s < 0 for s in _open_span_starts(input_ids, self.ids)], device=scores.device)
        if not bool(outside.any()):
            return scores
        music = self._music.to(scores.device)
        music = music[music < scores.shape[1]]
        out = scores.clone()
        block = out[:, music]
        block[outside] = float("-inf")
        out[:, music] = block
        return out


class SpanFormat(LogitsProcessor):
    """Paper mode: inside a span, any code of the next position (then ``<end_of_music>``) — not only real items.

    TalkPlay samples the music tokens freely and matches afterwards; keeping the position order only makes
    the span parseable, so what is generated can still be an item the catalog lacks (matched by
    :func:`talkplay.matching.match`).
    """

    def __init__(self, ids: TokenIdMap):
        self.ids = ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        opened = _open_span_starts(input_ids, self.ids)
        if all(s < 0 for s in opened):
            return scores
        out = scores.clone()
        for b, s in enumerate(opened):
            if s < 0:
                continue
            k = input_ids.shape[1] - s - 1  # music ids generated so far in this span
            keep = (self.ids.position_ids[k] if k < self.ids.n_positions
                    else np.asarray([self.ids.end_id], dtype=np.int64))
            keep = torch.as_tensor(keep, device=scores.device)
            _keep_only(out, b, keep)
        return out


class BanTokens(LogitsProcessor):
    """Never emit ``ids`` (e.g. music and boundary tokens, and padding rows past the tokenizer, in a reply)."""

    def __init__(self, ids: Sequence[int]):
        self._ids = torch.as_tensor(sorted({int(i) for i in ids}), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ids = self._ids.to(scores.device)
        ids = ids[ids < scores.shape[1]]
        out = scores.clone()
        out[:, ids] = float("-inf")
        return out


# ---------------------------------------------------------------------------------------------- benchmark


def benchmark_trie(n_items: int, levels: int = 3, codebook: int = 256, modalities: int = 2,
                   dis: int = 16, queries: int = 200, seed: int = 0) -> dict[str, float]:
    """Time trie build and per-step ``allowed`` queries on a synthetic store (not a test).

    The store has ``modalities`` residual modalities of ``levels`` × ``codebook`` codes plus a ``dis``
    position; each query walks one random track's tuple, asking the allowed set at every depth, with 1 % of
    the tracks excluded. Returns seconds for the build and mean milliseconds per allowed-set query.
    """
    from talkplay.tokens import ModalitySpec

    rng = np.random.default_rng(seed)
    specs = [ModalitySpec(f"m{'abcdefghij'[i]}", levels, codebook) for i in range(modalities)]
    specs.append(ModalitySpec("dis", 1, dis))
    vocab = MusicVocab(specs)
    codes = rng.integers(0, codebook, size=(n_items, len(vocab)), dtype=np.int64)
    codes[:, -1] = rng.integers(0, dis, size=n_items)
    store = TokenStore(vocab, [f"t{i}" for i in range(n_items)], codes)
    t0 = time.perf_counter()
    trie = CatalogTrie(store)
    build = time.perf_counter() - t0
    exclude = ExcludeTracks(played=frozenset(f"t{i}" for i in rng.choice(n_items, max(1, n_items // 100))))
    t0 = time.perf_counter()
    trie.allowed([], exclude)
    first_exclude = time.perf_counter() - t0
    picks = rng.integers(0, n_items, size=queries)
    n_calls, t0 = 0, time.perf_counter()
    for r in picks:
        tup = codes[r]
        for k in range(len(vocab)):
            trie.allowed(tup[:k], exclude)
            n_calls += 1
    per_query = (time.perf_counter() - t0) / n_calls
    return {"n_items": n_items, "build_s": build, "exclude_setup_s": first_exclude, "query_ms": per_query * 1e3}


if __name__ == "__main__":  # python -m talkplay.constraints [n ...]
    import sys

    for n in [int(a) for a in sys.argv[1:]] or [1_000, 10_000, 100_000]:
        print(benchmark_trie(n))
