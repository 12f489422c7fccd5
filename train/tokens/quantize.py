"""Quantizers: per-modality track embeddings -> discrete codes (music tokens).

This module owns the step that turns one modality's (N, d) embedding matrix into
integer codes of shape (N, L):

* :class:`KMeansQuantizer` - flat K-means, L = 1 (TalkPlay: one token per modality).
* :class:`ResidualKMeansQuantizer` - plain residual k-means, L levels, coarse to fine
  (level l clusters what levels < l left over); the choice for tiny catalogs.
* :class:`RQVAEQuantizer` - a residual-quantized VAE (3MToken-style semantic IDs):
  MLP encoder, L residual codebooks with a straight-through estimator, MLP decoder.
* :func:`default_codebook_size` - the rule for K given the catalog size.
* :func:`code_stats` - utilization / balance / collision numbers of a code matrix.
* :func:`load_quantizer`, :func:`save_quantizer`, :func:`read_quantizer` - persistence,
  so that new (cold-start) items can be encoded later without refitting.

Preprocessing (owned by every quantizer, stored in its state): rows are L2-normalized
(embeddings here are cosine-like: direction carries meaning, norm mostly does not),
then centred on the training mean and divided by ONE global scale chosen so that the
average per-dimension variance is 1.  A single scale keeps the cosine geometry intact
(per-dimension standardization would inflate low-variance noise dimensions); centring
and unit scale give the RQ-VAE's MLPs well-conditioned inputs, make the codebooks of
every kind live in comparable units, and make "predict the mean" score an MSE of
exactly 1.0 on the training data - the trivial baseline of :attr:`FitReport.level_mse`.
:meth:`Quantizer.decode` inverts the centring/scaling, so reconstructions are in input
space *after* row normalization (the dropped norm cannot be recovered).

Reserved codes: ``reserved=R`` shifts every code emitted for a real item by R, so real
codes are in ``[R, R + K)`` at every level and ``[0, R)`` stays free for the caller
(e.g. code 0 = "no data" for instrumental tracks in the lyrics modality).  The
per-level vocabulary is therefore ``R + K`` (:attr:`Quantizer.vocab_size`).

State format: :meth:`Quantizer.state_dict` is a flat ``dict[str, np.ndarray]`` of
float32 / int64 arrays only (safetensors-compatible); hyper-parameters ride along as
1-element arrays (``levels``, ``codebook_size``, ``reserved``, ``config.<field>``...).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.tokens.quantize is a module of the train package: import it, or use python -m")

import math
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from torch import nn
from torch.nn import functional as F

__all__ = [
    "KINDS",
    "CodeStats",
    "FitReport",
    "KMeansConfig",
    "KMeansQuantizer",
    "Quantizer",
    "RQVAEConfig",
    "RQVAEQuantizer",
    "ResidualKMeansQuantizer",
    "code_stats",
    "default_codebook_size",
    "load_quantizer",
    "quantizer_for",
    "read_quantizer",
    "save_quantizer",
]

#: Quantizer kinds understood by :func:`quantizer_for` / :func:`load_quantizer`.
KINDS = ("kmeans", "rkmeans", "rqvae")
#: Bumped whenever the state_dict layout changes incompatibly.
STATE_FORMAT = 1
#: Upper clamp of K for flat K-means (the TalkPlay paper: K = 1024 for 1.7M tracks).
FLAT_MAX_CODES = 1024
#: Upper clamp of K per level for residual quantizers (3MToken / TIGER use 256).
RESIDUAL_MAX_CODES = 256

# Rows per chunk in nearest-code search: keeps the (rows, K) distance block ~<= 64 MB.
_DIST_BLOCK = 1 << 24


# --------------------------------------------------------------------------- #
# Codebook size rule
# --------------------------------------------------------------------------- #


def default_codebook_size(n_items: int, levels: int = 1) -> int:
    """Codes per level K for a catalog of ``n_items`` tracks and ``levels`` levels.

    Rule: ``K = round(N ** (1 / (L + 1)))``, clamped to ``[2, 1024]`` for flat K-means
    (L = 1) and ``[2, 256]`` per level for residual quantizers, and never above N.

    Reasoning: view the catalog as a balanced tree with L code levels plus one final
    level, the items that end up sharing a full code tuple.  Giving every level the
    same branching factor K = N^(1/(L+1)) means each code at each level is trained on
    (and stands for) ~N/K items - plenty of support, so no empty codes - while each
    full tuple holds ~K items, so no code is overloaded either.  For L = 1 this is the
    familiar sqrt(N): N = 286 gives 17 codes of ~17 tracks; N = 1.7e6 gives 1304,
    clamped to the paper's 1024.  For L = 3 and N = 286 it gives K = 4 (64 tuples).
    Callers that need (nearly) unique tuples for item identification should pass a
    larger K (up to N^(1/L)) or append a disambiguation index.

    Args:
        n_items: catalog size N (>= 1).
        levels: number of code levels L (>= 1).

    Returns:
        K, at least 2 unless ``n_items == 1``.
    """
    if n_items < 1:
        raise ValueError(f"default_codebook_size: n_items must be >= 1, got {n_items}")
    if levels < 1:
        raise ValueError(f"default_codebook_size: levels must be >= 1, got {levels}")
    cap = FLAT_MAX_CODES if levels == 1 else RESIDUAL_MAX_CODES
    k = round(n_items ** (1.0 / (levels + 1)))
    return int(min(max(k, 2), cap, n_items))


# --------------------------------------------------------------------------- #
# Code statistics
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class CodeStats:
    """How well a code matrix uses its codebooks (see :func:`code_stats`)."""

    codebook_size: int  # K real codes per level
    reserved: int  # codes [0, reserved) are the caller's; rows holding one are not counted
    n_items: int  # rows counted (rows with a reserved code at any level are excluded)
    utilization: tuple[float, ...]  # per level: fraction of the K real codes used by >= 1 item
    entropy: tuple[float, ...]  # per level: entropy of the code histogram in bits / log2 K (1 = uniform)
    max_share: tuple[float, ...]  # per level: fraction of items on the single most popular code
    collision_rate: float  # fraction of items whose full code tuple is shared with another item
    unique_tuples: int  # number of distinct full code tuples


def code_stats(codes: np.ndarray, codebook_size: int, reserved: int = 0) -> CodeStats:
    """Per-level utilization, normalized entropy and max share, plus tuple collisions.

    Args:
        codes: integer codes, (N, L) or (N,) for one level, in ``[0, reserved + K)``.
        codebook_size: K real codes per level.
        reserved: codes below this are reserved ("no data"); rows holding one at any
            level are left out of every number (they collide by design).

    Returns:
        :class:`CodeStats`; all numbers are 0 when no row is counted.  With K = 1 the
        normalized entropy is defined as 1 (one code is trivially balanced).
    """
    if codebook_size < 1:
        raise ValueError(f"code_stats: codebook_size must be >= 1, got {codebook_size}")
    if reserved < 0:
        raise ValueError(f"code_stats: reserved must be >= 0, got {reserved}")
    c = np.asarray(codes)
    if c.ndim == 1:
        c = c[:, None]
    if c.ndim != 2 or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"code_stats: codes must be an integer (N, L) array, got {c.dtype} {c.shape}")
    if c.size and (c.min() < 0 or c.max() >= reserved + codebook_size):
        raise ValueError(f"code_stats: codes must lie in [0, {reserved + codebook_size}), got [{c.min()}, {c.max()}]")
    real = c[(c >= reserved).all(axis=1)] - reserved
    n, levels = real.shape
    if n == 0:
        zeros = (0.0,) * levels
        return CodeStats(codebook_size, reserved, 0, zeros, zeros, zeros, 0.0, 0)
    util, ent, share = [], [], []
    for level in range(levels):
        counts = np.bincount(real[:, level], minlength=codebook_size)
        p = counts[counts > 0] / n
        util.append(float((counts > 0).sum() / codebook_size))
        bits = float(-(p * np.log2(p)).sum())
        ent.append(bits / math.log2(codebook_size) if codebook_size > 1 else 1.0)
        share.append(float(counts.max() / n))
    _, inverse, tuple_counts = np.unique(real, axis=0, return_inverse=True, return_counts=True)
    collided = tuple_counts[inverse.reshape(-1)] > 1
    return CodeStats(
        codebook_size=codebook_size,
        reserved=reserved,
        n_items=int(n),
        utilization=tuple(util),
        entropy=tuple(ent),
        max_share=tuple(share),
        collision_rate=float(collided.mean()),
        unique_tuples=len(tuple_counts),
    )


@dataclass(frozen=True)
class FitReport:
    """What :meth:`Quantizer.fit` measured on the training rows."""

    kind: str  # quantizer kind ("kmeans", "rkmeans", "rqvae")
    n_items: int  # training rows
    seconds: float  # wall time of the fit
    level_mse: tuple[float, ...]  # MSE (standardized space) decoding the first 1..L levels; 1.0 = predict the mean
    stats: CodeStats  # code statistics of the training rows (reserved codes included as configured)
    history: Mapping[str, tuple[float, ...]]  # training curves: per level (k-means kinds) or per epoch (RQ-VAE)


# --------------------------------------------------------------------------- #
# Shared helpers
# --------------------------------------------------------------------------- #


def _as_matrix(x: Any, what: str, *, allow_empty: bool = False) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (N, d) array, got shape {a.shape}")
    if a.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{what}: no rows")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{what}: expected a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: contains NaN or inf")
    return a


def _sub_seed(seed: int, *path: int) -> int:
    """Independent 31-bit seed for one step (e.g. one level) of a seeded fit."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, *path]).generate_state(1)[0] & 0x7FFFFFFF)


