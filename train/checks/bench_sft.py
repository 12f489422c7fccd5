"""Training-step speed with and without the supervised-positions LM head.

    python -m train.checks.bench_sft --catalog catalog/demo       # → reports/sft_speed_demo.{md,json}

Builds the demo training setup exactly as ``train.training.sft`` does (offline SmolLM2, music tokens added, LoRA +
music rows, bf16 autocast) and times whole optimizer steps — forward, backward, AdamW — on the same
fixed batches of the training stream, once applying the ~49k-wide output layer only at supervised
positions (:func:`train.training.losses.token_losses`, the default) and once at every position. The first step of
each mode is a warm-up and is not counted. Reports tokens/s over all (non-padding) tokens of the batches.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.checks.bench_sft")

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from talkplay.catalog import atomic_write

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.checks.bench_sft", description=__doc__.split("\n\n")[0])
    p.add_argument("--catalog", type=Path, default=Path("catalog/demo"))
    p.add_argument("--steps", type=int, default=4, help="timed steps per mode (after one warm-up)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", type=Path, default=REPO / "reports")
    args = p.parse_args(argv)

    from talkplay.expansion import expand_model, expand_tokenizer, music_token_ids
    from talkplay.model import ModelConfig, load_base
    from talkplay.render import RenderConfig
    from talkplay.token_store import load_default_store
    from train.training.dataset import MixedStream, collate
    from train.training.sft import TrainConfig, batch_losses, load_datasets, make_optimizer, prepare_model

    store = load_default_store(args.catalog)
    result = {"catalog": args.catalog.as_posix(), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "batch_size": args.batch_size, "steps": args.steps, "modes": {}}
    for mode in ("supervised_head", "full_head"):
        model, tokenizer = load_base(ModelConfig(device="cpu", precision="fp32"))
        n_old = len(tokenizer)
        ids = expand_tokenizer(tokenizer, store.vocab.special_tokens())
        expand_model(model, n_old, list(ids.values()), seed=0)
        config = TrainConfig(supervised_head=mode == "supervised_head", batch_size=args.batch_size)
        model = prepare_model(model, config, music_token_ids(tokenizer, store.vocab))
        data = load_datasets(args.catalog, tokenizer, store, RenderConfig(max_tokens=512), splits=("train",))["train"]
        stream = MixedStream(data["conversation"], data["playlist"], config.playlist_fraction, config.seed)
        optimizer = make_optimizer(model, config)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        times, tokens, supervised = [], [], []
        model.train()
        for step in range(args.steps + 1):
            batch = collate(stream.batch(step * args.batch_size, args.batch_size), pad, config.pad_multiple)
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss, _ = batch_losses(model, batch, config)
            loss.backward()
            optimizer.step()
            if step:
                times.append(time.perf_counter() - t0)
                tokens.append(int(batch["attention_mask"].sum()))
                supervised.append(int((batch["labels"] != -100).sum()))
        result["modes"][mode] = {"seconds_per_step": statistics.median(times),
                                 "tokens_per_s": sum(tokens) / sum(times),
                                 "supervised_tokens_per_step": statistics.mean(supervised),
                                 "tokens_per_step": statistics.mean(tokens)}
        print(mode, json.dumps(result["modes"][mode]))
        del model, optimizer
    m = result["modes"]
    result["speedup"] = m["supervised_head"]["tokens_per_s"] / m["full_head"]["tokens_per_s"]
    name = args.catalog.name
    args.out.mkdir(parents=True, exist_ok=True)
    js, md = args.out / f"sft_speed_{name}.json", args.out / f"sft_speed_{name}.md"
    atomic_write(js, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    lines = [f"# SFT step speed — {name}", "", f"Machine: {result['machine']}, torch {result['torch']}. "
             f"Command: `python -m train.checks.bench_sft --catalog {args.catalog.as_posix()}`. Same {args.steps} batches "
             f"of {args.batch_size} examples per mode (after a warm-up step); LoRA r16 + music rows, bf16 autocast.", "",
             "| LM head | s/step | tokens/step | supervised tokens/step | tokens/s |", "|---|---|---|---|---|"]
    for mode, r in m.items():
        lines.append(f"| {mode.replace('_', ' ')} | {r['seconds_per_step']:.2f} | {r['tokens_per_step']:.0f} | "
                     f"{r['supervised_tokens_per_step']:.0f} | {r['tokens_per_s']:.0f} |")
    lines += ["", f"Speed-up of the supervised-positions head: ×{result['speedup']:.2f}.", ""]
    atomic_write(md, lambda tmp: tmp.write_text("\n".join(lines)))
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
