"""Token store: save/load round trip, inverted index, validation errors, cold-start append."""

import numpy as np
import pytest

from talkplay.catalog import CatalogError, Track, save_catalog
from talkplay.token_store import (
    TokenStore,
    default_variant,
    load_store,
    save_store,
    set_default_variant,
    store_dir,
)
from talkplay.tokens import ModalitySpec, MusicVocab

VOCAB = MusicVocab([ModalitySpec("playlist", 1, 4), ModalitySpec("audio", 2, 3)])


def make_store(n=6):
    rng = np.random.default_rng(0)
    codes = np.stack([rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 3, n)], axis=1)
    return TokenStore(VOCAB, [f"t{i}" for i in range(n)], codes, {"variant": "x"})


def test_round_trip_and_index(tmp_path):
    store = make_store()
    cent = {"playlist": np.ones((4, 2), np.float32)}
    save_store(store, tmp_path / "x", centroids=cent, quantizers={"audio.w": np.zeros(3, np.float32)})
    back = load_store(tmp_path / "x")
    assert back.track_ids == store.track_ids and np.array_equal(back.codes, store.codes)
    assert back.vocab == VOCAB and back.manifest["variant"] == "x" and back.manifest["tracks"] == 6
    assert np.array_equal(back.centroids()["playlist"], cent["playlist"])
    for p in range(len(VOCAB)):
        for code in range(VOCAB.size(p)):
            expected = np.flatnonzero(store.codes[:, p] == code)
            assert np.array_equal(back.postings(p, code), expected)
    t = back.track_ids[2]
    assert back.tracks_with(back.codes_of(t))[0] == t and back.tokens_of(t)[0].startswith("<|playlist-")


def test_cold_start_append_leaves_existing_rows(tmp_path):
    store = make_store()
    grown = store.with_tracks(["n1", "n2"], np.array([[1, 2, 0], [3, 0, 1]]))
    assert len(grown) == 8 and np.array_equal(grown.codes[:6], store.codes) and grown.codes_of("n2") == (3, 0, 1)
    with pytest.raises(ValueError, match="already in the token store"):
        grown.with_tracks(["n1"], np.array([[0, 0, 0]]))
    with pytest.raises(CatalogError, match="out of range"):
        store.with_tracks(["n3"], np.array([[9, 0, 0]]))


def test_load_errors_name_file_row_field(tmp_path):
    import pyarrow.parquet as pq

    save_store(make_store(), tmp_path / "x")
    table = pq.read_table(tmp_path / "x" / "codes.parquet").to_pylist()
    table[3]["audio2"] = 7
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table), tmp_path / "x" / "codes.parquet")
    with pytest.raises(CatalogError) as err:
        load_store(tmp_path / "x")
    assert (err.value.row, err.value.field) == (4, "audio2") and "codes.parquet" in str(err.value)


def test_stale_store_against_catalog(tmp_path):
    bundle = tmp_path / "b"
    catalog = save_catalog(bundle, [Track(track_id="t0", title="A", artist="B", license="MIT", attribution="c",
                                          source="user")])
    save_store(make_store(2), store_dir(bundle, "x"))
    with pytest.raises(CatalogError, match="'t1' is not in catalog"):
        load_store(store_dir(bundle, "x"), catalog)


def test_default_pointer(tmp_path):
    save_store(make_store(), store_dir(tmp_path, "a"))
    assert default_variant(tmp_path) == "a"
    save_store(make_store(), store_dir(tmp_path, "b"))
    set_default_variant(tmp_path, "b", why="test")
    assert default_variant(tmp_path) == "b"
