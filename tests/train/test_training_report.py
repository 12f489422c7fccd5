"""Training curves report and model card from train.training.sft run directories (fabricated logs)."""

import csv
import json

import pytest

from train.catalog.package import model_card, run_summary
from train.training.sft import LOG_COLUMNS
from train.training.training_report import write_report


def fake_run(root, lam, steps=30, eval_every=10):
    (root / "last").mkdir(parents=True)
    config = {"lambda_self_sim": lam, "max_steps": steps, "eval_every": eval_every, "warmup_steps": 2,
              "playlist_fraction": 0.5, "lora_r": 16, "lora_alpha": 32, "lr": 1e-4, "batch_size": 8, "grad_accum": 1}
    (root / "last" / "state.json").write_text(json.dumps({"step": steps, "best": {"step": 20, "valid_loss": 3.0},
                                                           "config": config}))
    with (root / "log.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        w.writeheader()
        for s in range(1, steps + 1):
            row = {"step": s, "lr": 1e-4, "train_ce": 5 - s / 10, "train_ce_conversation": 4 - s / 20,
                   "train_ce_playlist": 6 - s / 10, "self_sim": 0.3 - lam * s / 100 if lam else "",
                   "step_seconds": 2.0}
            if s % eval_every == 0:
                row.update(valid_loss=4 - s / 30 + (0.5 if s == 30 else 0), valid_ce_conversation=3.5,
                           valid_ce_playlist=5.0)
            w.writerow(row)
    return root


def test_report_has_figure_and_csv_for_both_runs(tmp_path):
    runs = [fake_run(tmp_path / "a", 0.1), fake_run(tmp_path / "b", 0.0)]
    png, path = write_report(runs, "fix", tmp_path / "reports")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60 and {r["lambda"] for r in rows} == {"0.1", "0.0"}


def test_summary_uses_the_best_step_and_card_says_synthetic(tmp_path):
    s = run_summary(fake_run(tmp_path / "a", 0.1))
    assert s["best_step"] == 20 and s["best_valid_loss"] == pytest.approx(4 - 20 / 30)
    assert s["steps"] == 30 and s["step_seconds_sum"] == 60.0
    ablation = run_summary(fake_run(tmp_path / "b", 0.0))
    card = model_card(tmp_path / "demo", s, ablation, "offline:smollm2-135m-instruct", "rkmeans", None)
    assert "**synthetic**" in card and "| 0.0 |" in card and "| 0.1 |" in card
    assert "Not yet evaluated" in card


def test_missing_run_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="state.json"):
        run_summary(tmp_path / "nope")


def test_card_reports_evaluation_when_present(tmp_path):
    s = run_summary(fake_run(tmp_path / "a", 0.1))
    m = {"mrr": 0.2, "hit@1": 0.1, "hit@10": 0.5, "ndcg@10": 0.3}
    evaluation = {"turns": 100, "conversations": 20, "systems": {"bm25": m, "talkplay": m},
                  "paper_mode": {"exact": 40, "partial": 50, "none": 10, "turns": 100}}
    card = model_card(tmp_path / "demo", s, None, "offline:smollm2-135m-instruct", "rkmeans", evaluation)
    assert "| talkplay | 0.2000 |" in card and "40 exact, 50 partial, 10 no match" in card


def test_card_counts_the_examples_of_every_run_a_checkpoint_continues(tmp_path):
    """A continued run's card gives the whole lineage: the checkpoints it started from and this run, in steps and
    examples; a link that never recorded its examples makes the total unknown, not smaller."""
    from train.catalog.package import lineage

    s = run_summary(fake_run(tmp_path / "a", 0.1))  # 30 steps × batch 8, best at step 20
    first = {"steps": 300, "examples": 9600, "step_seconds_mean": 31.4}
    continued = {"checkpoint": "catalog/demo", "steps": 80, "examples": 2560, "step_seconds_mean": 26.4,
                 "continued_from": first}
    assert lineage(continued) == {"steps": 380, "examples": 12160, "runs": 2}
    card = model_card(tmp_path / "demo", s, None, "offline:smollm2-135m-instruct", "rkmeans", None, (), continued)
    assert "trained 380 steps (12,160 examples over 2 runs), the last 80 at 26.4 s per step" in card
    assert "In all: 400 steps, 12,320 examples (160 in this run)" in card  # the weights are step 20's (best)
    unknown = {**continued, "continued_from": {"steps": 300, "step_seconds_mean": 31.4}}
    assert lineage(unknown)["examples"] is None
    card = model_card(tmp_path / "demo", s, None, "offline:smollm2-135m-instruct", "rkmeans", None, (), unknown)
    assert "In all: 400 steps, examples unknown" in card
    assert lineage({**continued, "steps": None})["steps"] is None  # unknown, not counted as 0
    card = model_card(tmp_path / "demo", s, None, "offline:smollm2-135m-instruct", "rkmeans", None, (),
                      {"checkpoint": "x", "steps": None, "examples": None, "step_seconds_mean": None})
    assert "In all: an unknown number of steps, examples unknown" in card
