"""Catalog model: validation errors name file, row and field; round-trips are exact."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pathlib import Path

from talkplay.catalog import CatalogError, Track, load_catalog, read_tracks, save_catalog, tracks_table
from talkplay.licenses import normalize_license


def make_track(i: int, **kw) -> Track:
    base = dict(track_id=f"t{i}", title=f"Song {i}", artist="Ann Example", license="CC-BY-4.0",
                attribution=f"“Song {i}” by Ann Example, licensed CC-BY-4.0.", source="user",
                album="Demo", year=2020, duration_s=180.0, tags=("folk", "calm"), caption="A calm folk song.")
    base.update(kw)
    return Track(**base)


def write_rows(path, rows, schema=None):
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def test_round_trip(tmp_path):
    tracks = [make_track(i) for i in range(3)] + [make_track(9, year=None, lyrics="la la", tags=())]
    save_catalog(tmp_path, tracks, name="fixture")
    cat = load_catalog(tmp_path)
    assert cat.tracks == tracks
    assert cat.name == "fixture" and len(cat) == 4 and "t1" in cat and cat["t9"].lyrics == "la la"
    assert json.loads((tmp_path / "manifest.json").read_text())["tracks"] == 4


def test_missing_column_names_file_and_field(tmp_path):
    rows = tracks_table([make_track(0)]).drop_columns(["license"]).to_pylist()
    write_rows(tmp_path / "tracks.parquet", rows)
    with pytest.raises(CatalogError) as err:
        load_catalog(tmp_path)
    msg = str(err.value)
    assert "tracks.parquet" in msg and "'license'" in msg and "missing required column" in msg


def test_duplicate_id_names_row(tmp_path):
    save_catalog(tmp_path, [make_track(0), make_track(1)])
    rows = pq.read_table(tmp_path / "tracks.parquet").to_pylist()
    rows.append(dict(rows[0]))
    write_rows(tmp_path / "tracks.parquet", rows, pq.read_schema(tmp_path / "tracks.parquet"))
    with pytest.raises(CatalogError) as err:
        read_tracks(tmp_path / "tracks.parquet")
    assert err.value.row == 3 and err.value.field == "track_id" and "duplicate" in str(err.value)
    assert "row 3" in str(err.value) and "first seen in row 1" in str(err.value)


@pytest.mark.parametrize(
    "field, value, expect",
    [
        ("title", "  ", "non-empty"),
        ("license", "All rights reserved", "unknown license"),
        ("track_id", "has space", "not a valid id"),
        ("year", 99999, "plausible year"),
        ("duration_s", -3.0, "≥ 0"),
        ("preview_path", "../../etc/passwd", "inside the bundle"),
        ("preview_path", "/tmp/x.mp3", "inside the bundle"),
        ("source_sha256", "abc", "64 lower-case hex"),
    ],
)
def test_bad_values_name_row_and_field(tmp_path, field, value, expect):
    rows = tracks_table([make_track(0), make_track(1)]).to_pylist()
    rows[1][field] = value
    write_rows(tmp_path / "tracks.parquet", rows, tracks_table([]).schema)
    with pytest.raises(CatalogError) as err:
        read_tracks(tmp_path / "tracks.parquet")
    assert (err.value.row, err.value.field) == (2, field)
    assert expect in str(err.value) and "tracks.parquet" in str(err.value) and "row 2" in str(err.value)


def test_wrong_type_names_column(tmp_path):
    rows = tracks_table([make_track(0)]).to_pylist()
    rows[0]["year"] = "nineteen"
    write_rows(tmp_path / "tracks.parquet", rows)
    with pytest.raises(CatalogError) as err:
        read_tracks(tmp_path / "tracks.parquet")
    assert err.value.field == "year" and "expected integer" in str(err.value)


def test_null_required_value(tmp_path):
    rows = tracks_table([make_track(0)]).to_pylist()
    rows[0]["artist"] = None
    write_rows(tmp_path / "tracks.parquet", rows, tracks_table([]).schema)
    with pytest.raises(CatalogError) as err:
        read_tracks(tmp_path / "tracks.parquet")
    assert (err.value.row, err.value.field) == (1, "artist")


def test_deb_source_requires_checksum(tmp_path):
    with pytest.raises(CatalogError) as err:
        save_catalog(tmp_path, [make_track(0, source="deb://pkg/1.0/usr/share/a.ogg")])
    assert err.value.field == "source_sha256" and "required for deb://" in str(err.value)


def test_truncated_file_is_named(tmp_path):
    save_catalog(tmp_path, [make_track(0)])
    data = (tmp_path / "tracks.parquet").read_bytes()
    (tmp_path / "tracks.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(CatalogError, match="tracks.parquet: not a readable Parquet file"):
        load_catalog(tmp_path)


def test_save_refuses_invalid_and_leaves_old_file(tmp_path):
    save_catalog(tmp_path, [make_track(0)])
    before = (tmp_path / "tracks.parquet").read_bytes()
    with pytest.raises(CatalogError):
        save_catalog(tmp_path, [make_track(0), make_track(0)])
    assert (tmp_path / "tracks.parquet").read_bytes() == before
    assert not list(tmp_path.glob(".*tmp"))


def test_search_and_preview_file(tmp_path):
    (tmp_path / "previews").mkdir()
    (tmp_path / "previews" / "t1.mp3").write_bytes(b"x")
    cat = save_catalog(tmp_path, [make_track(0), make_track(1, preview_path="previews/t1.mp3", title="Storm")])
    assert [t.track_id for t in cat.search("storm")] == ["t1"]
    assert cat.preview_file(cat["t1"]) == tmp_path / "previews" / "t1.mp3"
    assert cat.preview_file(cat["t0"]) is None


@pytest.mark.parametrize("text, spdx", [
    ("GPL-2+", "GPL-2.0-or-later"), ("CC-BY-SA 3.0", "CC-BY-SA-3.0"), ("cc-by-3.0", "CC-BY-3.0"),
    ("http://creativecommons.org/licenses/by-sa/3.0/", "CC-BY-SA-3.0"), ("public-domain", "LicenseRef-PublicDomain"),
    ("LicenseRef-MyLabel", "LicenseRef-MyLabel"), ("GPL", None), ("", None), ("GPL-2.0", "GPL-2.0-only"),
    ("LGPL-2.1", "LGPL-2.1-only"), ("LGPL-2+", "LGPL-2.0-or-later"),
])
def test_normalize_license(text, spdx):
    assert normalize_license(text) == spdx


def test_atomic_write_dir_swaps_whole_folders_and_survives_a_failed_write(tmp_path):
    from talkplay.catalog import atomic_write_dir

    out = tmp_path / "model"
    atomic_write_dir(out, lambda d: (d / "a.txt").write_text("one"))
    assert (out / "a.txt").read_text() == "one"

    def broken(d):
        (d / "a.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_dir(out, broken)
    assert (out / "a.txt").read_text() == "one"  # the old folder, untouched
    atomic_write_dir(out, lambda d: (d / "b.txt").write_text("two"))
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    # another process's complete copy is kept when the caller says so
    atomic_write_dir(out, lambda d: (d / "c.txt").write_text("three"), keep_existing=lambda found: True)
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary or old folder left behind


def test_atomic_write_dir_restores_the_old_folder_when_the_swap_fails(tmp_path, monkeypatch):
    import os

    from talkplay import catalog as cat

    out = tmp_path / "model"
    cat.atomic_write_dir(out, lambda d: (d / "a.txt").write_text("one"))
    real = os.replace

    def failing(src, dst):
        if Path(dst) == out and not str(src).endswith(".old"):  # the new folder cannot move in (old one set aside)
            raise OSError("no space left")
        return real(src, dst)

    monkeypatch.setattr(cat.os, "replace", failing)
    with pytest.raises(OSError, match="no space"):
        cat.atomic_write_dir(out, lambda d: (d / "b.txt").write_text("two"))
    monkeypatch.setattr(cat.os, "replace", real)
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    # a single writer's killed write leaves one fixed-name folder, which the next write removes
    (tmp_path / ".model.tmp").mkdir()
    (tmp_path / ".model.tmp" / "stale").write_text("x")
    cat.atomic_write_dir(out, lambda d: (d / "c.txt").write_text("three"), single_writer=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"] and (out / "c.txt").exists()
