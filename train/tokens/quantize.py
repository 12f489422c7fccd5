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

The shared preprocessing, reserved codes and state format: :mod:`train.tokens.quantizer`.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.tokens.quantize is a module of the train package: import it, or use python -m")

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from train.tokens.kmeans import KMeansConfig, KMeansQuantizer, ResidualKMeansQuantizer
from train.tokens.quantizer import (
    KINDS,
    STATE_FORMAT,
    CodeStats,
    FitReport,
    Quantizer,
    _get,
    code_stats,
    default_codebook_size,
)
from train.tokens.rqvae import RQVAEConfig, RQVAEQuantizer

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
