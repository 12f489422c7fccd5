"""Supervised fine-tuning of the music-token LLM: L = L_conversation + L_playlist + L_text→music + λ·L_self-sim.

Owns the training loop and its state on disk::

    python -m train.training.sft --catalog catalog/demo --out runs/demo [--max-steps 300 …]

    <out>/last/    trainable weights + optimizer/scheduler/RNG/step (resumed automatically)
    <out>/best/    trainable weights of the lowest valid loss so far
    <out>/final/   a plain transformers checkpoint (LoRA merged) + tokenizer, from best/
    <out>/summary.json  at the end: steps, wall time over all resumed sessions, hardware, best step
    <out>/log.csv  per step: lr, train CE (pooled, conversation, playlist), self-sim, valid losses

What is trained: with LoRA (default) the adapters on all linear layers of the decoder plus the
input/output embedding *rows of the music tokens* (the full matrices get gradients, which a hook
masks to the music rows; weight decay is off for them so other rows never move). Without LoRA,
everything. Trainable weights stay fp32; the forward runs under bf16 autocast (on CUDA when there is a
GPU, else CPU). Several GPUs: ``accelerate launch --multi_gpu --num_processes N -m train.training.sft …`` (or
``torchrun``) — see :class:`Processes`. The CE uses
:func:`train.training.losses.token_losses`, which applies the ~vocabulary-wide LM head only at supervised
positions (the main CPU cost otherwise). The tasks are mixed within each step
(:class:`train.training.dataset.MixedStream`); each task's CE is the token mean over that task's supervised tokens
in the step, and the step's loss is their sum (the paper's L_conversation + L_playlist, plus the
text → music task of :mod:`train.data.text_requests`), so a task's weight does not depend on how many tokens its
examples happen to supervise. A step's examples are cut into length-sorted chunks of at most
``max_batch_tokens`` padded tokens (:func:`train.training.dataset.length_chunks`): short text → music examples are
never padded to a conversation's length. The chunks' gradients add up to exactly the step's loss.

Music-token rows start from N(μ, Σ) of the base embeddings, then (``--row-init text``, the default) move
towards the base model's embedding of the words each code stands for
(:func:`talkplay.expansion.init_rows_from_text`, texts from :mod:`train.tokens.token_init`).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.training.sft")

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from train.training.dataset import (
    CONVERSATION,
    PLAYLIST,
    REQUEST,
    TASKS,
    MixedStream,
    collate,
    length_chunks,
    supervised_count,
)
from train.training.losses import (
    causal_lm,
    self_similarity_loss,
    self_similarity_targets,
    token_losses,
)
from train.training.run_state import (  # noqa: F401 (re-exported)
    META_FILE,
    SUMMARY_FILE,
    TRAINABLE_FILE,
    Processes,
    _write_dir,
    hardware,
    load_last,
    load_trainable,
    save_last,
    trainable_state,
)

LOG_COLUMNS = ("step", "lr", "train_ce", "train_ce_conversation", "train_ce_playlist", "train_ce_request", "self_sim",
               "valid_loss", "valid_ce_conversation", "valid_ce_playlist", "valid_ce_request", "step_seconds")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (saved in <out>/last/state.json)."""

    out: Path = Path("runs/sft")  # output directory (checkpoints, log.csv)
    variant: str = ""  # token store the run trains on (recorded so packaging picks the same store)
    lr: float = 1e-4  # peak learning rate (AdamW)
    warmup_steps: int = 20  # linear warmup from 0 to lr
    max_steps: int = 0  # optimizer steps; 0 = derive from epochs
    epochs: float = 1.0  # passes over (conversations + playlist examples) when max_steps = 0
    batch_size: int = 8  # examples per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    weight_decay: float = 0.0  # AdamW decay of LoRA / full weights (never of the embedding rows under LoRA)
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    lambda_self_sim: float = 0.1  # λ of the self-similarity loss (0 = off)
    playlist_fraction: float = 0.5  # share of playlist-continuation examples among the non-text→music ones
    request_fraction: float = 0.0  # share of text → music examples in the training stream (train.data.text_requests)
    talk_fraction: float = 0.0  # share of conversation examples with a turn answered in words only (talk_turns)
    init_from: str = ""  # a packaged checkpoint the LoRA factors and music rows start from ("": fresh start)
    max_batch_tokens: int = 4096  # padded tokens per forward chunk (length-sorted); 0 = the whole step at once
    threads: int = 0  # torch CPU threads; 0 = every core (the demo's first run used 1 of 2)
    row_init: str = "random"  # how music-token rows started: "random" (N(μ, Σ)) or "text" (recorded, set by main)
    row_init_blend: float = 0.0  # share of the text direction in the initial rows (row_init="text")
    lora: bool = True  # LoRA adapters + music-token embedding rows; False = full fine-tuning
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.0  # 0 keeps a resumed run identical to an uninterrupted one
    lora_targets: str = "all-linear"  # peft target_modules ("all-linear" excludes the output layer)
    bf16: bool = True  # bf16 autocast for the forward (weights stay fp32)
    supervised_head: bool = True  # LM head only at supervised positions (False: full head, for timing)
    # Batches are padded to a multiple of this: fewer distinct tensor shapes for the CPU kernels, which
    # cache per shape. With every length distinct, the demo runs grew from 6 to 11 GB RSS and slowed from
    # 14 to 25 s/step over 170 steps (a restarted process was fast again).
    pad_multiple: int = 32
    eval_every: int = 50  # evaluate on valid (and checkpoint) every this many steps; 0 = only at the end
    eval_examples: int = 64  # valid examples per task used for the valid loss (first ones, fixed order)
    seed: int = 0  # data order, LoRA init
    resume: bool = True  # continue from <out>/last when it exists
    stop_after: int = 0  # stop (as if interrupted) after this step, without the final export; 0 = never
    deadline_s: float = 0.0  # stop (evaluate, checkpoint, as if interrupted) once this session ran this long; 0 = never
    export_final: bool = True  # write <out>/final (merged, loadable with transformers) at the end

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        for name in ("batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)}: must be ≥ 1")
        if self.max_steps < 0 or self.warmup_steps < 0 or self.eval_every < 0:
            raise ValueError("TrainConfig.max_steps, warmup_steps and eval_every must be ≥ 0")
        for name in ("playlist_fraction", "request_fraction", "row_init_blend", "talk_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)}: expected [0, 1]")
        if self.talk_fraction >= 1.0:
            raise ValueError("TrainConfig.talk_fraction=1 would leave no plain conversation")
        if self.row_init not in ("random", "text"):
            raise ValueError(f"TrainConfig.row_init={self.row_init!r}: expected 'random' or 'text'")


