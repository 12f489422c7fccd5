"""Synthetic turns answered in words only: greetings, thanks, goodbyes, questions about the app or the playing track.

Not every message asks for music. A conversation of :mod:`train.data.conversations` gets one such *talk turn*
inserted — a user message and a text reply, no music message — and rendered by :mod:`talkplay.render` with no
music span, so at the position where a request's turn opens ``<start_of_music>`` the model learns to start a
reply instead (the engine's "music or words" decision, :mod:`talkplay.recommender`)::

    user: what key is this in?              (after k music turns of the source conversation)
    assistant: “Leaving Earth” is in C minor.

Replies about the playing track are built from its card only — the facts its grounding span puts in the
history (title, artist, album, year, tags, the caption's key and tempo); a fact the card lacks is said to be
missing, never guessed. Replies about the app say what TalkPlay is (a small model choosing freely licensed
catalog tracks) and nothing more. Half of the talk turns are followed by the source conversation's next music
turn, so a request after small talk still opens a music span.

Everything here is synthetic and labelled so (``synthetic`` on each record, "talk:" in its id). The phrasings
are this module's own; the held-out check set (``catalog/<bundle>/eval/dialogue_acts.jsonl``) was written
separately and is never read here.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.data.talk_turns is a module of the train package: import it, or use python -m")

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from train.data.conversation_schema import Message

# Tags that answer "what instruments?" and "what genre?" (a bring-your-own catalog's other tags are not claimed).
INSTRUMENT_TAGS = ("piano", "guitar", "acoustic guitar", "electric guitar", "violin", "cello", "strings", "flute",
                   "synth", "drums", "female vocals", "male vocals", "vocals", "bass", "harp", "organ", "choir",
                   "brass", "trumpet", "saxophone")
GENRE_TAGS = ("electronic", "techno", "orchestral", "classical", "rock", "metal", "folk", "pop", "chiptune",
              "ambient", "jazz", "dance", "medieval", "cinematic", "experimental", "synthwave", "hip hop",
              "blues", "country", "funk", "house", "trance", "lo-fi")

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
TRACK_ACTS = ("key", "tempo", "artist", "album", "year", "title", "instruments", "genre", "license", "duration")
ACTS = ("greeting", "app_question", "thanks", "goodbye", *TRACK_ACTS)

_REPLIES: dict[str, tuple[str, ...]] = {
    "greeting": (
        "Hi! Tell me a mood, a scene, an instrument or a genre, and I'll play a track that fits.",
        "Hello! What would you like to hear? A mood, an activity or a style is enough to start.",
        "Hey! Ask me for music — say, something calm for reading or something fast for the gym.",
    ),
    "app_question": (
        "I'm TalkPlay, a small language model that picks tracks from this catalog of freely licensed recordings. "
        "Ask for a mood, a scene, an instrument or a genre; say \"slower\" or \"darker\" to steer, and rate "
        "what you hear with the stars.",
        "I play tracks from a catalog of freely licensed recordings, most of them from game soundtracks. Tell "
        "me what you want to hear and I'll choose one; each track's card shows its credit and license.",
        "Describe what you'd like — a feeling, a place, an activity, an instrument — and I'll pick a track from "
        "the catalog for it. You can ask for something faster, calmer or darker next.",
    ),
    "thanks": (
        "You're welcome! Ask whenever you want another track.",
        "Glad you liked it! Tell me when you want something else.",
        "Any time! Say the word and I'll play something new.",
    ),
    "goodbye": (
        "Bye! Thanks for listening.",
        "See you! Come back when you want more music.",
        "Goodbye, and enjoy the rest of your day!",
    ),
}


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


_KEY = re.compile(r"\b([A-G][♯♭#b]? (?:major|minor))\b")
_BPM = re.compile(r"~?(\d{2,3}) ?BPM", re.IGNORECASE)


def card_key(track: Any) -> str | None:
    """The key the track's caption states ("C minor"), or None."""
    m = _KEY.search(getattr(track, "caption", None) or "")
    return m.group(1) if m else None


def card_bpm(track: Any) -> int | None:
    """The tempo the track's caption states, in BPM, or None."""
    m = _BPM.search(getattr(track, "caption", None) or "")
    return int(m.group(1)) if m else None


def _name(track: Any) -> str:
    return f"“{track.title}”"


def _listing(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def track_answer(act: str, track: Any, rng: random.Random) -> str:
    """The reply to a question ``act`` about ``track``, from its card alone (a missing fact is said to be missing)."""
    name, tags = _name(track), [t.lower() for t in (track.tags or ())]
    if act == "key":
        key = card_key(track)
        return f"{name} is in {key}." if key else f"The card of {name} doesn't give its key."
    if act == "tempo":
        bpm = card_bpm(track)
        pace = next((t for t in ("slow", "mid-tempo", "fast") if t in tags), None)
        if bpm:
            return f"{name} runs at about {bpm} BPM" + (f", {pace}." if pace else ".")
        return f"{name} is {pace}." if pace else f"The card of {name} doesn't give its tempo."
    if act == "artist":
        return f"{name} is by {track.artist}." if track.artist else f"The card of {name} names no artist."
    if act == "album":
        return f"{name} is from {track.album}." if track.album else f"The card of {name} names no album."
    if act == "year":
        return f"{name} is from {int(track.year)}." if track.year else f"The card of {name} gives no year."
    if act == "title":
        who = f" by {track.artist}" if track.artist else ""
        return f"This is {name}{who}."
    if act == "instruments":
        found = [t for t in tags if t in INSTRUMENT_TAGS]
        if not found:
            return f"The card of {name} lists no instruments, only: {', '.join(tags[:4])}." if tags else \
                f"The card of {name} lists no instruments."
        return f"{name} has {_listing(found)}" + (", no drums." if "drumless" in tags else ".")
    if act == "genre":
        found = [t for t in tags if t in GENRE_TAGS]
        return f"{name} is {_listing(found)}." if found else f"The card of {name} tags it {_listing(tags[:3])}." \
            if tags else f"The card of {name} gives no genre."
    if act == "license":
        return rng.choice((f"The card beside the player shows the license and the credit of {name}; follow its "
                           f"terms if you reuse it.",
                           f"Every track here is freely licensed; the card of {name} names its license and "
                           f"whom to credit."))
    if act == "duration":
        return f"The player shows the length of {name}; the preview is a short excerpt of it."
    raise ValueError(f"not a question about a track: {act!r}")


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
                reply = rng.choice(_REPLIES[act])
            talk = [Message("user", _user_text(act, rng)), Message("assistant", reply)]
            after = list(turns[k]) if act != "goodbye" and k < len(turns) and rng.random() < follow_share else []
            if after and after[1].rejected:  # its rejection is explained by the turn after it, which is cut
                after = [after[0], Message("music", after[1].content), after[2]]
            out.append(TalkConversation(f"talk:{conv.conversation_id}:{n}", tuple(before + talk + after), act))
    return out
