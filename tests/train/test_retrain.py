"""Retrain route (``train.catalog.byo retrain`` → ``train.training.retrain``) end to end on a 24-track catalog with the tiny test model:
synthetic playlists → splits → tokens → data → training (interrupted, then resumed) → package → evaluation → the
app's start check and a served turn; a rerun skips every finished stage. Plus the refusals (catalog too small,
empty splits).

Hermetic: the tokenizer fixture's catalog (tags, captions, musicnn-like features), a tiny deterministic text
embedder, a tiny random Llama saved as the "base model"; every stage runs its real module.
"""

import csv
import json

import pyarrow.parquet as pq
import pytest

from talkplay.catalog import PLAYLISTS_FILE, Track, load_catalog, save_catalog
from tests import tiny_lm
from tests.train.test_sft import SENTENCES
from tests.train.test_tokenize import CONFIG, text_embedder, write_fixture
from train.training.retrain import Context, Interrupted, Recipe, RetrainError, RetrainOptions, _splits, retrain

RECIPE = Recipe(max_steps=4, batch_size=4, warmup_steps=1, eval_every=2, eval_examples=4)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny Llama and its tokenizer saved as a base model directory."""
    path = tmp_path_factory.mktemp("base")
    tok = tiny_lm.make_tokenizer(SENTENCES)
    tiny_lm.make_llama(len(tok), hidden=32, tied=True, max_positions=512).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _options(bundle, run, base, **kw):
    return RetrainOptions(bundle, run, RECIPE, str(base), threads=1, eval_conversations=3,
                          systems=("random", "bm25", "talkplay"), precision="fp32", **kw)


def _retrain(options, tmp_path, lines):
    return retrain(options, "python -m train.catalog.byo retrain …", lines.append, tmp_path / "cache", text_embedder, CONFIG)


def test_retrain_end_to_end_with_resume(base, tmp_path, monkeypatch):
    from talkplay.__main__ import main as talkplay_main
    from talkplay.checkpoint import read_info, store_fingerprint
    from talkplay.conversation import ConversationState
    from talkplay.model import ModelConfig
    from talkplay.preflight import check_bundle
    from talkplay.recommender import GenerationConfig, Recommender
    from talkplay.token_store import default_variant, load_default_store
    from talkplay.bundle import read_playlists

    monkeypatch.setenv("TALKPLAY_CACHE", str(tmp_path / "talkplay-cache"))  # the merged model is cached there
    bundle, run = tmp_path / "catalogs" / "mine", tmp_path / "run"
    bundle.mkdir(parents=True)
    write_fixture(bundle)
    (bundle / PLAYLISTS_FILE).unlink()  # an imported catalog without playlists: the route must make them

    lines: list[str] = []
    with pytest.raises(Interrupted, match="stopped at step 2 of 4"):  # an interrupted training session
        _retrain(_options(bundle, run, base, stop_after=2), tmp_path, lines)
    playlists = read_playlists(bundle)
    assert len(playlists) == 420 and all(p.synthetic and p.origin.startswith("synthetic:") for p in playlists)
    splits = json.loads((bundle / "splits.json").read_text())
    assert all(splits["counts"][s]["playlists"] > 0 for s in ("train", "valid", "test"))
    assert default_variant(bundle) == "rkmeans_text"
    store = load_default_store(bundle)
    assert [m.name for m in store.vocab.modalities][:3] == ["semantic", "metadata", "audio"]  # text-first order
    assert set(store.track_ids) == {t.track_id for t in load_catalog(bundle)}
    data = json.loads((bundle / "data" / "manifest.json").read_text())
    assert all(data["counts"][s]["conversations"] > 0 for s in ("train", "valid", "test"))
    assert json.loads((run / "last" / "state.json").read_text())["step"] == 2
    assert not (bundle / "model").exists()  # nothing packaged from a half-trained run

    lines.clear()
    records = _retrain(_options(bundle, run, base), tmp_path, lines)
    text = "\n".join(lines)
    for stage in ("tokens", "data"):
        assert f"[{stage}] done already" in text
    assert "resuming from step 2" in text
    with (run / "log.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]  # resumed, not restarted
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
    info = read_info(bundle)
    assert info.store_variant == "rkmeans_text" and info.training["steps"] == 4
    assert info.training["row_init"] == "text" and info.training["request_fraction"] == 0.7  # the demo recipe
    assert info.store_fingerprint == store_fingerprint(load_default_store(bundle))
    evaluation = json.loads((run / "reports" / "eval_mine.json").read_text())
    assert evaluation["turns"] > 0 and set(evaluation["systems"]) == {"random", "bm25", "talkplay"}
    assert (run / "reports" / "data_mine.md").exists()
    assert all(records[s]["done"] for s in ("tokens", "data", "train", "package", "evaluate"))
    assert "passes the app's start check" in lines[-1]

    # A third run has nothing left to do.
    stamp = (bundle / "model" / "checkpoint.json").stat().st_mtime_ns
    lines.clear()
    _retrain(_options(bundle, run, base), tmp_path, lines)
    text = "\n".join(lines)
    assert all(f"[{s}] done already" in text for s in ("playlists", "tokens", "data", "train", "package", "evaluate"))
    assert "splits.json matches the playlists: nothing to redo" in text
    assert (bundle / "model" / "checkpoint.json").stat().st_mtime_ns == stamp

    check_bundle(bundle)
    assert talkplay_main(["validate", str(bundle)]) == 0
    catalog = load_catalog(bundle)
    rec = Recommender.load(bundle, ModelConfig(base_model=info.base_model, device="cpu", precision="fp32"),
                           GenerationConfig(max_reply_tokens=4, seed=0), text_embedder=lambda: text_embedder)
    turn = rec.chat(ConversationState(), "something ambient")
    assert turn.track_id in catalog


def test_retrain_refuses_a_catalog_too_small(tmp_path):
    bundle = tmp_path / "tiny"
    save_catalog(bundle, [Track(f"t{i}", f"T{i}", "A", "CC0-1.0", "c", "user") for i in range(5)])
    with pytest.raises(RetrainError, match=r"stage 'playlists'.*5 tracks.*at least 10.*train.catalog.byo prepare"):
        retrain(RetrainOptions(bundle, tmp_path / "run"), "cmd", lambda s: None)
    assert not (tmp_path / "run").exists() and not (bundle / PLAYLISTS_FILE).exists()


def test_empty_splits_warn_or_stop_with_the_fix(tmp_path):
    bundle = tmp_path / "mine"
    bundle.mkdir()
    write_fixture(bundle)
    rows = [r for r in pq.read_table(bundle / PLAYLISTS_FILE).to_pylist() if r["playlist_id"] in ("0", "1", "2")]
    for r in rows:
        r["split"] = None  # three imported playlists, not split yet
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows), bundle / PLAYLISTS_FILE)
    lines: list[str] = []
    ctx = Context(RetrainOptions(bundle, tmp_path / "run"), "cmd", lines.append, tmp_path / "cache")
    said = _splits(ctx)
    assert "'train': 3" in said
    text = "\n".join(lines)
    for split in ("valid", "test"):
        assert f"warning: the {split} split is empty" in text and f"--{split} 0.15" in text
    assert "train.catalog.import_catalog playlists" in text
