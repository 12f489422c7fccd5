"""The shipped training recipe as one GPU run of at most ~8 minutes: train → package → fit check → report.

    python -m train.training.gpu_run --catalog catalog/demo --out runs/gpu [--minutes 7] [--base-model PATH]

The recipe is the CPU one (``train.training.sft``'s defaults: text-grounded rows, text → music task, the bundle's
text-first token store) with a GPU-sized step (``--batch-size``, default 64) and many more steps; a
deadline makes training stop, evaluate and checkpoint in time whatever the card's speed. The run is
packaged into a *copy* of the bundle (``<out>/bundle``, so the committed one changes only when a person
decides), the fit check runs on that copy, and ``reports/gpu_train.{json,md}`` records the device, steps,
wall time, losses and fit. Copy ``<out>/bundle/model`` over ``<bundle>/model`` to ship it.

Without CUDA it refuses (exit status 2) unless ``--allow-cpu`` is given, which the tests use with a tiny
budget. On a machine without a model hub, give ``--base-model`` a local copy of the base (the offline
SmolLM2 GGUF is 98 MB; the device tool carries 64 MiB per call, so send it in two halves in two calls and
join them there: ``split -n 2`` / ``cat``).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.training.gpu_run")

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _copy_bundle(bundle: Path, dest: Path) -> Path:
    """The bundle without its previews (audio is not needed to train or to check fit)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(bundle, dest, ignore=shutil.ignore_patterns("previews"))
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.training.gpu_run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle to train on (not modified)")
    p.add_argument("--out", type=Path, default=Path("runs/gpu"), help="run directory (training state, bundle copy)")
    p.add_argument("--minutes", type=float, default=7.0, help="training deadline (packaging + fit check follow)")
    p.add_argument("--max-steps", type=int, default=1500, help="optimizer steps (the cosine schedule's length)")
    p.add_argument("--batch-size", type=int, default=64, help="examples per step")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    p.add_argument("--base-model", default=None, help="base model path or id (default: the offline SmolLM2)")
    p.add_argument("--fit-samples", type=int, default=5, help="played tracks sampled per fit-check request")
    p.add_argument("--reports", type=Path, default=REPO / "reports", help="where gpu_train.{json,md} go")
    p.add_argument("--allow-cpu", action="store_true", help="run without CUDA (tests, with a tiny budget)")
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("train.training.gpu_run: no CUDA device here; this recipe is meant for a GPU (--allow-cpu runs it anyway, "
              "e.g. with --max-steps 2 as the tests do)", file=sys.stderr)
        return 2
    from train.evaluation import fit_check
    from train.catalog import package
    from train.training import sft

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    t0 = time.perf_counter()
    sft_args = ["--catalog", str(args.catalog), "--out", str(args.out / "run"), "--max-steps", str(args.max_steps),
                "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--warmup-steps",
                str(max(1, args.max_steps // 20)), "--eval-every", str(max(1, args.max_steps // 10)),
                "--deadline-minutes", str(args.minutes), "--no-export"]
    if args.base_model:
        sft_args += ["--base-model", args.base_model]
    sft.main(sft_args)
    trained = time.perf_counter() - t0
    bundle = _copy_bundle(args.catalog, args.out / "bundle")
    package.package(args.out / "run", bundle, base_model=args.base_model)
    summary = package.run_summary(args.out / "run")
    requests = fit_check.read_requests(args.catalog / fit_check.REQUESTS_FILE)
    from talkplay.recommender import load_recommender
    from train.evaluation.baselines import BM25Ranker

    rec = load_recommender(bundle, "cuda" if torch.cuda.is_available() else "cpu", "bf16", base_model=args.base_model)
    fit = fit_check.run_fit_check(bundle, requests, args.fit_samples, recommender=rec, baselines={"bm25": BM25Ranker()})
    report = {"device": device, "training_seconds": round(trained, 1), "total_seconds": round(time.perf_counter() - t0, 1),
              "steps": summary["steps"], "best_step": summary["best_step"],
              "best_valid_loss": summary["best_valid_loss"], "config": summary["config"], "fit": fit["summary"],
              "bundle": str(bundle)}
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / "gpu_train.json").write_text(json.dumps(report, indent=1) + "\n")
    f = fit["summary"]
    (args.reports / "gpu_train.md").write_text("\n".join([
        "# GPU training run", "",
        f"`python -m train.training.gpu_run --catalog {args.catalog} --minutes {args.minutes} --max-steps {args.max_steps} "
        f"--batch-size {args.batch_size}` on **{device}**.", "",
        f"- {summary['steps']} steps × {args.batch_size} examples in {trained / 60:.1f} min (all: "
        f"{report['total_seconds'] / 60:.1f} min); best valid loss {summary['best_valid_loss']} at step "
        f"{summary['best_step']}.",
        f"- Fit check ({f['requests']} requests): played fit {f['talkplay_played_fit']:.2f}, top-1 "
        f"{f['talkplay_top1_fit']:.2f}, BM25 top-1 {f.get('bm25_top1_fit')}, random {f['random_fit']:.2f}.", "",
        f"The packaged checkpoint is in `{bundle}/model`; copy it over `{args.catalog}/model` to ship it.", ""]))
    print(json.dumps(report["fit"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
