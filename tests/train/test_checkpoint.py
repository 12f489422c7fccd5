"""Checkpoint export/load: a LoRA-trained tiny Llama saved as deltas and rebuilt on its base gives the same
logits; mismatched bases, token stores and damaged files are refused with the file named."""

import json

import pytest
import torch

from talkplay.checkpoint import (
    ADAPTER_FILE,
    CheckpointError,
    export_checkpoint,
    load_checkpoint,
    read_info,
    store_fingerprint,
)
from talkplay.model import ModelConfig
from talkplay.token_store import TokenStore, load_store, save_store
from tests import tiny_lm
from tests.train.test_sft import config, fixed_batch, make_model, make_tokenizer, world  # noqa: F401  (fixture)
from train.training.sft import train


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("ckpt")
    base_dir = root / "base"
    tiny_lm.make_llama(world["n_old"], hidden=32, tied=True, max_positions=512).save_pretrained(base_dir)
    make_tokenizer().save_pretrained(base_dir)
    tok = world["tokenizer"]
    result = train(config(root / "run", max_steps=3, lr=5e-2), make_model(tok, world["n_old"]), tok,
                   world["datasets"], world["store"])
    model = result["model"].eval()
    out = export_checkpoint(model, tok, world["store"], root / "model", base_model=str(base_dir),
                            base_vocab_size=world["n_old"], training={"steps": 3}, card="# card\n")
    return {"model": model, "dir": out, "base": base_dir, "root": root}


def mconfig(trained, **kw):
    return ModelConfig(base_model=str(trained["base"]), device="cpu", precision="fp32",
                       cache_dir=trained["root"] / "cache", **kw)


def test_save_then_load_gives_identical_logits(world, trained):  # noqa: F811
    batch = fixed_batch(world)
    with torch.no_grad():
        want = trained["model"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    model, tok, info = load_checkpoint(trained["dir"], mconfig(trained), store=world["store"])
    with torch.no_grad():
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())
    # the tokenizer round-trips music tokens with the ids training used
    assert tok.get_vocab() == world["tokenizer"].get_vocab()
    span = "<start_of_music><|playlist-1|><|audio1-2|><|audio2-3|><end_of_music>"
    assert tok.decode(tok.encode(span, add_special_tokens=False), skip_special_tokens=False) == span
    assert info.training == {"steps": 3} and info.lora_rank == 4 and info.tied


