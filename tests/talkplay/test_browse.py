"""Catalog browser: search/filter rows, cards with escaped metadata, missing previews."""

from talkplay.browse import ALL_SOURCES, CatalogBrowser
from talkplay.catalog import Track, save_catalog


def test_rows_cards_and_escaping(tmp_path):
    (tmp_path / "previews").mkdir()
    (tmp_path / "previews" / "a.mp3").write_bytes(b"ID3")
    tracks = [
        Track(track_id="a", title="Storm <b>Rider</b>", artist="X", license="CC-BY-4.0", attribution="credit a",
              source="user", album="Skies", year=2001, tags=("rock", "fast"), caption="A fast rock piece.",
              preview_path="previews/a.mp3", duration_s=125.0),
        Track(track_id="b", title="Calm", artist="<script>alert(1)</script>", license="LicenseRef-Label",
              attribution="[click](javascript:alert(1))", source="user", album="Seas", preview_path="previews/b.mp3"),
    ]
    browser = CatalogBrowser(save_catalog(tmp_path, tracks))
    assert browser.sources() == [ALL_SOURCES, "Seas", "Skies"]
    assert [r[-1] for r in browser.rows("rock")] == ["a"]
    assert [r[-1] for r in browser.rows("", "Seas")] == ["b"]
    card = browser.card("a")
    assert card.audio == str(tmp_path / "previews" / "a.mp3")
    assert "<b>" not in card.markdown and "&lt;b&gt;" in card.markdown and "2:05" in card.markdown
    b = browser.card("b")
    assert b.audio is None and "Preview unavailable" in b.markdown
    assert "<script>" not in b.markdown and "](javascript" not in b.markdown
    assert "Select a track" in browser.card(None).markdown and "Select a track" in browser.card("zzz").markdown


def test_escape_keeps_apostrophes_and_folds_lines():
    from talkplay.browse import escape

    assert escape("Journey's End") == "Journey's End"
    assert escape("a\n# heading\n- item") == "a \\# heading - item"
    assert escape("[x](javascript:alert(1))") == "\\[x\\]\\(javascript:alert\\(1\\)\\)"
