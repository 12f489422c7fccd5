"""Flat and residual k-means quantizers (TalkPlay's one token per modality; plain residual codes for tiny
catalogs). Interface and shared numerics: :mod:`train.tokens.quantizer`."""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.tokens.kmeans is a module of the train package: import it, or use python -m")

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from train.tokens.quantizer import (
    Quantizer,
    _get,
    _kmeans,
    _nearest,
    _sub_seed,
)

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

    def __init__(self, levels: int, codebook_size: int, **kw: Any) -> None:
        """See :class:`Quantizer`; keyword overrides are :class:`KMeansConfig` fields."""
        super().__init__(levels, codebook_size, **kw)
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
