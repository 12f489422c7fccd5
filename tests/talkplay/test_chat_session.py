"""Chat page logic without a browser: a streamed turn with card and preview, skip = rejection, every
feedback kind stored with its turn, friendly errors, escaping of untrusted text."""

import numpy as np
import pytest
import soundfile as sf

from talkplay.browse import CatalogBrowser
from talkplay.catalog import Track, load_catalog, save_catalog
from talkplay.chat_session import SKIP_REQUEST, ChatController, ChatSession
from talkplay.feedback import FeedbackStore
from talkplay.recommender import GenerationConfig, Recommender
from talkplay.render import RenderConfig
from tests.worlds import N_TRACKS, make_model


XSS = '<img src=x onerror="window.__pwned=1">'


@pytest.fixture(scope="module")
def app_world(world, tmp_path_factory):  # noqa: F811
    """The fixture store's tracks as a catalog with real (4-s WAV) previews, and a tiny engine over it."""
    root = tmp_path_factory.mktemp("app")
    bundle = root / "bundle"
    (bundle / "previews").mkdir(parents=True)
    tracks = []
    for i in range(N_TRACKS):
        t = np.arange(4 * 8000) / 8000  # 4 s: long enough to see where playback starts
        sf.write(bundle / "previews" / f"t{i}.wav", 0.2 * np.sin(2 * np.pi * (220 + 40 * i) * t), 8000)
        tracks.append(Track(f"t{i}", f"Song {i}", f"Band {i}", "CC-BY-4.0", f"“Song {i}” by Band {i}",
                            f"https://example.org/{i}.ogg", tags=["calm", "piano"] if i % 2 else ["upbeat"],
                            caption=f"A *fixture* track number {i}.", preview_path=f"previews/t{i}.wav",
                            album=f"{XSS}Album {i}"))  # hostile catalog metadata: must stay inert everywhere
    save_catalog(bundle, tracks)
    catalog = load_catalog(bundle)
    rec = Recommender(make_model(world["tokenizer"], world["n_old"]).eval(), world["tokenizer"], catalog,
                      world["store"], GenerationConfig(max_reply_tokens=6), RenderConfig(max_tokens=512))
    return {"bundle": bundle, "catalog": catalog, "rec": rec, "root": root}