def _nearest(r: np.ndarray, book: np.ndarray) -> np.ndarray:
    """Index of the nearest codebook row (squared Euclidean) for every row of ``r``."""
    out = np.empty(len(r), np.int64)
    sq = np.einsum("kd,kd->k", book, book)
    step = max(1, _DIST_BLOCK // max(1, len(book)))
    for i in range(0, len(r), step):
        # ||r||^2 is constant per row, so the argmin only needs -2 r.e + ||e||^2.
        out[i : i + step] = np.argmin(sq[None, :] - 2.0 * (r[i : i + step] @ book.T), axis=1)
    return out


def _kmeans(z: np.ndarray, k: int, *, seed: int, n_init: int, max_iter: int, max_points: int) -> np.ndarray:
    """K-means centroids (k, d) float32 fitted on a seeded subsample of at most ``max_points`` rows."""
    if len(z) > max_points:
        rng = np.random.default_rng(seed)
        z = z[np.sort(rng.choice(len(z), max_points, replace=False))]
    with warnings.catch_warnings():
        # Fewer distinct points than k (duplicate tracks, all-zero deep residuals) is
        # legitimate on tiny catalogs; the surplus centroids simply stay unused.
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed).fit(z)
    return km.cluster_centers_.astype(np.float32)


def _i64(v: int) -> np.ndarray:
    return np.array([v], np.int64)


