"""What the conversation so far says about the next track: the tracks the listener kept, and everything said.

Three per-track scores that the ranking objective adds to the model's log-likelihood of a track's music tokens
(:class:`talkplay.recommender.GenerationConfig`: ``history_weight``, ``popularity_weight``, ``context_weight``;
:meth:`talkplay.recommender.Recommender.first_stage_terms`):

* **history** — how close each track sits to the tracks played and not rejected so far, in the playlist
  co-occurrence space (item2vec over the bundle's training playlists: the same vectors the playlist modality's
  tokens quantize, at full resolution; ``model/listening.npz``, written by ``python -m train.evaluation.blend``),
  z-scored over the catalog. A track without a vector (a cold-start track, or one added after training) is placed
  by its own playlist codes: the sum of the codebook centroids its codes name (:func:`code_vectors`) — coarser,
  but in the same space.
* **popularity** — how often the training playlists hold each track (log count, z-scored and capped at
  ``POPULARITY_CAP``; a track they never saw scores the neutral 0, not the lowest): among tracks that fit the words equally, the ones listeners keep
  coming back to.
* **context** — BM25 of every card against the whole conversation's words (the listener's messages and the
  replies, which name the tracks played so far and their tags), z-scored. The request's own words are the text
  match's (:mod:`talkplay.textmatch`); this is their surroundings — "another one" after three folk tracks still
  says "folk".

Why they are here: the model reads the same history in its prompt, but a 135M model trained for a few hours on
two CPU cores links it to the next track weakly. On the validation split (40 conversations, 243 turns, and 175
more first requests; ``python -m train.evaluation.blend --catalog catalog/demo``) the model's score alone ranked
the played track at MRR 0.19 and the whole objective at 0.32; the weights and the best objective without each
term are in ``reports/blend_demo.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkplay.textmatch import _z  # one z-score for every first-stage term

# popularity above this many standard deviations counts as this: on the validation split the uncapped term made
# one track the top-1 of 7 % of the turns (capped at 1: 4 %) — "popular enough" should not outvote the words
POPULARITY_CAP = 1.0
LISTENING_FILE = "listening.npz"  # under the checkpoint directory: ids (n,) and vectors (n, d)


@dataclass
class Listening:
    """Per-row history and context scores for one store's tracks (row order = the store's)."""

    vectors: np.ndarray  # (n_rows, d) float32 unit vectors; zero rows for tracks without one
    known: np.ndarray  # (n_rows,) bool: the track has a vector (its own, or from its codes)
    popularity: np.ndarray | None = None  # (n_rows,) float64 z-scored log training count; 0 for unseen tracks
    from_codes: np.ndarray | None = None  # (n_rows,) bool: the vector was rebuilt from the track's codes
    rebuilt: np.ndarray | None = None  # (n_rows, d) float32 unit vectors rebuilt from every track's codes

    @classmethod
    def from_vectors(cls, track_ids: Sequence[str], vectors: dict[str, np.ndarray],
                     counts: dict[str, float] | None = None, fallback: np.ndarray | None = None) -> "Listening":
        """Vectors by track id (any subset of ``track_ids``) in ``track_ids`` order; ``fallback`` (n_rows, d): the
        vector of each row that has none of its own (:func:`code_vectors`); ``counts``: training occurrences."""
        if not vectors:
            raise ValueError("Listening needs at least one track vector")
        dim = len(next(iter(vectors.values())))
        out = np.zeros((len(track_ids), dim), np.float32)
        known = np.zeros(len(track_ids), bool)
        from_codes = np.zeros(len(track_ids), bool)
        if fallback is not None and fallback.shape != (len(track_ids), dim):
            raise ValueError(f"fallback vectors of shape {fallback.shape}, expected {(len(track_ids), dim)}")
        for i, t in enumerate(track_ids):
            v = vectors.get(t)
            if v is None:
                if fallback is None or not np.linalg.norm(fallback[i]) > 0:
                    continue
                v, from_codes[i] = fallback[i], True
            v = np.asarray(v, np.float32)
            if v.shape != (dim,) or not np.all(np.isfinite(v)):
                raise ValueError(f"track {t!r}: vector of shape {v.shape} (expected ({dim},), finite)")
            n = float(np.linalg.norm(v))
            if n > 0:
                out[i], known[i] = v / n, True
        popularity = None
        if counts is not None:
            seen = np.asarray([t in counts for t in track_ids])
            logs = np.log1p(np.asarray([float(counts.get(t, 0.0)) for t in track_ids]))
            popularity = np.zeros(len(track_ids))
            if seen.any():
                popularity[seen] = np.minimum(_z(logs[seen]), POPULARITY_CAP)
        rebuilt = None
        if fallback is not None:
            norms = np.linalg.norm(fallback, axis=1, keepdims=True)
            rebuilt = np.where(norms > 0, fallback / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)
        return cls(out, known, popularity, from_codes, rebuilt)

    @classmethod
    def load(cls, path: str | Path, track_ids: Sequence[str], fallback: np.ndarray | None = None) -> "Listening":
        """Read ``ids``/``vectors`` (and ``counts`` when present) from an .npz (no pickles); a malformed file names
        itself."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                ids, vectors = [str(i) for i in f["ids"]], np.asarray(f["vectors"], np.float32)
                counts = np.asarray(f["counts"], np.float64) if "counts" in f.files else None
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"{path}: not a listening file (ids and vectors arrays): {e}") from e
        if vectors.ndim != 2 or len(ids) != len(vectors) or (counts is not None and counts.shape != (len(ids),)):
            raise ValueError(f"{path}: {len(ids)} ids for vectors of shape {vectors.shape}"
                             + (f" and counts of shape {counts.shape}" if counts is not None else ""))
        return cls.from_vectors(track_ids, dict(zip(ids, vectors)),
                                dict(zip(ids, counts.tolist())) if counts is not None else None, fallback)

    def history(self, kept_rows: Sequence[int]) -> np.ndarray:
        """float64 (n_rows,): how close every track sits to the kept tracks, z-scored; zeros when none of them has a
        vector. A track with its own vector: its cosine to the mean of the kept tracks' own vectors, z-scored
        over those tracks. A track placed by its codes: its rebuilt vector's cosine to the mean of the kept
        tracks' rebuilt vectors, z-scored over every track's rebuilt vector — rebuilt vectors are cluster
        centroids, nearer to everything than a track's own vector is, so they are compared among themselves
        (cold tracks would otherwise top every history). Tracks with no vector at all score the neutral 0."""
        kept = [int(r) for r in kept_rows if self.known[int(r)]]
        out = np.zeros(len(self.vectors))
        own = self.known & ~self.from_codes if self.from_codes is not None else self.known
        seeds = [r for r in kept if own[r]]
        if seeds:
            q = self.vectors[seeds].mean(axis=0)
            if np.linalg.norm(q) > 0:
                cos = (self.vectors @ (q / np.linalg.norm(q))).astype(np.float64)
                out[own] = _z(cos[own])
        if self.rebuilt is not None and kept and self.from_codes is not None and self.from_codes.any():
            q = self.rebuilt[kept].mean(axis=0)
            if np.linalg.norm(q) > 0:
                cos = (self.rebuilt @ (q / np.linalg.norm(q))).astype(np.float64)
                out[self.from_codes] = _z(cos)[self.from_codes]
        return out


