"""Facts a request names (talkplay.facts): tempo, key, years and album or artist names, read against the cards;
declined facts are not asked for, and a named album's words are not read as concepts."""

import numpy as np
import pytest

from talkplay.catalog import Track
from talkplay.facts import FactReader, caption_key, caption_tempo
from talkplay.textmatch import TextMatch


def _track(i, caption="", year=None, album="", artist="Someone", tags=("electronic",), title=None):
    return Track(f"t{i}", title or f"Piece {i}", artist, "MIT", "c", "user", album=album, year=year, tags=tags,
                 caption=caption)


TRACKS = [
    _track(0, "A fast electronic track in G# minor with drums, ~126 BPM.", 2021, "Aftermath Soundtrack",
           "LupusMechanicus", ("electronic", "energetic", "fast")),
    _track(1, "A slow orchestral piece in D minor, ~70 BPM.", 2008, "The Battle for Wesnoth OST", "Doug Kaufman",
           ("orchestral", "calm")),
    _track(2, "A mid-tempo chiptune track in C major, ~110 BPM.", 2005, "SuperTux Soundtrack", "Wansti",
           ("chiptune", "playful")),
    _track(3, "An energetic orchestral piece in E minor, ~150 BPM.", 1999, "Warzone 2100 OST", "Martin Severn",
           ("orchestral", "energetic", "action")),
    _track(4, "A calm piece.", None, "Angelic Asylum", "Obsidian Shell", ("ambient", "calm")),
]
# a stand-in for the base tokenizer's split: made-up names split into several pieces, everyday words do not
EVERYDAY = {"aftermath", "battle", "angelic", "asylum", "obsidian", "shell", "doug", "martin"}


def pieces(word):
    return 1 if word in EVERYDAY else (2 if word in {"warzone", "severn", "kaufman"} else 3)


@pytest.fixture(scope="module")
def reader():
    return FactReader(TRACKS, pieces)


def test_cards_state_tempo_and_key():
    assert caption_tempo(TRACKS[0].caption) == 126 and np.isnan(caption_tempo("A calm piece."))
    assert caption_key(TRACKS[0].caption) == (8, "minor") and caption_key("in Bb major") == (10, "major")
    assert caption_key("A calm piece.") is None


@pytest.mark.parametrize("text, kind, value", [
    ("got anything at roughly 125 bpm?", "tempo", (125.0, 125.0)),
    ("something at 130-ish BPM", "tempo", (130.0, 130.0)),
    ("120bpm please", "tempo", (120.0, 120.0)),
    ("between 100 and 120 bpm", "tempo", (100.0, 120.0)),
    ("a tempo of 90", "tempo", (90.0, 90.0)),
    ("something in D minor", "key", (2, "minor")),
    ("anything in F# major?", "key", (6, "major")),
    ("in a minor key, slow", "key", (-1, "minor")),
    ("what came out in 2010?", "year", (2010, 2010)),
    ("music from the early 2020s", "year", (2020, 2023)),
    ("made in the early twenty-twenties", "year", (2020, 2023)),
    ("something from the noughties", "year", (2000, 2009)),
    ("late 90s vibes", "year", (1996, 1999)),
    ("something recent", "year", (2019, 2021)),
    ("under 100 bpm", "tempo", (30.0, 100.0)),
    ("more than 140 bpm please", "tempo", (140.0, 300.0)),
    ("released between 2005 and 2010", "year", (2005, 2010)),
    ("2012 music", "year", (2012, 2012)),
    ("the roaring 20s", "year", (1920, 1929)),
    ("in A flat minor key", "key", (8, "minor")),
    ("not too fast around 100 bpm", "tempo", (100.0, 100.0)),  # the negation ends on "fast"
    ("no drums, around 100 bpm", "tempo", (100.0, 100.0)),
    ("no drums around 100 bpm", "tempo", (100.0, 100.0)),
    ("something 130ish bpm", "tempo", (130.0, 130.0)),
    ("no more than 100 bpm", "tempo", (30.0, 100.0)),
    ("not less than 140 bpm", "tempo", (140.0, 300.0)),
    ("something in Am", "key", (9, "minor")),
    ("a track in the key of F#m", "key", (6, "minor")),
    ("in the key of Am please", "key", (9, "minor")),
    ("In Am or so", "key", (9, "minor")),
    ("something in Bbm", "key", (10, "minor")),
    ("nothing over 140 bpm", "tempo", (30.0, 140.0)),
    ("no faster than 120 bpm", "tempo", (30.0, 120.0)),
    ("not under 100 bpm", "tempo", (100.0, 300.0)),
])
def test_reads_facts_as_people_write_them(reader, text, kind, value):
    facts = [f for f in reader.read(text) if f.kind != "name"]
    assert [(f.kind, f.value) for f in facts] == [(kind, value)]


