"""Reading a request's concepts (talkplay.intent): scenes and moods in the catalog's tag words, negation, typos,
a bring-your-own catalog's own tags, and the per-track fit the text match adds."""

import numpy as np
import pytest

from talkplay.catalog import Track
from talkplay.intent import CONCEPTS, Concept, IntentReader, concept_problems, words
from talkplay.textmatch import TextMatch

TAGS = [("orchestral", "cinematic", "energetic", "fast", "drums"),  # 0 battle
        ("ambient", "calm", "slow", "drumless"),  # 1 sleep
        ("rock", "guitar", "energetic", "drums"),  # 2 rock
        ("metal", "rock", "loud", "fast", "drums", "dark"),  # 3 metal
        ("chiptune", "playful", "bright", "fast"),  # 4 chiptune
        ("piano", "romantic", "slow", "calm")]  # 5 sad piano


@pytest.fixture(scope="module")
def reader():
    return IntentReader(TAGS)


def _read(reader, text):
    return {m.concept: m for m in reader.read(text)}


def test_the_table_is_consistent():
    assert concept_problems() == []
    twice = [Concept("a:x", ("calm",), (frozenset(["calm"]),)), Concept("a:y", ("calm",), (frozenset(["slow"]),)),
             Concept("a:y", ("zzz",))]
    problems = concept_problems(twice)
    assert any("already belongs to a:x" in p for p in problems) and any("duplicate concept key a:y" in p
                                                                         for p in problems)
    assert any("neither need nor avoid" in p for p in problems)
    assert len(CONCEPTS) > 50


@pytest.mark.parametrize("text, concept, best", [
    ("something epic for a boss fight", "scene:battle", {0}),
    ("something to fall asleep to", "scene:sleep", {1, 5}),
    ("musik for the gym pls", "scene:workout", {0, 2, 3}),
    ("sad piano", "mood:sad", {5}),
    ("retro 8-bit tunes", "genre:chiptune", {4}),
])
def test_everyday_words_reach_the_tracks_that_fit(reader, text, concept, best):
    """Every fitting track scores above every other; among them, the fuller fit first (graded: "asleep" puts the
    ambient, calm, slow, drumless track 1 above the slow, calm piano 5)."""
    assert concept in _read(reader, text)
    fit = reader.fit(reader.read(text))
    others = [i for i in range(len(TAGS)) if i not in best]
    assert fit[list(best)].min() > fit[others].max() and 0.5 < fit.max() <= 1.0 and fit.min() >= -1.0


def test_a_fuller_fit_ranks_first_but_never_above_a_track_that_meets_every_group(reader):
    fit = reader.fit(reader.read("something to fall asleep to"))
    assert fit[1] > fit[5] > 0.5
    partial = IntentReader([("calm", "quiet", "ambient", "slow"), ("piano", "slow")])
    fit = partial.fit(partial.read("calm piano"))  # very calm without piano < barely calm with piano
    assert fit[1] > fit[0]


def test_negation_declines_what_follows(reader):
    m = _read(reader, "something calm, no drums")["instrument:drums"]
    assert m.declined and m.need == (frozenset(["drumless"]),) and "drums" in m.avoid
    assert reader.fit(reader.read("something calm, no drums")).argmax() == 1
    dark = _read(reader, "upbeat but not too dark")
    assert dark["mood:dark"].declined and "dark" in dark["mood:dark"].avoid and not dark["mood:upbeat"].declined
    # "but" ends the declined clause: the piano is asked for
    assert not _read(reader, "no drums but piano")["instrument:piano"].declined
    assert not _read(reader, "no drums, some piano")["instrument:piano"].declined  # a comma ends the clause


def test_declining_never_rules_out_what_is_asked_for(reader):
    """"rock but not too heavy": heavy (metal, loud) is avoided, the rock stays wanted."""
    mentions = reader.read("rock but not too heavy")
    fit = reader.fit(mentions)
    assert fit[2] > fit[3] and fit.argmax() == 2
    assert all("rock" not in m.avoid for m in mentions)


def test_longest_phrase_wins_and_typos_are_forgiven_but_real_words_are_not(reader):
    assert "genre:dnb" in _read(reader, "fast drum and bass") and "instrument:drums" not in _read(
        reader, "fast drum and bass")
    assert "genre:orchestral" in _read(reader, "orchestal please")  # one edit, same first letter
    assert "mood:calm" in _read(reader, "chil beats")  # one dropped letter of a five-letter word
    assert set(_read(reader, "something fast")) == {"tempo:fast"}  # "fast" is no mistyped "feast"
    assert "scene:chores" not in _read(reader, "looking for a track for coding")  # nor "looking" "cooking"
    assert "mood:calm" not in _read(reader, "somthing dark")  # nor "somthing" "soothing"
    assert words("Lo-Fi & D&D, don't") == ["lo", "fi", "and", "d", "and", "d", "not"]
    for real in ("a catchy chorus", "a strong beat", "calling home", "what's coming up next", "plane ride",
                 "change it up", "fair enough, next"):  # real words are not typos of phrase words
        assert not {"scene:chores", "instrument:strings", "mood:calm", "scene:coding", "scene:space",
                    "scene:battle", "scene:fantasy"} & set(_read(reader, real)), real
    assert "genre:chiptune" not in _read(reader, "guns n roses") and "genre:chiptune" not in _read(
        reader, "canción triste")  # one letter is no plural of "ne"; accents are dropped, not split
    assert "genre:jazz" in _read(reader, "some blues please")  # the exact phrase beats blue + s


