"""The GPU recipe (train.training.gpu_run) refuses clearly on a machine without CUDA; with --allow-cpu it runs the
whole path (train → package into a bundle copy → fit check → report), which is checked by hand on the demo
with a two-step budget (minutes of CPU: not part of the suite)."""

import pytest
import torch

from train.training import gpu_run


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda(capsys, tmp_path):
    assert gpu_run.main(["--out", str(tmp_path / "run")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing started, nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_without_cuda(capsys, tmp_path):
    from train.checks import gpu_check

    assert gpu_check.main(["--reports", str(tmp_path / "reports")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


def test_gpu_check_load_runs_listeners_through_the_scheduler(tmp_path):
    """The in-process load of the GPU check, on CPU with the tiny model: turns complete, none repeats a track."""
    from talkplay.recommender import GenerationConfig, Recommender
    from talkplay.render import RenderConfig
    from tests.train.test_sft import build_world, make_model
    from train.checks.gpu_check import inprocess_load

    w = build_world(tmp_path)
    rec = Recommender(make_model(w["tokenizer"], w["n_old"]).eval(), w["tokenizer"], w["catalog"], w["store"],
                      GenerationConfig(max_reply_tokens=6), RenderConfig(max_tokens=512))
    scheduler = rec.serve(max_batch=3)
    try:
        r = inprocess_load(rec, sessions=3, seconds=2.0, requests=("calm", "upbeat", "jazz"))
    finally:
        scheduler.close()
    assert r["turns"] >= 3 and r["errors"] == 0 and r["repeated_tracks"] == 0
    assert scheduler.stats.finished == r["turns"] and r["ttft_s"]["p50"] is not None
