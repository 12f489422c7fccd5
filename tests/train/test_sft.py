"""SFT: supervised-position CE, self-similarity loss, example rendering/mixing/collation, the training loop
(loss goes down, LoRA touches only the intended weights, resume == uninterrupted, CSV log, export).

Hermetic: a tiny random Llama, a tokenizer trained in the fixture, a 6-track catalog and token store.
"""

import csv
import time

import numpy as np
import pytest
import torch

from talkplay.expansion import music_token_ids
from talkplay.render import IGNORE_INDEX, RenderConfig
from tests.worlds import N_TRACKS, SENTENCES, VOCAB, build_runtime_world, make_model, make_tokenizer  # noqa: F401
from train.data.conversation_schema import Conversation, Message
from train.training.dataset import (
    CONVERSATION,
    PLAYLIST,
    Example,
    MixedStream,
    collate,
    continuation_examples,
    conversation_examples,
    render_continuation,
)
from train.training.losses import self_similarity_loss, self_similarity_targets, supervised_ce, token_losses
from train.data.sequences import ContinuationExample
from train.training.sft import LOG_COLUMNS, TrainConfig, make_optimizer, prepare_model, train


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # overrides conftest's runtime world: training tests also need the datasets
    return build_world(tmp_path_factory.mktemp("sft"))


def build_world(root):
    """The runtime world (tests/worlds.py) plus rendered training datasets under ``root`` (deterministic)."""
    world = build_runtime_world(root)
    tokenizer, store, catalog = world["tokenizer"], world["store"], world["catalog"]
    render = RenderConfig(max_tokens=256)
    convs = []
    for c in range(4):
        msgs = []
        for t in range(2):
            track = f"t{(c + t) % N_TRACKS}"
            msgs += [Message("user", SENTENCES[(c + t) % 4]), Message("music", track),
                     Message("assistant", f"here is Song {track[1]} by Band {track[1]}")]
        convs.append(Conversation(f"c{c}", tuple(msgs), "train"))
    seqs = [ContinuationExample(f"p{i}", "train", (f"t{i}", f"t{(i + 1) % 6}"), (f"t{(i + 2) % 6}", f"t{(i + 3) % 6}"),
                                True) for i in range(4)]
    world["datasets"] = {
        "train": {CONVERSATION: conversation_examples(tokenizer, convs, store, catalog, render),
                  PLAYLIST: continuation_examples(tokenizer, seqs, store, render)},
        "valid": {CONVERSATION: conversation_examples(tokenizer, convs[:2], store, catalog, render),
                  PLAYLIST: continuation_examples(tokenizer, seqs[:2], store, render)},
    }
    return world


def fixed_batch(world):
    d = world["datasets"]["train"]
    return collate([d[CONVERSATION][0], d[PLAYLIST][0], d[CONVERSATION][1], d[PLAYLIST][1]],
                   world["tokenizer"].pad_token_id)


def config(tmp_path, **kw):
    base = dict(out=tmp_path / "run", lr=1e-2, warmup_steps=1, max_steps=4, batch_size=2, eval_every=2,
                eval_examples=2, lora_r=4, lora_alpha=8, bf16=False, export_final=False)
    return TrainConfig(**{**base, **kw})


# ---------------------------------------------------------------------------------------- losses


def test_supervised_ce_equals_full_head_ce(world):
    model = make_model(world["tokenizer"], world["n_old"]).eval()
    batch = fixed_batch(world)
    args = (batch["input_ids"], batch["attention_mask"], batch["labels"])
    with torch.no_grad():
        reference = model(input_ids=args[0], attention_mask=args[1], labels=args[2]).loss
        t0 = time.perf_counter()
        ours = supervised_ce(model, *args)
        t1 = time.perf_counter()
        full, _ = token_losses(model, *args, full_head=True)
        t2 = time.perf_counter()
    assert torch.allclose(ours, reference, atol=1e-5), (ours, reference)
    assert torch.allclose(full.mean(), reference, atol=1e-5)
    n_sup = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert 0 < n_sup < batch["labels"][:, 1:].numel()  # the head really is skipped somewhere
    print(f"supervised head {t1 - t0:.4f}s vs full head {t2 - t1:.4f}s ({n_sup} of {batch['labels'].numel()} rows)")


