"""The catalog as a decoding constraint, without torch: token ids, exclusions, the prefix trie, resolution.

* :class:`TokenIdMap`  — the ids of ``<start_of_music>``/``<end_of_music>`` and of every (position, code);
* :class:`CatalogTrie` — a prefix trie over the store's code tuples, in generation order, answering
  "which codes may come next after this prefix?" while skipping excluded tracks;
* :class:`ExcludeTracks` — the played and rejected tracks of one conversation (a plain record);
* :func:`resolve` — a complete code tuple back to its track id.

The trie is array-based so it scales to 10⁶ tracks: the code matrix is sorted lexicographically once, so
the tracks sharing any prefix form one contiguous row range. Per depth ``k`` it keeps the start of every
distinct ``k+1``-prefix group; a node's children are the groups starting inside its range (two binary
searches), and a child is alive iff a prefix sum over non-excluded rows is non-zero on its range.

The logits processors that apply these rules during generation live in :mod:`talkplay.constraints`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

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