def _get(state: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    if key not in state:
        raise ValueError(f"quantizer state: missing key {key!r}")
    return np.asarray(state[key])


def _config_to_state(config: Any) -> dict[str, np.ndarray]:
    out = {}
    for f in fields(config):
        v = getattr(config, f.name)
        out[f"config.{f.name}"] = np.array([v], np.float32) if isinstance(v, float) else _i64(int(v))
    return out


def _config_from_state(config_type: type, state: Mapping[str, np.ndarray]) -> Any:
    values: dict[str, Any] = {}
    for f in fields(config_type):
        key = f"config.{f.name}"
        if key not in state:  # older states may predate a field: keep its default
            continue
        v = _get(state, key).reshape(-1)[0]
        if f.type == "float":
            values[f.name] = float(f"{float(v):.7g}")  # undo float32 rounding of e.g. lr=1e-3
        elif f.type == "bool":
            values[f.name] = bool(v)
        else:
            values[f.name] = int(v)
    return config_type(**values)


def _with_overrides(config_type: type, config: Any, overrides: Mapping[str, Any], owner: str) -> Any:
    base = config if config is not None else config_type()
    names = {f.name for f in fields(config_type)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"{owner}: unknown option(s) {unknown}; known: {sorted(names)}")
    return replace(base, **overrides)


# --------------------------------------------------------------------------- #
# Common interface
# --------------------------------------------------------------------------- #


class Quantizer(ABC):
    """(N, d) float embeddings -> (N, levels) int64 codes, with preprocessing and state.

    Subclasses implement the standardized-space hooks ``_fit``, ``_encode_std``,
    ``_decode_std``, ``codebooks`` and ``_state`` / ``_load_state``.
    """

    kind: ClassVar[str]
    config_type: ClassVar[type]

    def __init__(
        self, levels: int, codebook_size: int, *, reserved: int = 0, l2_normalize: bool = True, config: Any = None
    ) -> None:
        if levels < 1:
            raise ValueError(f"{self.kind} quantizer: levels must be >= 1, got {levels}")
        if codebook_size < 1:
            raise ValueError(f"{self.kind} quantizer: codebook_size must be >= 1, got {codebook_size}")
        if reserved < 0:
            raise ValueError(f"{self.kind} quantizer: reserved must be >= 0, got {reserved}")
        self.levels = int(levels)
        self.codebook_size = int(codebook_size)
        self.reserved = int(reserved)
        self.l2_normalize = bool(l2_normalize)
        self.config = config if config is not None else self.config_type()
        self._mean: np.ndarray | None = None
        self._scale = 1.0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(levels={self.levels}, codebook_size={self.codebook_size}, "
            f"reserved={self.reserved}, l2_normalize={self.l2_normalize}, config={self.config})"
        )

    # -- properties ---------------------------------------------------------- #

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` (or a state load) has happened."""
        return self._mean is not None

    @property
    def input_dim(self) -> int:
        """Embedding width d the quantizer was fitted on."""
        self._require_fitted("input_dim")
        assert self._mean is not None
        return int(self._mean.shape[0])

    @property
    def vocab_size(self) -> int:
        """Distinct code values per level, reserved ones included: ``reserved + codebook_size``."""
        return self.reserved + self.codebook_size

    def params(self) -> dict[str, Any]:
        """JSON-able description (kind, sizes, options) for manifests and logs."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "levels": self.levels,
            "codebook_size": self.codebook_size,
            "reserved": self.reserved,
            "vocab_size": self.vocab_size,
            "l2_normalize": self.l2_normalize,
            "input_dim": self.input_dim if self.fitted else None,
        }
        out.update(asdict(self.config))
        return out

    # -- preprocessing ------------------------------------------------------- #

    def _rows(self, x: np.ndarray) -> np.ndarray:
        if not self.l2_normalize:
            return x
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.maximum(norms, 1e-12)  # all-zero rows stay zero

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        """Standardized (N, d) float32 rows: the space codebooks (k-means kinds) live in."""
        self._require_fitted("preprocess")
        a = _as_matrix(x, f"{self.kind}.preprocess(x)", allow_empty=True)
        self._check_dim(a, "preprocess")
        return ((self._rows(a) - self._mean) / self._scale).astype(np.float32)

    def postprocess(self, z: np.ndarray) -> np.ndarray:
        """Inverse of the centring/scaling of :meth:`preprocess` (row norms are not restored)."""
        self._require_fitted("postprocess")
        return (np.asarray(z, np.float32) * self._scale + self._mean).astype(np.float32)

    def _check_dim(self, a: np.ndarray, method: str) -> None:
        if a.shape[1] != self.input_dim:
            raise ValueError(f"{self.kind}.{method}: expected width {self.input_dim}, got {a.shape[1]}")

    def _require_fitted(self, method: str) -> None:
        if self._mean is None:
            raise RuntimeError(f"{self.kind} quantizer: {method} needs a fitted quantizer (call fit or load)")

    # -- public API ---------------------------------------------------------- #

    def fit(self, x: np.ndarray, seed: int = 0) -> FitReport:
        """Fit preprocessing and codebooks on the catalog rows ``x`` (N, d); deterministic in ``seed``."""
        a = _as_matrix(x, f"{self.kind}.fit(x)")
        if len(a) < self.codebook_size:
            raise ValueError(
                f"{self.kind}.fit: codebook_size {self.codebook_size} > {len(a)} training rows "
                "(see default_codebook_size)"
            )
        t0 = time.perf_counter()
        rows = self._rows(a)
        mean = rows.mean(axis=0, dtype=np.float64).astype(np.float32)
        # Chunked float64 sum of squares: no (N, d) float64 copy for million-row catalogs.
        sq = sum(
            float(np.sum((rows[i : i + 65536] - mean).astype(np.float64) ** 2)) for i in range(0, len(rows), 65536)
        )
        scale = math.sqrt(sq / rows.size)
        self._mean = mean
        # float32 like its stored copy, so a reloaded state preprocesses bit-identically.
        self._scale = float(np.float32(scale)) if scale > 1e-12 else 1.0  # identical rows: keep units
        z = self.preprocess(a)
        try:
            history = self._fit(z, seed)
        except BaseException:
            self._mean = None  # a failed fit must not leave a half-fitted quantizer behind
            raise
        codes = self._encode_std(z)
        level_mse = tuple(
            float(np.mean((self._decode_std(codes[:, : level + 1]) - z) ** 2)) for level in range(self.levels)
        )
        return FitReport(
            kind=self.kind,
            n_items=len(a),
            seconds=time.perf_counter() - t0,
            level_mse=level_mse,
            stats=code_stats(codes + self.reserved, self.codebook_size, self.reserved),
            history=history,
        )

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Codes (N, levels) int64 in ``[reserved, reserved + K)`` for rows ``x`` (N, d)."""
        z = self.preprocess(x)
        if len(z) == 0:
            return np.zeros((0, self.levels), np.int64)
        return self._encode_std(z).astype(np.int64) + self.reserved

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruction (N, d) in input space (after row normalization) from codes.

        ``codes`` may hold only the first ``l <= levels`` columns for a coarser
        reconstruction.  Reserved codes have no embedding and are rejected.
        """
        self._require_fitted("decode")
        c = np.asarray(codes)
        if c.ndim != 2 or not 1 <= c.shape[1] <= self.levels or not np.issubdtype(c.dtype, np.integer):
            raise ValueError(
                f"{self.kind}.decode: expected integer codes (N, 1..{self.levels}), got {c.dtype} {c.shape}"
            )
        c = c.astype(np.int64) - self.reserved
        if c.size and (c.min() < 0 or c.max() >= self.codebook_size):
            raise ValueError(
                f"{self.kind}.decode: codes must lie in [{self.reserved}, {self.vocab_size}) "
                f"(reserved codes cannot be decoded)"
            )
        return self.postprocess(self._decode_std(c))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to encode new items: flat dict of float32 / int64 arrays."""
        self._require_fitted("state_dict")
        assert self._mean is not None
        state = {
            "format": _i64(STATE_FORMAT),
            "kind_id": _i64(KINDS.index(self.kind)),
            "levels": _i64(self.levels),
            "codebook_size": _i64(self.codebook_size),
            "reserved": _i64(self.reserved),
            "l2_normalize": _i64(int(self.l2_normalize)),
            "prep.mean": self._mean.astype(np.float32),
            "prep.scale": np.array([self._scale], np.float32),
        }
        state.update(_config_to_state(self.config))
        state.update(self._state())
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> Quantizer:
        """Rebuild a fitted quantizer of this class from :meth:`state_dict` output."""
        fmt = int(_get(state, "format")[0])
        if fmt != STATE_FORMAT:
            raise ValueError(f"quantizer state: format {fmt} is not the supported {STATE_FORMAT}")
        kind_id = int(_get(state, "kind_id")[0])
        if not 0 <= kind_id < len(KINDS) or KINDS[kind_id] != cls.kind:
            raise ValueError(f"quantizer state: holds kind id {kind_id}, not {cls.kind!r}")
        q = cls._make(
            int(_get(state, "levels")[0]),
            int(_get(state, "codebook_size")[0]),
            reserved=int(_get(state, "reserved")[0]),
            l2_normalize=bool(_get(state, "l2_normalize")[0]),
            config=_config_from_state(cls.config_type, state),
        )
        q._mean = _get(state, "prep.mean").astype(np.float32)
        q._scale = float(_get(state, "prep.scale")[0])
        q._load_state(state)
        return q

    @classmethod
    def _make(cls, levels: int, codebook_size: int, **kw: Any) -> Quantizer:
        return cls(levels, codebook_size, **kw)

    # -- subclass hooks (all in standardized space, codes without the reserved shift) -- #

    @abstractmethod
    def _fit(self, z: np.ndarray, seed: int) -> dict[str, tuple[float, ...]]: ...

    @abstractmethod
    def _encode_std(self, z: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _decode_std(self, codes: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def codebooks(self) -> list[np.ndarray]:
        """Per level, the (K, d_code) float32 codebook (standardized input or latent space)."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _load_state(self, state: Mapping[str, np.ndarray]) -> None: ...


# --------------------------------------------------------------------------- #
# K-means kinds
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class KMeansConfig:
    """Options of the (residual) k-means fit."""

    n_init: int = 0  # k-means++ restarts per level, best inertia wins; 0 = auto: 4 up to 20k fitted rows, else 1
    max_iter: int = 300  # Lloyd iterations per restart
    max_points_per_code: int = 256  # fit on a seeded subsample of <= this x K rows (faiss' default), then assign all


class ResidualKMeansQuantizer(Quantizer):
    """Plain residual k-means: level l clusters the residual left by levels < l.

    Codebooks live in the standardized input space; decoding sums the chosen
    centroids of all levels.  With ``levels=1`` this is flat K-means.
    """

    kind: ClassVar[str] = "rkmeans"
    config_type: ClassVar[type] = KMeansConfig

    def __init__(
        self,
        levels: int,
        codebook_size: int,
        *,
        reserved: int = 0,
        l2_normalize: bool = True,
        config: KMeansConfig | None = None,
        **overrides: Any,
    ) -> None:
        """Args: see :class:`Quantizer`; ``overrides`` are :class:`KMeansConfig` fields (e.g. ``n_init=8``)."""
        cfg = _with_overrides(KMeansConfig, config, overrides, type(self).__name__)
        super().__init__(levels, codebook_size, reserved=reserved, l2_normalize=l2_normalize, config=cfg)
        self._books: list[np.ndarray] = []

    def _fit(self, z: np.ndarray, seed: int) -> dict[str, tuple[float, ...]]:
        cfg = self.config
        r = z.copy()
        books, residual = [], []
        max_points = max(self.codebook_size, cfg.max_points_per_code * self.codebook_size)
        # Restarts are cheap insurance on small fits and too slow on big ones.
        n_init = cfg.n_init or (4 if min(len(r), max_points) <= 20_000 else 1)
        for level in range(self.levels):
            book = _kmeans(
                r,
                self.codebook_size,
                seed=_sub_seed(seed, level),
                n_init=n_init,
                max_iter=cfg.max_iter,
                max_points=max_points,
            )
            r -= book[_nearest(r, book)]
            books.append(book)
            residual.append(float(np.mean(np.sum(r * r, axis=1))))
        self._books = books
        return {"residual_sq_norm": tuple(residual)}

    def _encode_std(self, z: np.ndarray) -> np.ndarray:
        r = z.copy()
        codes = np.empty((len(z), self.levels), np.int64)
        for level, book in enumerate(self._books):
            codes[:, level] = idx = _nearest(r, book)
            r -= book[idx]
        return codes

    def _decode_std(self, codes: np.ndarray) -> np.ndarray:
        out = np.zeros((len(codes), self._books[0].shape[1]), np.float32)
        for level in range(codes.shape[1]):
            out += self._books[level][codes[:, level]]
        return out

    def codebooks(self) -> list[np.ndarray]:
        self._require_fitted("codebooks")
        return [b.copy() for b in self._books]

    def _state(self) -> dict[str, np.ndarray]:
        return {f"codebook.{level}": b.astype(np.float32) for level, b in enumerate(self._books)}

    def _load_state(self, state: Mapping[str, np.ndarray]) -> None:
        self._books = [_get(state, f"codebook.{level}").astype(np.float32) for level in range(self.levels)]


class KMeansQuantizer(ResidualKMeansQuantizer):
    """Flat K-means, one code per item (TalkPlay: K-means per modality)."""

    kind: ClassVar[str] = "kmeans"

    def __init__(
        self,
        codebook_size: int,
        *,
        reserved: int = 0,
        l2_normalize: bool = True,
        config: KMeansConfig | None = None,
        **overrides: Any,
    ) -> None:
        """Args: see :class:`Quantizer`; ``overrides`` are :class:`KMeansConfig` fields (e.g. ``n_init=8``)."""
        super().__init__(1, codebook_size, reserved=reserved, l2_normalize=l2_normalize, config=config, **overrides)

    @classmethod
    def _make(cls, levels: int, codebook_size: int, **kw: Any) -> Quantizer:
        if levels != 1:
            raise ValueError(f"kmeans quantizer state: levels must be 1, got {levels}")
        return cls(codebook_size, **kw)


# --------------------------------------------------------------------------- #
# RQ-VAE
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class RQVAEConfig:
    """Architecture and training options of :class:`RQVAEQuantizer`."""

    latent_dim: int = 32  # width of the quantized latent (codebook vectors)
    hidden_dim: int = 256  # hidden width of the one-hidden-layer MLP encoder and decoder
    epochs: int = 0  # quantized-training epochs; 0 = auto: ~target_steps optimizer steps, clamped to [20, 400]
    target_steps: int = 2000  # optimizer steps the auto epoch count aims for
    warmup_fraction: float = 0.1  # extra autoencoder-only epochs (fraction of epochs) before the codebook k-means init
    batch_size: int = 128  # mini-batch rows (capped at N)
    lr: float = 2e-3  # Adam learning rate (2e-3 beat 1e-3 and 3e-3 on 300-row synthetic catalogs)
    beta: float = 0.25  # commitment weight: beta * ||r - sg[e]||^2
    kmeans_init: bool = True  # init codebooks by residual k-means on warmed-up latents (else small uniform noise)
    dead_code_restart: bool = True  # re-seed codes unused during an epoch with random current residuals
    restart_sample: int = 8192  # rows whose residuals are computed for re-seeding (caps the cost on big N)
    threads: int = 1  # torch intra-op threads while fitting/encoding (0 = leave torch's setting); see _torch_threads


def _build_net(d: int, cfg: RQVAEConfig) -> nn.ModuleDict:
    return nn.ModuleDict(
        {
            "encoder": nn.Sequential(
                nn.Linear(d, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, cfg.latent_dim)
            ),
            "decoder": nn.Sequential(
                nn.Linear(cfg.latent_dim, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, d)
            ),
        }
    )


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Temporarily run torch with ``n`` intra-op threads (process-wide; restored on exit).

    The MLPs here are tiny, so extra threads buy little - and on a busy shared CPU
    their spin-waiting made a 4-s fit take 2-3 minutes with 2 threads (measured).
    """
    if n <= 0:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _nearest_t(r: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    return torch.argmin((book * book).sum(1)[None, :] - 2.0 * (r @ book.T), dim=1)


class RQVAEQuantizer(Quantizer):
    """Residual-quantized autoencoder (RQ-VAE) with L codebooks in a learned latent space.

    Encoder ``d -> hidden -> latent``; level l picks the code nearest to the residual
    ``r_l = z - sum_{j<l} e_j``; the decoder ``latent -> hidden -> d`` reconstructs from
    ``sum_l e_l`` (straight-through gradient to the encoder).  Loss per batch:
    ``MSE(x_hat, x) + sum_l [ ||sg[r_l] - e_l||^2 + beta * ||r_l - sg[e_l]||^2 ]``.
    Training: an autoencoder-only warm-up, codebook init by residual k-means on the
    latents, then Adam with dead-code restarts after every epoch.  Deterministic for
    a seed on CPU (torch's global RNG is forked, so callers' RNG state is untouched).
    """

    kind: ClassVar[str] = "rqvae"
    config_type: ClassVar[type] = RQVAEConfig

    def __init__(
        self,
        levels: int,
        codebook_size: int,
        *,
        reserved: int = 0,
        l2_normalize: bool = True,
        config: RQVAEConfig | None = None,
        **overrides: Any,
    ) -> None:
        """Args: see :class:`Quantizer`; ``overrides`` are :class:`RQVAEConfig` fields (e.g. ``epochs=50``)."""
        cfg = _with_overrides(RQVAEConfig, config, overrides, type(self).__name__)
        super().__init__(levels, codebook_size, reserved=reserved, l2_normalize=l2_normalize, config=cfg)
        self._net: nn.ModuleDict | None = None
        self._books: torch.Tensor | None = None  # (L, K, latent)

    # -- training ------------------------------------------------------------ #

    def _epochs(self, n: int) -> tuple[int, int, int]:
        """(batch size, quantized epochs, warm-up epochs) for N = n rows."""
        cfg = self.config
        bs = max(1, min(cfg.batch_size, n))
        epochs = cfg.epochs or min(400, max(20, math.ceil(cfg.target_steps / math.ceil(n / bs))))
        return bs, epochs, round(cfg.warmup_fraction * epochs)

    def _quantize(
        self, z: torch.Tensor, books: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(straight-through quantized latent, codes (B, L), codebook loss, commitment loss)."""
        r = z
        zq = torch.zeros_like(z)
        cb_loss = z.new_zeros(())
        commit = z.new_zeros(())
        codes = []
        for level in range(self.levels):
            idx = _nearest_t(r.detach(), books[level].detach())
            e = books[level][idx]
            cb_loss = cb_loss + F.mse_loss(e, r.detach())
            commit = commit + F.mse_loss(r, e.detach())
            zq = zq + e
            r = r - e.detach()
            codes.append(idx)
        return z + (zq - z).detach(), torch.stack(codes, 1), cb_loss, commit

    def _fit(self, z: np.ndarray, seed: int) -> dict[str, tuple[float, ...]]:
        cfg = self.config
        n, d = z.shape
        k, levels = self.codebook_size, self.levels
        bs, epochs, warmup = self._epochs(n)
        x = torch.from_numpy(z)
        curves = ("warmup_recon", "loss", "recon", "codebook", "commit", "restarts")
        hist: dict[str, list[float]] = {name: [] for name in curves}
        with torch.random.fork_rng(devices=[]), _torch_threads(cfg.threads):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(_sub_seed(seed, 1))
            net = _build_net(d, cfg)
            books = nn.Parameter(torch.empty(levels, k, cfg.latent_dim))

            def batches() -> list[torch.Tensor]:
                return list(torch.split(torch.randperm(n, generator=gen), bs))

            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
            for _ in range(warmup):
                total = 0.0
                for idx in batches():
                    xb = x[idx]
                    loss = F.mse_loss(net["decoder"](net["encoder"](xb)), xb)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                hist["warmup_recon"].append(total / n)

            with torch.no_grad():
                self._init_books(books, net, x, seed)
            opt = torch.optim.Adam([*net.parameters(), books], lr=cfg.lr)
            for _ in range(epochs):
                usage = torch.zeros(levels, k, dtype=torch.long)
                sums = np.zeros(4)
                for idx in batches():
                    xb = x[idx]
                    zq, codes, cb_loss, commit = self._quantize(net["encoder"](xb), books)
                    recon = F.mse_loss(net["decoder"](zq), xb)
                    loss = recon + cb_loss + cfg.beta * commit
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    for level in range(levels):
                        usage[level] += torch.bincount(codes[:, level], minlength=k)
                    sums += np.array([loss.item(), recon.item(), cb_loss.item(), commit.item()]) * len(idx)
                for key, v in zip(("loss", "recon", "codebook", "commit"), sums / n):
                    hist[key].append(float(v))
                restarted = 0
                if cfg.dead_code_restart and bool((usage == 0).any()):
                    with torch.no_grad():
                        restarted = self._restart(books, opt, net, x, usage, gen)
                hist["restarts"].append(float(restarted))
        net.eval()
        self._net, self._books = net, books.detach().clone()
        return {key: tuple(v) for key, v in hist.items()}

    def _latents(self, net: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        return (
            torch.cat([net["encoder"](chunk) for chunk in torch.split(x, 8192)])
            if len(x)
            else x.new_zeros((0, self.config.latent_dim))
        )

    def _init_books(self, books: torch.Tensor, net: nn.ModuleDict, x: torch.Tensor, seed: int) -> None:
        if not self.config.kmeans_init:
            # Classic VQ-VAE init: tiny uniform noise (kept as the no-k-means ablation).
            k = self.codebook_size
            books.uniform_(-1.0 / k, 1.0 / k)
            return
        r = self._latents(net, x).numpy().copy()
        for level in range(self.levels):
            book = _kmeans(
                r,
                self.codebook_size,
                seed=_sub_seed(seed, 2, level),
                n_init=1,
                max_iter=100,
                max_points=max(self.codebook_size, 256 * self.codebook_size),
            )
            r -= book[_nearest(r, book)]
            books[level] = torch.from_numpy(book)

    def _restart(
        self,
        books: torch.Tensor,
        opt: torch.optim.Optimizer,
        net: nn.ModuleDict,
        x: torch.Tensor,
        usage: torch.Tensor,
        gen: torch.Generator,
    ) -> int:
        """Move codes unused this epoch onto random current residuals; returns how many moved."""
        rows = torch.randperm(len(x), generator=gen)[: self.config.restart_sample]
        r = self._latents(net, x[rows])
        moments = opt.state.get(books, {})
        moved = 0
        for level in range(self.levels):
            dead = torch.nonzero(usage[level] == 0).reshape(-1)
            if len(dead):
                if len(dead) <= len(r):
                    pick = torch.randperm(len(r), generator=gen)[: len(dead)]
                else:
                    pick = torch.randint(len(r), (len(dead),), generator=gen)
                books[level, dead] = r[pick]
                # Stale Adam moments would immediately drag a re-seeded code away again.
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in moments:
                        moments[key][level, dead] = 0.0
                moved += len(dead)
            # Later levels are re-seeded from residuals under the updated codebook.
            r = r - books[level][_nearest_t(r, books[level])]
        return moved

    # -- inference ----------------------------------------------------------- #

    def _encode_std(self, z: np.ndarray) -> np.ndarray:
        assert self._net is not None and self._books is not None
        with torch.no_grad(), _torch_threads(self.config.threads):
            r = self._latents(self._net, torch.from_numpy(np.ascontiguousarray(z, np.float32)))
            codes = []
            for level in range(self.levels):
                idx = _nearest_t(r, self._books[level])
                r = r - self._books[level][idx]
                codes.append(idx)
        return torch.stack(codes, 1).numpy().astype(np.int64)

    def _decode_std(self, codes: np.ndarray) -> np.ndarray:
        assert self._net is not None and self._books is not None
        c = torch.from_numpy(np.ascontiguousarray(codes, np.int64))
        with torch.no_grad(), _torch_threads(self.config.threads):
            zq = torch.zeros(len(c), self.config.latent_dim)
            for level in range(c.shape[1]):
                zq += self._books[level][c[:, level]]
            out = (
                torch.cat([self._net["decoder"](chunk) for chunk in torch.split(zq, 8192)])
                if len(zq)
                else zq.new_zeros((0, self.input_dim))
            )
        return out.numpy()

    def codebooks(self) -> list[np.ndarray]:
        self._require_fitted("codebooks")
        assert self._books is not None
        return [self._books[level].numpy().copy() for level in range(self.levels)]

    def _state(self) -> dict[str, np.ndarray]:
        assert self._net is not None
        out = {f"net.{name}": t.detach().numpy().astype(np.float32) for name, t in self._net.state_dict().items()}
        out.update({f"codebook.{level}": b for level, b in enumerate(self.codebooks())})
        return out

    def _load_state(self, state: Mapping[str, np.ndarray]) -> None:
        net = _build_net(self.input_dim, self.config)
        weights = {name: torch.from_numpy(_get(state, f"net.{name}").astype(np.float32)) for name in net.state_dict()}
        net.load_state_dict(weights)
        net.eval()
        self._net = net
        self._books = torch.stack(
            [torch.from_numpy(_get(state, f"codebook.{level}").astype(np.float32)) for level in range(self.levels)]
        )


# --------------------------------------------------------------------------- #
# Factory and persistence
# --------------------------------------------------------------------------- #

_CLASSES: dict[str, type[Quantizer]] = {
    "kmeans": KMeansQuantizer,
    "rkmeans": ResidualKMeansQuantizer,
    "rqvae": RQVAEQuantizer,
}


def _class_for(kind: str) -> type[Quantizer]:
    if kind not in _CLASSES:
        raise ValueError(f"unknown quantizer kind {kind!r}; expected one of {KINDS}")
    return _CLASSES[kind]


def quantizer_for(kind: str, levels: int, codebook_size: int, **kw: Any) -> Quantizer:
    """A fresh quantizer of ``kind`` ("kmeans" needs ``levels == 1``); ``kw`` go to its constructor."""
    cls = _class_for(kind)
    if cls is KMeansQuantizer:
        if levels != 1:
            raise ValueError(f"quantizer kind 'kmeans' is flat: levels must be 1, got {levels} (use 'rkmeans')")
        return KMeansQuantizer(codebook_size, **kw)
    return cls(levels, codebook_size, **kw)


def load_quantizer(kind: str, state: Mapping[str, np.ndarray]) -> Quantizer:
    """Rebuild a fitted quantizer of ``kind`` from its :meth:`Quantizer.state_dict`."""
    return _class_for(kind).from_state(state)


def save_quantizer(quantizer: Quantizer, path: str | Path) -> None:
    """Write ``quantizer.state_dict()`` to a safetensors file; the kind goes into its metadata."""
    save_file(quantizer.state_dict(), str(path), metadata={"kind": quantizer.kind, "format": str(STATE_FORMAT)})


def read_quantizer(path: str | Path) -> Quantizer:
    """Load a quantizer written by :func:`save_quantizer`."""
    with safe_open(str(path), framework="np") as f:
        kind = (f.metadata() or {}).get("kind")
        names = f.keys()  # safe_open is not iterable itself
        state = {key: f.get_tensor(key) for key in names}
    if kind is None:
        kind_id = int(_get(state, "kind_id")[0])
        if not 0 <= kind_id < len(KINDS):
            raise ValueError(f"{path}: unknown quantizer kind id {kind_id}")
        kind = KINDS[kind_id]
    return load_quantizer(kind, state)