def test_supervised_ce_without_supervised_tokens_is_zero_with_grad(world):
    model = make_model(world["tokenizer"], world["n_old"])
    ids = torch.tensor([[5, 6, 7]])
    loss = supervised_ce(model, ids, torch.ones_like(ids), torch.full_like(ids, IGNORE_INDEX))
    assert float(loss.detach()) == 0.0 and loss.requires_grad


def test_self_similarity_zero_for_centroids_and_isometries_positive_otherwise():
    torch.manual_seed(0)
    cent = {"a": torch.randn(6, 4), "b": torch.randn(5, 3)}
    weight = torch.zeros(20, 4)
    ids = {"a": torch.arange(0, 6), "b": torch.arange(10, 15)}
    weight[0:6] = cent["a"]
    weight[10:15, :3] = cent["b"]  # different width: zero-padded copy has the same angles
    assert float(self_similarity_loss(weight, ids, cent)) == pytest.approx(0.0, abs=1e-6)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4))
    rotated = weight.clone()
    rotated[0:6] = 3.0 * cent["a"] @ rotation  # rotation + scaling keeps cosines
    assert float(self_similarity_loss(rotated, ids, cent)) == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(20, 4, requires_grad=True)
    loss = self_similarity_loss(other, ids, cent)
    assert float(loss.detach()) > 1e-3
    loss.backward()
    assert other.grad[0:6].abs().sum() > 0 and other.grad[6:10].abs().sum() == 0  # only listed rows move
    with pytest.raises(ValueError, match="'b'"):
        self_similarity_loss(weight, {"b": torch.arange(0, 4)}, cent)


def test_self_similarity_targets_skip_reserved_codes(world):
    ids, targets = self_similarity_targets(world["tokenizer"], world["store"])
    assert set(ids) == {"playlist", "audio1", "audio2"}
    tok = world["tokenizer"]
    assert ids["audio1"].tolist() == [tok.convert_tokens_to_ids(f"<|audio1-{c}|>") for c in range(1, 6)]
    assert np.allclose(targets["audio2"].numpy(), world["centroids"]["audio2"])


# ---------------------------------------------------------------------------------------- data


def test_render_continuation_supervises_only_the_continuation(world):
    tok, store = world["tokenizer"], world["store"]
    ex = render_continuation(tok, ["t0", "t1"], ["t2", "t3"], store, RenderConfig(), "p")
    supervised = [i for i, l in zip(ex.input_ids, ex.labels) if l != IGNORE_INDEX]
    expected = []
    for t in ("t2", "t3"):
        expected += tok.convert_tokens_to_ids(["<start_of_music>", *store.tokens_of(t), "<end_of_music>"])
    assert supervised == expected + [tok.convert_tokens_to_ids("<|im_end|>")]
    text = tok.decode(ex.input_ids)
    assert "<|im_start|>user\nContinue this playlist:\n<start_of_music>" in text
    assert text.count("<start_of_music>") == 4
    # a tight budget drops the oldest prefix tracks first
    short = render_continuation(tok, ["t0", "t1"], ["t2"], store, RenderConfig(max_tokens=len(ex.input_ids) - 6))
    assert tok.decode(short.input_ids).count("<start_of_music>") == 2
    with pytest.raises(ValueError, match="'q'"):
        render_continuation(tok, ["t0"], [], store, RenderConfig(), "q")


