"""Messages answered in words only: rendered without a music span, chosen by the model's P(music) from the same
forward pass, streamed as Talk → TextDelta… → Done with no track, kept in the history (and the KV cache) exactly as
rendered, and shown by the chat page without touching the card, the player or the ratings."""

import dataclasses

import pytest
import torch

from talkplay.chat_session import KEEP, ChatController
from talkplay.browse import CatalogBrowser
from talkplay.conversation import ConversationState, Done, Talk, TextDelta, TrackChosen, _Message
from talkplay.feedback import FeedbackStore
from talkplay.recommender import GenerationConfig, Recommender
from talkplay.render import IGNORE_INDEX, RenderConfig, render_conversation, render_prompt
from talkplay.tokens import START_OF_MUSIC
from tests.worlds import make_model

WORDS = GenerationConfig(max_reply_tokens=6, seed=0, talk=True, music_threshold=1.0)  # every P(music) < 1: words
MUSIC = GenerationConfig(max_reply_tokens=6, seed=0, talk=True, music_threshold=0.0)  # never below 0: music


def _rec(world, **kw):
    return Recommender(make_model(world["tokenizer"], world["n_old"]).eval(), world["tokenizer"], world["catalog"],
                       world["store"], GenerationConfig(max_reply_tokens=6, seed=0), RenderConfig(max_tokens=512), **kw)


@pytest.fixture(scope="module")
def rec(world):
    return _rec(world)


def _msgs(*items):
    return [_Message(*i) for i in items]


def test_a_words_only_turn_renders_without_music_and_supervises_its_reply(world):
    tok, store, catalog = world["tokenizer"], world["store"], world["catalog"]
    conv = _msgs(("user", "play me some calm jazz please"), ("music", "t1"), ("assistant", "here is Song by Band"),
                 ("user", "thanks"), ("assistant", "you are welcome"),
                 ("user", "something upbeat for running"), ("music", "t2"), ("assistant", "here is Song by Band"))
    out = render_conversation(tok, conv, store, catalog, RenderConfig(max_tokens=512))
    start = tok.convert_tokens_to_ids(START_OF_MUSIC)
    assert out.input_ids.count(start) == 2  # two music turns, none for the thanks
    a, b = out.reply_spans[1]
    assert out.music_spans[1] == (a, a) and out.grounding_spans[1] == (a, a)
    assert out.labels[a:b] == out.input_ids[a:b]  # the words-only reply is learned
    assert out.labels[a - 1] == IGNORE_INDEX  # …after the header, where a request's turn opens <start_of_music>
    assert tok.decode(out.input_ids[a:b]).strip() == "you are welcome"
    # inference renders the same history id for id as a prefix (the KV cache of a talk turn is reusable)
    prompt = render_prompt(tok, conv[:6], store, catalog, RenderConfig(max_tokens=1024))  # nothing dropped
    assert out.input_ids[:len(prompt)] == prompt


def test_history_that_does_not_end_with_a_user_message_is_refused(world):
    with pytest.raises(ValueError, match="must end with the user message"):
        render_prompt(world["tokenizer"], _msgs(("user", "hi"), ("assistant", "hello")), world["store"],
                      world["catalog"])
    with pytest.raises(ValueError, match="roles"):
        render_prompt(world["tokenizer"], _msgs(("user", "hi"), ("music", "t1"), ("user", "x")), world["store"],
                      world["catalog"])


def test_words_only_turn_streams_no_track_and_keeps_the_history(rec):
    state = ConversationState()
    first = rec.chat(state, "play me some calm jazz please", generation=MUSIC)
    events = list(rec.respond(state, "thanks", generation=WORDS))
    assert isinstance(events[0], Talk) and isinstance(events[-1], Done)
    assert all(isinstance(e, TextDelta) for e in events[1:-1])
    assert not any(isinstance(e, TrackChosen) for e in events)
    turn = events[-1].turn
    assert turn.track_id is None and turn.match == "talk" and turn.score == events[0].p_music
    assert state.played == [first.track_id] and state.last_track == first.track_id
    assert [m.role for m in state.messages("next")] == ["user", "music", "assistant", "user", "assistant", "user"]
    assert state.reject() == first.track_id  # "reject" means the track playing, not the words-only turn
    nxt = rec.chat(state, "something upbeat for running", generation=MUSIC)
    assert nxt.track_id not in (None, first.track_id)


def test_the_decision_is_the_models_probability_from_the_same_pass(rec):
    state = ConversationState()
    rec.chat(state, "play me some calm jazz please", generation=MUSIC)
    p = rec.music_probability(state, "I like piano music at night")
    talk = next(iter(rec.respond(ConversationState(list(state.turns), set(state.rejected)),
                                 "I like piano music at night", generation=WORDS)))
    assert isinstance(talk, Talk) and talk.p_music == pytest.approx(p, rel=1e-3, abs=1e-9)
    at = dataclasses.replace(MUSIC, music_threshold=p * 1.5)  # just above P(music): words; just below: music
    assert isinstance(next(iter(rec.respond(ConversationState(list(state.turns)), "I like piano music at night",
                                            generation=at))), Talk)
    below = dataclasses.replace(MUSIC, music_threshold=p / 1.5)
    assert isinstance(next(iter(rec.respond(ConversationState(list(state.turns)), "I like piano music at night",
                                            generation=below))), TrackChosen)


