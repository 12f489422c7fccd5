"""Terminal chat: ``python -m talkplay chat`` — the engine without a browser.

Each line you type is a message; when the model answers it with music, the chosen track (title, artist,
license, why) prints first, then the reply streams in (a greeting, thanks or a question about the playing
track gets words only). Commands: ``/reject`` (the last track: never again in this conversation),
``/alternatives`` (top 5 for your last request), ``/new`` (start over), ``/quit``.
"""

from __future__ import annotations

import sys
from typing import IO

from talkplay.conversation import ConversationState, Done, Talk, TextDelta, TrackChosen

HELP = "commands: /reject  /alternatives  /new  /quit"


def describe(event: TrackChosen) -> str:
    t = event.track
    why = ", ".join(event.matched_modalities) or "–"
    return f"♪ “{t.title}” by {t.artist or 'unknown artist'} [{t.license}] — {event.match} match on {why}"


def run_chat(recommender, lines: IO[str] = sys.stdin, out: IO[str] = sys.stdout, prompt: str = "you> ") -> ConversationState:
    """Read requests from ``lines`` until EOF or /quit; returns the final conversation state."""
    from talkplay.trie import NoAllowedTrack

    state, last_request = ConversationState(), None
    print(f"TalkPlay — {len(recommender.catalog)} tracks in {recommender.catalog.name}. {HELP}", file=out)
    while True:
        if lines is sys.stdin and out is sys.stdout:
            print(prompt, end="", file=out, flush=True)
        line = lines.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text == "/quit":
            break
        if text == "/new":
            state, last_request = ConversationState(), None
            print("(new conversation)", file=out)
            continue
        if text == "/reject":
            try:
                track_id = state.reject()
                print(f"(rejected {recommender.catalog[track_id].title!r}: it will not come back)", file=out)
            except ValueError as err:
                print(f"({err})", file=out)
            continue
        if text == "/alternatives":
            if last_request is None:
                print("(ask for something first)", file=out)
                continue
            last = max(i for i, t in enumerate(state.turns) if t.track_id is not None)
            hidden = ConversationState(state.turns[:last], set(state.rejected))
            for r in recommender.rank(hidden, last_request, k=5):
                t = recommender.catalog[r.track_id]
                print(f"  {r.logprob:8.2f}  “{t.title}” by {t.artist}", file=out)
            continue
        if text.startswith("/"):
            print(HELP, file=out)
            continue
        try:
            for event in recommender.respond(state, text):
                if isinstance(event, TrackChosen):
                    print(describe(event), file=out, flush=True)
                    print("talkplay> ", end="", file=out, flush=True)
                elif isinstance(event, Talk):
                    print("talkplay> ", end="", file=out, flush=True)
                elif isinstance(event, TextDelta):
                    print(event.text, end="", file=out, flush=True)
                elif isinstance(event, Done):
                    print(file=out, flush=True)
                    if event.turn.track_id is not None:
                        last_request = event.turn.user
        except NoAllowedTrack as err:
            print(f"({err}; /new starts over)", file=out)
    return state
