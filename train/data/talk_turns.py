"""Synthetic turns answered in words only: greetings, thanks, goodbyes, questions about the app or the playing track.

Not every message asks for music. A conversation of :mod:`train.data.conversations` gets one such *talk turn*
inserted — a user message and a text reply, no music message — and rendered by :mod:`talkplay.render` with no
music span, so at the position where a request's turn opens ``<start_of_music>`` the model learns to start a
reply instead (the engine's "music or words" decision, :mod:`talkplay.recommender`)::

    user: what key is this in?              (after k music turns of the source conversation)
    assistant: “Leaving Earth” is in C minor.

Replies are :mod:`talkplay.answers`' — the same the engine composes at run time: about the playing track from its
card only (title, artist, album, year, tags, the caption's key and tempo; a fact the card lacks is said to be
missing, never guessed), about the app what TalkPlay is (a small model choosing freely licensed catalog tracks)
and nothing more. Half of the talk turns are followed by the source conversation's next music
turn, so a request after small talk still opens a music span.

Everything here is synthetic and labelled so (``synthetic`` on each record, "talk:" in its id). The phrasings
are this module's own; the held-out check set (``catalog/<bundle>/eval/dialogue_acts.jsonl``) was written
separately and is never read here.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.data.talk_turns is a module of the train package: import it, or use python -m")

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from talkplay.answers import REPLIES, TRACK_ACTS, track_answer
from train.data.conversation_schema import Message

# user phrasings per act: plain, lower-case, typos and slang, as people type in a chat box
USER: dict[str, tuple[str, ...]] = {
    "greeting": ("hi", "hello", "hey", "hey there", "hi there!", "good morning", "good evening", "hiya", "yo",
                 "helo", "heyyy", "hi :)", "hello, anyone there?", "morning!", "sup", "hey talkplay",
                 "hi, first time here", "greetings", "hey hey", "hello there"),
    "app_question": ("what can you do?", "what is this?", "how does this work", "what are you exactly",
                     "are you a bot?", "where do the songs come from", "how do you pick the tracks?",
                     "what kind of music do you have", "what should i ask you", "can you play spotify songs?",
                     "is this a real person?", "how do i use this", "what can i ask for?",
                     "what are you able to do", "how many songs do you know", "who are you", "help",
                     "are these songs free to use?", "do you have lyrics?", "how do ratings work"),
    "thanks": ("thanks", "thank you!", "thx", "ty", "cheers", "great, thanks", "appreciate it", "thanks a lot",
               "tysm", "perfect, thank you", "nice, thanks!", "thank u", "much appreciated", "awesome thx",
               "cool, thanks"),
    "goodbye": ("bye", "that's all for now", "gotta go", "see ya", "good night", "i'm done, bye", "later!",
                "ok that's enough music for today", "bye bye", "catch you later", "i have to leave now",
                "cya", "signing off", "goodnight!", "that's it, thanks, bye"),
    "key": ("what key is this in?", "what key is it", "which key?", "is this in a minor key?", "key of this song?",
            "what's the key", "what key is this track", "in what key is it written?"),
    "tempo": ("how fast is this?", "what's the bpm", "bpm?", "what tempo is this", "how many bpm is this one",
              "is it fast or slow?", "what's the tempo of this track", "whats the bpm on this"),
    "artist": ("who made this?", "who's the artist?", "who is this by", "who composed this", "artist?",
               "who wrote this track", "who made this song", "whose music is this"),
    "album": ("what album is this from?", "which game is this from?", "what's the source of this",
              "where is this track from", "album?", "which soundtrack is this", "is this from a game?"),
    "year": ("when was this made?", "what year is this from", "how old is this track", "year?",
             "when did this come out", "is this recent?"),
    "title": ("what's this called?", "what song is this", "name of this track?", "whats the title",
              "what is this track", "which song is playing"),
    "instruments": ("what instruments are in this?", "is that a piano?", "what instruments do i hear",
                    "which instruments are playing", "are there drums in this?", "is there a guitar in it"),
    "genre": ("what genre is this?", "what style is this", "genre?", "what kind of music is this",
              "how would you describe this style", "what type of song is this"),
    "license": ("can i use this in my video?", "what's the license?", "is this copyrighted", "license?",
                "can i use this track in my game", "who do i credit for this"),
    "duration": ("how long is this track?", "how long is it", "length?", "how many minutes is this"),
}
# Short requests for another track after one has played — music, though they name nothing ("next", "one more"):
# the decision head (train.training.decision) learns them beside the generator's longer requests.
FOLLOW_UPS = ("next", "next one", "another", "another one please", "one more", "more", "skip it", "skip this one",
              "something else", "different one pls", "keep going", "play another", "again but different",
              "hmm not this one", "nope, next", "not feeling it", "more like this", "similar one", "same vibe",
              "go on", "continue", "and another", "give me more", "change it")
ACTS = ("greeting", "app_question", "thanks", "goodbye", *TRACK_ACTS)

@dataclass(frozen=True)
class TalkConversation:
    """A source conversation's first turns, one inserted talk turn, and maybe the source's next turn.

    Same ``conversation_id`` / ``messages`` shape as :class:`train.data.conversation_schema.Conversation`, so the
    conversation task renders it unchanged (``render_conversation`` reads a user → assistant pair as a turn
    answered in words only)."""

    conversation_id: str  # "talk:<source id>:<n>"
    messages: tuple[Message, ...]
    act: str  # one of ACTS
    synthetic: bool = True


def _user_text(act: str, rng: random.Random) -> str:
    text = rng.choice(USER[act])
    if rng.random() < 0.15:
        text = text.capitalize()
    return text


def talk_conversations(conversations: Sequence[Any], catalog: Any, seed: int = 0, per_conversation: int = 1,
                       follow_share: float = 0.5) -> list[TalkConversation]:
    """``per_conversation`` talk conversations from each of ``conversations`` (train.data.conversation_schema).

    A talk turn about the app, a greeting or thanks may come first (k = 0 music turns before it); a question about
    the playing track comes after 1–3 of the source's music turns and is answered from that track's card.
    With probability ``follow_share`` the source's next music turn follows the talk turn.
    """
    rng = random.Random(f"talk:{seed}")
    out: list[TalkConversation] = []
    for conv in conversations:
        turns = conv.turns
        for n in range(per_conversation):
            act = rng.choice(ACTS[:4]) if rng.random() < 0.45 else rng.choice(TRACK_ACTS)
            if act in ("greeting", "app_question"):
                k = 0 if rng.random() < 0.6 else rng.randint(1, min(3, len(turns) - 1))
            else:
                k = rng.randint(1, min(3, len(turns) - 1))
            before = [m for turn in turns[:k] for m in turn]
            if act in TRACK_ACTS:
                reply = track_answer(act, catalog[before[-2].content], rng)
            else:
                reply = rng.choice(REPLIES[act])
            talk = [Message("user", _user_text(act, rng)), Message("assistant", reply)]
            after = list(turns[k]) if act != "goodbye" and k < len(turns) and rng.random() < follow_share else []
            if after and after[1].rejected:  # its rejection is explained by the turn after it, which is cut
                after = [after[0], Message("music", after[1].content), after[2]]
            out.append(TalkConversation(f"talk:{conv.conversation_id}:{n}", tuple(before + talk + after), act))
    return out
