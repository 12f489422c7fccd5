"""Tokenizer end to end on a fixture catalog: stores for every variant, round trips, determinism, cold start.

Uses a tiny deterministic text embedder; the quantizers, item2vec, the store format and (for cold start)
the real audio analysis (musicnn port + descriptors) run for real.
"""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from talkplay.catalog import FEATURES_FILE, Track, load_catalog, save_catalog
from talkplay.token_store import load_store, store_dir
from train.tokens.embeddings import DESCRIPTOR_FIELDS, EmbeddingConfig
from train.tokens.build import tokenize_catalog

STYLES = ("orchestral", "chiptune", "ambient")


def text_embedder(texts):
    out = []
    for t in texts:
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
        v = rng.normal(size=12)
        # a shared direction per style word makes semantic codes meaningful
        for i, style in enumerate(STYLES):
            if style in t:
                v[i] += 6.0
        out.append(v / np.linalg.norm(v))
    return np.array(out, np.float32)


text_embedder.id = "fake-12"


def write_fixture(bundle, n_per_style=8, seed=0):
    rng = np.random.default_rng(seed)
    tracks, feats = [], []
    centers = rng.normal(size=(len(STYLES), 200))
    for s, style in enumerate(STYLES):
        for i in range(n_per_style):
            tid = f"{style}-{i}"
            tracks.append(Track(track_id=tid, title=f"{style.title()} {i}", artist=f"Artist {i % 3}", license="CC0-1.0",
                                attribution="fixture", source="user", tags=(style,), caption=f"A {style} piece."))
            emb = np.maximum(centers[s] + 0.3 * rng.normal(size=200), 0)
            feats.append({"track_id": tid, "musicnn_embedding": emb.tolist(),
                          **{f: float(rng.normal()) for f in DESCRIPTOR_FIELDS}})
    save_catalog(bundle, tracks)
    pq.write_table(pa.Table.from_pylist(feats), bundle / FEATURES_FILE)
    rows = []
    for p in range(45):
        style = STYLES[p % 3]
        members = rng.choice(n_per_style, size=5, replace=False)
        split = "train" if p < 33 else "valid" if p < 39 else "test"
        for pos, m in enumerate(members):
            rows.append({"playlist_id": str(p), "name": style, "position": pos, "track_id": f"{style}-{m}",
                         "synthetic": True, "origin": "fixture", "split": split})
    pq.write_table(pa.Table.from_pylist(rows), bundle / "playlists.parquet")
    return tracks


CONFIG = EmbeddingConfig(text_model="fake", playlist_dim=16, item2vec_epochs=15)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    bundle = tmp_path_factory.mktemp("bundle")
    write_fixture(bundle)
    stores = tokenize_catalog(bundle, ["kmeans", "rkmeans", "rqvae"], bundle / ".cache", CONFIG,
                              {"codebook_size": 4}, default="kmeans", text_embedder=text_embedder, log=lambda *_: None)
    return bundle, stores


def test_every_track_has_a_valid_tuple_in_every_variant(built):
    bundle, stores = built
    catalog = load_catalog(bundle)
    for name in ("kmeans", "rkmeans", "rqvae"):
        store = load_store(store_dir(bundle, name), catalog)
        assert sorted(store.track_ids) == sorted(t.track_id for t in catalog)
        expected_positions = 5 if name == "kmeans" else 10
        assert len(store.vocab) == expected_positions
        assert [m.name for m in store.vocab.modalities] == ["playlist", "semantic", "metadata", "lyrics", "audio"]
        lyrics = store.vocab.positions_of("lyrics")
        assert (store.codes[:, lyrics] == 0).all()  # no lyrics → the reserved code at every level
        for t in store.track_ids:  # track → tokens → codes → track
            tokens = store.tokens_of(t)
            assert t in store.tracks_with(store.vocab.codes_for(tokens))
        assert store.centroids(), "centroids saved for the self-similarity loss"


def test_semantic_codes_follow_content(built):
    bundle, _ = built
    store = load_store(store_dir(bundle, "kmeans"))
    sem = store.vocab.positions_of("semantic")[0]
    for style in STYLES:
        codes = {store.codes_of(f"{style}-{i}")[sem] for i in range(8)}
        assert len(codes) == 1, (style, codes)


def test_deterministic_with_a_seed(built, tmp_path):
    bundle, stores = built
    other = tmp_path / "b2"
    write_fixture(other)
    again = tokenize_catalog(other, ["kmeans", "rqvae"], other / ".cache", CONFIG, {"codebook_size": 4},
                             text_embedder=text_embedder, log=lambda *_: None)
    for name in ("kmeans", "rqvae"):
        assert np.array_equal(again[name].store.codes, stores[name].store.codes), name


