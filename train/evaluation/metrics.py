"""Rank-based retrieval metrics for one relevant item per query (the TalkPlay paper's Table 2).

Each evaluated turn has exactly one relevant track (the one the conversation played), so every metric
is a function of that track's 1-based rank:

* reciprocal rank ``1/rank`` (its mean is MRR);
* Hit@k ``1 if rank ≤ k``;
* nDCG@k ``1/log2(rank + 1) if rank ≤ k`` — with one relevant item the ideal DCG is 1.

Tie policy (pessimistic, used everywhere): a target tied with other candidates is ranked *after* all
of them, ``rank = 1 + #(score > target) + #(score == target, other candidates)``. A constant scorer
therefore gets the worst rank, never a lucky one, and metrics stay deterministic without a tie-break
order. Excluded candidates (e.g. tracks already played) do not count.

Aggregation: ``macro over turns`` is the mean over all evaluated turns; ``macro over conversations``
first averages within each conversation, then across conversations (long conversations weigh no more
than short ones).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.evaluation.metrics is a module of the train package: import it, or use python -m")

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_HITS = (1, 10, 100)
DEFAULT_NDCG = (1, 10, 20)


@dataclass(frozen=True)
class MetricSpec:
    """Which cut-offs to report."""

    hits: tuple[int, ...] = DEFAULT_HITS
    ndcg: tuple[int, ...] = DEFAULT_NDCG

    @property
    def names(self) -> tuple[str, ...]:
        return ("mrr", *(f"hit@{k}" for k in self.hits), *(f"ndcg@{k}" for k in self.ndcg))


DEFAULT_SPEC = MetricSpec()  # the paper's cut-offs


def _check_rank(rank: int) -> None:
    if not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank {rank!r} must be an integer ≥ 1 (1 = first)")


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"cut-off k={k} must be ≥ 1")


def reciprocal_rank(rank: int) -> float:
    """1/rank."""
    _check_rank(rank)
    return 1.0 / rank


def hit_at_k(rank: int, k: int) -> float:
    """1.0 if the relevant item is in the top k, else 0.0."""
    _check_rank(rank)
    _check_k(k)
    return 1.0 if rank <= k else 0.0


def ndcg_at_k(rank: int, k: int) -> float:
    """nDCG@k with a single relevant item: 1/log2(rank+1) if rank ≤ k, else 0."""
    _check_rank(rank)
    _check_k(k)
    return 1.0 / math.log2(rank + 1) if rank <= k else 0.0


def rank_of(scores: np.ndarray, target_index: int, exclude_mask: np.ndarray | None = None) -> int:
    """1-based rank of ``scores[target_index]`` among the non-excluded candidates (pessimistic ties).

    Args:
        scores: (n,) higher is better; NaN is not allowed (−inf is, and ranks last).
        exclude_mask: optional bool (n,); True candidates are removed before ranking.
    Raises:
        ValueError: bad shape, NaN scores, target out of range or excluded.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-d, got shape {scores.shape}")
    n = len(scores)
    if not 0 <= target_index < n:
        raise ValueError(f"target_index {target_index} is outside the {n} scores")
    if np.isnan(scores).any():
        raise ValueError(f"scores contain NaN (first at index {int(np.flatnonzero(np.isnan(scores))[0])})")
    keep = np.ones(n, bool)
    if exclude_mask is not None:
        exclude_mask = np.asarray(exclude_mask, dtype=bool)
        if exclude_mask.shape != (n,):
            raise ValueError(f"exclude_mask has shape {exclude_mask.shape}, expected ({n},)")
        if exclude_mask[target_index]:
            raise ValueError(f"target_index {target_index} is excluded: the target must be rankable")
        keep = ~exclude_mask
    t = scores[target_index]
    s = scores[keep]
    greater = int((s > t).sum())
    ties = int((s == t).sum()) - 1  # the target itself is among the kept ties
    return 1 + greater + ties


def metrics_for_rank(rank: int, spec: MetricSpec = MetricSpec()) -> dict[str, float]:
    """Every metric of ``spec`` for one rank."""
    out = {"mrr": reciprocal_rank(rank)}
    out.update({f"hit@{k}": hit_at_k(rank, k) for k in spec.hits})
    out.update({f"ndcg@{k}": ndcg_at_k(rank, k) for k in spec.ndcg})
    return out


def mean_metrics(ranks: Iterable[int], spec: MetricSpec = MetricSpec()) -> dict[str, float]:
    """Macro average over the given ranks (turns); ``n`` counts them. Empty input gives NaN metrics."""
    ranks = list(ranks)
    if not ranks:
        return {**{name: float("nan") for name in spec.names}, "n": 0}
    rows = [metrics_for_rank(r, spec) for r in ranks]
    return {**{name: float(np.mean([r[name] for r in rows])) for name in spec.names}, "n": len(ranks)}


def macro_over_turns(ranks_by_conversation: Mapping[str, Sequence[int]], spec: MetricSpec = MetricSpec()) -> dict:
    """Mean over all turns of all conversations."""
    return mean_metrics((r for ranks in ranks_by_conversation.values() for r in ranks), spec)


def macro_over_conversations(ranks_by_conversation: Mapping[str, Sequence[int]],
                             spec: MetricSpec = MetricSpec()) -> dict:
    """Mean over conversations of each conversation's mean over its turns (conversations without
    evaluated turns are skipped); ``n`` counts conversations."""
    per = [mean_metrics(r, spec) for r in ranks_by_conversation.values() if len(r)]
    if not per:
        return {**{name: float("nan") for name in spec.names}, "n": 0}
    return {**{name: float(np.mean([p[name] for p in per])) for name in spec.names}, "n": len(per)}
