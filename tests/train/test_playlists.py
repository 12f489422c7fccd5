"""Synthetic playlists and splits: determinism, playlist invariants, coherence, popularity skew,
cold-start split invariants, real (imported) playlists, and reader errors naming file/row/field."""

import hashlib
import json
import shutil
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from talkplay.catalog import CatalogError, Track, load_catalog, save_catalog
from train.catalog.import_catalog import import_playlists
from talkplay.bundle import Playlist, read_playlists, write_playlists
from train.data.playlists import SimConfig, build_track_space, main, sim_origin, synthesize_bundle
from train.data.splits import SplitConfig, choose_cold_tracks, split_bundle

PACKAGES = {  # package → (style tags, typical energy, typical brightness, tempo)
    "pkga": (("electronic", "synth", "sci-fi"), 0.85, 0.6, 128.0),
    "pkgb": (("orchestral", "cinematic", "fantasy"), 0.7, 0.4, 96.0),
    "pkgc": (("folk", "acoustic", "medieval"), 0.5, 0.5, 84.0),
    "pkgd": (("chiptune", "pop", "playful"), 0.8, 0.8, 140.0),
}
SIM = SimConfig(n_playlists=300, min_length=4, max_length=12, median_length=7.0, neighbours=10)
SPLIT = SplitConfig(cold_fraction=0.1)


def make_bundle(root, n_per_package=10, features=True):
    rng = np.random.default_rng(7)
    tracks, rows = [], []
    for p, (tags, energy, bright, tempo) in PACKAGES.items():
        centre = rng.normal(size=16)
        for k in range(n_per_package):
            tid = f"{p}-{k:02d}"
            mood = ["dark"] if k % 3 == 0 else ["bright"] if k % 3 == 1 else []
            tracks.append(Track(
                track_id=tid, title=f"Song {k}", artist=f"Artist {p}", license="CC0-1.0",
                attribution=f"Song {k} by Artist {p}", source=f"deb://{p}/1.0/usr/share/{tid}.ogg",
                album=f"Album {p.upper()}", tags=tuple(tags[: 2 + k % 2]) + tuple(mood),
                source_sha256=hashlib.sha256(tid.encode()).hexdigest(),
            ))
            rows.append({
                "track_id": tid, "package": p, "curated_tags": list(tags), "auto_tags": [], "descriptor_tags": mood,
                "tempo_bpm": float(tempo + rng.normal(0, 6)), "energy": float(np.clip(energy + rng.normal(0, 0.05), 0, 1)),
                "brightness": float(np.clip(bright + rng.normal(0, 0.1), 0, 1)),
                "musicnn_embedding": [float(x) for x in centre + 0.5 * rng.normal(size=16)],
            })
    save_catalog(root, tracks, name="fixture")
    if features:
        pq.write_table(pa.Table.from_pylist(rows), root / "features.parquet")
    return root


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    root = make_bundle(tmp_path_factory.mktemp("bundle"))
    stats = synthesize_bundle(root, SIM, SPLIT)
    return root, stats, read_playlists(root)


def test_same_seed_same_bytes_other_seed_differs(synthesized, tmp_path):
    root, _, _ = synthesized
    again = make_bundle(tmp_path / "again")
    synthesize_bundle(again, SIM, SPLIT)
    for name in ("playlists.parquet", "splits.json"):
        assert (root / name).read_bytes() == (again / name).read_bytes()
    other = make_bundle(tmp_path / "other")
    synthesize_bundle(other, SimConfig(**{**vars(SIM), "seed": 1}), SPLIT)
    assert read_playlists(other) != read_playlists(root)
    assert all(p.origin == sim_origin(1) for p in read_playlists(other))


def test_playlists_are_well_formed_and_marked_synthetic(synthesized):
    root, stats, playlists = synthesized
    assert len(playlists) == SIM.n_playlists == stats["playlists"]
    assert len({p.playlist_id for p in playlists}) == len(playlists)
    for p in playlists:
        assert len(set(p.track_ids)) == len(p.track_ids), p  # no repeats
        assert SIM.min_length <= len(p.track_ids) <= SIM.max_length
        assert p.name.strip() and p.split in ("train", "valid", "test")
    raw = pq.read_table(root / "playlists.parquet")
    assert raw.schema.names == ["playlist_id", "name", "position", "track_id", "synthetic", "origin", "split"]
    assert raw.schema.field("position").type == pa.int32()
    assert all(raw.column("synthetic").to_pylist())
    assert set(raw.column("origin").to_pylist()) == {"synthetic:listener-sim v1 seed=0"}
    assert stats["track_appearances"]["min"] >= 3  # every track is in several playlists
    assert len({p.name for p in playlists}) > 30  # names vary