def test_collate_pads_ids_mask_and_labels():
    a = Example([1, 2, 3], [IGNORE_INDEX, 2, 3], CONVERSATION, "a")
    b = Example([4, 5], [4, IGNORE_INDEX], PLAYLIST, "b")
    out = collate([a, b], pad_id=0)
    assert out["input_ids"].tolist() == [[1, 2, 3], [4, 5, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert out["labels"].tolist() == [[IGNORE_INDEX, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert out["task"].tolist() == [0, 1]


def test_mixed_stream_ratio_and_determinism():
    conv = [Example([i], [i], CONVERSATION, f"c{i}") for i in range(5)]
    play = [Example([100 + i], [i], PLAYLIST, f"p{i}") for i in range(3)]
    s1, s2 = MixedStream(conv, play, 0.25, seed=1), MixedStream(conv, play, 0.25, seed=1)
    first = [s1[k].source for k in range(40)]
    assert first == [s2[k].source for k in reversed(range(40))][::-1]  # random access, order-independent
    assert sum(x.startswith("p") for x in first) == 10
    convs = [x for x in first if x.startswith("c")]
    assert sorted(convs[:5]) == [f"c{i}" for i in range(5)]  # each pass is a permutation
    assert first != [MixedStream(conv, play, 0.25, seed=2)[k].source for k in range(40)]
    assert all(MixedStream(conv, [], 0.5, 0)[k].task == CONVERSATION for k in range(7))


# ---------------------------------------------------------------------------------------- training


def test_one_optimizer_step_lowers_the_loss(world, tmp_path):
    model = make_model(world["tokenizer"], world["n_old"])
    cfg = config(tmp_path, lora=False, lr=3e-3)
    model = prepare_model(model, cfg, music_token_ids(world["tokenizer"], VOCAB))
    opt = make_optimizer(model, cfg)
    batch = fixed_batch(world)
    args = (batch["input_ids"], batch["attention_mask"], batch["labels"])
    before = supervised_ce(model, *args)
    before.backward()
    opt.step()
    with torch.no_grad():
        after = supervised_ce(model, *args)
    assert float(after) < float(before)


def test_lora_trains_only_adapters_and_music_rows(world, tmp_path):
    tok = world["tokenizer"]
    model = make_model(tok, world["n_old"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train(config(tmp_path, max_steps=2), model, tok, world["datasets"], world["store"])
    peft_model = result["model"]
    base = peft_model.get_base_model()
    music = torch.tensor(music_token_ids(tok, VOCAB))
    other = torch.ones(before["model.embed_tokens.weight"].shape[0], dtype=torch.bool)
    other[music] = False
    emb = base.get_input_embeddings().weight.detach()
    assert torch.equal(emb[other], before["model.embed_tokens.weight"][other])
    assert not torch.equal(emb[music], before["model.embed_tokens.weight"][music])
    assert base.get_output_embeddings().weight is base.get_input_embeddings().weight  # still tied
    lora = {n: p for n, p in peft_model.named_parameters() if "lora_" in n}
    assert lora and any(p.detach().abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)
    for name, p in base.named_parameters():
        if "lora_" in name or "embed_tokens" in name:
            continue
        original = name.replace("base_layer.", "")
        assert torch.equal(p.detach(), before[original]), name  # frozen base weights


def test_resume_matches_uninterrupted_run_and_logs_csv(world, tmp_path):
    tok, store, data = world["tokenizer"], world["store"], world["datasets"]
    straight = train(config(tmp_path / "a", lambda_self_sim=0.5), make_model(tok, world["n_old"]), tok, data, store)
    first = train(config(tmp_path / "b", lambda_self_sim=0.5, stop_after=2), make_model(tok, world["n_old"]), tok,
                  data, store)
    assert first["steps"] == 2
    resumed = train(config(tmp_path / "b", lambda_self_sim=0.5), make_model(tok, world["n_old"]), tok, data, store)
    assert resumed["steps"] == 4
    a = {n: p for n, p in straight["model"].named_parameters() if p.requires_grad}
    b = dict(resumed["model"].named_parameters())
    assert a and all(torch.allclose(p, b[n], atol=1e-6) for n, p in a.items())
    assert (tmp_path / "b" / "run" / "best" / "trainable.safetensors").exists()
    for run in ("a", "b"):
        with (tmp_path / run / "run" / "log.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert tuple(rows[0].keys()) == LOG_COLUMNS
        assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
        assert all(r["train_ce_conversation"] and r["train_ce_playlist"] and r["self_sim"] for r in rows)
        assert rows[1]["valid_loss"] and rows[3]["valid_loss"] and not rows[0]["valid_loss"]
    assert straight["best_valid_loss"] == pytest.approx(resumed["best_valid_loss"], abs=1e-5)


def test_export_final_is_a_loadable_plain_checkpoint(world, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = world["tokenizer"]
    result = train(config(tmp_path, max_steps=2, export_final=True, bf16=True), make_model(tok, world["n_old"]), tok,
                   world["datasets"], world["store"])
    reloaded = AutoModelForCausalLM.from_pretrained(result["final"]).eval()
    tok2 = AutoTokenizer.from_pretrained(result["final"])
    assert music_token_ids(tok2, VOCAB) == music_token_ids(tok, VOCAB)
    batch = fixed_batch(world)
    with torch.no_grad():
        ours = result["model"].eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        theirs = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_two_process_data_parallel_keeps_ranks_identical(tmp_path):
    """`accelerate launch`/`torchrun` layout on CPU (gloo): two processes, averaged gradients, same weights."""
    import socket
    import subprocess
    import sys

    from safetensors.torch import load_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = __import__("pathlib").Path(__file__).parents[1] / "ddp_worker.py"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(port), str(worker), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with (tmp_path / "run" / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]  # one log, written by rank 0
    summary = __import__("json").loads((tmp_path / "run" / "summary.json").read_text())
    assert "2 processes" in summary["hardware"]


def test_collate_rounds_width_up_to_the_multiple(world):
    d = world["datasets"]["train"]
    batch = collate([d[CONVERSATION][0], d[PLAYLIST][0]], world["tokenizer"].pad_token_id, pad_multiple=32)
    longest = max(len(d[CONVERSATION][0].input_ids), len(d[PLAYLIST][0].input_ids))
    assert batch["input_ids"].shape[1] % 32 == 0 and longest <= batch["input_ids"].shape[1] < longest + 32
    assert int(batch["attention_mask"].sum()) == len(d[CONVERSATION][0].input_ids) + len(d[PLAYLIST][0].input_ids)


# ---------------------------------------------------------------------------------------- text → music task


def _request_examples(world):
    from train.training.dataset import request_examples
    from train.data.text_requests import Request

    reqs = [Request(SENTENCES[i % 4], f"t{i}", "slots") for i in range(N_TRACKS)]
    return request_examples(world["tokenizer"], reqs, world["store"], world["catalog"], RenderConfig(max_tokens=512))


def test_request_example_is_the_inference_prompt_plus_a_supervised_music_span(world):
    from talkplay.render import render_prompt
    from train.training.dataset import REQUEST

    tok, store = world["tokenizer"], world["store"]
    ex = _request_examples(world)[2]
    prompt = render_prompt(tok, [Message("user", SENTENCES[2])], store, world["catalog"], RenderConfig(max_tokens=512))
    assert ex.task == REQUEST and ex.input_ids[:len(prompt)] == prompt  # the prompt inference will see
    span = tok.convert_ids_to_tokens(ex.input_ids[len(prompt) - 1:])
    assert span == ["<start_of_music>", *store.tokens_of("t2"), "<end_of_music>"]
    supervised = [i for i, x in enumerate(ex.labels) if x != IGNORE_INDEX]
    assert supervised == list(range(len(prompt) - 1, len(ex.input_ids)))  # only the span
    assert [ex.labels[i] for i in supervised] == ex.input_ids[len(prompt) - 1:]


def test_mixed_stream_three_tasks_keep_their_shares_and_random_access():
    from train.training.dataset import REQUEST

    conv = [Example([i], [i], CONVERSATION, f"c{i}") for i in range(5)]
    play = [Example([100 + i], [i], PLAYLIST, f"p{i}") for i in range(3)]
    reqs = [Example([200 + i], [i], REQUEST, f"r{i}") for i in range(7)]
    s = MixedStream(conv, play, 0.25, seed=3, requests=reqs, request_fraction=0.6)
    first = [s[k].source for k in range(100)]
    assert sum(x.startswith("r") for x in first) == 60
    assert sum(x.startswith("p") for x in first) == 10 and sum(x.startswith("c") for x in first) == 30
    assert first == [s[k].source for k in reversed(range(100))][::-1]
    assert sorted([x for x in first if x.startswith("r")][:7]) == [f"r{i}" for i in range(7)]  # a permutation per pass
    assert all(MixedStream([], [], 0.5, 0, reqs, 0.3)[k].task == REQUEST for k in range(9))
    assert MixedStream(conv, play, 0.25, 0, [], 0.6)[0].task != REQUEST  # no requests: share ignored
    with pytest.raises(ValueError, match="request_fraction"):
        MixedStream(conv, play, 0.25, 0, reqs, 1.5)


def test_length_chunks_bound_padded_tokens_and_keep_every_example():
    from train.training.dataset import length_chunks

    examples = [Example(list(range(n)), list(range(n)), CONVERSATION, f"e{n}") for n in (5, 300, 40, 33, 7, 120)]
    chunks = length_chunks(examples, max_tokens=128, pad_multiple=32)
    assert sorted(e.source for c in chunks for e in c) == sorted(e.source for e in examples)
    for c in chunks:
        width = -(-max(len(e.input_ids) for e in c) // 32) * 32
        assert len(c) == 1 or width * len(c) <= 128
    assert [e.source for e in chunks[0]] == ["e5", "e7"]  # short examples are batched with short ones
    assert length_chunks(examples, 0) == [examples]


def test_chunked_step_gradient_equals_the_task_mean_sum(world, tmp_path):
    """Chunking a step changes no gradient: Σ_task (token-mean CE of the task) is computed exactly."""
    from train.training.dataset import REQUEST
    from train.training.sft import step_loss

    tok = world["tokenizer"]
    d = world["datasets"]["train"]
    examples = [d[CONVERSATION][0], d[PLAYLIST][0], _request_examples(world)[1], d[CONVERSATION][1],
                _request_examples(world)[3]]
    grads = []
    for max_tokens in (0, 64):
        model = make_model(tok, world["n_old"])
        cfg = config(tmp_path, lora=False, bf16=False, max_batch_tokens=max_tokens)
        model = prepare_model(model, cfg, music_token_ids(tok, VOCAB))
        stats = step_loss(model, examples, cfg, tok.pad_token_id, backward=True)
        grads.append(model.get_input_embeddings().weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
    assert stats[REQUEST][1] == 2 * (len(VOCAB) + 2)  # two requests: <start>, codes and <end> each
    # the reference: each task's mean CE computed on its own, then summed
    model = prepare_model(make_model(tok, world["n_old"]), config(tmp_path, lora=False, bf16=False),
                          music_token_ids(tok, VOCAB))
    total = 0.0
    for task in (CONVERSATION, PLAYLIST, REQUEST):
        mine = [e for e in examples if e.task == task]
        batch = collate(mine, tok.pad_token_id)
        total = total + supervised_ce(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    total.backward()
    assert torch.allclose(model.get_input_embeddings().weight.grad, grads[0], atol=1e-5)


def test_training_with_the_request_task_logs_its_loss(world, tmp_path):
    from train.training.dataset import REQUEST

    data = {"train": {**world["datasets"]["train"], REQUEST: _request_examples(world)},
            "valid": {**world["datasets"]["valid"], REQUEST: _request_examples(world)}}
    tok = world["tokenizer"]
    result = train(config(tmp_path, max_steps=2, request_fraction=0.5), make_model(tok, world["n_old"]), tok, data,
                   world["store"])
    with (tmp_path / "run" / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["train_ce_request"] and rows[1]["valid_ce_request"]
    assert result["steps"] == 2
