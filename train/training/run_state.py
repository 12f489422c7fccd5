"""A training run's state on disk and its processes (:mod:`train.training.sft`).

``<out>/last`` holds what a resumed run needs — the trainable weights (LoRA factors and music-token rows), the
optimizer and scheduler state, the step and the best validation loss — written to a temporary folder and
renamed, so a run killed mid-save resumes from the previous one; :func:`hardware` names the machine for the
model card; :class:`Processes` is the one-process or ``torchrun`` data-parallel view of the run (gradients
averaged, only rank 0 writes).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.training.run_state is a module of the train package: import it, or use python -m")

import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from talkplay.catalog import atomic_write_dir

TRAINABLE_FILE = "trainable.safetensors"
STATE_FILE = "state.pt"
META_FILE = "state.json"
SUMMARY_FILE = "summary.json"  # written when a run completes: wall time (all sessions), hardware, best step

# ---------------------------------------------------------------------------------------- state on disk


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: Any, path: Path) -> None:
    from safetensors.torch import load_file

    saved = load_file(str(path))
    params = dict(model.named_parameters())
    missing = [n for n in saved if n not in params]
    if missing:
        raise KeyError(f"{path}: parameter {missing[0]!r} is not in the model (different LoRA/base setup?)")
    with torch.no_grad():
        for n, t in saved.items():
            params[n].copy_(t)


def _write_dir(final: Path, write) -> None:
    """Write a checkpoint directory via a temporary sibling and rename (never a half-written one)."""
    atomic_write_dir(final, write, single_writer=True)


def save_last(model, optimizer, scheduler, step: int, best: dict, config: Any,  # a train.training.sft.TrainConfig
              wall_seconds: float = 0.0) -> None:
    from safetensors.torch import save_file

    def write(d: Path) -> None:
        save_file(trainable_state(model), str(d / TRAINABLE_FILE))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}, d / STATE_FILE)
        meta = {"step": step, "best": best, "wall_seconds": wall_seconds, "config": {k: str(v) if isinstance(v, Path) else v
                                                       for k, v in asdict(config).items()}}
        (d / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")

    _write_dir(config.out / "last", write)


def load_last(model, optimizer, scheduler, out: Path) -> tuple[int, dict, float]:
    d = out / "last"
    load_trainable(model, d / TRAINABLE_FILE)
    state = torch.load(d / STATE_FILE, weights_only=False)  # our own file: holds Python RNG state
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    meta = json.loads((d / META_FILE).read_text())
    return int(meta["step"]), meta["best"], float(meta.get("wall_seconds", 0.0))


def hardware() -> str:
    """One line naming where training ran (device, cores, torch threads)."""
    import platform

    if torch.cuda.is_available():
        return f"CUDA {torch.cuda.get_device_name(0)}"
    return (f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads")


# ---------------------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Processes:
    """Data-parallel layout from the launcher's environment (``accelerate launch``/``torchrun`` set
    WORLD_SIZE, RANK, LOCAL_RANK); a plain ``python -m train.training.sft`` is one process.

    Each process trains on its own slice of every optimizer step's examples and the gradients of the
    trainable weights are averaged across processes before the update (LoRA keeps them small), so every
    process holds identical weights; only rank 0 evaluates, logs and writes checkpoints.
    """

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Processes":
        return cls(int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        return torch.device(f"cuda:{self.local_rank}") if torch.cuda.is_available() else torch.device("cpu")

    def init(self) -> None:
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend, rank=self.rank, world_size=self.world)

    def average_gradients(self, params: list[torch.Tensor]) -> None:
        if self.world == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad /= self.world

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()