@pytest.mark.parametrize("text", ["play a major hit", "nothing from the 2000s please", "not 120 bpm", "give me 5 songs",
                                  "warzone", "some warzone music", "I'm in my 20s and love ambient", "a 2000 word essay",
                                  "I'm in a major funk", "stressed recently, something calm", "top 10 songs",
                                  "up tempo, 90 minutes of it", "nothing from wesnoth please, something calm",
                                  "anything but supertux", "nothing at around 120 bpm", "anything but 120 bpm",
                                  "no songs over 140 bpm", "I am sad", "am i in a major funk", "Am I wrong?",
                                  "I don't want 120 bpm", "without going over 120 bpm", "not really 120 bpm",
                                  "a bit of warzone", "into warzone vibes", "let me hear warzone voices",
                                  "some warzone songs please"])
def test_no_fact_where_none_is_asked(reader, text):
    assert reader.read(text) == []


@pytest.mark.parametrize("text, rows", [
    ("put on a track from The Battle for Wesnoth", {1}),
    ("play something from wesnoth", {1}),
    ("anything by lupusmechanicus", {0}),
    ("something from warzone", {3}),  # a two-piece name word, next to a cue
    ("i'm a big fan of warzone. play one?", {3}),
    ("angelic asylum please", {4}),  # every word an everyday one: the whole name
])
def test_names_albums_and_artists(reader, text, rows):
    named = [set(f.value) for f in reader.read(text) if f.kind == "name"]
    assert named == [rows]


def test_everyday_words_of_a_name_name_nothing(reader):
    assert reader.read("something angelic and calm") == []
    assert reader.read("the aftermath of a breakup") == []
    assert FactReader(TRACKS).read("play something from wesnoth") == []  # no tokenizer: whole names only


def test_fit_scores_the_cards(reader):
    fit = reader.fit(reader.read("around 125 bpm"))
    assert fit.argmax() == 0 and fit[0] > 0.9 and fit[1] < 1e-6 and fit[4] == 0.0  # no tempo on the card: 0
    fit = reader.fit(reader.read("something in D minor"))
    assert fit[1] == 1.0 and 0 < fit[0] < 1 and fit[2] == 0.0  # another minor key meets part of it
    fit = reader.fit(reader.read("from the noughties"))
    assert fit[1] == 1.0 and fit[2] == 1.0 and fit[3] > 0 and fit[0] == 0.0 and fit[4] == 0.0


def test_a_named_album_is_not_read_as_concepts_and_wins_the_text_match():
    match = TextMatch.build(TRACKS, pieces=pieces)
    assert [m.concept for m in match.intent.read("something in a minor key")] == []  # no piano "keys"
    assert [m.concept for m in match.intent.read("good evening! something calm")] == ["mood:calm"]
    assert "scene:morning" in [m.concept for m in match.intent.read("music for a good morning run")]
    assert [m.concept for m in match.intent.read("put on a track from The Battle for Wesnoth")] == []
    assert [m.concept for m in match.intent.read("some battle music")] == ["scene:battle"]
    assert match.scores("put on a track from The Battle for Wesnoth").argmax() == 1
    assert match.scores("energetic, from the early 2020s").argmax() == 0
    assert match.scores("something around 110 bpm").argmax() == 2
    # a fact makes a later request a search of its own (the words speak; the kept tracks' pull is halved)
    assert match.has_evidence("now something around 150 bpm", first_turn=False)
    assert match.names_a_search("anything from 1999?") and not match.names_a_search("another one")
