"""Bring your own catalog, no training (``train.catalog.byo prepare``): a CSV + generated audio → a bundle the app serves with
a model trained for another catalog; all bad rows reported at once; a failed run leaves nothing behind.

The "shipped" bundle is the tokenizer fixture (24 tracks, real quantizers) with a tiny untrained Llama checkpoint
for its token store; the audio analysis (musicnn port + descriptors) runs for real on generated WAVs.
"""

import pytest

from talkplay.catalog import CatalogError, load_catalog
from talkplay.checkpoint import export_checkpoint, store_fingerprint
from talkplay.conversation import ConversationState
from talkplay.expansion import expand_model, expand_tokenizer, music_token_ids
from talkplay.model import ModelConfig
from talkplay.recommender import GenerationConfig, Recommender
from talkplay.render import RenderConfig
from talkplay.token_store import load_default_store, store_dir
from tests import tiny_lm
from tests.train.test_sft import SENTENCES
from tests.train.test_tokenize import CONFIG, _wav, text_embedder, write_fixture
from train.tokens.build import tokenize_catalog


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A bundle as the demo is shipped: catalog, token store with quantizers, and a checkpoint trained for it."""
    root = tmp_path_factory.mktemp("shipped")
    bundle = root / "bundle"
    bundle.mkdir()
    write_fixture(bundle)
    tokenize_catalog(bundle, ["kmeans"], root / "cache", CONFIG, {"codebook_size": 4}, default="kmeans",
                     text_embedder=text_embedder, log=lambda *_: None)
    store = load_default_store(bundle)
    tok = tiny_lm.make_tokenizer(SENTENCES)
    n_old = len(tok)
    base = root / "base"
    tiny_lm.make_llama(n_old, hidden=32, tied=True, max_positions=512).save_pretrained(base)
    tok.save_pretrained(base)
    expand_tokenizer(tok, store.vocab.special_tokens())
    model = tiny_lm.make_llama(n_old, hidden=32, tied=True, max_positions=512)
    expand_model(model, n_old, music_token_ids(tok, store.vocab), seed=0)
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    export_checkpoint(model, tok, store, bundle / "model", base_model=str(base), base_vocab_size=n_old,
                      training={"steps": 0}, card="# tiny\n")
    return {"bundle": bundle, "base": base, "root": root, "store": store}


def _table(tmp_path, rows: str):
    for i, f in enumerate((220, 330)):
        _wav(tmp_path / f"a{i}.wav", f)
    path = tmp_path / "mine.csv"
    path.write_text("track_id,title,artist,license,tags,audio_path\n" + rows)
    return path


def test_prepare_serves_a_new_catalog_with_the_shipped_model(shipped, tmp_path, capsys):
    from talkplay.__main__ import main as talkplay_main
    from talkplay.checkpoint import load_checkpoint
    from train.catalog.byo import prepare

    table = _table(tmp_path, "m-0,Dawn Chorus,Neo,CC0-1.0,ambient,a0.wav\n"
                             "m-1,Pixel Run,Neo,CC-BY-4.0,chiptune,a1.wav\n"
                             "m-2,Words Only,Poet,CC0-1.0,spoken,\n")
    out = tmp_path / "catalogs" / "mine"
    result = prepare(table, out, model_from=shipped["bundle"], cache_dir=tmp_path / "cache",
                     text_embedder=text_embedder, progress=False, log=lambda *_: None)
    assert (result["tracks"], result["with_audio"]) == (3, 2)
    catalog = load_catalog(out)
    assert [t.track_id for t in catalog] == ["m-0", "m-1", "m-2"]
    assert catalog.preview_file(catalog["m-0"]) is not None and catalog.preview_file(catalog["m-2"]) is None
    assert len(catalog["m-0"].tags) > 1 and catalog["m-0"].caption  # completed from the analysed audio
    credits = (out / "CREDITS.md").read_text()
    assert all(t in credits for t in ("Dawn Chorus", "Pixel Run", "Words Only", "Creative Commons"))
    store = load_default_store(out, catalog)
    assert store_fingerprint(store) == store_fingerprint(shipped["store"])  # the checkpoint's vocabulary, unchanged
    for name in ("quantizers.safetensors", "centroids.safetensors"):
        assert (store_dir(out, "kmeans") / name).read_bytes() == (store_dir(shipped["bundle"], "kmeans") / name).read_bytes()
    audio = store.vocab.positions_of("audio")
    assert (store.codes[store.row("m-2"), audio] == 0).all() and (store.codes[store.row("m-0"), audio] > 0).any()
    assert len({tuple(c) for c in store.codes}) == 3  # every track is nameable on its own
    assert sorted(p.name for p in out.parent.iterdir()) == ["mine"]  # no staging folder left

    assert talkplay_main(["validate", str(out)]) == 0  # the app's own start check, catalog as a positional argument
    assert "3 valid tracks" in capsys.readouterr().out

    config = ModelConfig(base_model=str(shipped["base"]), device="cpu", precision="fp32",
                         cache_dir=shipped["root"] / "models")
    model, tok, _ = load_checkpoint(out, config, store=store)
    rec = Recommender(model, tok, catalog, store, GenerationConfig(max_reply_tokens=4, seed=0),
                      RenderConfig(max_tokens=512))
    state = ConversationState()
    played = [rec.chat(state, "something calm").track_id for _ in range(3)]
    assert sorted(played) == ["m-0", "m-1", "m-2"]  # the new catalog's tracks, each once


def test_prepare_reports_every_bad_row_and_leaves_nothing(shipped, tmp_path):
    from train.catalog.byo import prepare

    table = _table(tmp_path, "m-0,Dawn,Neo,CC0-1.0,ambient,a0.wav\n"
                             "m-1,,Neo,CC0-1.0,chiptune,a1.wav\n"
                             "m-2,Gone,Neo,CC0-1.0,ambient,missing.wav\n"
                             "m-3,Odd,Neo,not a license,ambient,\n")
    out = tmp_path / "catalogs" / "mine"
    with pytest.raises(CatalogError) as err:
        prepare(table, out, model_from=shipped["bundle"], cache_dir=tmp_path / "cache",
                text_embedder=text_embedder, progress=False, log=lambda *_: None)
    message = str(err.value)
    assert "3 rows have errors" in message
    for where in ("row 2, field 'title'", "row 3, field 'audio_path'", "row 4, field 'license'"):
        assert where in message
    assert not (tmp_path / "catalogs").exists()  # nothing was made

    (tmp_path / "broken.wav").write_bytes(b"RIFF not really audio")
    table.write_text("track_id,title,artist,license,audio_path\n"
                     "m-0,Dawn,Neo,CC0-1.0,a0.wav\nm-1,Broken,Neo,CC0-1.0,broken.wav\n")
    with pytest.raises(CatalogError, match="row 2, field 'audio_path'.*broken.wav"):
        prepare(table, out, model_from=shipped["bundle"], cache_dir=tmp_path / "cache",
                text_embedder=text_embedder, progress=False, log=lambda *_: None)
    assert not (tmp_path / "catalogs").exists()  # neither the bundle, nor its staging folder, nor the parent made for it


def test_prepare_refuses_an_existing_bundle(shipped, tmp_path):
    from train.catalog.byo import prepare

    out = tmp_path / "mine"
    out.mkdir()
    (out / "tracks.parquet").write_text("mine, not yours")
    with pytest.raises(CatalogError, match="already exists"):
        prepare(_table(tmp_path, "m-0,Dawn,Neo,CC0-1.0,ambient,a0.wav\n"), out, model_from=shipped["bundle"],
                text_embedder=text_embedder, progress=False, log=lambda *_: None)
    assert (out / "tracks.parquet").read_text() == "mine, not yours"


def test_missing_store_or_model_names_the_command(tmp_path):
    from talkplay.catalog import Track, save_catalog
    from talkplay.preflight import check_bundle

    save_catalog(tmp_path, [Track("a", "A", "B", "MIT", "c", "user")])
    with pytest.raises(CatalogError, match="train.catalog.byo prepare"):
        check_bundle(tmp_path)


def test_a_described_tracks_sentence_vector_reads_what_the_music_is_not_its_name():
    """A new catalog's names ("Track 10 … The Vampire Strikes Back") must not drown the words of its tags in the text
    match's sentence vectors (the cold-start check: a request made of a track's own tags ranks it in the top 10)."""
    from talkplay.catalog import Track
    from talkplay.textmatch import bm25_document, dense_document

    described = Track("d-10", "Track 10", "Alcachofa Soft", "CC0-1.0", "c", "user", album="The Vampire Strikes Back",
                      tags=("piano", "rock", "slow"), caption="A slow rock track with piano.")
    assert dense_document(described) == "piano, rock, slow. A slow rock track with piano."
    assert "Vampire" in bm25_document(described)  # names are still matched word for word
    bare = Track("b", "Heroes Rite", "Wansti", "CC0-1.0", "c", "user", album="Battle")
    assert dense_document(bare) == "Heroes Rite by Wansti from Battle"  # a card with nothing else reads as its name