@pytest.fixture
def ctrl(app_world, tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    yield ChatController(app_world["rec"], CatalogBrowser(app_world["catalog"]), store, "m1", "c1")
    store.close()


def last(gen):
    out = None
    for out in gen:
        pass
    return out


def test_send_streams_a_turn_with_card_and_preview(ctrl):
    updates = list(ctrl.send("play me some calm jazz please", None, 1.0, 0.9, "constrained"))
    messages, card, audio, played, session = updates[-1]
    assert messages[0] == {"role": "user", "content": "play me some calm jazz please"}
    assert messages[1]["role"] == "assistant" and messages[1]["content"].startswith("**♪ Song ")
    assert "**Why this track:**" in card and "**License:**" in card and audio.endswith(".wav")
    assert played.startswith("1. Song ") and len(session.conversation.turns) == 1
    assert len(updates) >= 3  # user message, track, then the reply as it streams


def test_skip_rejects_and_never_returns_the_track(ctrl):
    session = last(ctrl.send("something upbeat for running", None))[-1]
    first = session.conversation.turns[0].track_id
    for _ in range(3):
        session = last(ctrl.skip(session))[-1]
    played = session.conversation.played
    assert len(set(played)) == 4 and first in session.conversation.rejected
    assert all(t.user == SKIP_REQUEST for t in session.conversation.turns[1:])
    assert "*skipped*" in ctrl.played_markdown(session)
    ctrl.feedback.flush()
    assert [r["kind"] for r in ctrl.feedback.rows()] == ["skip"] * 3


def test_every_feedback_kind_is_stored_with_its_turn(ctrl):
    session = last(ctrl.send("I like piano music at night", None))[-1]
    session = last(ctrl.send("something upbeat for running", session))[-1]
    assert ctrl.like_track(session, True) == "Thanks — your like of this track is saved (feedback saved)."
    ctrl.like_track(session, False)
    reply_index = max(session.turn_of_message)  # the second reply
    ctrl.like_reply(session, 1, True)  # the first reply
    ctrl.like_reply(session, reply_index, False)
    assert ctrl.like_reply(session, 0, True) == "Only the assistant's replies about a track can be rated."
    ctrl.rate(session, "4")
    ctrl.comment(session, "nice *pick*")
    assert ctrl.comment(session, "  ") == "Write a comment first."
    ctrl.feedback.flush()
    rows = ctrl.feedback.rows()
    kinds = [(r["kind"], r["value"], r["turn_index"]) for r in rows]
    assert kinds == [("like_track", "1", 2), ("dislike_track", "0", 2), ("like_reply", "1", 1),
                     ("dislike_reply", "0", 2), ("rating", "4", 2), ("comment", "nice *pick*", 2)]
    turn1 = session.conversation.turns[0]
    assert rows[2]["track_id"] == turn1.track_id and rows[2]["reply"] == turn1.reply
    assert rows[0]["track_tokens"].count("<|") == len(turn1.tokens)
    assert {r["session_id"] for r in rows} == {session.session_id}


def test_feedback_before_any_turn(ctrl):
    assert ctrl.like_track(None, True) == "Nothing to rate yet."
    assert ctrl.rate(ChatSession(), None) == "Pick 1–5 stars first."


class Broken:
    generation = GenerationConfig()

    def respond(self, *a, **k):
        raise RuntimeError("CUDA out of memory: secret internals")
        yield


def test_engine_error_is_a_short_message(app_world):
    ctrl = ChatController(Broken(), CatalogBrowser(app_world["catalog"]), None)
    messages = last(ctrl.send("hello", None))[0]
    assert messages[-1]["role"] == "assistant" and "went wrong" in messages[-1]["content"]
    assert "CUDA" not in messages[-1]["content"] and "Traceback" not in messages[-1]["content"]
    assert ctrl.like_track(ChatSession(), True) == "Nothing to rate yet."


def test_everything_heard_is_explained(app_world, ctrl):
    session = ChatSession()
    session.conversation.rejected.update(app_world["catalog"]._by_id)
    messages = last(ctrl.send("more", session))[0]
    assert "heard every track" in messages[-1]["content"]


def test_untrusted_text_is_escaped_and_missing_preview_is_said(ctrl, app_world):
    messages = last(ctrl.send("<img src=x onerror=alert(1)> [link](http://evil)", None))[0]
    assert "<img" not in messages[0]["content"] and "\\[link\\]" in messages[0]["content"]
    assert_missing_preview_is_said(ctrl, app_world, "t0")


def assert_missing_preview_is_said(ctrl, app_world, track_id: str) -> None:
    """Delete a track's preview for a moment: its card must say so and offer no audio."""
    from talkplay.conversation import TrackChosen

    preview = app_world["bundle"] / "previews" / f"{track_id}.wav"
    data = preview.read_bytes()
    preview.unlink()
    try:
        card, audio = ctrl.card(TrackChosen(app_world["catalog"][track_id], 0.0, ("playlist",)))
        assert audio is None and "Preview unavailable" in card
    finally:
        preview.write_bytes(data)


def test_unloadable_model_is_reported_in_one_line(app_world):
    from talkplay.chat_session import LazyRecommender
    from talkplay.checkpoint import CheckpointError

    def fail():
        raise CheckpointError("catalog/x: no checkpoint.json")

    ctrl = ChatController(LazyRecommender(fail), CatalogBrowser(app_world["catalog"]), None)
    messages = last(ctrl.send("hello", None))[0]
    assert "not available" in messages[-1]["content"] and "error " in messages[-1]["content"]
    assert "checkpoint.json" not in messages[-1]["content"] and "catalog/" not in messages[-1]["content"]


def test_long_messages_are_cut_and_long_conversations_offer_a_reset(ctrl, monkeypatch):
    import dataclasses

    messages, _, _, _, session = last(ctrl.send("calm piano " * 500, None))
    assert "cut to 1000 characters" in messages[0]["content"]
    assert 0 < len(session.conversation.turns[0].user) <= ctrl.settings.max_message_chars  # shortened to the budget
    monkeypatch.setattr(ctrl, "settings", dataclasses.replace(ctrl.settings, max_turns=1))
    messages = last(ctrl.send("more", session))[0]
    assert "New conversation" in messages[-1]["content"] and len(session.conversation.turns) == 1


# ------------------------------------------------------------------------------------------ one state per session


def test_skip_during_streaming_skips_the_track_on_screen(ctrl):
    """Skip pressed while turn 2's reply streams: turn 2's track is the one skipped (not turn 1's), it never
    plays again, and the chat stays user/assistant/user/assistant (the skip waits for the reply to end)."""
    import threading

    session = last(ctrl.send("calm piano", None))[-1]
    first = session.conversation.turns[0].track_id
    stream = ctrl.send("something upbeat", session)
    for _, _, _, _, session in stream:
        if session.messages[-1]["content"].startswith("**♪ "):
            break  # turn 2's track is on screen, its reply is still to come
    on_screen = session.on_screen
    assert on_screen is not None and on_screen != first
    skipped = []
    worker = threading.Thread(target=lambda: skipped.append(last(ctrl.skip(session))))
    worker.start()
    worker.join(0.5)
    assert worker.is_alive()  # waits for the streaming turn
    for _ in stream:  # the reply finishes
        pass
    worker.join(60)
    assert not worker.is_alive()
    conv = session.conversation
    assert conv.rejected == {on_screen} and first not in conv.rejected
    assert [t.track_id for t in conv.turns][:2] == [first, on_screen] and len(set(conv.played)) == 3
    roles = [m["role"] for m in session.messages]
    assert roles == ["user", "assistant"] * 3
    assert session.messages[4]["content"] == SKIP_REQUEST
    ctrl.feedback.flush()
    assert [(r["kind"], r["turn_index"], r["track_id"]) for r in ctrl.feedback.rows()] == [("skip", 2, on_screen)]


def test_a_second_skip_of_the_same_track_is_not_stored_twice(ctrl):
    session = last(ctrl.send("calm piano", None))[-1]
    target = session.on_screen
    session.on_screen = target
    last(ctrl.skip(session))
    session.on_screen = target  # a stale click naming the same track again
    last(ctrl.skip(session))
    ctrl.feedback.flush()
    assert [r["track_id"] for r in ctrl.feedback.rows() if r["kind"] == "skip"] == [target]


def test_rate_limit_follows_the_visitor_across_new_conversations(ctrl):
    from talkplay.limits import RateLimiter

    ctrl.turn_limit = RateLimiter(2, 60)
    for _ in range(2):
        session = ctrl.new_session("10.0.0.1|abc")[-1]
        assert last(ctrl.send("calm", session))[0][-1]["content"].startswith("**♪ ")
    session = ctrl.new_session("10.0.0.1|abc")[-1]
    assert "faster than this demo" in last(ctrl.send("calm", session))[0][-1]["content"]
    other = ctrl.new_session("10.0.0.2|def")[-1]  # another visitor is not limited by the first
    assert last(ctrl.send("calm", other))[0][-1]["content"].startswith("**♪ ")
    ctrl.total_turn_limit = RateLimiter(1, 60)  # the server's budget over all visitors
    ctrl.total_turn_limit.allow("all")
    assert "busy" in last(ctrl.send("calm", ctrl.new_session("10.0.0.3|x")[-1]))[0][-1]["content"]


@pytest.mark.parametrize("settings", [(float("nan"), 0.9, "constrained"), (1.0, float("inf"), "constrained"),
                                      ("1e999", 0.9, "constrained"), (9.0, 0.9, "constrained"), (1.0, 0.0, "constrained"),
                                      (None, 0.9, "constrained"), (1.0, 0.9, "/etc/passwd")])
def test_bad_numbers_are_refused_before_the_model_with_one_log_line(ctrl, caplog, settings):
    with caplog.at_level("WARNING"):
        messages, _, _, _, session = last(ctrl.send("calm", None, *settings))
    assert "out of range" in messages[-1]["content"] and not session.conversation.turns
    lines = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert len(lines) == 1 and lines[0].exc_info is None and "rejected settings" in lines[0].getMessage()
