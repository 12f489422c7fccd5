"""One process of the 2-process CPU data-parallel test (launched by torch.distributed.run from test_sft)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from tests.train.test_sft import build_world, config, make_model  # noqa: E402
from train.training.sft import Processes, train, trainable_state  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    procs = Processes.from_env()
    torch.set_num_threads(1)
    world = build_world(out / f"world{procs.rank}")
    tok = world["tokenizer"]
    result = train(config(out, max_steps=4, batch_size=2, lambda_self_sim=0.5), make_model(tok, world["n_old"]), tok,
                   world["datasets"], world["store"])
    save_file(trainable_state(result["model"]), str(out / f"rank{procs.rank}.safetensors"))
