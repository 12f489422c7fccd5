"""Facts a request names that a track's card states: a tempo, a key, a year or decade, an album or an artist.

People ask for more than moods and genres: "anything around 120 bpm?", "something in a minor key", "a track from
the early 2020s", "what came out in 2010?", "play something from Wesnoth", "anything by LupusMechanicus". A
track's card says its tempo and key (the caption written from the measured descriptors: "… in G# minor …, ~126
BPM"), its year, album and artist. BM25 over the cards finds a spelled-out year or a name word for word but no
tempo near 125 nor any year of "the noughties", and the concept table (:mod:`talkplay.intent`) would read "The
Battle for Wesnoth" as battle music. :class:`FactReader` reads those facts and scores every track by how well its
card meets them (:meth:`FactReader.fit`, in [0, 1]); :class:`talkplay.textmatch.TextMatch` adds that score with
the concepts' fit. It also tells the concept reading which words are an album's or artist's name
(:meth:`FactReader.name_positions`), so "UFO: Alien Invasion" asks for that game's tracks, not for space music
about an invasion.

Names. An album or artist is named by its words without the generic ones (:data:`GENERIC_NAME_WORDS`: "the",
"soundtrack", "OST", "team" …) spelled as consecutive words — the whole of them ("angelic asylum", "the battle
for wesnoth", "ufo alien invasion"), or the first two or more when one of those is no everyday word — or by one of
its words that is no everyday word at all ("wesnoth", "supertux", "lupusmechanicus"). Whether a word is an everyday
one is asked of the base model's tokenizer when the engine has one (``pieces``: a word its vocabulary holds whole
is an everyday word; one it splits into three pieces or more is a name, into two only next to a cue such as "from",
"by" or "music": "anything from colobot", "warzone music"); without a tokenizer only whole names are read.

Declined facts ("nothing from the 2000s", "not 120 bpm") are not asked for: the facts are read from the request's
undeclined words (:func:`talkplay.intent.undeclined_words`), as the text match reads its words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from talkplay.intent import CONCEPTS, undeclined_words, words

# Words of album and artist names that say nothing about which album or artist ("The Battle for Wesnoth OST").
GENERIC_NAME_WORDS = frozenset(
    "the a an of and by aka c soundtrack soundtracks ost osts original music score game games edition team "
    "composers contributors development project official album".split())
NAME_CUES = frozenset("from by off of in soundtrack soundtracks ost music tracks track songs song theme themes game "
                      "games stuff tunes album".split())  # a two-piece name word is read next to one of these
MIN_NAME_LETTERS = 4  # a name word shorter than this is never read alone ("emxx" is the shortest kept)
TEMPO_WIDTH = 10.0  # BPM: a track this far from the asked tempo scores e^-1 of one right on it
YEAR_STEP = 3.0  # years: the score falls by 1/YEAR_STEP per year outside the asked years
RECENT_YEARS = 3  # "recent", "latest": the catalog's newest year and the RECENT_YEARS − 1 before it
SAME_MODE = 0.3  # "in D minor": a track in another minor key meets a third of it
_PITCH = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_DECADE_WORDS = {"sixties": 1960, "seventies": 1970, "eighties": 1980, "nineties": 1990, "noughties": 2000,
                 "naughties": 2000, "aughts": 2000, "oughts": 2000, "tens": 2010, "teens": 2010, "twenties": 2020}
_PART = {"early": (0, 3), "mid": (3, 6), "middle": (3, 6), "late": (6, 9)}
_RECENT = frozenset(["recent", "recently", "latest", "newest", "newer"])
_OLD = frozenset(["oldest", "older"])


@dataclass(frozen=True)
class Fact:
    """One fact a request names: ``kind`` "tempo" (value: lowest, highest BPM), "key" (pitch class 0–11 or -1 for
    any, "major"/"minor"), "year" (first, last year) or "name" (the store rows of the album or artist named)."""

    kind: str
    text: str  # the words that named it
    value: tuple


def card_key(caption: str) -> tuple[int, str] | None:
    """(pitch class, "major"/"minor") of the key a caption states ("… in G# minor …"), or None."""
    m = re.search(r"\b([A-G])([#♯b♭]?) (major|minor)\b", caption or "")
    if not m:
        return None
    shift = {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(m.group(2), 0)
    return (_PITCH[m.group(1).lower()] + shift) % 12, m.group(3)


def card_tempo(caption: str) -> float:
    """The tempo a caption states ("~126 BPM"), NaN when it states none."""
    m = re.search(r"~?(\d{2,3}) ?BPM", caption or "", re.IGNORECASE)
    return float(m.group(1)) if m else math.nan


def _spell_out(text: str) -> str:
    """"F# minor" → "f sharp minor", "Bb major" → "b flat major" (the words keep what the sign said); "120bpm" →
    "120 bpm"."""
    text = re.sub(r"\b([a-gA-G])\s*[#♯]", r"\1 sharp ", text)
    text = re.sub(r"\b([a-gA-G])(?:b|♭)(?=\s*(?:major|minor)\b)", r"\1 flat ", text)
    return re.sub(r"(\d)(?=bpm\b)", r"\1 ", text, flags=re.IGNORECASE)


class FactReader:
    """The facts of :mod:`talkplay.facts` bound to one catalog's cards (``tracks`` in store-row order).

    ``pieces``: how many tokens the base model's tokenizer splits a word (with its leading space) into — what tells
    a name word from an everyday one; None reads whole names only."""

    def __init__(self, tracks: Sequence, pieces: Callable[[str], int] | None = None):
        n = len(tracks)
        self.n = n
        self.tempo = np.asarray([card_tempo(t.caption) for t in tracks], np.float64)
        keys = [card_key(t.caption) for t in tracks]
        self.pitch = np.asarray([k[0] if k else -1 for k in keys])
        self.mode = np.asarray([k[1] if k else "" for k in keys])
        self.year = np.asarray([t.year if t.year else math.nan for t in tracks], np.float64)
        known = {w for c in CONCEPTS for p in c.phrases for w in words(p)}
        known |= {w for t in tracks for tag in t.tags for w in words(tag)}
        # names: the generic-free words of every album and artist → the rows they name
        self._names: dict[tuple[str, ...], set[int]] = {}
        for row, t in enumerate(tracks):
            for name in (t.album, t.artist):
                core = tuple(w for w in words(name or "") if w not in GENERIC_NAME_WORDS)
                if core:
                    self._names.setdefault(core, set()).add(row)
        self._prefixes: dict[tuple[str, ...], set[int]] = {}  # whole names and their readable beginnings
        self._words: dict[str, tuple[set[int], bool]] = {}  # a name word → (rows, needs a cue)
        for core, rows in self._names.items():
            if len(core) >= 2:
                self._prefixes.setdefault(core, set()).update(rows)
            for w in core:
                if len(w) < MIN_NAME_LETTERS or w.isdigit() or w in known or pieces is None:
                    continue
                p = pieces(w)
                if p >= 2:
                    have, cue = self._words.get(w, (set(), True))
                    self._words[w] = (have | rows, cue and p < 3)
            if pieces is not None and len(core) > 2:
                for k in range(2, len(core)):
                    if any(not x.isdigit() and pieces(x) >= 2 and x not in known for x in core[:k]):
                        self._prefixes.setdefault(core[:k], set()).update(rows)
        self._prefix_lengths = sorted({len(c) for c in self._prefixes}, reverse=True)
        years = self.year[~np.isnan(self.year)]
        self._years = (int(years.min()), int(years.max())) if len(years) else None

    # ------------------------------------------------------------------------------------------ reading
    def read(self, text: str) -> list[Fact]:
        """The facts ``text`` asks for, undeclined: tempo, key, years, then names."""
        said = " ".join(undeclined_words(_spell_out(text)))
        out = [*self._tempos(said), *self._keys(said), *self._eras(said)]
        for start, n, rows in self._name_spans(words(text)):
            out.append(Fact("name", " ".join(words(text)[start:start + n]), tuple(sorted(rows))))
        return out

    def _tempos(self, said: str) -> list[Fact]:
        out = []
        for m in re.finditer(r"\b(\d{2,3})(?: (?:to|and|or))? (\d{2,3})(?: ish)? (?:bpm|beats per minute)\b", said):
            lo, hi = sorted((float(m.group(1)), float(m.group(2))))
            out.append(Fact("tempo", m.group(0), (lo, hi)))
        said = re.sub(r"\b(\d{2,3})(?: (?:to|and|or))? (\d{2,3})(?: ish)? (?:bpm|beats per minute)\b", " ", said)
        for m in re.finditer(r"\b(\d{2,3})(?: ish)? (?:bpm|beats per minute|beats a minute)\b|"
                             r"\b(?:bpm|tempo)(?: of| around| about| near| at| roughly| approximately| is)* (\d{2,3})\b",
                             said):
            v = float(m.group(1) or m.group(2))
            if 30 <= v <= 300:
                out.append(Fact("tempo", m.group(0), (v, v)))
        return out

    def _keys(self, said: str) -> list[Fact]:
        out = []
        for m in re.finditer(r"\b(?:(in) )?([a-g])(?: (sharp|flat))? (major|minor)( key)?\b", said):
            pre, letter, acc, mode, key = m.groups()
            if letter == "a" and key:  # "(in) a minor key": any minor key
                out.append(Fact("key", m.group(0), (-1, mode)))
                continue
            if letter == "a" and pre != "in" and not acc:  # "a major hit" names no key; "in A major" does
                continue
            shift = {"sharp": 1, "flat": -1}.get(acc or "", 0)
            out.append(Fact("key", m.group(0), ((_PITCH[letter] + shift) % 12, mode)))
        if not out:
            for m in re.finditer(r"\b(major|minor)(?: key| keys| tonality| scale)\b", said):
                out.append(Fact("key", m.group(0), (-1, m.group(1))))
        return out

    def _eras(self, said: str) -> list[Fact]:
        out = []
        tokens = said.split()
        for i, tok in enumerate(tokens):
            start = None
            if re.fullmatch(r"(?:19|20)\d0s", tok):
                start = int(tok[:4])
            elif re.fullmatch(r"\d0s", tok):
                d = int(tok[0])
                start = 2000 + 10 * d if d <= 2 else 1900 + 10 * d
            elif tok in _DECADE_WORDS and (tok not in ("tens", "teens", "twenties") or (i and tokens[i - 1] == "twenty")):
                start = _DECADE_WORDS[tok]
            elif tok == "thousands" and i and tokens[i - 1] == "two":
                start = 2000
            if start is not None:
                j = i - 1  # the word before the decade: "early", "mid", "late" (past "twenty", "two", "the")
                if j >= 0 and tokens[j] in ("twenty", "two") and tok in ("tens", "teens", "twenties", "thousands"):
                    j -= 1
                if j >= 0 and tokens[j] == "the":
                    j -= 1
                part = _PART.get(tokens[j]) if j >= 0 else None
                lo, hi = (start + part[0], start + part[1]) if part else (start, start + 9)
                out.append(Fact("year", " ".join(tokens[max(j, 0) if part else i:i + 1]), (lo, hi)))
            elif re.fullmatch(r"(?:19[5-9]|20[0-3])\d", tok) and not (i + 1 < len(tokens) and tokens[i + 1] in ("bpm", "beats")):
                out.append(Fact("year", tok, (int(tok), int(tok))))
            elif tok in _RECENT and self._years:
                out.append(Fact("year", tok, (self._years[1] - RECENT_YEARS + 1, self._years[1])))
            elif tok in _OLD and self._years:
                out.append(Fact("year", tok, (self._years[0], self._years[0] + RECENT_YEARS - 1)))
        return out

    def _name_spans(self, tokens: Sequence[str]) -> list[tuple[int, int, set[int]]]:
        """(start, length, rows) of every album or artist name in ``tokens`` (the request's words), longest first,
        a word in at most one name."""
        used = [False] * len(tokens)
        out = []
        # generic words may sit between a name's words in the request ("the battle for wesnoth", "by the ufo ai team")
        keep = [i for i, w in enumerate(tokens) if w not in GENERIC_NAME_WORDS]
        core = [tokens[i] for i in keep]
        for n in self._prefix_lengths:
            for s in range(len(core) - n + 1):
                rows = self._prefixes.get(tuple(core[s:s + n]))
                if rows and not any(used[keep[s]:keep[s + n - 1] + 1]):
                    for k in range(keep[s], keep[s + n - 1] + 1):
                        used[k] = True
                    out.append((keep[s], keep[s + n - 1] + 1 - keep[s], rows))
        for i, w in enumerate(tokens):
            hit = self._words.get(w)
            if used[i] or hit is None:
                continue
            rows, needs_cue = hit
            near = set(tokens[max(0, i - 2):i]) | set(tokens[i + 1:i + 3])
            if needs_cue and not near & NAME_CUES:
                continue
            used[i] = True
            out.append((i, 1, rows))
        return out

    def name_positions(self, tokens: Sequence[str]) -> set[int]:
        """Positions of ``tokens`` (a request's words, :func:`talkplay.intent.words`) that spell an album's or
        artist's name, widened over the name's other words next to it ("the battle for wesnoth" from "wesnoth")."""
        out: set[int] = set()
        for start, n, rows in self._name_spans(tokens):
            out.update(range(start, start + n))
            names = [c for c, r in self._names.items() if r & rows]
            for c in names:  # widen over the name's own words on either side (generic ones included)
                full = [w for w in c]
                lo, hi = start, start + n
                while lo > 0 and (tokens[lo - 1] in full or tokens[lo - 1] in GENERIC_NAME_WORDS):
                    lo -= 1
                while hi < len(tokens) and (tokens[hi] in full or tokens[hi] in GENERIC_NAME_WORDS):
                    hi += 1
                out.update(range(lo, hi))
        return out

    # ------------------------------------------------------------------------------------------ scoring
    def fit(self, facts: Iterable[Fact]) -> np.ndarray:
        """float64 (n_tracks,) in [0, 1]: the mean over ``facts`` of how well each track's card meets the fact;
        zeros when there are none. Tempo: 1 within the asked BPM, e^-(d/TEMPO_WIDTH)² at d BPM outside; key: 1 on the
        asked key (any key of the asked mode when no note was given), SAME_MODE in another key of the same mode;
        years: 1 within them, 1/YEAR_STEP less per year outside; a name: 1 on its tracks. A card that does not
        state the fact scores 0."""
        facts = list(facts)
        total = np.zeros(self.n, np.float64)
        for f in facts:
            if f.kind == "tempo":
                lo, hi = f.value
                d = np.maximum(0.0, np.maximum(lo - self.tempo, self.tempo - hi))
                part = np.nan_to_num(np.exp(-(d / TEMPO_WIDTH) ** 2), nan=0.0)
            elif f.kind == "key":
                pitch, mode = f.value
                same = self.mode == mode
                part = np.where(same, 1.0 if pitch < 0 else SAME_MODE, 0.0)
                if pitch >= 0:
                    part[same & (self.pitch == pitch)] = 1.0
            elif f.kind == "year":
                lo, hi = f.value
                d = np.maximum(0.0, np.maximum(lo - self.year, self.year - hi))
                part = np.nan_to_num(np.clip(1.0 - d / YEAR_STEP, 0.0, 1.0), nan=0.0)
            else:
                part = np.zeros(self.n, np.float64)
                part[list(f.value)] = 1.0
            total += part
        return total / len(facts) if facts else total


def tokenizer_pieces(tokenizer) -> Callable[[str], int]:
    """``pieces`` for :class:`FactReader` from a Hugging Face tokenizer: the tokens of " word"."""
    def pieces(word: str) -> int:
        return len(tokenizer.encode(" " + word, add_special_tokens=False))

    return pieces
