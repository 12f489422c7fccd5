"""The committed demo bundle: loads through the validating loader and meets the catalog's promises.

Audio previews are not committed (they are cut by `bash setup.sh demo`), so this checks that every
track *names* a preview section with checksums, and that the pinned packages stay under 1.5 GB.
"""

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from talkplay.catalog import load_catalog
from talkplay.debsource import DebSource
from talkplay.licenses import LICENSES
from talkplay.previews import load_sources

DEMO = Path(__file__).resolve().parents[2] / "catalog" / "demo"


@pytest.fixture(scope="module")
def demo():
    return load_catalog(DEMO)


def test_size_and_spread(demo):
    packages = Counter(DebSource.parse(t.source).package for t in demo)
    assert len(demo) >= 250 and len(packages) >= 8, packages
    tags = Counter(tag for t in demo for tag in t.tags)
    for style in ("orchestral", "electronic", "chiptune", "folk", "metal"):
        assert tags[style] > 0, style


def test_every_track_is_credited_tagged_and_has_a_preview_section(demo):
    pins = load_sources(DEMO)
    for t in demo:
        assert t.license in LICENSES and t.attribution.strip() and t.tags and t.caption.endswith(".")
        assert t.preview_path == f"previews/{t.track_id}.mp3" and t.source_sha256
        assert 0 <= t.preview_start_s and 0 < t.preview_duration_s <= 30.0
        assert t.preview_start_s + t.preview_duration_s <= t.duration_s + 0.05
        src = DebSource.parse(t.source)
        assert pins[src.package].version == src.version


def test_download_budget_and_features(demo):
    pins = load_sources(DEMO)
    assert sum(p.size for p in pins.values()) < 1.5e9
    features = pq.read_table(DEMO / "features.parquet").to_pylist()
    assert [f["track_id"] for f in features] == [t.track_id for t in demo]
    assert all(len(f["musicnn_embedding"]) == 200 and len(f["msd_tags"]) == 50 for f in features)
    manifest = json.loads((DEMO / "manifest.json").read_text())
    assert manifest["tracks"] == len(demo) and len(manifest["features"]["msd_tags"]) == 50
    credits = (DEMO / "CREDITS.md").read_text()
    assert all(t.track_id in credits for t in demo)


def test_token_stores_cover_every_track_in_five_modalities(demo):
    from talkplay.token_store import default_variant, load_store, store_dir, variants

    assert {"kmeans", "rqvae", "rkmeans"} <= set(variants(DEMO))
    assert default_variant(DEMO) in variants(DEMO)
    for name in ("kmeans", "rqvae", "rkmeans"):
        store = load_store(store_dir(DEMO, name), demo)
        assert sorted(store.track_ids) == sorted(t.track_id for t in demo)
        names = [m.name for m in store.vocab.modalities]
        assert names[:5] == ["playlist", "semantic", "metadata", "lyrics", "audio"]
        # with the disambiguation position every full tuple names exactly one track
        assert len({tuple(r) for r in store.codes}) == len(store)
        assert store.centroids(), name


def test_demo_training_data_generalization_promises(demo):
    """The committed demo data: ≥3,000 train / ≥200 test conversations; test holds cold-start tracks and
    held-out phrasings, train and valid hold neither."""
    from train.data.conversation_schema import read_conversations
    from train.data.lexicon import HELD_TEMPLATE_IDS

    cold = set(json.loads((DEMO / "splits.json").read_text())["cold_start_track_ids"])
    splits = {s: read_conversations(DEMO / "data" / f"conversations.{s}.jsonl.gz", demo) for s in ("train", "valid", "test")}
    assert len(splits["train"]) >= 3000 and len(splits["test"]) >= 200
    for s in ("train", "valid"):
        for c in splits[s]:
            assert not set(c.tracks) & cold and c.synthetic
            for m in c.messages:
                if m.role == "user":
                    assert not m.held_out
                    assert not set((m.template or "").split("+")) & set(HELD_TEMPLATE_IDS)
    test = splits["test"]
    assert sum(1 for c in test if set(c.tracks) & cold) >= 100
    assert sum(1 for c in test for m in c.messages if m.role == "user" and m.held_out) >= 0.5 * sum(
        len(c.messages) // 3 for c in test)