def test_finished_run_writes_its_summary(trained):
    summary = json.loads((trained["root"] / "run" / "run" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["wall_seconds"] > 0 and "CPU" in summary["hardware"]


def test_training_changed_the_model_so_identity_is_meaningful(world, trained):  # noqa: F811
    batch = fixed_batch(world)
    fresh = make_model(world["tokenizer"], world["n_old"]).eval()
    with torch.no_grad():
        a = fresh(input_ids=batch["input_ids"]).logits
        b = trained["model"](input_ids=batch["input_ids"]).logits
    assert (a - b).abs().max() > 1e-3


def test_checkpoint_is_small_and_names_its_store(world, trained):  # noqa: F811
    info = read_info(trained["dir"])
    assert info.store_fingerprint == store_fingerprint(world["store"])
    assert info.base_vocab_size == world["n_old"] and len(info.tokens) == len(world["store"].vocab.special_tokens())
    assert (trained["dir"] / "MODEL_CARD.md").read_text() == "# card\n"
    total = sum(p.stat().st_size for p in trained["dir"].iterdir())
    assert total < 200_000  # deltas only, never the base weights


def test_merged_model_is_cached(world, trained):  # noqa: F811
    load_checkpoint(trained["dir"], mconfig(trained))
    merged = [p for p in (trained["root"] / "cache").iterdir() if p.name.startswith("talkplay-merged-")]
    assert len(merged) == 1
    stamp = merged[0].stat().st_mtime_ns
    load_checkpoint(trained["dir"], mconfig(trained))
    assert merged[0].stat().st_mtime_ns == stamp


def test_store_with_other_meaning_is_refused(world, trained, tmp_path):  # noqa: F811
    store = world["store"]
    save_store(TokenStore(store.vocab, store.track_ids, store.codes), tmp_path / "other",
               centroids={k: v + 1.0 for k, v in store.centroids().items()})
    other = load_store(tmp_path / "other")
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_checkpoint(trained["dir"], mconfig(trained), store=other)
    # new tracks with the same quantizers keep the fingerprint (no retraining needed)
    grown = store.with_tracks(["new"], store.codes[:1])
    assert store_fingerprint(grown) == store_fingerprint(store)


def test_wrong_base_and_damaged_files_are_named(world, trained, tmp_path):  # noqa: F811
    other = tmp_path / "other"
    tiny_lm.make_llama(world["n_old"] + 7, hidden=32).save_pretrained(other)
    tiny_lm.make_tokenizer(["completely different words here"], vocab_size=290).save_pretrained(other)
    with pytest.raises(CheckpointError, match="tokens"):
        load_checkpoint(trained["dir"], ModelConfig(base_model=str(other), device="cpu", precision="fp32",
                                                    cache_dir=tmp_path / "c"))
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained["dir"], broken)
    (broken / ADAPTER_FILE).write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match=ADAPTER_FILE):
        load_checkpoint(broken, mconfig(trained))
    data = json.loads((broken / "checkpoint.json").read_text())
    data["format"] = "something-else"
    (broken / "checkpoint.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="checkpoint.json"):
        read_info(broken)


def test_plain_model_without_lora_is_refused(world, tmp_path):  # noqa: F811
    tok = world["tokenizer"]
    with pytest.raises(CheckpointError, match="LoRA"):
        export_checkpoint(make_model(tok, world["n_old"]), tok, world["store"], tmp_path / "m", base_model="x",
                          base_vocab_size=world["n_old"])


def test_other_base_weights_are_refused_naming_both_fingerprints(world, trained, tmp_path, monkeypatch):  # noqa: F811
    """Same architecture, same tokenizer, other weights: the signature tells them apart."""
    from talkplay.checkpoint import ALLOW_OTHER_BASE_ENV, signature_fingerprint

    info = read_info(trained["dir"])
    assert len(info.base_signature) > 20
    other = tmp_path / "other-weights"
    model = tiny_lm.make_llama(world["n_old"], hidden=32, tied=True, max_positions=512)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(1.1)
    model.save_pretrained(other)
    make_tokenizer().save_pretrained(other)
    cfg = ModelConfig(base_model=str(other), device="cpu", precision="fp32", cache_dir=tmp_path / "c")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(trained["dir"], cfg)
    assert signature_fingerprint(info.base_signature) in str(err.value) and ALLOW_OTHER_BASE_ENV in str(err.value)
    assert str(err.value).count("fingerprint") == 2
    monkeypatch.setenv(ALLOW_OTHER_BASE_ENV, "1")  # the explicit override loads it (with a warning)
    model, _, _ = load_checkpoint(trained["dir"], cfg)
    assert model is not None


def test_a_run_starts_where_a_checkpoint_ended(world, trained):  # noqa: F811
    """--init-from: the checkpoint's LoRA factors and music rows go into a fresh run's adapters (not merged, so its
    export keeps them): before any step the model computes the checkpoint's logits."""
    from talkplay.expansion import music_token_ids
    from train.training.sft import init_from_checkpoint, prepare_model

    tok = world["tokenizer"]
    model = prepare_model(make_model(tok, world["n_old"]), config(trained["root"] / "again"),
                          music_token_ids(tok, world["store"].vocab))
    done = init_from_checkpoint(model, tok, trained["dir"], world["n_old"])
    assert done["steps"] == 3 and done["layers"] > 0
    batch = fixed_batch(world)
    with torch.no_grad():
        want = trained["model"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(got, want, atol=1e-5)
    result = train(config(trained["root"] / "continued", max_steps=1, init_from=str(trained["dir"])),
                   make_model(tok, world["n_old"]), tok, world["datasets"], world["store"])
    assert result["steps"] == 1
    with pytest.raises(CheckpointError, match="same token store"):
        init_from_checkpoint(model, tok, trained["dir"], world["n_old"] + 1)
