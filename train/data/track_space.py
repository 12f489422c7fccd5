"""The listener simulation's settings and the space its listeners walk (:mod:`train.data.playlists`).

:class:`SimConfig` holds every knob of the simulation; :class:`TrackSpace` places each track by its tags, musicnn
embedding, tempo and mood (energy, brightness) from the bundle's ``features.parquet``; :func:`similarity` and
:func:`neighbours` give each track its closest ones (tag Jaccard + embedding cosine + tempo closeness with octave
errors forgiven + mood closeness); :func:`popularity` is the seeded Zipf prior.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.data.track_space is a module of the train package: import it, or use python -m")

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkplay.bundle import read_features
from talkplay.catalog import FEATURES_FILE, Catalog, CatalogError
from train.data.splits import source_group

# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SimConfig:
    """Knobs of the listener simulation (defaults sized for the ~300-track demo)."""

    n_playlists: int = 5000  # playlists to synthesize
    seed: int = 0  # one seed drives popularity, listeners, playlists and names
    min_length: int = 8  # shortest playlist (capped by the tracks available)
    max_length: int = 40  # longest playlist
    median_length: float = 15.0  # median of the log-normal length distribution
    length_spread: float = 0.45  # sigma of log(length)
    playlists_per_listener: float = 8.0  # average; sets the number of listeners
    album_run_prob: float = 0.12  # share of playlists that are album / source runs
    drift_prob: float = 0.08  # mean per-step chance of jumping elsewhere in the listener's taste
    zipf_exponent: float = 0.9  # popularity ∝ rank^-exponent
    popularity_weight: float = 0.6  # mean weight of log-popularity against taste (per-listener ×0.5–1.5)
    neighbours: int = 30  # neighbours kept per track for the walk
    similarity_temperature: float = 0.04  # lower → the walk sticks closer to the most similar track
    taste_temperature: float = 0.5  # lower → listeners stick closer to their taste
    walk_taste_weight: float = 0.35  # how much taste (vs. similarity) steers each walk step
    tag_weight: float = 0.35  # similarity: tag Jaccard
    embedding_weight: float = 0.35  # similarity: musicnn embedding cosine
    tempo_weight: float = 0.15  # similarity: tempo closeness
    mood_weight: float = 0.15  # similarity: energy and brightness closeness
    new_release_boost: float = 2.0  # popularity multiplier of cold-start tracks in the late period

    def __post_init__(self) -> None:
        if self.n_playlists < 1:
            raise ValueError(f"SimConfig.n_playlists={self.n_playlists} must be ≥ 1")
        if not 2 <= self.min_length <= self.max_length:
            raise ValueError(f"SimConfig needs 2 ≤ min_length ≤ max_length (got {self.min_length}, {self.max_length})")
        for name in ("album_run_prob", "drift_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SimConfig.{name}={getattr(self, name)} must be in [0, 1]")
        if self.neighbours < 1 or self.similarity_temperature <= 0 or self.taste_temperature <= 0:
            raise ValueError("SimConfig.neighbours and the temperatures must be > 0")


# ---------------------------------------------------------------- the track space

_MAX_TAGS = 512  # the tag vocabulary is capped so the tag matrix stays small for large catalogs
_TAG_ENERGY = {"energetic": 0.25, "fast": 0.15, "loud": 0.15, "percussive": 0.1,
               "calm": -0.25, "slow": -0.15, "quiet": -0.15, "drumless": -0.1}
_TAG_BRIGHTNESS = {"bright": 0.25, "dark": -0.25}


@dataclass(frozen=True, eq=False)
class TrackSpace:
    """Per-track arrays the simulation works on, in catalog order."""

    ids: tuple[str, ...]  # track ids
    groups: tuple[str, ...]  # source group (package, else album, else artist)
    albums: tuple[str, ...]  # album as credited, "" when unknown
    tags: tuple[tuple[str, ...], ...]  # track tags ∪ curated/auto/descriptor tags
    vocab: tuple[str, ...]  # columns of tag_matrix
    tag_matrix: np.ndarray  # N×V multi-hot (float32)
    embedding: np.ndarray | None  # N×D centred unit vectors, None without features
    tempo: np.ndarray  # bpm, NaN when unknown
    energy: np.ndarray  # 0..1 (calm ↔ energetic)
    brightness: np.ndarray  # 0..1 (dark ↔ bright)

    def __len__(self) -> int:
        return len(self.ids)


def _features_by_id(bundle: Path, catalog: Catalog) -> dict[str, dict] | None:
    path = bundle / FEATURES_FILE
    if not path.is_file():
        return None
    rows = read_features(bundle, known_track_ids={t.track_id for t in catalog})  # checked, named by row
    out = {tid: dict(r, _row=row) for row, (tid, r) in enumerate(rows.items(), 1)}
    lacking = [t.track_id for t in catalog if t.track_id not in out]
    if lacking:
        raise CatalogError(path, f"no row for track {lacking[0]!r} ({len(lacking)} track(s) lack features)",
                           field="track_id")
    return out


def build_track_space(catalog: Catalog, features: dict[str, dict] | None = None) -> TrackSpace:
    """Arrays for the simulation. Without features, energy/brightness come from mood tags and the
    embedding and tempo terms drop out of the similarity."""
    n = len(catalog)
    tags = []
    for t in catalog:
        f = (features or {}).get(t.track_id, {})
        extra = [x for c in ("curated_tags", "auto_tags", "descriptor_tags") for x in (f.get(c) or [])]
        tags.append(tuple(dict.fromkeys(x.strip().lower() for x in (*t.tags, *extra) if x and x.strip())))
    freq = Counter(x for ts in tags for x in ts)
    vocab = tuple(sorted(sorted(freq, key=lambda x: (-freq[x], x))[:_MAX_TAGS]))
    col = {x: j for j, x in enumerate(vocab)}
    matrix = np.zeros((n, len(vocab)), dtype=np.float32)
    for i, ts in enumerate(tags):
        matrix[i, [col[x] for x in ts if x in col]] = 1.0

    def column(name: str) -> np.ndarray:
        vals = [(features or {}).get(t.track_id, {}).get(name) for t in catalog]
        return np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)

    tempo = column("tempo_bpm")
    tempo[~(tempo > 0)] = np.nan  # 0 means the tempo tracker found no beat
    tag_energy = np.array([0.6 + sum(_TAG_ENERGY.get(x, 0.0) for x in ts) for ts in tags]).clip(0, 1)
    tag_bright = np.array([0.5 + sum(_TAG_BRIGHTNESS.get(x, 0.0) for x in ts) for ts in tags]).clip(0, 1)
    energy, brightness = column("energy"), column("brightness")
    energy = np.where(np.isnan(energy), tag_energy, energy)
    brightness = np.where(np.isnan(brightness), tag_bright, brightness)

    embedding = None
    if features is not None and all(features[t.track_id].get("musicnn_embedding") for t in catalog):
        dims = {len(features[t.track_id]["musicnn_embedding"]) for t in catalog}
        if len(dims) != 1:
            bad = next(t for t in catalog if len(features[t.track_id]["musicnn_embedding"]) != min(dims))
            raise CatalogError(catalog.root / FEATURES_FILE, f"embedding lengths differ {sorted(dims)}",
                               row=features[bad.track_id]["_row"], field="musicnn_embedding")
        e = np.array([features[t.track_id]["musicnn_embedding"] for t in catalog], dtype=np.float64)
        e -= e.mean(axis=0)  # centring makes cosine contrast tracks instead of sharing one big common direction
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-9)
        embedding = e.astype(np.float32)
    return TrackSpace(
        ids=tuple(t.track_id for t in catalog), groups=tuple(source_group(t) for t in catalog),
        albums=tuple(t.album.strip() for t in catalog), tags=tuple(tags), vocab=vocab, tag_matrix=matrix,
        embedding=embedding, tempo=tempo, energy=energy, brightness=brightness,
    )


def _tempo_closeness(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.abs(np.log2(a / b))
    d = np.minimum(d, np.abs(d - 1.0) + 0.1)  # half/double-time readings are common tracker errors
    out = np.exp(-((d / 0.2) ** 2))
    return np.where(np.isnan(out), 0.5, out)


def _combine(space: TrackSpace, config: SimConfig, inter, union, cos, tempo_i, tempo_j, d_energy, d_bright) -> np.ndarray:
    terms = [(config.tag_weight, inter / np.maximum(union, 1.0))]
    if cos is not None:
        terms.append((config.embedding_weight, (cos + 1.0) / 2.0))
    if not np.all(np.isnan(space.tempo)):
        terms.append((config.tempo_weight, _tempo_closeness(tempo_i, tempo_j)))
    terms.append((config.mood_weight, np.exp(-((d_energy / 0.15) ** 2 + (d_bright / 0.2) ** 2))))
    return sum(w * v for w, v in terms) / sum(w for w, _ in terms)


def similarity(space: TrackSpace, i: np.ndarray, j: np.ndarray, config: SimConfig) -> np.ndarray:
    """Similarity in [0, 1] of track pairs ``(i[k], j[k])``: weighted tag Jaccard, embedding cosine,
    tempo closeness and mood (energy, brightness) closeness."""
    i, j = np.broadcast_arrays(np.asarray(i), np.asarray(j))
    m, e = space.tag_matrix, space.embedding
    inter = (m[i] * m[j]).sum(-1)
    union = m[i].sum(-1) + m[j].sum(-1) - inter
    cos = None if e is None else (e[i] * e[j]).sum(-1)
    return _combine(space, config, inter, union, cos, space.tempo[i], space.tempo[j],
                    space.energy[i] - space.energy[j], space.brightness[i] - space.brightness[j])


def similarity_rows(space: TrackSpace, rows: np.ndarray, config: SimConfig) -> np.ndarray:
    """``similarity`` of each track in ``rows`` to every track (len(rows)×N), by matrix products."""
    m, e = space.tag_matrix, space.embedding
    inter = m[rows] @ m.T
    counts = m.sum(1)
    union = counts[rows, None] + counts[None, :] - inter
    cos = None if e is None else e[rows] @ e.T
    return _combine(space, config, inter, union, cos, space.tempo[rows, None], space.tempo[None, :],
                    space.energy[rows, None] - space.energy[None, :],
                    space.brightness[rows, None] - space.brightness[None, :])


def neighbours(space: TrackSpace, config: SimConfig, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Top-k most similar other tracks per track: (indices N×k, similarities N×k), best first.

    Computed a block of rows at a time, so memory stays block×N for large catalogs.
    """
    n = len(space)
    k = min(config.neighbours, n - 1)
    idx = np.zeros((n, k), dtype=np.int64)
    sim = np.zeros((n, k), dtype=np.float64)
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        s = similarity_rows(space, rows, config).astype(np.float64)
        s[np.arange(len(rows)), rows] = -np.inf
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        for r, cand in enumerate(top):
            order = np.lexsort((cand, -s[r, cand]))  # by similarity, ties by index: deterministic
            idx[start + r] = cand[order]
            sim[start + r] = s[r, cand[order]]
    return idx, sim


def popularity(ids: Sequence[str], seed: int, exponent: float) -> np.ndarray:
    """Zipf popularity per track (mean 1), ranked by a hash of (seed, id) so catalog order is irrelevant."""
    keys = [hashlib.blake2b(f"{seed}:{tid}".encode(), digest_size=8).digest() for tid in ids]
    rank = np.empty(len(ids))
    rank[sorted(range(len(ids)), key=keys.__getitem__)] = np.arange(1, len(ids) + 1)
    pop = rank ** -exponent
    return pop / pop.mean()
