"""Words-only training turns (train.data.talk_turns) and the music/words check (train.evaluation.dialogue_acts):
answers come from the card of the track playing, a missing fact is said to be missing, the turns render as the
conversation task renders them, and the check's file is validated line by line."""

import json
import random

import pytest

from talkplay.catalog import Track
from train.data.conversation_schema import Conversation, Message
from talkplay.answers import TRACK_ACTS, card_bpm, card_key, track_answer
from train.data.talk_turns import ACTS, talk_conversations
from train.evaluation.dialogue_acts import answered_from_card, read_acts

FULL = Track("a", "Leaving Earth", "Daniel Roux", "GPL-3.0-or-later", "credit", "https://example.org/a.ogg",
             album="Colobot OST", year=2001, tags=("electronic", "sci-fi", "drums", "synth", "mid-tempo"),
             caption="A mid-tempo electronic track in C# minor with drums, ~114 BPM.")
BARE = Track("b", "Untitled", "", "CC0-1.0", "credit", "https://example.org/b.ogg", tags=("ambient",))
CATALOG = {t.track_id: t for t in (FULL, BARE)}


def test_answers_state_the_cards_facts_and_say_when_one_is_missing():
    rng = random.Random(0)
    assert card_key(FULL) == "C# minor" and card_bpm(FULL) == 114 and card_key(BARE) is None
    assert track_answer("key", FULL, rng) == "“Leaving Earth” is in C# minor."
    assert "114 BPM" in track_answer("tempo", FULL, rng) and "mid-tempo" in track_answer("tempo", FULL, rng)
    assert track_answer("artist", FULL, rng) == "“Leaving Earth” is by Daniel Roux."
    assert "Colobot OST" in track_answer("album", FULL, rng) and "2001" in track_answer("year", FULL, rng)
    assert track_answer("instruments", FULL, rng) == "“Leaving Earth” has drums and synth."
    assert track_answer("genre", FULL, rng) == "“Leaving Earth” is electronic."
    for act in ("key", "tempo", "artist", "album", "year", "instruments"):
        answer = track_answer(act, BARE, rng)
        assert "doesn't give" in answer or "no " in answer, (act, answer)  # never a guess
    for act in TRACK_ACTS:  # and the check agrees that each answer comes from the card
        assert answered_from_card(track_answer(act, FULL, rng), FULL, act), act
        assert answered_from_card(track_answer(act, BARE, rng), BARE, act), act
    assert not answered_from_card("It is in G major.", FULL, "key")
    assert not answered_from_card("About 90 BPM.", FULL, "tempo")


def _conversation(i: int) -> Conversation:
    msgs = []
    for t, track in enumerate(("a", "b", "a", "b")):
        msgs += [Message("user", f"request {t}"), Message("music", f"{track}"), Message("assistant", f"reply {t}")]
    return Conversation(f"c{i}", tuple(msgs), "train")


def test_talk_conversations_insert_one_words_only_turn_after_the_right_track():
    convs = [_conversation(i) for i in range(300)]
    talk = talk_conversations(convs, CATALOG, seed=0, per_conversation=1)
    assert len(talk) == 300 and all(t.synthetic and t.conversation_id.startswith("talk:") for t in talk)
    acts = {t.act for t in talk}
    assert acts == set(ACTS)  # every kind of words-only turn occurs
    for t in talk:
        roles = [m.role for m in t.messages]
        i = next(k for k in range(0, len(roles), 3) if roles[k:k + 2] == ["user", "assistant"])
        talk_user, answer = t.messages[i], t.messages[i + 1]
        assert roles[:i] == ["user", "music", "assistant"] * (i // 3)
        assert roles[i + 2:] in ([], ["user", "music", "assistant"])
        if t.act in TRACK_ACTS:
            assert i >= 3  # a question about the track comes after one played
            playing = CATALOG[t.messages[i - 2].content]
            assert f"“{playing.title}”" in answer.content
        if t.act == "goodbye":
            assert roles[i + 2:] == []
    again = talk_conversations(convs, CATALOG, seed=0, per_conversation=1)
    assert [t.messages for t in again] == [t.messages for t in talk]  # deterministic per seed


def test_dialogue_act_files_are_checked_line_by_line(tmp_path):
    good = tmp_path / "acts.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in (
        {"text": "hi", "music": False, "kind": "greeting"},
        {"text": "wat bpm", "music": False, "kind": "track_question", "asks": "tempo"},
        {"text": "calm piano", "music": True, "kind": "first_request"})) + "\n")
    acts = read_acts(good)
    assert [a.music for a in acts] == [False, False, True] and acts[1].asks == "tempo"
    for bad, where in (({"text": "hi", "music": "no", "kind": "greeting"}, "field 'music'"),
                       ({"text": "x", "music": True, "kind": "greeting"}, "field 'kind'"),
                       ({"text": "key?", "music": False, "kind": "track_question", "asks": "mood"}, "field 'asks'"),
                       ({"music": False, "kind": "greeting"}, "line 2")):
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps({"text": "ok", "music": True, "kind": "follow_up"}) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(ValueError, match=where):
            read_acts(path)


def test_the_shipped_check_set_is_valid_and_balanced():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "catalog" / "demo" / "eval" / "dialogue_acts.jsonl"
    acts = read_acts(path)
    assert sum(not a.music for a in acts) >= 30 and sum(a.music for a in acts) >= 30


def test_the_decision_heads_logistic_fit_separates_and_balances_the_classes():
    import numpy as np

    from train.training.decision import balanced, fit_logistic

    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(-1, 1, size=(30, 4)), rng.normal(1, 1, size=(300, 4))])  # few words-only, many requests
    y = np.array([0] * 30 + [1] * 300)
    w, b = fit_logistic(x, y, 1e-3)
    p = 1 / (1 + np.exp(-(x @ w + b)))
    assert balanced(p, y, 0.5) > 0.85  # the rare class is not given up for the common one