def _wav(path, freq, seconds=35.0, sr=22050):
    t = np.arange(int(seconds * sr)) / sr
    y = 0.2 * np.sin(2 * np.pi * freq * t) * (1 + (np.sin(2 * np.pi * 2 * t) > 0))
    sf.write(path, y.astype(np.float32), sr)


def test_cold_start_adds_three_tracks_without_refitting(built, tmp_path):
    from train.catalog.cold_start import add_tracks

    bundle, _ = built
    before = {v: {f: (store_dir(bundle, v) / f).read_bytes() for f in ("centroids.safetensors", "quantizers.safetensors")}
              for v in ("kmeans", "rkmeans", "rqvae")}
    old = {v: load_store(store_dir(bundle, v)) for v in before}
    for i, f in enumerate((220, 330, 440)):
        _wav(tmp_path / f"n{i}.wav", f)
    (tmp_path / "new.csv").write_text("track_id,title,artist,license,tags,audio_path\n"
                                      "new-0,Dawn,Neo,CC0-1.0,ambient,n0.wav\n"
                                      "new-1,Pixel Run,Neo,CC0-1.0,chiptune,n1.wav\n"
                                      "new-2,March,Neo,CC0-1.0,orchestral,n2.wav\n")
    result = add_tracks(bundle, tmp_path / "new.csv", cache_dir=tmp_path / "cache", text_embedder=text_embedder,
                        log=lambda *_: None)
    assert result["added"] == ["new-0", "new-1", "new-2"]
    catalog = load_catalog(bundle)
    assert all(t in catalog for t in result["added"]) and catalog.preview_file(catalog["new-1"]) is not None
    for v in before:
        store = load_store(store_dir(bundle, v), catalog)
        assert all(t in store for t in result["added"])
        assert np.array_equal(store.codes[: len(old[v])], old[v].codes)  # existing tracks keep their codes
        for f, data in before[v].items():
            assert (store_dir(bundle, v) / f).read_bytes() == data, f"{v}/{f} was rewritten"
        for t in result["added"]:
            store.vocab.tokens_for(store.codes_of(t))  # valid tokens
    features = pq.read_table(bundle / FEATURES_FILE).to_pylist()
    assert [r["track_id"] for r in features][-3:] == result["added"]


def test_reorder_keeps_codes_and_meaning_in_the_new_order(built):
    from talkplay.checkpoint import store_fingerprint
    from train.tokens.build import TEXT_FIRST_ORDER, reorder_store

    bundle = built[0]
    src = load_store(store_dir(bundle, "rkmeans"))
    new = reorder_store(bundle, "rkmeans", "rkmeans_text", TEXT_FIRST_ORDER)
    assert [m.name for m in new.vocab.modalities][:5] == list(TEXT_FIRST_ORDER)
    names = [m.name for m in src.vocab.modalities]
    assert [m.name for m in new.vocab.modalities][len(TEXT_FIRST_ORDER):] == names[len(TEXT_FIRST_ORDER):]  # dis last
    for t in src.track_ids:  # every track keeps its code per position label
        old = dict(zip([p.label for p in src.vocab.positions], src.codes_of(t)))
        assert dict(zip([p.label for p in new.vocab.positions], new.codes_of(t))) == old
    assert new.centroids().keys() == src.centroids().keys()
    assert store_fingerprint(new) != store_fingerprint(src)  # a checkpoint of one order refuses the other
    assert new.manifest["reordered_from"] == "rkmeans"
    with pytest.raises(ValueError, match="permutation"):
        reorder_store(bundle, "rkmeans", "bad", ("semantic", "audio"))


def test_code_texts_describe_each_code_by_its_tracks(built):
    from train.tokens.token_init import NO_LYRICS_TEXT, code_texts

    bundle = built[0]
    catalog, store = load_catalog(bundle), load_store(store_dir(bundle, "rkmeans"))
    texts, groups = code_texts(catalog, store)
    assert all(not t.startswith("<|dis") for g in groups for t in g)  # the disambiguation code means nothing
    p = [q.label for q in store.vocab.positions].index("semantic1")
    for code in range(store.vocab.size(p)):
        token = store.vocab.token(store.vocab.positions[p], code)
        rows = store.postings(p, code)
        assert len(texts[token]) == len(rows)
        assert all(catalog[store.track_ids[r]].tags[0] in text for r, text in zip(rows, texts[token]))
    lyrics = [t for t in texts if t.startswith("<|lyrics1-0")]
    assert lyrics and texts[lyrics[0]][0] in (NO_LYRICS_TEXT,) + tuple(t.lyrics for t in catalog if t.lyrics)