# ---------------------------------------------------------------------------------------- model setup


def prepare_model(model: Any, config: TrainConfig, music_ids: list[int]) -> Any:
    """Make the intended parameters trainable; returns the model to train (a PeftModel under LoRA).

    Under LoRA the embedding matrices get ``requires_grad`` and a gradient hook that zeroes every row
    but ``music_ids`` (peft's ``trainable_token_indices`` would do similar, but then the effective
    embedding is base + delta, which the self-similarity loss would have to reassemble).
    """
    model.float()  # fp32 master weights: bf16 cannot represent lr-sized updates of typical weights
    if not config.lora:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                             target_modules=config.lora_targets, task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_config)
    base = causal_lm(model)
    weights = [base.get_input_embeddings().weight]
    out = base.get_output_embeddings()
    if out is not None and out.weight is not weights[0]:
        weights.append(out.weight)
    for w in weights:
        mask = torch.zeros(w.shape[0], 1, dtype=w.dtype)
        mask[torch.tensor(music_ids, dtype=torch.long)] = 1
        w.requires_grad_(True)
        w.register_hook(lambda g, m=mask: g * m.to(g.device, g.dtype))
    return model


def init_from_checkpoint(model: Any, tokenizer: Any, path: str | os.PathLike, base_vocab_size: int) -> dict:
    """Start a LoRA ``model`` (from :func:`prepare_model`) where a packaged checkpoint ended: its LoRA factors go
    into the adapters (not merged into the base: the export stores adapters only, so a merged old delta would be
    lost) and its rows into the music-token embeddings. Continues the shipped model on a new recipe.

    Raises:
        talkplay.checkpoint.CheckpointError: the checkpoint's tokens, rank or scale differ from this run's.
    """
    from talkplay.checkpoint import ADAPTER_FILE, ROWS_FILE, CheckpointError, _load_tensors, checkpoint_dir, read_info

    d = checkpoint_dir(path)
    info = read_info(d)
    tokens = tuple(tokenizer.convert_ids_to_tokens(list(range(base_vocab_size, len(tokenizer)))))
    if info.base_vocab_size != base_vocab_size or info.tokens != tokens:
        raise CheckpointError(f"{d}: its music tokens differ from this run's ({len(info.tokens)} vs {len(tokens)} "
                              f"added tokens); --init-from needs the same token store")
    factors, rows = _load_tensors(d / ADAPTER_FILE), _load_tensors(d / ROWS_FILE)
    modules = dict(model.named_modules())
    with torch.no_grad():
        emb = causal_lm(model).get_input_embeddings().weight
        if tuple(rows["embed"].shape) != (emb.shape[0] - base_vocab_size, emb.shape[1]):
            raise CheckpointError(f"{d / ROWS_FILE}: 'embed' has shape {tuple(rows['embed'].shape)}, expected "
                                  f"{(emb.shape[0] - base_vocab_size, emb.shape[1])}")
        emb[base_vocab_size:] = rows["embed"].to(emb.dtype)
        if not info.tied:
            head = causal_lm(model).get_output_embeddings()
            head.weight[base_vocab_size:] = rows["lm_head"].to(head.weight.dtype)
        n = 0
        for key in sorted(k.removesuffix(".lora_A") for k in factors if k.endswith(".lora_A")):
            module = modules.get(f"base_model.model.{key}")
            if module is None or "default" not in getattr(module, "lora_A", {}):
                raise CheckpointError(f"{d / ADAPTER_FILE}: layer {key!r} has no LoRA adapter in this run")
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            if a.shape != factors[f"{key}.lora_A"].shape or abs(float(module.scaling["default"]) - info.lora_scale) > 1e-6:
                raise CheckpointError(f"{d}: LoRA rank/scale {info.lora_rank}/{info.lora_scale} differ from this "
                                      f"run's {a.shape[0]}/{module.scaling['default']}")
            a.copy_(factors[f"{key}.lora_A"])
            b.copy_(factors[f"{key}.lora_B"])
            n += 1
    return {"layers": n, "steps": int(info.training.get("steps", 0) or 0)}


