"""Training curves and the self-similarity ablation as a figure and one CSV.

    python -m train.training.training_report --run runs/demo-lambda0.1 --run runs/demo-lambda0 --name demo
    # → reports/training_demo.png + .csv + .json (best step, valid losses, self-sim at best per run)

Each run is a ``train.training.sft`` output directory; runs are labelled by their λ (self-similarity weight). The
figure has three panels: train CE per step (a 10-step moving average over the raw values), valid loss
(conversation and playlist-continuation CE) at each evaluation, and the self-similarity loss per step
(computed for every run, whatever its λ, only the λ > 0 runs are pulled towards 0 by it).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.training.training_report")

import argparse
import csv
import json
import sys
from pathlib import Path

from talkplay.catalog import atomic_write

REPO = Path(__file__).resolve().parents[2]
COLUMNS = ("lambda", "step", "train_ce", "train_ce_conversation", "train_ce_playlist", "self_sim", "valid_loss",
           "valid_ce_conversation", "valid_ce_playlist", "step_seconds")


def load_run(run: Path) -> tuple[float, list[dict]]:
    meta = run / "last" / "state.json"
    if not meta.exists():
        raise FileNotFoundError(f"{meta}: missing — not a train.training.sft run directory")
    lam = float(json.loads(meta.read_text())["config"]["lambda_self_sim"])
    with (run / "log.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return lam, rows


def _floats(rows, key):
    xs, ys = [], []
    for r in rows:
        if r.get(key):
            xs.append(int(r["step"]))
            ys.append(float(r[key]))
    return xs, ys


def _smooth(ys, k=10):
    out, acc = [], []
    for y in ys:
        acc.append(y)
        acc = acc[-k:]
        out.append(sum(acc) / len(acc))
    return out


def best_self_sim(run: Path, tokenizer, store) -> float | None:
    """Self-similarity loss of the music-token embeddings in ``run``'s best checkpoint (a diagnostic, so that
    a λ = 0 run, which never computes it while training, can be compared too)."""
    from safetensors.torch import load_file

    from train.training.losses import self_similarity_loss, self_similarity_targets

    path = run / "best" / "trainable.safetensors"
    if not path.exists():
        return None
    weights = load_file(str(path))
    key = next((k for k in weights if k.endswith("embed_tokens.weight")), None)
    if key is None:
        return None
    ids, targets = self_similarity_targets(tokenizer, store)
    return float(self_similarity_loss(weights[key], ids, targets)) if ids else None


def write_report(runs: list[Path], name: str, out_dir: Path, diagnostics: dict | None = None) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = [load_run(r) for r in runs]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    dashes = ["-", (0, (4, 3)), ":", "-."]  # overlapping curves stay visible
    for (run, (lam, rows)), color, dash in zip(zip(runs, loaded), colors, dashes):
        label = f"λ = {lam:g}"
        xs, ys = _floats(rows, "train_ce")
        axes[0].plot(xs, _smooth(ys), color=color, linestyle=dash, label=label)
        at_best = (diagnostics or {}).get(str(run), {}).get("self_sim_at_best")
        evals = [r for r in rows if r.get("valid_loss")]
        if at_best is not None and evals:
            best = min(evals, key=lambda r: float(r["valid_loss"]))
            axes[2].plot([int(best["step"])], [at_best], marker="*", ms=12, color=color, linestyle="none",
                         label=f"{label}, best checkpoint")
        for key, style in (("valid_ce_conversation", "-"), ("valid_ce_playlist", "--")):
            xs, ys = _floats(rows, key)
            axes[1].plot(xs, ys, linestyle=style if dash == "-" else ":", marker="o", ms=3, color=color,
                         label=f"{label}, {key.removeprefix('valid_ce_')}")
        xs, ys = _floats(rows, "self_sim")
        if ys:
            axes[2].plot(xs, ys, color=color, label=label)
    axes[0].set(title="train CE (10-step moving average)", xlabel="step", ylabel="cross-entropy")
    axes[1].set(title="valid CE at each evaluation", xlabel="step", ylabel="cross-entropy")
    axes[2].set(title="self-similarity loss (★ = best checkpoint)", xlabel="step",
                ylabel="MSE of cosine similarities")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"TalkPlay SFT on catalog '{name}' (synthetic conversations + playlists)")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    png, csv_path = out_dir / f"training_{name}.png", out_dir / f"training_{name}.csv"
    atomic_write(png, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            for lam, rows in loaded:
                for r in rows:
                    w.writerow({**r, "lambda": lam})

    atomic_write(csv_path, write_csv)
    summary = []
    for run, (lam, rows) in zip(runs, loaded):
        evals = [r for r in rows if r.get("valid_loss")]
        best = min(evals, key=lambda r: float(r["valid_loss"])) if evals else {}
        summary.append({"run": str(run), "lambda": lam, "steps": int(rows[-1]["step"]) if rows else 0,
                        "best_step": int(best["step"]) if best else None,
                        "best_valid_loss": float(best["valid_loss"]) if best else None,
                        "best_valid_ce_conversation": float(best["valid_ce_conversation"]) if best else None,
                        "best_valid_ce_playlist": float(best["valid_ce_playlist"]) if best else None,
                        "self_sim_first_step": next((float(r["self_sim"]) for r in rows if r.get("self_sim")), None),
                        **(diagnostics or {}).get(str(run), {})})
    text = json.dumps({"runs": summary}, indent=1) + "\n"
    atomic_write(out_dir / f"training_{name}.json", lambda tmp: tmp.write_text(text))
    return png, csv_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.training.training_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, action="append", required=True, help="a train.training.sft output directory (repeat)")
    p.add_argument("--name", default="demo", help="catalog name used in the file names")
    p.add_argument("--out", type=Path, default=REPO / "reports")
    p.add_argument("--catalog", type=Path, default=None,
                   help="bundle the runs trained on: adds each best checkpoint's self-similarity loss (diagnostic)")
    args = p.parse_args(argv)
    diagnostics = {}
    if args.catalog:
        from talkplay.expansion import expand_tokenizer
        from talkplay.model import ModelConfig, resolve_base
        from talkplay.token_store import load_default_store
        from transformers import AutoTokenizer

        store = load_default_store(args.catalog)
        tokenizer = AutoTokenizer.from_pretrained(resolve_base(ModelConfig()))
        expand_tokenizer(tokenizer, store.vocab.special_tokens())
        diagnostics = {str(r): {"self_sim_at_best": best_self_sim(r, tokenizer, store)} for r in args.run}
    for path in write_report(args.run, args.name, args.out, diagnostics):
        print(f"wrote {path}")
    print((args.out / f"training_{args.name}.json").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
