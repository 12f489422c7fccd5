"""The recipe's ablation: row init × text → music task × span order, every run at the same training budget.

    python -m train.training.ablation --catalog catalog/demo --out runs/ablation [--steps 24] [--batch-size 8]

Eight runs from the base model, one per combination of

- **init**: music-token rows started from the base model's embeddings of what each code stands for (``text``,
  :mod:`train.tokens.token_init`) or from N(μ, Σ) of the word embeddings (``random``, TalkPlay's);
- **aux**: the short text → music examples mixed in at the recipe's share (``on``: ``--request-fraction 0.6``) or
  conversations and playlists only (``off``);
- **order**: the text-first span (``text``: semantic, metadata, audio, lyrics, playlist; the bundle's
  ``rkmeans_text`` store) or the paper's playlist-first one (``paper``: the ``rkmeans`` store it was reordered
  from),

each trained ``--steps`` optimizer steps of ``--batch-size`` examples (``python -m train.training.sft``, one CPU
thread per run, ``--jobs`` runs at a time), packaged into its own copy of the bundle, and scored on the first turns
of the first ``--turns`` validation conversations: the model's log-likelihood of every allowed track's tokens
(exhaustive), alone and inside the serving objective (:mod:`train.evaluation.blend`'s terms, the engine's default
weights). Writes ``reports/ablation_<catalog>.{json,md,png}`` (the table and the validation curves).

Every stage resumes: an interrupted training run continues from its ``last/`` state, a packaged run is not
packaged again, and the model's scores are cached per turn (as the blend's are). The test split is not read.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.training.ablation")

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INITS = ("text", "random")
AUX = {"on": 0.6, "off": 0.0}
ORDERS = {"text": "rkmeans_text", "paper": "rkmeans"}


def configs() -> list[dict]:
    """The eight combinations, the recipe's own first."""
    return [{"name": f"init-{i}_aux-{a}_order-{o}", "init": i, "aux": a, "order": o}
            for i, a, o in itertools.product(INITS, AUX, ORDERS)]