def test_a_catalog_is_read_in_its_own_tags():
    """Concepts keep only the tags the catalog has; its own tags ("shoegaze") are concepts of their own; a concept
    whose tags are all missing says nothing."""
    reader = IntentReader([("shoegaze", "dreamy"), ("calm",)])
    assert _read(reader, "some shoegaze")["tag:shoegaze"].need == (frozenset(["shoegaze"]),)
    assert _read(reader, "something calm")["mood:calm"].need == (frozenset(["calm"]),)
    assert "genre:metal" not in _read(reader, "metal")  # no metal or rock tag here
    assert reader.read("") == [] and not reader.fit([]).any()


def test_the_text_match_adds_the_fit_and_counts_concepts_as_evidence():
    tracks = [Track(str(i), f"Title {i}", "A", "MIT", "c", "user", tags=tags) for i, tags in enumerate(TAGS)]
    match = TextMatch.build(tracks)
    request = "something to fall asleep to"  # no word of it is on any card
    assert match.scores(request).argmax() in (1, 5)
    assert not match.scores(request, concepts=False).any()
    assert match.has_evidence(request, first_turn=False)
    assert not match.has_evidence("no drums", first_turn=False)  # a refusal alone names nothing to look for
    match.tag_weight = 0.0
    assert np.allclose(match.scores(request), 0.0)


@pytest.mark.parametrize("text, concept", [
    ("I can't stand vocals", "instrument:vocals"), ("doesnt need vocals", "instrument:vocals"),
    ("I won't listen to metal", "genre:metal"), ("no more drums", "instrument:drums"),
    ("nothing with lyrics", "instrument:vocals"), ("something without drums and vocals", "instrument:vocals"),
    ("anything but country", "genre:folk"), ("too much drums", "instrument:drums"),
    ("no drums - piano", "instrument:drums"),
])
def test_every_way_of_saying_no_declines(text, concept):
    reader = IntentReader([*TAGS, ("female vocals", "folk", "acoustic"), ("instrumental", "calm")])
    assert _read(reader, text)[concept].declined, text


def test_a_resumed_ask_and_a_sleepless_listener(reader):
    assert not _read(reader, "no drums - piano")["instrument:piano"].declined
    assert not _read(reader, "no drums and more piano")["instrument:piano"].declined
    assert not _read(reader, "I can't sleep")["scene:sleep"].declined  # asks for sleep music


def test_a_declined_idea_avoids_only_what_it_names(reader):
    """"nothing sad" must not rule out every piano and slow track; "rock but no metal" still avoids metal."""
    assert not reader.fit(reader.read("nothing sad")).any()
    fit = reader.fit(reader.read("rock but no metal"))
    assert fit[2] > fit[3] and fit.argmax() == 2
    assert "metal" in _read(reader, "rock but no metal")["genre:metal"].avoid


def test_a_tag_spelled_by_the_request_and_a_title_that_names_it_fit():
    """A bring-your-own catalog's tag that a table phrase spells ("synthwave") fits the request for it; a track
    whose name holds the words ("Boss Attack") is not buried under battle music's tags."""
    reader = IntentReader([("synthwave", "calm"), ("calm", "synth"), ("orchestral", "energetic", "loud")],
                          names=[["neon"], ["boss", "attack"], ["epic", "war"]])
    fit = reader.fit(reader.read("some synthwave"))
    assert fit[0] == 1.0 and fit[0] >= fit.max()
    assert reader.fit(reader.read("play Boss Attack"))[1] == 1.0


def test_only_a_search_makes_a_later_turn_a_text_match_turn():
    tracks = [Track(str(i), f"Title {i}", "A", "MIT", "c", "user", tags=tags) for i, tags in enumerate(TAGS)]
    match = TextMatch.build(tracks)
    for feedback in ("beautiful, one more", "quick one please", "slower", "darker", "what a banger",
                     "give me an alternative", "another one"):
        assert not match.has_evidence(feedback, first_turn=False), feedback
    assert match.has_evidence("now something for the gym", first_turn=False)
    assert match.has_evidence("no drums", first_turn=True)  # a first request is all there is
    assert not match.has_evidence("now something for the gym", first_turn=False, concepts=False)


