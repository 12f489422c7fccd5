"""The GPU recipe (train.gpu_run) refuses clearly on a machine without CUDA; with --allow-cpu it runs the
whole path (train → package into a bundle copy → fit check → report), which is checked by hand on the demo
with a two-step budget (minutes of CPU: not part of the suite)."""

import pytest
import torch

from train import gpu_run


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda(capsys, tmp_path):
    assert gpu_run.main(["--out", str(tmp_path / "run")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing started, nothing written
