"""Conversation schema: structure, grounding, rejections, JSONL (plain and gzip) round trips."""

import pytest

from talkplay.catalog import Track, save_catalog
from train.data.conversation_schema import (
    Conversation,
    ConversationError,
    Message,
    conversation_stats,
    read_conversations,
    validate_conversation,
    write_conversations,
)


@pytest.fixture
def catalog(tmp_path):
    tracks = [Track(track_id=f"t{i}", title=f"Song {i}", artist=f"Band {i}", license="MIT", attribution="c",
                    source="user") for i in range(6)]
    return save_catalog(tmp_path, tracks)


def turn(user, track, reply, **kw):
    return [Message("user", user, intent=kw.get("intent", "open_genre")),
            Message("music", track, rejected=kw.get("rejected", False)), Message("assistant", reply)]


def conv(*turns, cid="c1", split="train"):
    return Conversation(cid, tuple(m for t in turns for m in t), split)


GOOD = [turn("some rock", "t0", "Here is Song 0 by Band 0."), turn("more", "t1", "Song 1 by Band 1 now."),
        turn("calmer", "t2", "Try Song 2."), turn("thanks", "t3", "Band 3 closes it.")]


def test_valid_conversation_and_round_trip(catalog, tmp_path):
    c = conv(*GOOD)
    validate_conversation(c, catalog)
    for name in ("c.jsonl", "c.jsonl.gz"):
        write_conversations(tmp_path / name, [c, conv(*GOOD, cid="c2")])
        back = read_conversations(tmp_path / name, catalog)
        assert back[0] == c and len(back) == 2
    stats = conversation_stats([c])
    assert (stats.dialogues, stats.tracks, stats.avg_turns) == (1, 4, 4.0)


@pytest.mark.parametrize("mutate, words", [
    (lambda t: t[:3], "expected 4–10 turns"),
    (lambda t: [*t[:3], turn("again", "t0", "Song 0 by Band 0 again.")], "recommended twice"),
    (lambda t: [*t[:3], turn("x", "zzz", "Nothing.")], "not in the catalog"),
    (lambda t: [*t[:3], turn("x", "t4", "A great tune.")], "does not name"),
    (lambda t: [turn("x", "t0", "Song 0.", rejected=True), turn("no", "t1", "Song 1.", intent="open_mood"), *t[2:]],
     "must be the rejection"),
])
def test_invalid_conversations_are_named(catalog, mutate, words):
    with pytest.raises(ConversationError) as err:
        validate_conversation(conv(*mutate(GOOD)), catalog, "f.jsonl", row=7)
    assert words in str(err.value) and "f.jsonl, row 7" in str(err.value) and "'c1'" in str(err.value)


def test_wrong_role_order(catalog):
    bad = list(conv(*GOOD).messages)
    bad[0], bad[1] = bad[1], bad[0]
    with pytest.raises(ConversationError, match="role 'music', expected 'user'"):
        validate_conversation(Conversation("c1", tuple(bad), "train"), catalog)


def test_file_errors(tmp_path, catalog):
    (tmp_path / "bad.jsonl").write_text('{"conversation_id": "x"}\n')
    with pytest.raises(ConversationError, match=r"bad.jsonl, row 1: not a conversation record"):
        read_conversations(tmp_path / "bad.jsonl", catalog)
    write_conversations(tmp_path / "dup.jsonl", [conv(*GOOD), conv(*GOOD)])
    with pytest.raises(ConversationError, match="duplicate conversation_id"):
        read_conversations(tmp_path / "dup.jsonl", catalog)
