"""Terminal chat over the tiny fixture engine: a track line then a reply per request; /reject,
/alternatives, /new and unknown commands."""

import io

from talkplay.chat import run_chat
from tests.talkplay.test_recommender import rec  # noqa: F401  (fixture)


def test_chat_session(rec):  # noqa: F811
    lines = io.StringIO("play me some calm jazz please\n/reject\n/alternatives\nsomething upbeat\n/what\n/new\n/reject\n")
    out = io.StringIO()
    state = run_chat(rec, lines, out)
    text = out.getvalue()
    assert text.count("♪ “Song ") == 2 and text.count("talkplay> ") == 2
    assert "(rejected 'Song" in text and "commands:" in text and "(new conversation)" in text
    assert "nothing has played yet" in text  # /reject after /new
    assert len([line for line in text.splitlines() if line.startswith("  ") and "by Band" in line]) == 5
    assert state.turns == []