def _embedding_params(model: Any) -> set[int]:
    base = causal_lm(model)
    ids = {id(base.get_input_embeddings().weight)}
    if base.get_output_embeddings() is not None:
        ids.add(id(base.get_output_embeddings().weight))
    return ids


def make_optimizer(model: Any, config: TrainConfig) -> torch.optim.Optimizer:
    emb = _embedding_params(model) if config.lora else set()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in emb], "weight_decay": config.weight_decay},
              {"params": [p for p in params if id(p) in emb], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


def make_scheduler(optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup then cosine decay to 0 at ``total`` steps."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------------------------------- losses


def batch_losses(model, batch: dict, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token CE at the supervised positions of a collated batch and the task code of each token."""
    device = next(causal_lm(model).parameters()).device
    ids, mask, labels = (batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
        losses, rows = token_losses(model, ids, mask, labels, full_head=not config.supervised_head)
    return losses, batch["task"].to(device)[rows]


def task_loss(losses: torch.Tensor, tasks: torch.Tensor, denominators: dict[str, int]) -> torch.Tensor:
    """Σ over tasks of (sum of that task's token losses here) / (its supervised tokens in the whole step)."""
    total = losses.sum() * 0.0  # keeps a gradient path when nothing here is supervised
    for code, name in enumerate(TASKS):
        if denominators.get(name):
            total = total + losses[tasks == code].sum() / denominators[name]
    return total


def task_stats(losses: torch.Tensor, tasks: torch.Tensor) -> dict[str, tuple[float, int]]:
    """Per task (sum, count) of token losses, for logging."""
    out = {}
    for code, name in enumerate(TASKS):
        sel = losses.detach()[tasks == code]
        out[name] = (float(sel.sum()), int(sel.numel()))
    return out


def step_loss(model, examples: list, config: TrainConfig, pad_id: int, backward: bool) -> dict:
    """Run one step's examples chunk by chunk (backward per chunk when ``backward``); returns task stats."""
    denominators = {name: sum(supervised_count(e) for e in examples if e.task == name) for name in TASKS}
    stats: dict = {}
    for chunk in length_chunks(examples, config.max_batch_tokens, config.pad_multiple):
        losses, tasks = batch_losses(model, collate(chunk, pad_id, config.pad_multiple), config)
        if backward:
            task_loss(losses, tasks, denominators).backward()
        _merge(stats, task_stats(losses, tasks))
    return stats


def _merge(into: dict, stats: dict) -> None:
    for k, (s, n) in stats.items():
        s0, n0 = into.get(k, (0.0, 0))
        into[k] = (s0 + s, n0 + n)


def _mean(stats: dict, keys=TASKS) -> float:
    s = sum(stats.get(k, (0.0, 0))[0] for k in keys)
    n = sum(stats.get(k, (0.0, 0))[1] for k in keys)
    return s / n if n else float("nan")


def _task_sum(stats: dict) -> float:
    """The loss as trained: the sum over tasks present of each task's token-mean CE."""
    means = [_mean(stats, (k,)) for k in TASKS if stats.get(k, (0.0, 0))[1]]
    return sum(means) if means else float("nan")


@torch.no_grad()
def evaluate(model, valid: dict, config: TrainConfig, pad_id: int) -> dict[str, float]:
    """Token-mean CE on the first ``eval_examples`` valid examples of each task; ``valid_loss`` is their sum
    over the tasks present (the training objective without the self-similarity term)."""
    model.eval()
    stats: dict = {}
    for task in TASKS:
        examples = valid.get(task) or []
        chosen = [examples[i] for i in range(min(len(examples), config.eval_examples))]
        _merge(stats, step_loss(model, chosen, config, pad_id, backward=False))
    return {"valid_loss": _task_sum(stats), "valid_ce_conversation": _mean(stats, (CONVERSATION,)),
            "valid_ce_playlist": _mean(stats, (PLAYLIST,)), "valid_ce_request": _mean(stats, (REQUEST,))}


# ---------------------------------------------------------------------------------------- loop


def _read_log(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [r for r in csv.DictReader(f) if int(r["step"]) <= upto]


def _fmt(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.6g}" if isinstance(v, float)
                                                                          else str(v))


def total_steps(config: TrainConfig, n_examples: int) -> int:
    if config.max_steps:
        return config.max_steps
    return max(1, math.ceil(config.epochs * n_examples / (config.batch_size * config.grad_accum)))


def train(config: TrainConfig, model: Any, tokenizer: Any, datasets: dict, store: Any) -> dict:
    """Train ``model`` (already vocabulary-expanded) and return a summary.

    Args:
        datasets: {"train": {"conversation": examples, "playlist": examples}, "valid": {…}} where
            examples are sequences of :class:`train.training.dataset.Example` (e.g. TaskExamples); "valid" may be
            missing or empty (then the best checkpoint is the last one).
        store: the TokenStore whose vocabulary was added (music ids, centroids for the self-sim loss).
    Returns:
        {"model": the trained model (merged plain model after export, else a PeftModel under LoRA), "steps", "best_step", "best_valid_loss",
         "last_train_ce", "seconds_per_step", "out", "final"}.
    """
    from tqdm.auto import tqdm

    from talkplay.expansion import music_token_ids

    procs = Processes.from_env()
    procs.init()
    out = config.out
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
    procs.barrier()
    music_ids = music_token_ids(tokenizer, store.vocab)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("tokenizer has neither a pad nor an eos token to pad batches with")
    model = prepare_model(model, config, music_ids)
    if config.init_from:
        if not config.lora:
            raise ValueError("--init-from continues a LoRA checkpoint; it cannot be combined with --no-lora")
        done = init_from_checkpoint(model, tokenizer, config.init_from, min(music_ids))
        print(f"started from {config.init_from}: {done['layers']} LoRA layers, music rows "
              f"(it had trained {done['steps']} steps)", file=sys.stderr)
    model = model.to(procs.device())
    sim_ids, sim_targets = self_similarity_targets(tokenizer, store) if config.lambda_self_sim else ({}, {})
    train_sets, valid = datasets["train"], datasets.get("valid") or {}
    stream = MixedStream(train_sets.get(CONVERSATION) or [], train_sets.get(PLAYLIST) or [],
                         config.playlist_fraction, config.seed, train_sets.get(REQUEST) or [], config.request_fraction)
    total = total_steps(config, sum(len(v) for v in train_sets.values()))
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config.warmup_steps, total)

    step, best, wall_before = 0, {"step": None, "valid_loss": None}, 0.0
    if config.resume and (out / "last" / META_FILE).exists():
        step, best, wall_before = load_last(model, optimizer, scheduler, out)
    started = time.perf_counter()
    log_path = out / "log.csv"
    if procs.main:
        rows = _read_log(log_path, step)  # drop rows logged after the checkpoint we resume from
        with log_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    embed = causal_lm(model).get_input_embeddings()
    trainable = [p for p in model.parameters() if p.requires_grad]
    last_ce, times = float("nan"), []
    bar = tqdm(total=total, initial=step, desc="sft", disable=None if procs.main else True)
    while step < total:
        t0 = time.perf_counter()
        model.train()
        optimizer.zero_grad(set_to_none=True)
        # this process's slice of the step's examples (the whole step when there is one process)
        per_step = config.batch_size * config.grad_accum
        stats = step_loss(model, stream.batch((step * procs.world + procs.rank) * per_step, per_step), config,
                          pad_id, backward=True)
        sim = float("nan")
        if sim_ids:
            sim_loss = self_similarity_loss(embed.weight, sim_ids, sim_targets)
            (config.lambda_self_sim * sim_loss).backward()
            sim = float(sim_loss.detach())
        procs.average_gradients(trainable)
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        step += 1
        times.append(time.perf_counter() - t0)
        last_ce = _task_sum(stats)
        row = {"step": step, "lr": lr, "train_ce": last_ce, "train_ce_conversation": _mean(stats, (CONVERSATION,)),
               "train_ce_playlist": _mean(stats, (PLAYLIST,)), "train_ce_request": _mean(stats, (REQUEST,)),
               "self_sim": sim, "step_seconds": times[-1]}
        late = bool(config.deadline_s) and time.perf_counter() - started > config.deadline_s
        checkpoint = (config.eval_every and step % config.eval_every == 0) or step == total or late
        if not procs.main:  # rank 0 evaluates, logs and writes; the others wait for it at checkpoints
            if checkpoint:
                procs.barrier()
            if step == config.stop_after or late:
                break
            continue
        if checkpoint:
            if any(len(v) for v in valid.values()):
                row.update(evaluate(model, valid, config, pad_id))
                if best["valid_loss"] is None or row["valid_loss"] < best["valid_loss"]:
                    best = {"step": step, "valid_loss": row["valid_loss"]}
                    _save_best(model, out)
            elif step == total:
                best = {"step": step, "valid_loss": None}
                _save_best(model, out)
        with log_path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=LOG_COLUMNS).writerow({k: _fmt(row.get(k)) for k in LOG_COLUMNS})
        if checkpoint or step == config.stop_after:
            save_last(model, optimizer, scheduler, step, best, config, wall_before + time.perf_counter() - started)
        if checkpoint:
            procs.barrier()
        bar.update(1)
        bar.set_postfix(ce=f"{last_ce:.3f}", sim=f"{sim:.3g}")
        if step == config.stop_after or late:
            break
    bar.close()
    wall = wall_before + time.perf_counter() - started
    if not procs.main:
        return {"model": model, "steps": step, "best_step": None, "best_valid_loss": None, "last_train_ce": last_ce,
                "seconds_per_step": sum(times) / len(times) if times else None, "out": str(out), "final": None}
    if step == total:
        summary = {"steps": step, "wall_seconds": round(wall, 1),
                   "hardware": hardware() + (f" × {procs.world} processes" if procs.world > 1 else ""),
                   "processes": procs.world,  # each draws its own batch: examples = steps × batch × processes
                   "best_step": best["step"], "best_valid_loss": best["valid_loss"]}
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    final = None
    if config.export_final and step == total:
        final, model = export_final(model, tokenizer, out)
    return {"model": model, "steps": step, "best_step": best["step"], "best_valid_loss": best["valid_loss"],
            "last_train_ce": last_ce, "seconds_per_step": sum(times) / len(times) if times else None,
            "out": str(out), "final": str(final) if final else None}


def _save_best(model, out: Path) -> None:
    from safetensors.torch import save_file

    _write_dir(out / "best", lambda d: save_file(trainable_state(model), str(d / TRAINABLE_FILE)))


def export_final(model, tokenizer, out: Path) -> tuple[Path, Any]:
    """Load best/ into ``model``, merge LoRA (in place) and save a plain checkpoint + tokenizer to <out>/final.

    Returns (the directory, the merged plain model): after merging, the PeftModel wrapper is spent.
    """
    if (out / "best" / TRAINABLE_FILE).exists():
        load_trainable(model, out / "best" / TRAINABLE_FILE)
    plain = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model

    def write(d: Path) -> None:
        plain.save_pretrained(d, safe_serialization=True)
        tokenizer.save_pretrained(d)

    _write_dir(out / "final", write)
    return out / "final", plain


# ---------------------------------------------------------------------------------------- data + CLI


REQUESTS_PER_TRACK = {"train": 40, "valid": 2}  # text → music examples per (non-cold-start) track


def load_datasets(bundle: Path, tokenizer, store, render_config, splits=("train", "valid"), seed: int = 0,
                  requests_per_track: dict | None = None, talk_fraction: float = 0.0) -> dict:
    """Lazily rendered conversation, playlist and text → music examples of ``bundle`` for each split.

    Conversations and playlist examples come from ``bundle``/data; text → music examples are generated
    from the catalog (:mod:`train.data.text_requests`, deterministic per seed; valid ones with another seed and
    shuffled, so their first ``eval_examples`` span many tracks). With ``talk_fraction`` > 0, that share of each
    split's conversation examples carries a turn answered in words only (:mod:`train.data.talk_turns`, grown
    from the split's own conversations; shuffled in, so the valid loss sees both kinds).
    """
    from train.data.talk_turns import talk_conversations
    from train.data.text_requests import bundle_requests
    from train.training.dataset import request_examples

    per_track = {**REQUESTS_PER_TRACK, **(requests_per_track or {})}
    from talkplay.catalog import load_catalog
    from train.data.build import conversations_path, sequences_path
    from train.data.conversation_schema import read_conversations
    from train.data.sequences import read_examples
    from train.training.dataset import continuation_examples, conversation_examples

    catalog = load_catalog(bundle)
    out = {}
    for split in splits:
        conv_path, seq_path = conversations_path(bundle, split), sequences_path(bundle, split)
        if not conv_path.exists() and not seq_path.exists():
            raise FileNotFoundError(f"{bundle}: no {split} data ({conv_path.name}, {seq_path.name}); "
                                    f"run python -m train.data.build --catalog {bundle}")
        convs = read_conversations(conv_path, catalog) if conv_path.exists() else []
        seqs = read_examples(seq_path) if seq_path.exists() else []
        requests = []
        if per_track.get(split):
            requests = bundle_requests(bundle, per_track[split], seed if split == "train" else seed + 1000)
            if split != "train":
                random.Random(seed).shuffle(requests)
        if talk_fraction and convs:
            want = round(len(convs) * talk_fraction / (1.0 - talk_fraction))
            per = -(-want // len(convs))
            talk = talk_conversations(convs, catalog, seed if split == "train" else seed + 1000, per)
            random.Random(f"{seed}:{split}:talk-pick").shuffle(talk)  # from the whole split, not its first part
            talk = talk[:want]
            convs = list(convs) + talk
            random.Random(f"{seed}:{split}:talk").shuffle(convs)
        out[split] = {CONVERSATION: conversation_examples(tokenizer, convs, store, catalog, render_config),
                      PLAYLIST: continuation_examples(tokenizer, seqs, store, render_config),
                      REQUEST: request_examples(tokenizer, requests, store, catalog, render_config)}
    return out


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m train.training.sft", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--catalog", required=True, type=Path, help="catalog bundle with data/ and tokens/")
    p.add_argument("--out", required=True, type=Path, help="output directory (resumed if it holds last/)")
    p.add_argument("--variant", default=None, help="token store variant (default: the bundle's default store)")
    p.add_argument("--base-model", default=None, help="base model (talkplay.model.ModelConfig.base_model)")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="optimizer steps (0: use --epochs)")
    p.add_argument("--epochs", type=float, default=d.epochs, help="passes over all training examples")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per micro-batch")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="linear warmup steps")
    p.add_argument("--lambda-self-sim", type=float, default=d.lambda_self_sim, help="weight of the self-sim loss")
    p.add_argument("--playlist-fraction", type=float, default=0.3,
                   help="share of playlist-continuation examples among the conversation + playlist examples")
    p.add_argument("--request-fraction", type=float, default=0.6,
                   help="share of text → music examples (train.data.text_requests) in the training stream; 0 = off")
    p.add_argument("--requests-per-track", type=int, default=REQUESTS_PER_TRACK["train"],
                   help="text → music training examples generated per track")
    p.add_argument("--talk-fraction", type=float, default=0.0,
                   help="share of conversation examples with a turn answered in words only (greetings, thanks, "
                        "questions about the playing track; train.data.talk_turns); 0 = off")
    p.add_argument("--init-from", default="",
                   help="a packaged checkpoint (a bundle or its model/ folder) whose LoRA factors and music rows "
                        "the run starts from, e.g. to continue the shipped model on a new recipe")
    p.add_argument("--row-init", choices=("text", "random"), default="text",
                   help="music-token rows: 'text' = base embeddings of what each code stands for, blended with "
                        "the N(mean, cov) draw; 'random' = the draw only")
    p.add_argument("--row-init-blend", type=float, default=0.8, help="share of the text direction (--row-init text)")
    p.add_argument("--max-batch-tokens", type=int, default=d.max_batch_tokens,
                   help="padded tokens per forward chunk; a step's examples are length-sorted into chunks")
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (0: all cores)")
    p.add_argument("--no-lora", action="store_true", help="full fine-tuning instead of LoRA + music rows")
    p.add_argument("--lora-r", type=int, default=d.lora_r, help="LoRA rank")
    p.add_argument("--lora-alpha", type=int, default=d.lora_alpha, help="LoRA alpha")
    p.add_argument("--max-tokens", type=int, default=512, help="token budget per example (oldest turns dropped)")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="valid eval + checkpoint interval (steps)")
    p.add_argument("--eval-examples", type=int, default=d.eval_examples, help="valid examples per task")
    p.add_argument("--seed", type=int, default=d.seed, help="data order, LoRA and embedding-row init")
    p.add_argument("--no-bf16", action="store_true", help="run the forward in fp32 instead of bf16 autocast")
    p.add_argument("--full-head", action="store_true", help="apply the LM head at every position (timing only)")
    p.add_argument("--no-resume", action="store_true", help="ignore <out>/last and start over")
    p.add_argument("--stop-after", type=int, default=0, help="stop after this step as if interrupted (0: never)")
    p.add_argument("--deadline-minutes", type=float, default=0.0,
                   help="stop (evaluate and checkpoint first) once this session has trained this long (0: never)")
    p.add_argument("--no-export", action="store_true", help="skip writing <out>/final")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from talkplay.expansion import expand_model, expand_tokenizer
    from talkplay.model import ModelConfig, load_base
    from talkplay.render import RenderConfig
    from talkplay.token_store import load_default_store, load_store, store_dir

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    store = load_store(store_dir(args.catalog, args.variant)) if args.variant else load_default_store(args.catalog)
    mconf = ModelConfig(device="cpu", precision="fp32", **({"base_model": args.base_model} if args.base_model else {}))
    model, tokenizer = load_base(mconf)
    n_old = len(tokenizer)
    ids = expand_tokenizer(tokenizer, store.vocab.special_tokens())
    expand_model(model, n_old, list(ids.values()), seed=args.seed)
    blend, row_init = 0.0, args.row_init
    if args.init_from:  # the rows come from the checkpoint: record how they started there
        from talkplay.checkpoint import read_info

        started = read_info(args.init_from).training
        row_init, blend = started.get("row_init", "random"), float(started.get("row_init_blend", 0.0))
    elif args.row_init == "text":
        from talkplay.catalog import load_catalog
        from talkplay.expansion import init_rows_from_text
        from train.tokens.token_init import code_texts

        texts, groups = code_texts(load_catalog(args.catalog), store)
        done = init_rows_from_text(model, tokenizer, n_old, texts, groups, args.row_init_blend)
        blend = args.row_init_blend
        print(f"text-grounded rows: {done['initialized']} music tokens (blend {blend})", file=sys.stderr)
    datasets = load_datasets(args.catalog, tokenizer, store, RenderConfig(max_tokens=args.max_tokens), seed=args.seed,
                             requests_per_track={"train": args.requests_per_track if args.request_fraction else 0},
                             talk_fraction=args.talk_fraction)
    config = TrainConfig(out=args.out, variant=store.variant, lr=args.lr, warmup_steps=args.warmup_steps, max_steps=args.max_steps,
                         epochs=args.epochs, batch_size=args.batch_size, grad_accum=args.grad_accum,
                         lambda_self_sim=args.lambda_self_sim, playlist_fraction=args.playlist_fraction,
                         request_fraction=args.request_fraction, max_batch_tokens=args.max_batch_tokens,
                         talk_fraction=args.talk_fraction, init_from=str(args.init_from),
                         threads=args.threads, row_init=row_init, row_init_blend=blend,
                         lora=not args.no_lora, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                         bf16=not args.no_bf16, supervised_head=not args.full_head, eval_every=args.eval_every,
                         eval_examples=args.eval_examples, seed=args.seed, resume=not args.no_resume,
                         stop_after=args.stop_after, deadline_s=60.0 * args.deadline_minutes,
                         export_final=not args.no_export)
    result = train(config, model, tokenizer, datasets, store)
    result.pop("model")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
