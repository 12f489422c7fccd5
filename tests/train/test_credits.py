"""Credits: DEP-5 parsing (last match wins), per-file license/holder, tag and sidecar precedence."""

import json

import pytest

from talkplay.debsource import DebPackage
from train.catalog.credits import attribution_line, credit_for, load_album_sidecars, title_from_filename
from train.catalog.demo_sources import PackageSpec
from train.catalog.dep5 import holder_name, parse_dep5

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Fake Game

Files: *
Copyright: 2002-2014, The Fake Team
License: GPL-2+

Files:
 base/music/Crystan-*.ogg
 base/music/odd.ogg
Copyright:
 Crystan <crystan@example.org>
 2010 Someone Else
License: CC-BY-SA-3.0

Files: base/music/weird.ogg
Copyright: Nobody
License: Mystery-License
"""

SPEC = PackageSpec(DebPackage("fake-music", "1.0-1", "pool/f.deb", "0" * 64, 1), short="fake", game="Fake Game",
                   audio=("x.pk3!/music/*.ogg",), upstream=(("music/", "base/music/"),))


@pytest.fixture
def dep5(tmp_path):
    path = tmp_path / "copyright"
    path.write_text(DEP5)
    return parse_dep5(path)


def test_dep5_last_match_wins(dep5):
    assert dep5.lookup("base/music/Crystan-Battle01.ogg").license == "CC-BY-SA-3.0"
    assert dep5.lookup("base/music/other.ogg").license == "GPL-2+"
    assert holder_name(dep5.lookup("base/music/odd.ogg").copyright) == "Crystan"
    assert holder_name("2002-2014, The Fake Team") == "The Fake Team"


def test_free_form_copyright_is_not_dep5(tmp_path):
    (tmp_path / "c").write_text("This package was debianized by someone.\nGPL-2 or later.\n")
    assert parse_dep5(tmp_path / "c") is None


def test_credit_precedence(dep5):
    tags = {"title": "Battle One", "artist": "Crystan", "album": "http://example.org", "date": "2009-05-01"}
    c = credit_for(SPEC, "music/Crystan-Battle01.ogg", tags, dep5)
    assert (c.title, c.artist, c.album, c.year, c.license) == ("Battle One", "Crystan", "Fake Game soundtrack",
                                                               2009, "CC-BY-SA-3.0")
    untagged = credit_for(SPEC, "music/hr3-deep_caves.ogg", {}, dep5)
    assert (untagged.title, untagged.artist, untagged.license) == ("Deep Caves", "The Fake Team", "GPL-2.0-or-later")
    line = attribution_line(c, SPEC)
    assert "“Battle One” by Crystan" in line and "fake-music 1.0-1" in line and "CC-BY-SA-3.0" in line


def test_unknown_or_missing_license_is_left_out(dep5):
    weird = credit_for(SPEC, "music/weird.ogg", {}, dep5)
    assert weird.license is None and "not a known free license" in weird.problem
    nothing = credit_for(SPEC, "music/a.ogg", {}, None)
    assert nothing.license is None and nothing.problem
    tagged = credit_for(SPEC, "music/a.ogg", {"license": "http://creativecommons.org/licenses/by/3.0/"}, None)
    assert tagged.license == "CC-BY-3.0" and not tagged.problem


def test_album_sidecar(tmp_path):
    album = {"title": "Aftermath", "author": "Lupus", "date": "2021",
             "tracks": [{"filename": "t17.opus", "title": "Nuclear Heartbeat"}]}
    (tmp_path / "album.json").write_text(json.dumps(album))
    side = load_album_sidecars({"music/albums/a/album.json": tmp_path / "album.json"})
    assert side == {"music/albums/a/t17.opus": {"title": "Nuclear Heartbeat", "author": "Lupus",
                                                "album": "Aftermath", "date": "2021"}}
    from dataclasses import replace

    spec = replace(SPEC, license="GPL-2.0-or-later")  # a curated license: the sidecar holds none
    c = credit_for(spec, "music/albums/a/t17.opus", {}, None, side["music/albums/a/t17.opus"])
    assert (c.title, c.artist, c.album, c.year, c.license) == ("Nuclear Heartbeat", "Lupus", "Aftermath", 2021,
                                                               "GPL-2.0-or-later")


@pytest.mark.parametrize("stem, artist, title", [
    ("hr3-caves", "", "Caves"), ("01_-_Ezer_Ev", "", "Ezer Ev"), ("ingame_05", "", "Ingame 05"),
    ("hr-savino-ocean", "Will Savino", "Ocean"), ("battle-epic", "", "Battle Epic"),
])
def test_title_from_filename(stem, artist, title):
    assert title_from_filename(stem, artist) == title


def test_placeholder_and_url_artists():
    from train.catalog.credits import Credit, is_placeholder_artist, resolve_url_artists

    assert is_placeholder_artist("<Unknown>") and is_placeholder_artist("http://zhaymusic.com/")
    assert is_placeholder_artist("www.elysis.de") and not is_placeholder_artist("Gerd (elysis) Raudenbusch")
    base = dict(title="t", album="a", year=None, license="MIT", license_origin="", copyright="", genre="")
    credits = [Credit(artist="www.indiedb.com/members/crystan", **base),
               Credit(artist='Christian "Crystan" Hoffmann', **base), Credit(artist="www.nobody.org", **base)]
    fixed = resolve_url_artists(credits)
    assert fixed[0].artist == 'Christian "Crystan" Hoffmann' and fixed[2].artist == "www.nobody.org"


def test_unknown_artist_tag_falls_back(dep5):
    c = credit_for(SPEC, "music/Crystan-X.ogg", {"artist": "<Unknown>", "title": "Track 14"}, dep5)
    assert c.artist == "Crystan"
