"""Answers in words only, composed from the card of the track playing: what the engine says to a greeting, thanks,
a goodbye, a question about the app or about the track (:class:`talkplay.conversation.Talk` turns).

The model decides *whether* a message asks for music (:mod:`talkplay.decision`); what it then says is composed
here by default (``GenerationConfig.talk_reply="card"``), because the demo model's own free text for these turns,
after 80 CPU steps with a few hundred such examples, invented facts ("They said WestcarSound recorded the
melody."). A composed answer states only the card's facts — title, artist, album, year, tags, the caption's key
and tempo — and says so when the card lacks one. ``talk_reply="model"`` lets the model write it instead.

The training data's words-only turns (``train.data.talk_turns``) use these same answers, so a model trained longer
learns to write them itself.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from talkplay.intent import words

# Tags that answer "what instruments?" and "what genre?" (a bring-your-own catalog's other tags are not claimed).
INSTRUMENT_TAGS = ("piano", "guitar", "acoustic guitar", "electric guitar", "violin", "cello", "strings", "flute",
                   "synth", "drums", "female vocals", "male vocals", "vocals", "bass", "harp", "organ", "choir",
                   "brass", "trumpet", "saxophone")
GENRE_TAGS = ("electronic", "techno", "orchestral", "classical", "rock", "metal", "folk", "pop", "chiptune",
              "ambient", "jazz", "dance", "medieval", "cinematic", "experimental", "synthwave", "hip hop",
              "blues", "country", "funk", "house", "trance", "lo-fi")

TRACK_ACTS = ("key", "tempo", "artist", "album", "year", "title", "instruments", "genre", "license", "duration")

REPLIES: dict[str, tuple[str, ...]] = {
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




# What a words-only message is about, read from its words (first match wins: a question about the track before small
# talk, so "thanks! what key is it?" is about the key). Cues are whole words or phrases of talkplay.intent.words.
_CUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("app_question", ("are you", "what can you", "how do you", "what do you", "how does this", "how does it work",
                      "who are you", "this app", "what is talkplay", "help", "how do i", "can you")),
    ("license", ("license", "licence", "licensed", "copyright", "copyrighted", "royalty", "credit", "use this",
                 "use it", "allowed", "public domain", "creative commons")),
    ("duration", ("how long", "length", "minutes", "duration", "long is")),
    ("key", ("key", "major", "minor", "scale")),
    ("tempo", ("bpm", "tempo", "how fast", "how slow", "speed", "fast or slow", "beats per")),
    ("year", ("year", "when was", "when did", "how old", "recent", "released", "come out", "came out")),
    ("album", ("album", "game", "soundtrack", "ost", "where is this from", "where s this from", "source")),
    ("artist", ("who", "whose", "artist", "composer", "composed", "band", "made this", "wrote", "producer")),
    ("title", ("called", "title", "name", "what song", "which song", "what track", "what is this", "what s this")),
    ("instruments", ("instrument", "instruments", *INSTRUMENT_TAGS, "synths", "drum", "vocal", "singer", "singing")),
    ("genre", ("genre", "style", "kind of music", "type of", "what kind", "what type")),
    ("greeting", ("hi", "hii", "hiii", "hello", "helo", "hey", "heyy", "heyyy", "yo", "sup", "morning", "evening",
                  "greetings", "howdy", "hiya")),
    ("thanks", ("thank", "thanks", "thx", "ty", "tysm", "cheers", "appreciate", "appreciated")),
    ("goodbye", ("bye", "goodbye", "goodnight", "good night", "cya", "see ya", "see you", "later", "leave",
                 "gotta go", "that s all", "that s it", "enough", "signing off", "done")),
)
NOTHING_PLAYING = "Nothing is playing yet — ask for a mood, a scene, an instrument or a genre, and I'll play a track."


def read_act(text: str) -> str:
    """What a words-only message is about: one of :data:`TRACK_ACTS`, "greeting", "thanks", "goodbye" or
    "app_question" (the default)."""
    joined = " " + " ".join(words(text.replace("'", " "))) + " "
    for act, cues in _CUES:
        if any(f" {c} " in joined for c in cues):
            return act
    return "app_question"


def compose(text: str, track: Any | None, seed: int | None = None) -> tuple[str, str]:
    """(act, answer) for a words-only message; ``track`` is the one playing (None before the first). A question
    about the track when none plays gets :data:`NOTHING_PLAYING`."""
    rng = random.Random(seed)
    act = read_act(text)
    if act in TRACK_ACTS:
        if track is None:
            return act, NOTHING_PLAYING
        return act, track_answer(act, track, rng)
    return act, rng.choice(REPLIES[act])
