"""`python -m talkplay`: validate reports a clear error or a summary; previews is idempotent."""

from talkplay.__main__ import main
from talkplay.catalog import Track, save_catalog


def test_validate_checks_what_the_app_checks(tmp_path, capsys):
    """A catalog alone is not servable: validate says what is missing and which command makes it; a damaged file
    is named. (A complete bundle passing it: tests/train/test_byo.py.)"""
    save_catalog(tmp_path / "ok", [Track(track_id="a", title="A", artist="B", license="MIT", attribution="c",
                                         source="user")])
    assert main(["validate", str(tmp_path / "ok")]) == 2
    err = capsys.readouterr().err
    assert "no token store" in err and "python -m train.catalog.byo prepare" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tracks.parquet").write_bytes(b"not parquet")
    assert main(["validate", "--catalog", str(tmp_path / "bad")]) == 2  # the older spelling still works
    assert "tracks.parquet: not a readable Parquet file" in capsys.readouterr().err


def test_previews_with_nothing_to_do(tmp_path, capsys):
    save_catalog(tmp_path, [Track(track_id="a", title="A", artist="B", license="MIT", attribution="c", source="user")])
    assert main(["previews", "--catalog", str(tmp_path), "--cache", str(tmp_path / "c")]) == 0
    assert "0 cut" in capsys.readouterr().out
