"""Refinements (talkplay.refine): relative requests read as people type them, the move rule shared with the data
generator, and the engine playing a track that moves the asked way from the previous one."""

import pytest

from talkplay.conversation import ConversationState, Turn
from talkplay.recommender import GenerationConfig, Recommender
from talkplay.refine import Attributes, directions, moves
from talkplay.render import RenderConfig
from tests.worlds import make_model


@pytest.mark.parametrize("text, expected", [
    ("love it but slower", ("slower",)), ("a bit faster maybe?", ("faster",)), ("too fast for me", ("slower",)),
    ("calmer please", ("calmer",)), ("ok too intense now, tone it down", ("calmer",)), ("more energy!", ("livelier",)),
    ("less dark, more upbeat", ("livelier", "brighter")), ("moodier pls", ("darker",)), ("needs more beat", ("more_drums",)),
    ("something without drums", ("no_drums",)), ("less drums", ("fewer_drums",)), ("slower and calmer", ("slower", "calmer")),
    ("play me some slow jazz", ()), ("something else", ()), ("more like this", ()), ("I want upbeat music", ()),
])
def test_directions_read_as_people_type(text, expected):
    assert directions(text) == expected


def attrs(bpm=None, energy=None, brightness=None, perc=None, tags=(), measured=True):
    row = {"tempo_bpm": bpm, "tempo_confidence": 0.9, "energy": energy, "brightness": brightness,
           "percussiveness": perc} if measured else None
    return Attributes.of(tags, row)


def test_moves_needs_a_noticeable_step_and_tags_that_agree():
    a = attrs(bpm=120, energy=0.5, brightness=0.5, perc=0.3, tags=("drums",))
    assert moves(a, attrs(bpm=100, tags=("drums",)), "slower") and not moves(a, attrs(bpm=110), "slower")
    assert not moves(attrs(bpm=120, tags=("slow",)), attrs(bpm=100, tags=("fast",)), "slower")  # tags disagree
    assert moves(a, attrs(energy=0.3), "calmer") and moves(a, attrs(brightness=0.8), "brighter")
    assert moves(a, attrs(perc=0.1, tags=("drumless",)), "no_drums") and not moves(a, attrs(perc=0.1), "no_drums")
    unmeasured = attrs(tags=("slow",), measured=False)
    assert moves(attrs(tags=("fast",), measured=False), unmeasured, "slower")  # tags decide without features
    with pytest.raises(ValueError):
        moves(a, a, "sideways")


def test_a_relative_turn_plays_a_track_that_moves_that_way(world):  # noqa: F811
    rec = Recommender(make_model(world["tokenizer"], world["n_old"]).eval(), world["tokenizer"], world["catalog"],
                      world["store"], GenerationConfig(max_reply_tokens=4), RenderConfig(max_tokens=512))
    ids = list(world["store"].track_ids)
    tempo = {t: 80 + 20 * i for i, t in enumerate(ids)}  # t0 slowest … t5 fastest
    rec._attributes = {t: attrs(bpm=tempo[t]) for t in ids}
    prev = ids[3]
    state = ConversationState([Turn("something", prev, "ok", "constrained", 0.0, ())])
    for text, ok in (("slower please", lambda t: tempo[t] <= tempo[prev] - 15),
                     ("way faster", lambda t: tempo[t] >= tempo[prev] + 15)):
        for seed in range(4):
            chosen = rec.choose(state, text, generation=GenerationConfig(seed=seed, music_temperature=1.0))
            assert ok(chosen.track.track_id), (text, chosen.track.track_id)
        ranked = rec.rank(state, text, k=len(ids))
        movers = [r.track_id for r in ranked if ok(r.track_id)]
        assert [r.track_id for r in ranked[:len(movers)]] == movers  # ranking: every mover before the rest
    # nothing moves that way (the fastest track played): the model reads the request alone, still a real track
    state = ConversationState([Turn("something", ids[5], "ok", "constrained", 0.0, ())])
    assert rec.choose(state, "faster").track.track_id in ids


def test_an_asked_tempo_overrides_the_way_a_request_seems_to_move(world):  # noqa: F811
    """"not too fast, around 100 bpm" reads as "slower" too; the number says where to go, so the candidates are not
    cut to the slower tracks (which the previous one's 140 BPM would have made 80–120); a mood direction stays."""
    import numpy as np

    rec = Recommender(make_model(world["tokenizer"], world["n_old"]).eval(), world["tokenizer"], world["catalog"],
                      world["store"], GenerationConfig(max_reply_tokens=4), RenderConfig(max_tokens=512))
    ids = list(world["store"].track_ids)
    rec._attributes = {t: attrs(bpm=80 + 20 * i) for i, t in enumerate(ids)}
    state = ConversationState([Turn("something", ids[3], "ok", "constrained", 0.0, ())])
    rows = np.arange(len(ids))
    assert rec._relative(state, "slower please", rows) is not None
    assert rec._relative(state, "not too fast, around 180 bpm", rows) is None


def test_a_move_from_the_track_playing_is_music_whatever_the_decision_reads(world):  # noqa: F811
    from talkplay.conversation import TrackChosen

    rec = Recommender(make_model(world["tokenizer"], world["n_old"]).eval(), world["tokenizer"], world["catalog"],
                      world["store"], GenerationConfig(max_reply_tokens=4), RenderConfig(max_tokens=512))
    ids = list(world["store"].track_ids)
    rec._attributes = {t: attrs(bpm=80 + 20 * i) for i, t in enumerate(ids)}
    state = ConversationState([Turn("something", ids[3], "ok", "constrained", 0.0, ())])
    words = GenerationConfig(max_reply_tokens=4, seed=0, talk=True, music_threshold=1.0)  # every P(music) is below 1
    assert isinstance(next(iter(rec.respond(state, "something slower", generation=words))), TrackChosen)