def code_vectors(store) -> np.ndarray | None:
    """(n_rows, d) float32: each store track's playlist-modality vector rebuilt from its codes — the sum of the
    centroids its playlist codes name (residual levels added), mapped back out of the quantizer's preprocessing
    (× its scale + its mean, ``<store>/quantizers.safetensors``: the centroids live in the centred, scaled space,
    and the mean is a large shared part of every unit item2vec vector). None when the store has no playlist
    centroids or no preprocessing state to undo."""
    from talkplay.token_store import QUANTIZERS_FILE

    centroids = store.centroids()
    cols = [(i, p) for i, p in enumerate(store.vocab.positions) if p.modality == "playlist"]
    names = [f"{p.modality}{p.level}" for _, p in cols]
    root = getattr(store, "root", None)
    if not cols or any(n not in centroids for n in names) or root is None or \
            not (Path(root) / QUANTIZERS_FILE).exists():
        return None
    from safetensors.numpy import load_file

    state = load_file(str(Path(root) / QUANTIZERS_FILE))
    if "playlist.prep.mean" not in state or "playlist.prep.scale" not in state:
        return None
    z = sum(np.asarray(centroids[n], np.float32)[store.codes[:, i]] for (i, _), n in zip(cols, names))
    return (z * float(state["playlist.prep.scale"].reshape(-1)[0]) + state["playlist.prep.mean"]).astype(np.float32)


def context_scores(bm25, tokens: Sequence[str]) -> np.ndarray:
    """float64 (n_rows,): z-scored BM25 (``talkplay.textmatch.BM25Index``) of the conversation's ``tokens``."""
    return _z(np.asarray(bm25.score(list(tokens)), np.float64))
