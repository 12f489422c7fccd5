"""Faithful replies: what a reply says about the playing track is what the track's card says.

The grounding span puts the card's facts in front of the model (:func:`talkplay.render.grounding_text`); a
small model still recalls words from its weights ("with violin and cello" for a track without strings). Two
rules, applied while a reply is decoded (:class:`talkplay.recommender.ReplyRow`), close that gap:

* **The name first.** The reply opens with the track's name as its card gives it — “Title” by Artist — fed
  as forced tokens after the grounding span, so every reply names the track actually played (the training
  replies name it too, mostly in their first sentence; the model continues from there).
* **No attribute the card lacks.** Attribute words — the catalog's tag vocabulary (styles, moods, tempo
  words) plus common instrument and style words (:data:`ATTRIBUTE_WORDS`) — that are neither among the
  track's tags nor in its caption cannot start a word of the reply: their first token (after a space, or
  capitalised) is banned for this reply. A token shared with a word the card does have is never banned.

``train.evaluation.conversation_checks`` counts violations with the same vocabulary, so the check and the rule agree on
what an attribute is; the check also counts what these rules do not prevent (numbers, other tracks' names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# Attribute words a reply may use even when no catalog track carries them as tags (a catalog's tag vocabulary
# alone would miss them): instruments and styles people name.
ATTRIBUTE_WORDS = ("trumpet", "trumpets", "saxophone", "sax", "harp", "organ", "choir", "brass", "horns",
                   "accordion", "banjo", "harpsichord", "bagpipes", "ukulele", "marimba", "xylophone", "sitar",
                   "oboe", "clarinet", "bass guitar", "vocals", "singer", "singing", "drum machine", "violin",
                   "violins", "cello", "piano", "guitar", "guitars", "drums", "strings", "flute", "synth", "synths",
                   "jazz", "rock", "metal", "orchestral", "techno", "chiptune", "folk", "ambient", "classical",
                   "hip-hop", "rap", "reggae", "blues", "country", "funk", "disco", "house", "dubstep")
NOT_ATTRIBUTES = frozenset({"instrumental", "soundtrack"})  # tags every demo track shares: never a claim


def attribute_vocabulary(tracks: Iterable[Any]) -> frozenset[str]:
    """Lower-case attribute words: every tag of ``tracks`` plus :data:`ATTRIBUTE_WORDS`."""
    words = {tag.lower() for t in tracks for tag in (t.tags or ())} | set(ATTRIBUTE_WORDS)
    return frozenset(words - NOT_ATTRIBUTES)


def card_words(track: Any) -> frozenset[str]:
    """Lower-case words of a track's tags and caption, and its whole tags (what a reply may claim)."""
    caption = getattr(track, "caption", None) or ""
    tags = list(getattr(track, "tags", None) or ())
    words = {w for text in (*tags, caption) for w in re.findall(r"[a-z][a-z-]*", text.lower())}
    return frozenset(words | {t.lower() for t in tags})


def on_card(word: str, words: frozenset[str]) -> bool:
    """``word`` is stated by the card (plural and singular count as the same word: "synths" for "synth")."""
    return word in words or word.removesuffix("s") in words or f"{word}s" in words


def reply_opening(track: Any, asked: Iterable[str] = ()) -> str:
    """The forced start of every reply: the track's name as the card gives it. ``asked``: the kinds of fact the
    request named (:mod:`talkplay.facts`: "tempo", "key", "year", "name"); those the card states follow in brackets,
    so the listener who asked for "around 120 bpm" or "the early 2000s" reads what this track has —
    “Battle Music” by Aleksi Aubry-Carlson (~135 BPM, 2006). (The caller leaves the brackets out when the
    opening would not fit the reply's length whole.)"""
    from talkplay.answers import card_bpm, card_key

    artist = getattr(track, "artist", "")
    name = f"“{track.title}” by {artist}" if artist else f"“{track.title}”"
    asked = set(asked)
    facts = [("tempo", f"~{card_bpm(track)} BPM" if card_bpm(track) else None),
             ("key", card_key(track)),
             ("year", str(int(track.year)) if getattr(track, "year", None) else None),
             ("name", f"from {track.album}" if getattr(track, "album", "") else None)]
    said = [text for kind, text in facts if kind in asked and text]
    return f"{name} ({', '.join(said)})" if said else name


class AttributeBan:
    """Per track, the token ids that would start an attribute word its card lacks (cached by track id).

    Args:
        tokenizer: the model's tokenizer.
        tracks: the catalog (its tags make the vocabulary).
    """

    def __init__(self, tokenizer: Any, tracks: Iterable[Any]):
        self.tokenizer = tokenizer
        self.vocabulary = attribute_vocabulary(tracks)
        self._cache: dict[str, list[int]] = {}
        self._first: dict[str, set[int]] = {}

    def _first_tokens(self, word: str) -> set[int]:
        """First token of each way the word starts in running text: " word", " Word", "Word"."""
        if word not in self._first:
            out = set()
            for variant in (f" {word}", f" {word.capitalize()}", word.capitalize()):
                ids = self.tokenizer.encode(variant, add_special_tokens=False)
                while len(ids) > 1 and not self.tokenizer.decode(ids[:1]).strip():
                    ids = ids[1:]  # a lone space token before the word: the word's own piece is what starts it
                # a short first piece (" s" of " sax…") starts countless other words: only a piece holding at
                # least four letters of the word (or all of it) is specific enough to ban
                if ids and len(self.tokenizer.decode(ids[:1]).strip()) >= min(len(word), 4):
                    out.add(int(ids[0]))
            self._first[word] = out
        return self._first[word]

    def ids(self, track: Any) -> list[int]:
        """Banned ids for a reply about ``track``."""
        key = getattr(track, "track_id", None) or id(track)
        if key not in self._cache:
            words = card_words(track)
            allowed: set[int] = set()
            for word in words:
                allowed |= self._first_tokens(word)
            banned: set[int] = set()
            for word in self.vocabulary:
                if " " in word or on_card(word, words):
                    continue  # phrases ("bass guitar") are left to the check: their first word may be fine alone
                banned |= self._first_tokens(word)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = sorted(banned - allowed)
        return self._cache[key]
