"""Fallback matching for free (unconstrained) generation: a generated code tuple → the best catalog track.

Owns TalkPlay's weighted partial matching: an exact tuple match wins; otherwise every track sharing a
token scores the sum of the weights of its matching modalities (``PAPER_WEIGHTS``: playlist 25, semantic
16, metadata 9, lyrics 4, audio 1 — so candidates rank by cumulative importance) and the best one wins,
lowest store row on ties. For residual modalities (3MToken) a level counts only if all coarser levels of
that modality matched (``hierarchical=True``); each matched level adds ``weight / levels``, so a fully
matched modality adds its whole weight. The disambiguation position (``dis``) never counts as evidence,
nor does a reserved "no data" code (e.g. lyrics code 0: two instrumentals share no lyrics).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from talkplay.token_store import TokenStore
from talkplay.tokens import DISAMBIGUATION

PAPER_WEIGHTS: Mapping[str, float] = {"playlist": 25, "semantic": 16, "metadata": 9, "lyrics": 4, "audio": 1}


@dataclass(frozen=True)
class MatchResult:
    """The matched track (None when nothing matches) and why."""

    track_id: str | None
    kind: Literal["exact", "partial", "none"]
    score: float  # sum of matched weights (the full weight sum for an exact match)
    matched_modalities: tuple[str, ...]  # modalities with at least one counted level, in vocab order


def _evidence(store: TokenStore, weights: Mapping[str, float]) -> list[tuple[str, list[int], float, int]]:
    """(modality, positions, weight, reserved codes) of every modality that counts; ValueError on a negative weight."""
    out = []
    for spec in store.vocab.modalities:
        w = float(weights.get(spec.name, 0))
        if w < 0:
            raise ValueError(f"weight of modality {spec.name!r} is negative ({w})")
        if spec.name != DISAMBIGUATION and w > 0:
            out.append((spec.name, store.vocab.positions_of(spec.name), w, spec.reserved))
    return out


def level_matches(block: np.ndarray, query: np.ndarray, positions: list[int], reserved: int,
                  hierarchical: bool) -> np.ndarray:
    """Per row, which levels of one modality count as shared: equal codes that are not a reserved
    "no data" code (two tracks without lyrics share nothing), coarse-to-fine when hierarchical."""
    eq = (block[:, positions] == query[positions]) & (query[positions] >= reserved)
    return np.cumprod(eq, axis=1, dtype=bool) if hierarchical else eq


def match(store: TokenStore, codes: Sequence[int], weights: Mapping[str, float] = PAPER_WEIGHTS,
          exclude: Iterable[str] = (), hierarchical: bool = True) -> MatchResult:
    """Best non-excluded track for ``codes`` (one code per position of ``store.vocab``).

    Args:
        weights: per-modality weights (modalities absent here, or absent from the store, count 0).
        exclude: track ids never returned (played / rejected); ids the store lacks are ignored.
        hierarchical: residual level l counts only if levels < l of the same modality matched.
    """
    query = np.asarray([int(c) for c in codes], dtype=np.int64)
    if len(query) != len(store.vocab):
        raise ValueError(f"expected {len(store.vocab)} codes, got {len(query)}")
    banned = np.asarray(sorted(store.row(t) for t in set(exclude) if t in store), dtype=np.int64)
    evidence = _evidence(store, weights)

    exact = np.flatnonzero((store.codes == query).all(axis=1))
    exact = exact[~np.isin(exact, banned)]
    if len(exact):
        return MatchResult(store.track_ids[int(exact[0])], "exact", sum(w for _, _, w, _ in evidence),
                           tuple(name for name, _, _, _ in evidence))

    # Candidates: tracks sharing a token that can count (the coarsest level only, when hierarchical).
    lists = [store.postings(p, query[p]) for _, positions, _, reserved in evidence
             for p in (positions[:1] if hierarchical else positions) if query[p] >= reserved]
    cands = np.unique(np.concatenate(lists)) if lists else np.empty(0, dtype=np.int64)
    cands = cands[~np.isin(cands, banned)]
    if len(cands) == 0:
        return MatchResult(None, "none", 0.0, ())
    block = store.codes[cands]
    score = np.zeros(len(cands), dtype=np.float64)
    levels_matched = []
    for _, positions, w, reserved in evidence:
        n_levels = level_matches(block, query, positions, reserved, hierarchical).sum(axis=1)
        levels_matched.append(n_levels)
        score += w * n_levels / len(positions)
    best = int(np.argmax(score))  # first maximum = lowest row (cands are ascending)
    if score[best] <= 0:
        return MatchResult(None, "none", 0.0, ())
    matched = tuple(name for (name, _, _, _), lv in zip(evidence, levels_matched) if lv[best] > 0)
    return MatchResult(store.track_ids[int(cands[best])], "partial", float(score[best]), matched)


def match_scores(store: TokenStore, codes: Sequence[int], weights: Mapping[str, float] = PAPER_WEIGHTS,
                 hierarchical: bool = True) -> np.ndarray:
    """The partial-match score of every store row for ``codes`` (same weights and levels as :func:`match`).

    Used to rank the whole catalog from one freely generated span (paper-mode evaluation); an exact tuple
    match scores the full weight sum, like every other track matching all counted modalities.
    """
    query = np.asarray([int(c) for c in codes], dtype=np.int64)
    if len(query) != len(store.vocab):
        raise ValueError(f"expected {len(store.vocab)} codes, got {len(query)}")
    score = np.zeros(len(store), dtype=np.float64)
    for _, positions, w, reserved in _evidence(store, weights):
        score += w * level_matches(store.codes, query, positions, reserved, hierarchical).sum(axis=1) / len(positions)
    return score