@pytest.mark.parametrize("text_weight", [0.0, 2.0])
def test_turns_after_words_only_ones_equal_a_fresh_engines(world, text_weight):
    """The prefix cache a words-only turn leaves is the prompt the next turn renders: the same turns with and without
    the cache."""
    cached, fresh = _rec(world), _rec(world, prefix_cache_mb=0)
    script = [("play me some calm jazz please", MUSIC), ("thanks", WORDS), ("something upbeat for running", MUSIC),
              ("I like piano music at night", WORDS), ("recommend a song with loud drums", MUSIC)]
    a, b = ConversationState(key="a"), ConversationState(key="b")
    for text, gen in script:
        gen = dataclasses.replace(gen, text_weight=text_weight)
        ta, tb = cached.chat(a, text, generation=gen), fresh.chat(b, text, generation=gen)
        assert (ta.track_id, ta.reply) == (tb.track_id, tb.reply)
    assert len(a.played) == 3


def test_an_engine_follows_its_checkpoint_unless_told(world):
    """talk=None: words only when the model was trained for it (Recommender.talks); explicit False always plays."""
    untrained = _rec(world)
    assert not untrained.may_talk(GenerationConfig()) and untrained.may_talk(GenerationConfig(talk=True))
    trained = _rec(world, talks=True)
    assert trained.may_talk(GenerationConfig()) and not trained.may_talk(GenerationConfig(talk=False))
    turn = untrained.chat(ConversationState(), "thanks", generation=GenerationConfig(music_threshold=1.0, seed=0,
                                                                                     max_reply_tokens=4))
    assert turn.track_id is not None  # a model never taught words-only turns always plays a track
    with pytest.raises(ValueError, match="music_threshold"):
        GenerationConfig(music_threshold=1.5)


def test_choose_always_chooses_a_track(rec):
    chosen = rec.choose(ConversationState(), "thanks", generation=WORDS)
    assert isinstance(chosen, TrackChosen)


def test_the_chat_page_keeps_card_player_and_rating_on_a_words_only_answer(world, tmp_path):
    rec = _rec(world)
    rec.generation = dataclasses.replace(WORDS)  # the page answers every message in words…
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    try:
        ctrl = ChatController(rec, CatalogBrowser(world["catalog"]), store, "m1", "c1")
        *_, (messages, card, audio, played, session) = ctrl.skip(None, 1.0, 0.9, "constrained")  # …a skip plays
        assert card is not KEEP and "Song" in played
        updates = list(ctrl.send("what key is it in?", session, 1.0, 0.9, "constrained"))
        assert all(u[1] is KEEP and u[2] is KEEP for u in updates)  # the card and the player stay as they are
        messages, _, _, played_after, session = updates[-1]
        assert played_after == played and len(session.conversation.played) == 1
        assert messages[-1]["role"] == "assistant" and not messages[-1]["content"].startswith("**♪")
        assert session.conversation.turns[-1].track_id is None
        assert "saved" in ctrl.rate(session, 4)  # the rating is the playing track's
        store.flush()
        rows = store.rows()
        assert rows[-1]["track_id"] == session.conversation.played[0] and rows[-1]["turn_index"] == 1
        assert ctrl.like_reply(session, len(messages) - 1, True) == "Only the assistant's replies about a track can be rated."
    finally:
        store.close()


def test_header_logits_come_from_the_lead_pass(rec, world):
    """_lead_and_tree(before=True) returns the log-probs after lead[:-1] — those of a separate pass."""
    from transformers import DynamicCache

    prompt = render_prompt(world["tokenizer"], [_Message("user", "thanks")], world["store"], world["catalog"])
    cand = torch.tensor([[*rec.ids.position_ids[0][:1].tolist(), *rec.ids.position_ids[1][:1].tolist()]])
    first, _, (header, hidden) = rec._lead_and_tree(prompt, DynamicCache(), cand, before=True)
    alone = torch.log_softmax(rec.forward(torch.tensor([prompt[:-1]]), DynamicCache())[0, -1].float(), dim=-1)
    assert torch.allclose(header, alone, atol=1e-4) and hidden is None  # no decision head: no hidden state kept


def test_words_still_come_when_every_track_was_heard(rec):
    from talkplay.trie import NoAllowedTrack

    state = ConversationState()
    for _ in range(len(rec.store)):
        rec.chat(state, "something upbeat for running", generation=MUSIC)
    assert isinstance(next(iter(rec.respond(state, "thanks", generation=WORDS))), Talk)
    with pytest.raises(NoAllowedTrack):
        rec.chat(state, "one more", generation=MUSIC)


