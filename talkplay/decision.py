"""Music or words: the engine's first decision for a message, read from the model's own state.

Every turn's prompt ends with the assistant header; there a request's turn opens ``<start_of_music>`` and a
greeting's, thanks' or question's turn starts a reply (:mod:`talkplay.render`). The model is trained on both kinds
of turns (:mod:`train.data.talk_turns`), but a few hundred CPU steps teach its next-token distribution little
against thousands of requests: on the held-out messages P(<start_of_music>) alone chose right 60 % of the time
(greetings ≈ 1.0). The model's *last hidden state* at that position separates the two far better, so a logistic
head reads it — P(music) = σ(w · (h − μ) / σ_h + b) — trained on the same synthetic turns
(``python -m train.training.decision``) and stored beside the checkpoint (``model/decision.safetensors``). Without
that file the engine falls back on the LM's own P(<start_of_music>). The hidden state comes from the turn's first
forward pass (:meth:`talkplay.recommender.Recommender.forward_hidden`), so deciding costs no extra pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DECISION_FILE = "decision.safetensors"  # in the checkpoint directory (<bundle>/model/)
FORMAT = "talkplay-decision/1"


@dataclass(frozen=True)
class MusicDecision:
    """A logistic head on the last hidden state after the assistant header: P(the message asks for music)."""

    weight: np.ndarray  # (H,) over standardized features
    bias: float
    mean: np.ndarray  # (H,) feature mean of the training messages
    scale: np.ndarray  # (H,) feature standard deviation (> 0)
    threshold: float = 0.5  # P(music) below which the turn is words only (chosen on the validation split)

    def __post_init__(self) -> None:
        h = self.weight.shape
        if len(h) != 1 or self.mean.shape != h or self.scale.shape != h or not (self.scale > 0).all():
            raise ValueError(f"decision head: weight {self.weight.shape}, mean {self.mean.shape} and scale "
                             f"{self.scale.shape} must be equal 1-D shapes with a positive scale")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"decision head: threshold {self.threshold} must be in [0, 1]")

    @property
    def hidden_size(self) -> int:
        return int(self.weight.shape[0])

    def p_music(self, hidden: torch.Tensor | np.ndarray) -> float:
        """P(music) for one hidden state (H,)."""
        h = hidden.detach().float().cpu().numpy() if isinstance(hidden, torch.Tensor) else np.asarray(hidden)
        if h.shape != self.weight.shape:
            raise ValueError(f"decision head: hidden state of shape {h.shape}, expected {self.weight.shape}")
        z = float(((h.astype(np.float64) - self.mean) / self.scale) @ self.weight + self.bias)
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))

    def save(self, path: str | os.PathLike, meta: dict[str, str] | None = None) -> Path:
        """Write the head atomically (safetensors; ``meta`` strings ride in its metadata)."""
        from safetensors.torch import save_file

        from talkplay.catalog import atomic_write

        tensors = {"weight": torch.tensor(self.weight, dtype=torch.float64),
                   "bias": torch.tensor([self.bias], dtype=torch.float64),
                   "mean": torch.tensor(self.mean, dtype=torch.float64),
                   "scale": torch.tensor(self.scale, dtype=torch.float64)}
        metadata = {"format": FORMAT, "threshold": repr(float(self.threshold)), **(meta or {})}
        path = Path(path)
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
        return path


def load_decision(path: str | os.PathLike) -> MusicDecision | None:
    """The head stored at ``path`` (a file, or a checkpoint/bundle directory holding one); None when there is none.

    Raises:
        ValueError: the file exists but is not a decision head (its path is named).
    """
    from safetensors import safe_open

    p = Path(path)
    for candidate in (p, p / DECISION_FILE, p / "model" / DECISION_FILE):
        if candidate.is_file():
            p = candidate
            break
    else:
        return None
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k).double().numpy() for k in ("weight", "bias", "mean", "scale")}
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        return MusicDecision(t["weight"], float(t["bias"][0]), t["mean"], t["scale"], float(meta["threshold"]))
    except Exception as err:  # a truncated or foreign file: named, never half-used
        raise ValueError(f"{p}: not a readable decision head ({type(err).__name__}: {err})") from err