def test_consecutive_tracks_are_more_similar_than_random_pairs(synthesized):
    _, stats, _ = synthesized
    c = stats["coherence"]
    assert c["consecutive"] > c["random_entries"] + 0.1
    assert c["consecutive"] > c["random_tracks"] + 0.1


def test_popularity_skew(tmp_path):
    skewed = synthesize_bundle(make_bundle(tmp_path / "a"), SIM, SPLIT)
    flat = synthesize_bundle(make_bundle(tmp_path / "b"), SimConfig(**{**vars(SIM), "zipf_exponent": 0.0}), SPLIT)
    share = skewed["popularity"]["top10pct_tracks_share_of_appearances"]
    assert share > 0.15  # uniform would be 0.10
    assert share > flat["popularity"]["top10pct_tracks_share_of_appearances"]


def test_split_invariants(synthesized):
    root, _, playlists = synthesized
    report = json.loads((root / "splits.json").read_text())
    cold = set(report["cold_start_track_ids"])
    assert len(cold) == 4 and report["cold_start_per_group"] == {p: 1 for p in PACKAGES}  # stratified
    by_split = {s: [p for p in playlists if p.split == s] for s in ("train", "valid", "test")}
    for s, ps in by_split.items():
        assert ps, f"{s} is empty"
        assert abs(len(ps) / len(playlists) - SPLIT.fractions[s]) < 0.05
        if s != "test":
            assert not cold & {t for p in ps for t in p.track_ids}
    assert all(p.split == "test" for p in playlists if cold & set(p.track_ids))
    assert cold <= {t for p in by_split["test"] for t in p.track_ids}  # each cold track is tested
    train_tracks = {t for p in by_split["train"] for t in p.track_ids}
    assert train_tracks == {t.track_id for t in load_catalog(root)} - cold
    assert report["train_uncovered_track_ids"] == [] and report["synthetic"] is True
    assert report["counts"]["test"]["playlists"] == len(by_split["test"]) and report["seed"] == 0


def test_runs_without_features(tmp_path):
    root = make_bundle(tmp_path / "plain", features=False)
    space = build_track_space(load_catalog(root))
    assert space.embedding is None and np.isnan(space.tempo).all()
    stats = synthesize_bundle(root, SimConfig(**{**vars(SIM), "n_playlists": 60}), SPLIT)
    assert stats["playlists"] == 60 and stats["coherence"]["consecutive"] > stats["coherence"]["random_tracks"]


def test_real_imported_playlists_are_readable_and_splittable(tmp_path):
    root = make_bundle(tmp_path / "real")
    ids = [t.track_id for t in load_catalog(root)]
    rng = np.random.default_rng(3)
    weights = 1.0 / np.arange(1, len(ids) + 1)  # real plays are skewed: rare tracks can be cold within budget
    mpd = {"playlists": [{"pid": n, "name": f"mix {n}", "tracks": [
        {"track_uri": ids[int(i)]} for i in rng.choice(len(ids), 5, replace=False, p=weights / weights.sum())]}
        for n in range(200)]}
    (tmp_path / "mpd.json").write_text(json.dumps(mpd))
    import_playlists([tmp_path / "mpd.json"], root)
    before = read_playlists(root)  # the importer's file (no split column)
    assert len(before) == 200 and all(p.split is None and not p.synthetic and p.origin == "mpd.json" for p in before)
    report = split_bundle(root, SplitConfig(cold_fraction=0.05, seed=2))
    after = read_playlists(root)
    assert [p.track_ids for p in after] == [p.track_ids for p in before]
    cold = set(report["cold_start_track_ids"])
    assert 0 < len(cold) <= report["cold_start_target"] == 2 and report["synthetic"] is False
    assert all(p.split == "test" for p in after if cold & set(p.track_ids))
    assert sum(p.split == "test" for p in after) <= round(0.1 * 200)  # cold tracks chosen within the test budget
    first = (root / "playlists.parquet").read_bytes()
    split_bundle(root, SplitConfig(cold_fraction=0.05, seed=2))
    assert (root / "playlists.parquet").read_bytes() == first