def test_a_title_spelled_out_plays_its_track_over_tracks_that_fit_its_words():
    """"play Battle Theme": the track titled so, not the battle music whose cards say "battle" many times over; a
    one-word title shorter than MIN_TITLE_LETTERS names nothing ("sad songs" is not a request for "Sad")."""
    tracks = [Track("0", "Battle Theme", "SuperTux Team", "GPL", "c", "u", tags=("chiptune", "playful")),
              Track("1", "The Battle of the Battle", "Wesnoth", "GPL", "c", "u", album="Battle for Wesnoth",
                    tags=("orchestral", "cinematic", "energetic", "action")),
              Track("2", "Sad", "A", "MIT", "c", "u", tags=("piano", "calm")),
              Track("3", "Rainy Night", "B", "MIT", "c", "u", tags=("piano", "slow", "romantic"))]
    match = TextMatch.build(tracks)
    assert match.scores("play Battle Theme").argmax() == 0
    assert match.scores("can u play battle theme pls").argmax() == 0
    assert list(match.intent.titled("play rainy night")) == [False, False, False, True]
    assert not match.intent.titled("sad songs for a rainy night").any()  # a description, not a request for it
    assert not match.intent.titled("something for a battle").any()


@pytest.mark.parametrize("text, named", [
    ("play Battle Theme", True), ("battle theme by supertux team pls", True), ("Battle Theme", True),
    ("something like Battle Theme", False), ("similar to battle theme but faster", False),
    ("epic battle theme music with a full orchestra", False), ("not battle theme", False),
    ("can you play battle theme please", True), ("do you have Battle Theme?", True), ("got battle theme?", True),
    ("can you find Battle Theme by SuperTux Team", True), ("I'm looking for Battle Theme from SuperTux Team", True), ("have you got battle theme", True),
    ("do you have anything like battle theme", False), ("do you have any epic battle theme music", False),
    ("do you have battle theme music", False), ("things got battle theme at work, something calm", False),
    ("I have battle theme outside, something cozy", False), ("I need battle theme", False),
    # an opening greeting says nothing against the title; words in another sentence still do
    ("Hi there. Battle Theme please", True), ("Good evening! Battle Theme", True),
    ("Hey, got a sec? Queue up Battle Theme.", True), ("Long day. I have battle theme outside, something cozy", False),
    ("Rough day at work. Something calm like Battle Theme", False), ("I love Battle Theme! Anything like it?", False),
    ("Battle Theme? Nah, something calmer.", False), ("some good battle theme music please", False),
    ("Dark. Slow. Battle Theme.", False), ("battle theme for the morning", False),
    ("Hi! How are you doing? Battle Theme please", True), ("hey dj! Battle Theme", True)])
def test_a_title_names_its_track_only_when_it_is_what_is_asked_for(text, named):
    reader = IntentReader([("chiptune",), ("orchestral",)], names=[words("Battle Theme SuperTux Team"),
                                                                  words("War Drums Wesnoth")],
                          titles=["Battle Theme", "War Drums"])
    assert bool(reader.titled(text)[0]) is named and not reader.titled(text)[1]


@pytest.mark.parametrize("text, referenced", [
    ("something like Battle Theme", True), ("songs similar to battle theme but faster", True),
    ("more like War Drums please", False), ("in the style of the Battle Theme", True),
    ("stuff like battle theme", True), ("I'd like Battle Theme", False), ("i like battle theme", False),
    ("play Battle Theme", False), ("epic battle theme music with a full orchestra", False),
    ("something like battle theme, but slower", True), ("something like battle theme music for a boss", False)])
def test_a_title_after_like_or_similar_to_is_the_measure_not_the_request(text, referenced):
    """"something like Battle Theme" asks for others like it (IntentReader.referenced); "I'd like Battle Theme" asks
    for it. A referenced title's words name no concept: "battle" there is the track's name, not a scene."""
    reader = IntentReader([("chiptune",), ("orchestral", "drums")], names=[words("Battle Theme SuperTux Team"),
                                                                            words("War Drums Wesnoth")],
                          titles=["Battle Theme", "War Drums"])
    assert bool(reader.referenced(text)[0]) is referenced
    assert reader.referenced("more like War Drums please").tolist() == [False, True]
    if referenced:
        assert not any(m.concept == "scene:battle" for m in reader.read(text))
        assert not reader.titled(text).any()  # and it is not asked for itself


def test_a_greeting_that_is_also_a_title_greets():
    """"Good morning, play me a song" greets, even where a track is called Good Morning; typed after it, it asks."""
    reader = IntentReader([("calm",), ("chiptune",)], names=[words("Good Morning A"), words("Battle Theme B")],
                          titles=["Good Morning", "Battle Theme"])
    assert not reader.titled("Good morning, play me a song").any()
    assert list(reader.titled("Good morning! Good Morning please")) == [True, False]
    assert list(reader.titled("good morning. Battle Theme please")) == [False, True]
