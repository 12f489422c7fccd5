"""Prior correction of the music span: what the model would write anyway is taken out of what it writes now.

A small model trained briefly leans on a prior: a few tracks win for almost any request (the first demo
checkpoint played one track for 31 of 34 different requests). The cure is pointwise mutual information
decoding: score each code by how much *this* request raises it over a request that says nothing,

    score(code | prefix) = log p(code | prefix, conversation) − β · log p(code | prefix, neutral request)

:class:`TriePrior` holds the second term for every node of the catalog trie, computed once per model
(the neutral request is constant, so this is one ranking pass at load, no extra work per turn), and
:class:`PriorCorrection` applies it as one more ``LogitsProcessor`` after the catalog constraint. Ranking
subtracts ``β · prior_scores[row]``, the same sum over a track's positions. β = 0 is plain decoding; the
default is chosen on the validation split (``python -m train.evaluation.fit_check --tune``). The neutral request
is a first turn; later turns are corrected with the same prior (the model's bias towards particular
tracks does not depend much on the history, and recomputing it per turn would double the cost).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import LogitsProcessor

NEUTRAL_REQUEST = "Play me something."  # a first request that asks for nothing in particular


@dataclass(frozen=True)
class TriePrior:
    """Log-probabilities of every code at every trie node under the neutral request.

    ``table[prefix]`` is a vector indexed by the code of position ``len(prefix)`` (full-vocabulary
    log-softmax, as the model scores them); ``row_scores[row]`` is the sum over a track's positions of its
    own codes' entries (what ranking subtracts).
    """

    table: dict[tuple[int, ...], np.ndarray]
    row_scores: np.ndarray  # float64, one per store row

    @classmethod
    def from_logprobs(cls, codes: np.ndarray, logprobs: Sequence[np.ndarray]) -> "TriePrior":
        """From each store row's codes and, per position k, the (n_rows, codes_at_k) log-probabilities of
        every code of position k after that row's first k codes."""
        codes = np.asarray(codes, dtype=np.int64)
        table: dict[tuple[int, ...], np.ndarray] = {}
        scores = np.zeros(len(codes), dtype=np.float64)
        for k, lp in enumerate(logprobs):
            lp = np.asarray(lp, dtype=np.float64)
            scores += lp[np.arange(len(codes)), codes[:, k]]
            for row in range(len(codes)):
                table.setdefault(tuple(int(c) for c in codes[row, :k]), lp[row])
        return cls(table, scores)

    def at(self, prefix: Sequence[int]) -> np.ndarray | None:
        return self.table.get(tuple(int(c) for c in prefix))


class PriorCorrection(LogitsProcessor):
    """Inside a span, subtract ``beta`` × the neutral request's log-probability of each code at this prefix.

    Compose it after :class:`talkplay.constraints.MusicSpanConstraint` (masked ids stay -inf). Outside a
    span, or at a prefix the prior does not know (a track added after it was computed), scores pass
    unchanged.
    """

    def __init__(self, ids, prior: TriePrior, beta: float):
        self.ids, self.prior, self.beta = ids, prior, float(beta)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        from talkplay.constraints import open_spans

        spans = open_spans(input_ids, self.ids) if self.beta else []
        if not spans:
            return scores
        out = scores.clone()
        for b, span in spans:
            prefix = [c for _, c in self.ids.decode(span)]
            if len(prefix) >= self.ids.n_positions:
                continue
            lp = self.prior.at(prefix)
            if lp is None:
                continue
            position = torch.as_tensor(self.ids.position_ids[len(prefix)], device=scores.device)
            out[b, position] = out[b, position] - self.beta * torch.as_tensor(lp, dtype=out.dtype, device=out.device)
        return out


class Compose(LogitsProcessor):
    """Apply processors in order (a ``LogitsProcessorList`` that is itself a processor)."""

    def __init__(self, *processors: LogitsProcessor):
        self.processors = processors

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for p in self.processors:
            scores = p(input_ids, scores)
        return scores