def test_cold_choice_without_playlists_is_stratified_and_seeded(tmp_path):
    tracks = load_catalog(make_bundle(tmp_path / "c")).tracks
    a = choose_cold_tracks(tracks, SplitConfig(cold_fraction=0.2, seed=5))
    assert a == choose_cold_tracks(tracks, SplitConfig(cold_fraction=0.2, seed=5))
    assert a != choose_cold_tracks(tracks, SplitConfig(cold_fraction=0.2, seed=6))
    assert Counter(t.split("-")[0] for t in a) == {p: 2 for p in PACKAGES}
    assert choose_cold_tracks(tracks, SplitConfig(cold_fraction=0.0)) == ()


def _write_rows(root, rows, drop=()):
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("playlist_id", pa.string()), ("name", pa.string()), ("position", pa.int32()), ("track_id", pa.string()),
        ("synthetic", pa.bool_()), ("origin", pa.string()), ("split", pa.string())]))
    pq.write_table(table.drop_columns(list(drop)), root / "playlists.parquet")


def _row(pid="p1", pos=0, tid="pkga-00", split="train", name="n"):
    return {"playlist_id": pid, "name": name, "position": pos, "track_id": tid, "synthetic": True, "origin": "o",
            "split": split}


@pytest.mark.parametrize("rows, drop, row, field, words", [
    ([_row(), _row(pos=1, tid="nope")], (), 2, "track_id", "unknown track id 'nope'"),
    ([_row()], ("track_id",), None, "track_id", "missing required column"),
    ([_row(), _row(pos=1, tid="pkga-01", split="test")], (), 2, "split", "differs from"),
    ([_row(split="holdout")], (), 1, "split", "not one of"),
    ([_row(), _row(tid="pkga-01")], (), 2, "position", "duplicate position"),
    ([_row(), _row(pid=None)], (), 2, "playlist_id", "empty"),
    ([_row(), _row(pos=1, tid="pkga-01", split=None)], (), 2, "split", "not one of"),
])
def test_reader_errors_name_file_row_field(tmp_path, rows, drop, row, field, words):
    root = make_bundle(tmp_path / "bad", n_per_package=2, features=False)
    _write_rows(root, rows, drop)
    with pytest.raises(CatalogError) as err:
        read_playlists(root)
    assert (err.value.row, err.value.field) == (row, field)
    assert "playlists.parquet" in str(err.value) and words in str(err.value)


def test_write_read_round_trip_and_missing_file(tmp_path):
    root = make_bundle(tmp_path / "rt", n_per_package=2, features=False)
    with pytest.raises(CatalogError, match="file not found"):
        read_playlists(root)
    ps = [Playlist("x", "late night synth drive", ("pkga-01", "pkga-00"), True, "o", "train"),
          Playlist("y", "", ("pkgb-00",), False, "real.json", "test")]
    write_playlists(root, ps)
    assert read_playlists(root) == ps


def test_cli(tmp_path, capsys):
    root = make_bundle(tmp_path / "cli")
    assert main(["--catalog", str(root), "--n-playlists", "80", "--min-length", "4", "--max-length", "10",
                 "--cold-fraction", "0.1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["playlists"] == 80 and out["cold_start_tracks"] == 4
    assert main(["--catalog", str(tmp_path / "missing")]) == 2
    assert main(["--catalog", str(root), "--train", "0.9"]) == 2  # fractions must sum to 1
    shutil.rmtree(root)


def test_features_file_has_one_reader_that_names_row_and_field(tmp_path):
    """talkplay.bundle owns features.parquet: written atomically, read back in file order, every bad row named."""
    from talkplay.bundle import read_features, write_features
    from talkplay.catalog import CatalogError

    assert read_features(tmp_path) == {}
    write_features(tmp_path, [{"track_id": "a", "tempo_bpm": 90.0, "musicnn_embedding": [0.1, 0.2]},
                              {"track_id": "b", "tempo_bpm": 120.0, "musicnn_embedding": [0.3, 0.4]}])
    rows = read_features(tmp_path, columns=["tempo_bpm", "no_such_column"])
    assert list(rows) == ["a", "b"] and rows["b"] == {"track_id": "b", "tempo_bpm": 120.0}
    with pytest.raises(CatalogError, match=r"row 2.*track_id.*'b' is not in the bundle"):
        read_features(tmp_path, known_track_ids={"a"})
    write_features(tmp_path, [{"track_id": "a", "musicnn_embedding": [0.1, float("nan")]}])
    with pytest.raises(CatalogError, match=r"row 1.*musicnn_embedding"):
        read_features(tmp_path)
    (tmp_path / "features.parquet").write_bytes(b"not parquet")
    with pytest.raises(CatalogError, match="not a readable Parquet file"):
        read_features(tmp_path)
