"""The text match (talkplay.textmatch): negations left out of the query, scores, and the span bonus whose sum over
a span is λ · s_t + a constant, so decoding and ranking agree; in the engine it steers the span to matching tracks."""

import numpy as np
import pytest

from talkplay.catalog import Track
from talkplay.conversation import ConversationState
from talkplay.recommender import GenerationConfig, Recommender
from talkplay.render import RenderConfig
from talkplay.textmatch import TextMatch, TextMatchBonus, positive_text, tokenize
from tests.test_sft import make_model, world  # noqa: F401  (fixture)


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
    assert np.argmax(match.scores("some calm piano")) == 1 and np.argmax(match.scores("upbeat chiptune")) == 2
    assert match.scores("no piano, something epic").argmax() == 0

    def embed(texts):  # a toy sentence embedder: "boss" means what the epic track is about
        return np.array([[1.0, 0.0] if ("Storm" in t or "boss" in t) else [0.0, 1.0] for t in texts], np.float32)

    dense = TextMatch.build(_tracks(), embed)
    assert dense.scores("music for a boss")[0] > dense.scores("music for a boss")[1]  # no shared word: vectors decide


def test_span_bonus_sums_to_the_track_score(world):  # noqa: F811
    store = world["store"]
    rec = Recommender(make_model(world["tokenizer"], world["n_old"]).eval(), world["tokenizer"], world["catalog"],
                      store, GenerationConfig(), RenderConfig(max_tokens=512))
    s = np.random.default_rng(0).normal(size=len(store))
    bonus = TextMatchBonus(rec.ids, store.codes, s, 2.0)
    totals = []
    for row in range(len(store)):
        codes = [int(c) for c in store.codes[row]]
        totals.append(sum(bonus.bonus(codes[:k])[codes[k]] for k in range(len(codes))))
    totals = np.array(totals)
    assert np.allclose(totals - 2.0 * s, (totals - 2.0 * s)[0])  # λ · s_t plus one constant for every track
    allowed = np.ones(len(store), bool)
    allowed[int(np.argmax(s))] = False  # a played track: it no longer counts in any sum
    held = TextMatchBonus(rec.ids, store.codes, s, 2.0, allowed)
    rows = np.flatnonzero(allowed)
    sums = np.array([sum(held.bonus([int(c) for c in store.codes[r, :k]])[int(store.codes[r, k])]
                         for k in range(store.codes.shape[1])) for r in rows])
    assert np.allclose(sums - 2.0 * s[rows], (sums - 2.0 * s[rows])[0])
    assert np.isclose(np.log(np.exp(sums).sum()), 0.0)  # a distribution over the tracks still allowed


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
