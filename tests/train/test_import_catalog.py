"""Bring-your-own-catalog import: CSV / JSONL / Parquet round trips, clear errors, MPD playlists."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from talkplay.catalog import CatalogError, load_catalog
from train.catalog.import_catalog import import_playlists, import_tracks, main

CSV = """track_id,title,artist,album,year,tags,license,lyrics
a1,Night Drive,The Examples,Roads,2019,synthwave;driving,CC-BY-4.0,
a2,Morning Dew,Folk Friends,,2001,folk|acoustic,GPL-2+,"dew on the grass"
,Untitled Jam,The Examples,,,,"http://creativecommons.org/licenses/by-sa/3.0/",
"""


def test_csv_import_round_trip(tmp_path):
    src = tmp_path / "tracks.csv"
    src.write_text(CSV)
    cat = import_tracks(src, tmp_path / "bundle", progress=False)
    again = load_catalog(tmp_path / "bundle")
    assert again.tracks == cat.tracks
    a1, a2, a3 = again.tracks
    assert (a1.track_id, a1.year, a1.tags, a1.license) == ("a1", 2019, ("synthwave", "driving"), "CC-BY-4.0")
    assert a2.license == "GPL-2.0-or-later" and a2.lyrics == "dew on the grass" and a2.tags == ("folk", "acoustic")
    assert a3.track_id == "the-examples-untitled-jam" and a3.license == "CC-BY-SA-3.0"
    assert "Untitled Jam" in a3.attribution and a3.source == "user"


def test_jsonl_and_parquet_give_same_catalog(tmp_path):
    rows = [{"track_id": "x1", "title": "A", "artist": "B", "license": "CC0-1.0", "tags": ["ambient"], "year": 2000},
            {"track_id": "x2", "title": "C", "artist": "D", "license": "MIT"}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    a = import_tracks(tmp_path / "t.jsonl", tmp_path / "a", progress=False)
    b = import_tracks(tmp_path / "t.parquet", tmp_path / "b", progress=False)
    assert a.tracks == b.tracks and a.tracks[0].tags == ("ambient",)


@pytest.mark.parametrize("body, row, field, words", [
    ("title,artist,license\nA,B,CC-BY-4.0\nC,D,Proprietary\n", 2, "license", "unknown license"),
    ("title,artist,license\n,B,CC-BY-4.0\n", 1, "title", "must not be empty"),
    ("title,artist,license,year\nA,B,MIT,soon\n", 1, "year", "not a number"),
    ("title,artist\nA,B\n", None, "license", "missing required column"),
    ("track_id,title,artist,license\nz,A,B,MIT\nz,C,D,MIT\n", 2, "track_id", "duplicate track_id"),
    ("title,artist,license,colour\nA,B,MIT,red\n", None, "colour", "unknown column"),
    ("title,artist,license,audio_path\nA,B,MIT,missing.ogg\n", 1, "audio_path", "not found"),
])
def test_bad_rows_name_file_row_field(tmp_path, body, row, field, words):
    src = tmp_path / "bad.csv"
    src.write_text(body)
    with pytest.raises(CatalogError) as err:
        import_tracks(src, tmp_path / "out", progress=False)
    assert (err.value.row, err.value.field) == (row, field)
    assert "bad.csv" in str(err.value) and words in str(err.value)
    assert not (tmp_path / "out" / "tracks.parquet").exists()  # nothing half-written


def test_bad_jsonl_line(tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_text('{"title": "A", "artist": "B", "license": "MIT"}\n{oops\n')
    with pytest.raises(CatalogError, match=r"t.jsonl, row 2: line 2 is not valid JSON"):
        import_tracks(src, tmp_path / "out", progress=False)


def test_cli_reports_error_and_exit_code(tmp_path, capsys):
    src = tmp_path / "bad.csv"
    src.write_text("title,artist,license\nA,B,nope\n")
    assert main(["tracks", str(src), "--out", str(tmp_path / "o")]) == 2
    assert "bad.csv, row 1, field 'license'" in capsys.readouterr().err


def test_audio_gets_a_preview(tmp_path):
    sr = 22050
    t = np.arange(int(sr * 40)) / sr
    y = (0.02 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    y[sr * 20:] *= 20  # the loud half should be chosen
    sf.write(tmp_path / "song.wav", y, sr)
    (tmp_path / "t.csv").write_text("title,artist,license,audio_path\nTone,Osc,CC0-1.0,song.wav\n")
    cat = import_tracks(tmp_path / "t.csv", tmp_path / "b", progress=False)
    track = cat.tracks[0]
    assert track.preview_path == f"previews/{track.track_id}.mp3" and cat.preview_file(track) is not None
    assert abs(track.duration_s - 40.0) < 0.01 and track.preview_start_s >= 5.0
    audio, psr = sf.read(cat.preview_file(track))
    assert abs(len(audio) / psr - track.preview_duration_s) < 0.2


def test_mpd_playlists_map_by_uri_and_name(tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    import_tracks(tmp_path / "t.csv", tmp_path / "b", progress=False)
    mpd = {"info": {}, "playlists": [
        {"pid": 0, "name": "drive", "tracks": [
            {"pos": 0, "track_uri": "a1", "track_name": "x", "artist_name": "y", "album_name": ""},
            {"pos": 1, "track_uri": "spotify:track:zzz", "track_name": "morning  dew!", "artist_name": "FOLK friends",
             "album_name": ""},
            {"pos": 2, "track_uri": "spotify:track:nope", "track_name": "Unknown", "artist_name": "Nobody"}]},
        {"pid": 1, "name": "none", "tracks": [{"track_uri": "q", "track_name": "q", "artist_name": "q"}]},
    ]}
    (tmp_path / "mpd.json").write_text(json.dumps(mpd))
    stats = import_playlists([tmp_path / "mpd.json"], tmp_path / "b")
    assert stats == {"playlists": 1, "entries": 4, "matched": 2, "unmatched": 2, "skipped_empty": 1}
    table = pq.read_table(tmp_path / "b" / "playlists.parquet").to_pylist()
    assert [(r["playlist_id"], r["position"], r["track_id"], r["synthetic"]) for r in table] == [
        ("0", 0, "a1", False), ("0", 1, "a2", False)]


def test_mpd_malformed(tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    import_tracks(tmp_path / "t.csv", tmp_path / "b", progress=False)
    (tmp_path / "mpd.json").write_text(json.dumps({"playlists": [{"name": "no pid", "tracks": []}]}))
    with pytest.raises(CatalogError, match=r"mpd.json, row 1, field 'playlists'"):
        import_playlists([tmp_path / "mpd.json"], tmp_path / "b")


def test_unreadable_audio_names_row_and_leaves_bundle_untouched(tmp_path):
    sr = 22050
    sf.write(tmp_path / "ok.wav", np.zeros(sr * 5, dtype=np.float32) + 0.1, sr)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really audio")
    (tmp_path / "t.csv").write_text("title,artist,license,audio_path\nA,B,MIT,ok.wav\nC,D,MIT,broken.wav\n")
    with pytest.raises(CatalogError) as err:
        import_tracks(tmp_path / "t.csv", tmp_path / "b", progress=False)
    assert (err.value.row, err.value.field) == (2, "audio_path") and "broken.wav" in str(err.value)
    assert not (tmp_path / "b").exists()  # no trace: not even the empty bundle folder


def test_every_bad_row_is_reported_in_one_run(tmp_path):
    (tmp_path / "t.csv").write_text("title,artist,license,year\nA,B,MIT,1999\n,D,MIT,\nE,F,nope,\nG,H,MIT,soon\n")
    with pytest.raises(CatalogError) as err:
        import_tracks(tmp_path / "t.csv", tmp_path / "b", progress=False)
    message = str(err.value)
    assert message.count("\n  ") == 3 and "3 rows have errors" in message
    for where in ("row 2, field 'title'", "row 3, field 'license'", "row 4, field 'year'"):
        assert where in message
    assert not (tmp_path / "b").exists()