def _head(world, threshold=0.5, seed=0):
    import numpy as np

    from talkplay.decision import MusicDecision

    rng = np.random.default_rng(seed)
    h = make_model(world["tokenizer"], world["n_old"]).config.hidden_size
    return MusicDecision(rng.normal(size=h), 0.1, rng.normal(size=h) * 0.1, np.abs(rng.normal(size=h)) + 0.5, threshold)


@pytest.mark.parametrize("text_weight", [0.0, 2.0])
def test_a_decision_head_reads_the_headers_hidden_state_in_the_turns_own_pass(world, text_weight):
    from transformers import DynamicCache

    head = _head(world)
    rec = _rec(world, decision=head, talks=True)
    state = ConversationState()
    rec.chat(state, "play me some calm jazz please", generation=MUSIC)
    prompt = rec._prompt(state, "I like piano music at night")
    hidden = rec.model.get_decoder()(input_ids=torch.tensor([prompt[:-1]])).last_hidden_state[0, -1]
    p = head.p_music(hidden)
    assert rec.music_probability(state, "I like piano music at night") == pytest.approx(p, abs=1e-5)
    gen = dataclasses.replace(WORDS, text_weight=text_weight)  # the plain pass, or the prompt + shortlist tree pass
    event = next(iter(rec.respond(ConversationState(list(state.turns)), "I like piano music at night", generation=gen)))
    assert isinstance(event, Talk) and event.p_music == pytest.approx(p, abs=1e-5)
    assert rec.threshold(GenerationConfig()) == head.threshold and rec.threshold(WORDS) == 1.0
    default = dataclasses.replace(gen, music_threshold=None)  # the head's own threshold decides
    first = next(iter(rec.respond(ConversationState(list(state.turns)), "I like piano music at night",
                                  generation=default)))
    assert isinstance(first, Talk if p < head.threshold else TrackChosen)


def test_a_decision_head_is_saved_and_read_back_and_a_bad_file_is_named(world, tmp_path):
    from talkplay.decision import DECISION_FILE, load_decision

    head = _head(world, threshold=0.35)
    path = head.save(tmp_path / DECISION_FILE, {"note": "x"})
    back = load_decision(tmp_path)
    assert back.threshold == 0.35 and back.bias == head.bias and (back.weight == head.weight).all()
    assert load_decision(tmp_path / "nowhere") is None
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=DECISION_FILE):
        load_decision(path)


def test_words_only_answers_come_from_the_card_or_from_the_model(rec, world):
    state = ConversationState()
    first = rec.chat(state, "play me some calm jazz please", generation=MUSIC)
    title = world["catalog"][first.track_id].title
    turn = rec.chat(state, "who made this?", generation=WORDS)
    assert turn.track_id is None and turn.reply == f"“{title}” is by {world['catalog'][first.track_id].artist}."
    assert rec.chat(ConversationState(), "what key is it", generation=WORDS).reply.startswith("Nothing is playing")
    model = dataclasses.replace(WORDS, talk_reply="model")
    cached, fresh = _rec(world), _rec(world, prefix_cache_mb=0)  # the model's own words, cache kept consistent
    a, b = ConversationState(key="a"), ConversationState(key="b")
    for text, gen in [("play me some calm jazz please", MUSIC), ("thanks", model), ("who made this?", WORDS),
                      ("something upbeat for running", MUSIC)]:
        ta, tb = cached.chat(a, text, generation=gen), fresh.chat(b, text, generation=gen)
        assert (ta.track_id, ta.reply) == (tb.track_id, tb.reply)


@pytest.mark.parametrize("text, act", [
    ("hey there", "greeting"), ("thx!", "thanks"), ("gotta go, bye", "goodbye"), ("what can you do?", "app_question"),
    ("whats the bpm", "tempo"), ("which key is this in", "key"), ("who composed this", "artist"),
    ("what game is this from", "album"), ("when was it released", "year"), ("is that a flute?", "instruments"),
    ("what genre is this", "genre"), ("can i use this in my video", "license"), ("how long is it", "duration"),
    ("thanks! what key is it?", "key"), ("what's this called", "title")])
def test_a_words_only_message_is_read_for_what_it_asks(text, act):
    from talkplay.answers import read_act

    assert read_act(text) == act


def test_asking_to_play_a_title_is_music_whatever_the_head_reads(rec, world):
    title = world["catalog"]["t3"].title
    event = next(iter(rec.respond(ConversationState(), f"play {title} please", generation=WORDS)))
    assert isinstance(event, TrackChosen) and event.track.track_id == "t3"
    assert isinstance(next(iter(rec.respond(ConversationState(), f"is this {title}?", generation=WORDS))), Talk)
