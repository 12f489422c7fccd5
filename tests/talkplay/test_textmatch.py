"""The text match (talkplay.textmatch): negations left out of the query, scores, and the span bonus whose sum over
whether a turn's words can speak at all; in the engine a strong match decides the played and the top-ranked track."""

import numpy as np
import pytest

from talkplay.catalog import Track
from talkplay.conversation import ConversationState
from talkplay.recommender import GenerationConfig, Recommender
from talkplay.render import RenderConfig
from talkplay.textmatch import TextMatch, positive_text, tokenize
from tests.worlds import make_model


@pytest.mark.parametrize("text, kept", [
    ("orchestral, no drums", "orchestral"),
    ("calm piano without vocals, but with strings", "calm piano strings"),
    ("I don't want anything dark. Upbeat please", "upbeat"),
    ("not too fast", ""),
    ("epic battle music", "epic battle music"),
])
def test_negated_words_leave_the_query(text, kept):
    assert tokenize(positive_text(text)) == tokenize(kept)


def _tracks():
    return [Track("a", "Storm", "X", "MIT", "c", "user", tags=("orchestral", "epic", "drums")),
            Track("b", "Lull", "Y", "MIT", "c", "user", tags=("ambient", "calm", "piano")),
            Track("c", "Jump", "Z", "MIT", "c", "user", tags=("chiptune", "upbeat"))]


def test_scores_follow_the_words_and_the_dense_part_adds_in():
    match = TextMatch.build(_tracks())
    assert match.has_evidence("anything", first_turn=True) and not match.has_evidence("something else", False)
    assert match.has_evidence("now some piano", first_turn=False) and not match.has_evidence("no piano", False)
    assert np.argmax(match.scores("some calm piano")) == 1 and np.argmax(match.scores("upbeat chiptune")) == 2
    assert match.scores("no piano, something epic").argmax() == 0

    def embed(texts):  # a toy sentence embedder: "boss" means what the epic track is about (its card: its tags)
        return np.array([[1.0, 0.0] if ("epic" in t or "boss" in t) else [0.0, 1.0] for t in texts], np.float32)

    dense = TextMatch.build(_tracks(), embed)
    assert dense.scores("music for a boss")[0] > dense.scores("music for a boss")[1]  # no shared word: vectors decide


def test_a_strong_text_match_decides_the_track(world):  # noqa: F811
    """With a large λ the played track is the best text match; with λ = 0 the engine is unchanged."""
    catalog, store = world["catalog"], world["store"]
    rec = Recommender(make_model(world["tokenizer"], world["n_old"]).eval(), world["tokenizer"], catalog, store,
                      GenerationConfig(max_reply_tokens=2, temperature=0.0), RenderConfig(max_tokens=512))
    for t in store.track_ids:
        wanted = catalog[t].title  # "Song 3" → only that track's card has both words
        config = GenerationConfig(temperature=0.0, text_weight=50.0, max_reply_tokens=2)
        assert rec.choose(ConversationState(), f"play {wanted.lower()} by band {t[1:]}", generation=config).track.track_id == t
    ranked = rec.rank(ConversationState(), "song 4 band 4", k=1, text_weight=50.0)
    assert ranked[0].track_id == "t4"


def test_the_played_track_is_the_top_of_the_ranking(world):  # noqa: F811
    """With the text match on, playing scores the shortlist with the ranking's objective: greedy play = rank top-1
    (the fixture has fewer tracks than the shortlist); the model's likelihood still matters (λ is not everything)."""
    catalog, store = world["catalog"], world["store"]
    rec = Recommender(make_model(world["tokenizer"], world["n_old"]).eval(), world["tokenizer"], catalog, store,
                      GenerationConfig(max_reply_tokens=2), RenderConfig(max_tokens=512))
    config = GenerationConfig(temperature=1.0, music_temperature=0.0, max_reply_tokens=2, seed=0)
    for text in ("calm piano at night", "upbeat song with drums", "band 2", "anything"):
        played = rec.choose(ConversationState(), text, generation=config).track.track_id
        assert played == rec.rank(ConversationState(), text, k=1)[0].track_id, text


def test_names_a_search_reads_undeclined_genres_and_instruments():
    match = TextMatch.build(_tracks())
    assert match.names_a_search("now some piano please")
    assert not match.names_a_search("another one") and not match.names_a_search("no piano")
