"""`python -m talkplay`: validate reports a clear error or a summary; previews is idempotent."""

from talkplay.__main__ import main
from talkplay.catalog import Track, save_catalog


def test_validate_ok_and_error(tmp_path, capsys):
    save_catalog(tmp_path / "ok", [Track(track_id="a", title="A", artist="B", license="MIT", attribution="c",
                                         source="user")])
    assert main(["validate", "--catalog", str(tmp_path / "ok")]) == 0
    assert "1 valid tracks" in capsys.readouterr().out
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tracks.parquet").write_bytes(b"not parquet")
    assert main(["validate", "--catalog", str(tmp_path / "bad")]) == 2
    assert "tracks.parquet: not a readable Parquet file" in capsys.readouterr().err


def test_previews_with_nothing_to_do(tmp_path, capsys):
    save_catalog(tmp_path, [Track(track_id="a", title="A", artist="B", license="MIT", attribution="c", source="user")])
    assert main(["previews", "--catalog", str(tmp_path), "--cache", str(tmp_path / "c")]) == 0
    assert "0 cut" in capsys.readouterr().out
