"""The ablation's plan (train.training.ablation): eight distinct runs at one budget, each a valid trainer command
line that differs from the recipe in exactly its own factors; the report renders its table and curves. The runs
themselves take an hour of CPU on the demo (checked by hand; reports/ablation_demo.md)."""

from pathlib import Path

from train.training import ablation, sft


def test_eight_configurations_at_one_budget():
    cfgs = ablation.configs()
    assert len({c["name"] for c in cfgs}) == 8
    assert cfgs[0] == {"name": "init-text_aux-on_order-text", "init": "text", "aux": "on", "order": "text"}
    parsed = {c["name"]: sft._parser().parse_args(ablation.sft_args(c, Path("cat"), Path("run"), 24, 8, 0))
              for c in cfgs}
    assert {(a.max_steps, a.batch_size, a.seed, a.threads) for a in parsed.values()} == {(24, 8, 0, 1)}
    for c in cfgs:
        a = parsed[c["name"]]
        assert a.row_init == c["init"] and a.variant == ablation.ORDERS[c["order"]]
        assert a.request_fraction == ablation.AUX[c["aux"]]


def test_report_and_curves_render(tmp_path):
    curve = [{"step": 6.0, "train_ce": 5.0, "valid_loss": 20.0, "valid_ce_conversation": 4.0,
              "valid_ce_playlist": 3.0, "valid_ce_request": 13.0},
             {"step": 7.0, "train_ce": 4.0, "valid_loss": None, "valid_ce_conversation": None,
              "valid_ce_playlist": None, "valid_ce_request": None}]
    scores = {"first_turns": 30, "model_mrr_first": 0.05, "model_prior_corrected_mrr_first": 0.06,
              "model_top1_max_share": 0.3, "served_mrr_first": 0.2, "served_top1_max_share": 0.05,
              "random_mrr_first": 0.02}
    result = {"catalog": "demo", "budget": {"steps": 24, "batch_size": 8, "seed": 0}, "turns": 30,
              "runs": [{**c, "curve": curve, "scores": scores} for c in ablation.configs()],
              "machine": "x", "minutes": 60.0, "train_minutes": 90.0, "command": "python -m train.training.ablation"}
    md = ablation.report(result)
    assert md.count("\n| text | on | text | 13.000 | 4.000 | 0.050 | 0.060 | 0.200 | 0.30 |") == 1
    assert md.count("| random |") == 4
    ablation.plot(result, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 1000
