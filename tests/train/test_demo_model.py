"""Smoke test of the shipped demo checkpoint on the offline base model (runs in CI, ~1 min on 2 cores):
it loads into a ready model and answers a request with a music span naming a catalog track, then a reply."""

from pathlib import Path

import pytest

from talkplay.checkpoint import read_info
from talkplay.conversation import ConversationState, Done, TextDelta, TrackChosen
from talkplay.recommender import GenerationConfig, load_recommender

BUNDLE = Path(__file__).resolve().parents[2] / "catalog" / "demo"


@pytest.fixture(scope="module")
def demo_rec():
    return load_recommender(BUNDLE, device="cpu", precision="bf16",
                            generation=GenerationConfig(seed=0, max_reply_tokens=48))


def test_checkpoint_is_small_and_names_its_base_and_store():
    info = read_info(BUNDLE)
    assert info.base_model == "offline:smollm2-135m-instruct" and info.training.get("synthetic_data") is True
    size = sum(p.stat().st_size for p in (BUNDLE / "model").iterdir())
    assert size <= 40 * 2**20
    assert (BUNDLE / "model" / "MODEL_CARD.md").read_text().count("synthetic") >= 1


def test_calm_request_gets_a_catalog_track_and_a_reply(demo_rec):
    state = ConversationState()
    events = list(demo_rec.respond(state, "I want something calm and ambient to study to"))
    chosen, done = events[0], events[-1]
    assert isinstance(chosen, TrackChosen) and isinstance(done, Done)
    assert chosen.track.track_id in demo_rec.catalog
    assert len(chosen.tokens) == len(demo_rec.store.vocab)
    assert demo_rec.store.codes_of(chosen.track.track_id) == demo_rec.store.vocab.codes_for(chosen.tokens)
    reply = "".join(e.text for e in events if isinstance(e, TextDelta)).strip()
    assert reply == done.turn.reply and sum(ch.isalpha() for ch in reply) >= 10
    print(f"\n♪ {chosen.track.title} — {chosen.track.artist}\n{reply}")
