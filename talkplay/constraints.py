"""Constrained decoding of music spans: token ids in, masked logits out.

One ``LogitsProcessor`` per rule, composed in a ``LogitsProcessorList`` (so they also work inside ``generate``):
:class:`MusicSpanConstraint` (inside a span, only codes that lead to a still-recommendable catalog track, then
``<end_of_music>``), :class:`SpanFormat` (paper mode: any code of the next position) and :class:`BanTokens`.
The catalog side — token ids, the trie, exclusions — is :mod:`talkplay.trie` (no torch).

Span tracking: a batch row is *inside a span* when the last boundary token in its ids (prompt included)
is ``<start_of_music>``; the music ids after it are the prefix. Earlier, closed spans in the prompt are
thus ignored, and a prompt ending in ``<start_of_music>`` starts a constrained span.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from talkplay.trie import CatalogTrie, ExcludeTracks, NoAllowedTrack, TokenIdMap


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
