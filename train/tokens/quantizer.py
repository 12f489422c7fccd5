"""The quantizer interface (:class:`Quantizer`) and what every kind shares; the kinds live in
:mod:`train.tokens.kmeans` and :mod:`train.tokens.rqvae`, the factory in :mod:`train.tokens.quantize`.

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
    raise SystemExit("train.tokens.quantizer is a module of the train package: import it, or use python -m")

import math
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

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

    def __init__(self, levels: int, codebook_size: int, *, reserved: int = 0, l2_normalize: bool = True,
                 config: Any = None, **overrides: Any) -> None:
        """``config``: a :attr:`config_type` (default: its defaults); ``overrides``: fields of it to change
        (``n_init=8``, ``epochs=50``), named in the error when unknown."""
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
        self.config = _with_overrides(self.config_type, config, overrides, type(self).__name__)
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