def sft_args(cfg: dict, catalog: Path, run: Path, steps: int, batch_size: int, seed: int) -> list[str]:
    return ["--catalog", str(catalog), "--out", str(run), "--variant", ORDERS[cfg["order"]], "--max-steps", str(steps),
            "--batch-size", str(batch_size), "--warmup-steps", str(max(1, steps // 10)),
            "--eval-every", str(max(1, steps // 4)), "--eval-examples", "32", "--row-init", cfg["init"],
            "--request-fraction", str(AUX[cfg["aux"]]), "--threads", "1", "--seed", str(seed), "--no-export"]


def trained(run: Path, steps: int) -> bool:
    from train.catalog.package import run_summary

    try:
        return run_summary(run)["steps"] >= steps
    except (FileNotFoundError, KeyError, ValueError):
        return False


def train_all(cfgs: list[dict], catalog: Path, out: Path, steps: int, batch_size: int, seed: int, jobs: int,
              log=print) -> None:
    """Train every configuration not yet trained, ``jobs`` at a time (each its own process and CPU thread)."""
    todo = [c for c in cfgs if not trained(out / c["name"] / "run", steps)]
    running: list[tuple[dict, subprocess.Popen]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while todo or running:
        while todo and len(running) < jobs:
            c = todo.pop(0)
            run = out / c["name"] / "run"
            run.mkdir(parents=True, exist_ok=True)
            logf = (out / c["name"] / "train.log").open("a")
            cmd = [sys.executable, "-m", "train.training.sft", *sft_args(c, catalog, run, steps, batch_size, seed)]
            log(f"training {c['name']}")
            running.append((c, subprocess.Popen(cmd, cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT)))
        time.sleep(2)
        for c, p in list(running):
            if p.poll() is not None:
                running.remove((c, p))
                if p.returncode != 0:
                    raise RuntimeError(f"{c['name']}: training failed (exit {p.returncode}); see "
                                       f"{out / c['name'] / 'train.log'}")
                log(f"trained {c['name']}")


def package_run(cfg: dict, catalog: Path, out: Path) -> Path:
    """The run's best weights in a copy of the bundle (previews left out), packaged once."""
    from train.catalog import package

    bundle = out / cfg["name"] / "bundle"
    done = out / cfg["name"] / "packaged.json"
    run = out / cfg["name"] / "run"
    best = (run / "best" / "trainable.safetensors").stat().st_mtime
    if done.exists() and json.loads(done.read_text()).get("best_mtime") == best:
        return bundle
    if bundle.exists():
        shutil.rmtree(bundle)
    shutil.copytree(catalog, bundle, ignore=shutil.ignore_patterns("previews"))
    package.package(run, bundle, variant=ORDERS[cfg["order"]])
    done.write_text(json.dumps({"best_mtime": best}))
    return bundle


def score(cfg: dict, bundle: Path, catalog: Path, out: Path, turns: int, log=print) -> dict:
    """Model-alone and serving-objective MRR on the first turns of ``turns`` validation conversations."""
    import numpy as np

    from talkplay.recommender import GenerationConfig, load_recommender
    from train.data.build import conversations_path
    from train.data.conversation_schema import read_conversations
    from train.evaluation.blend import GRID, measure, turn_terms
    from train.evaluation.evaluate import eval_turns

    rec = load_recommender(bundle, device="cpu", precision="fp32")
    first = [t for t in eval_turns(read_conversations(conversations_path(catalog, "valid"))[:turns])[0] if t.turn == 1]
    terms = turn_terms(rec, first, out / cfg["name"] / "lm_scores.jsonl", log=log)
    prior = rec.prior().row_scores
    defaults = {k: getattr(GenerationConfig(), k) for k in GRID}
    zero = {k: 0.0 for k in GRID}
    alone = measure(terms, prior, {**zero, "model_weight": 1.0})
    first_weights = GenerationConfig().first_weights()
    served = measure(terms, prior, defaults, dict(first_weights) if first_weights else None)
    corrected = measure(terms, prior, {**zero, "model_weight": 1.0, "prior_weight": defaults["prior_weight"]})
    return {"first_turns": len(first), "model_mrr_first": alone["mrr_first"],
            "model_prior_corrected_mrr_first": corrected["mrr_first"], "model_top1_max_share": alone["top1_max_share"],
            "served_mrr_first": served["mrr_first"], "served_top1_max_share": served["top1_max_share"],
            "random_mrr_first": float(np.mean([np.mean(1.0 / np.arange(1, int((~t["played"]).sum()) + 1))
                                               for t in terms]))}


def curves(run: Path) -> list[dict]:
    from train.catalog.package import read_log

    keys = ("step", "train_ce", "valid_loss", "valid_ce_conversation", "valid_ce_playlist", "valid_ce_request")
    return [{k: (float(r[k]) if r.get(k) not in (None, "") else None) for k in keys} for r in read_log(run)]


def report(result: dict) -> str:
    rows = ["| init | text → music task | order | valid CE, requests | valid CE, conversations | "
            "model MRR, first turns | model − β·prior | serving objective | top-1 max share (model) |",
            "|---|---|---|---|---|---|---|---|---|"]

    def f(x, d=3):
        return "–" if x is None else f"{x:.{d}f}"

    for r in result["runs"]:
        last = next((c for c in reversed(r["curve"]) if c.get("valid_loss") is not None), {})
        s = r["scores"]
        rows.append(f"| {r['init']} | {r['aux']} | {r['order']} | {f(last.get('valid_ce_request'))} | "
                    f"{f(last.get('valid_ce_conversation'))} | {f(s['model_mrr_first'])} | "
                    f"{f(s['model_prior_corrected_mrr_first'])} | {f(s['served_mrr_first'])} | "
                    f"{f(s['model_top1_max_share'], 2)} |")
    b = result["budget"]
    return "\n".join([
        f"# Ablation — init × text → music task × order, `{result['catalog']}` catalog", "",
        f"Eight runs from the base model at the same budget: {b['steps']} optimizer steps of {b['batch_size']} "
        f"examples ({b['steps'] * b['batch_size']} examples), seed {b['seed']}, one CPU thread each "
        f"({result['machine']}). Scored on the first turns of {result['turns']} validation conversations "
        f"({result['runs'][0]['scores']['first_turns']} first requests; synthetic conversations): MRR of the played "
        "track among all allowed tracks by the model's log-likelihood alone, with the neutral request's prior "
        "subtracted (β of the engine), and inside the serving objective (text match, popularity; the engine's "
        f"default weights). A random ranking's MRR is {result['runs'][0]['scores']['random_mrr_first']:.3f}. "
        "Valid CE: token-mean cross-entropy of the music span on the first 32 validation examples of each task at "
        "the last evaluation. The shipped checkpoint's recipe is the first row (text init, task on, text-first "
        "order); it was trained far longer than these runs.", "", *rows, "",
        "How to read it: the request CE and the model columns say which recipe links words to music tokens sooner; "
        "the serving objective's column is what a listener would get from such a model. A budget this small is "
        "noisy (one seed, a few first requests); the curves are in "
        f"`reports/ablation_{result['catalog']}.png`.", "",
        f"Regenerate: `{result['command']}` (training: {result['train_minutes']:.0f} CPU-thread minutes in all, "
        f"two runs at a time; resumable).", ""])


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in result["runs"]:
        pts = [(c["step"], c) for c in r["curve"] if c.get("valid_loss") is not None]
        style = "-" if r["init"] == "text" else "--"
        for ax, key in zip(axes, ("valid_ce_request", "valid_ce_conversation")):
            xs = [s for s, c in pts if c.get(key) is not None]
            ys = [c[key] for s, c in pts if c.get(key) is not None]
            if xs:
                ax.plot(xs, ys, style, marker="o", ms=3, label=f"{r['init']}/{r['aux']}/{r['order']}")
    for ax, title in zip(axes, ("valid CE — text → music requests", "valid CE — conversations")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, title="init/task/order", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.training.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--catalog", type=Path, default=Path("catalog/demo"))
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--steps", type=int, default=24, help="optimizer steps per run (the same for all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--turns", type=int, default=40, help="validation conversations whose first turns are scored")
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once (one CPU thread each)")
    p.add_argument("--only", nargs="*", default=None, help="configuration names to run (default: all eight)")
    p.add_argument("--reports", type=Path, default=REPO / "reports")
    args = p.parse_args(argv)
    import platform

    import torch

    torch.set_num_threads(max(1, args.jobs))
    t0 = time.perf_counter()
    cfgs = [c for c in configs() if args.only is None or c["name"] in args.only]
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    train_all(cfgs, args.catalog, args.out, args.steps, args.batch_size, args.seed, args.jobs, log)
    runs = []
    for c in cfgs:
        bundle = package_run(c, args.catalog, args.out)
        log(f"scoring {c['name']}")
        runs.append({**c, "curve": curves(args.out / c["name"] / "run"),
                     "scores": score(c, bundle, args.catalog, args.out, args.turns, log)})
    from train.catalog.package import run_summary

    train_minutes = sum(run_summary(args.out / c["name"] / "run")["step_seconds_sum"] for c in cfgs) / 60
    result = {"train_minutes": train_minutes, "catalog": args.catalog.name, "budget": {"steps": args.steps, "batch_size": args.batch_size,
                                                       "seed": args.seed},
              "turns": args.turns, "runs": runs, "synthetic_data": True,
              "machine": f"{platform.machine()}, torch {torch.__version__}",
              "minutes": (time.perf_counter() - t0) / 60,
              "command": f"python -m train.training.ablation --catalog {args.catalog} --out {args.out} --steps "
                         f"{args.steps} --batch-size {args.batch_size} --turns {args.turns}"}
    from talkplay.catalog import atomic_write

    args.reports.mkdir(parents=True, exist_ok=True)
    name = f"ablation_{args.catalog.name}"
    atomic_write(args.reports / f"{name}.json", lambda t: t.write_text(json.dumps(result, indent=1) + "\n"))
    atomic_write(args.reports / f"{name}.md", lambda t: t.write_text(report(result), encoding="utf-8"))
    plot(result, args.reports / f"{name}.png")
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
