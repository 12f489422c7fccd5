"""Facts a request names that a track's card states: a tempo, a key, a year or decade, an album or an artist.

People ask for more than moods and genres: "anything around 120 bpm?", "something in a minor key", "a track from
the early 2020s", "what came out in 2010?", "play something from Wesnoth", "anything by LupusMechanicus". A
track's card says its tempo and key (the caption written from the measured descriptors: "… in G# minor …, ~126
BPM"), its year, album and artist. BM25 over the cards finds a spelled-out year or a name word for word but no
tempo near 125 nor any year of "the noughties", and the concept table (:mod:`talkplay.intent`) would read "The
Battle for Wesnoth" as battle music. :class:`FactReader` reads those facts and scores every track by how well its
card meets them (:meth:`FactReader.fit`, in [0, 1]); :class:`talkplay.textmatch.TextMatch` adds that score with
the concepts' fit. It also tells the concept reading which words are an album's or artist's name
(:meth:`FactReader.unread_positions`), so "UFO: Alien Invasion" asks for that game's tracks, not for space music
about an invasion.

Names. An album or artist is named by its words without the generic ones (:data:`GENERIC_NAME_WORDS`: "the",
"soundtrack", "OST", "team" …) spelled as consecutive words — the whole of them ("angelic asylum", "the battle
for wesnoth", "ufo alien invasion"), or the first two or more when one of those is no everyday word — or by one of
its words that is no everyday word at all ("wesnoth", "supertux", "lupusmechanicus"). Whether a word is an everyday
one is asked of the base model's tokenizer when the engine has one (``pieces``: a word its vocabulary holds whole,
lower-case or capitalised — "aftermath", "Christian", "Saturn" — is an everyday word; one it splits into three
pieces or more is a name, into two only next to a cue: "anything from colobot", "the warzone soundtrack", not
"endgame boss music"); without a tokenizer only whole names are read.

Declined facts ("nothing from the 2000s", "not 120 bpm", "anything but supertux") are not asked for: the facts are
read from the request's undeclined words (negation read as :mod:`talkplay.intent` reads it). Numbers and words
that only look like facts are left alone: an age ("in my 20s"), a bare number ("a 2000 word essay": a year needs
"from", "in", "released" … before it or "music", "songs" … after it), "a major funk", "90 minutes".
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from talkplay.intent import CLAUSE_STOPS, CONCEPTS, NEGATOR_PAIRS, NEGATORS, _declined_flags, _words_and_stops, words

# Words of album and artist names that say nothing about which album or artist ("The Battle for Wesnoth OST").
GENERIC_NAME_WORDS = frozenset(
    "the a an of and by aka c soundtrack soundtracks ost osts original music score game games edition team "
    "composers contributors development project official album".split())
NAME_CUES_BEFORE = frozenset(["from", "by", "off"])  # "anything from colobot", "by crystan"
# "i'm a fan of maxstack": without it the name went unread on a validation first request (the artist's tracks ranked
# 29th). Only after "fan(s)": "of", "into", "hear" or "songs" alone also cue "a bit of twang", "into angelic choirs"
FANS = frozenset(["fan", "fans"])  # the words before "of" that make it a cue
NAME_CUES_AFTER = frozenset(["soundtrack", "soundtracks", "ost", "album", "game"])  # "the warzone soundtrack"
MIN_NAME_LETTERS = 4  # a name word shorter than this is never read alone
TEMPO_WIDTH = 10.0  # BPM: a track this far from the asked tempo scores e^-1 of one right on it
YEAR_STEP = 3.0  # years: the score falls by 1/YEAR_STEP per year outside the asked years
RECENT_YEARS = 3  # "recent", "latest": the catalog's newest year and the RECENT_YEARS − 1 before it
SAME_MODE = 0.3  # "in D minor": a track in another minor key meets a third of it
STOP = "|"  # a clause stop in the text the facts are read from (",", "!" …): "it's late, 90s chill" is no "late 90s"
_PITCH = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_DECADE_WORDS = {"sixties": 1960, "seventies": 1970, "eighties": 1980, "nineties": 1990, "noughties": 2000,
                 "naughties": 2000, "aughts": 2000, "oughts": 2000, "tens": 2010, "teens": 2010, "twenties": 2020}
_PART = {"early": (0, 3), "mid": (3, 6), "middle": (3, 6), "late": (6, 9)}
_RECENT = frozenset(["recent", "latest", "newest", "newer"])
_AGE = frozenset(["my", "our", "your", "his", "her", "their", "in"])  # "in my 20s", "in their 30s": an age
_YEAR_CUES = frozenset(["from", "in", "released", "year", "made", "since", "circa", "around", "during", "recorded",
                        "out", "of", "before", "after"])  # "from 2012", "came out in 2010", "year 2005"
_YEAR_AFTER = frozenset(["music", "songs", "song", "tracks", "track", "stuff", "tunes", "releases", "hits"])
_TEMPO_UNIT = r"(?:bpm|beats per minute|beats a minute)"
_OPEN = {"under": "hi", "below": "hi", "slower than": "hi", "at most": "hi", "max": "hi", "over": "lo",
         "above": "lo", "faster than": "lo", "at least": "lo", "min": "lo"}


@dataclass(frozen=True)
class Fact:
    """One fact a request names: ``kind`` "tempo" (value: lowest, highest BPM), "key" (pitch class 0–11 or -1 for
    any, "major"/"minor"), "year" (first, last year) or "name" (the store rows of the album or artist named)."""

    kind: str
    text: str  # the words that named it
    value: tuple


def caption_key(caption: str) -> tuple[int, str] | None:
    """(pitch class, "major"/"minor") of the key a caption states ("… in G# minor …"), or None
    (:func:`talkplay.answers.card_key` gives the same key as the caption spells it)."""
    m = re.search(r"\b([A-G])([#♯b♭]?) (major|minor)\b", caption or "")
    if not m:
        return None
    shift = {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(m.group(2), 0)
    return (_PITCH[m.group(1).lower()] + shift) % 12, m.group(3)


def caption_tempo(caption: str) -> float:
    """The tempo a caption states ("~126 BPM"), NaN when it states none."""
    m = re.search(r"~?(\d{2,3}) ?BPM", caption or "", re.IGNORECASE)
    return float(m.group(1)) if m else math.nan


def _spell_out(text: str) -> str:
    """"F# minor" → "F sharp minor", "Bb major" → "B flat major" (the words keep what the sign said); chord-style
    minor keys after "in" / "key of" ("in Am" → "in A natural minor", "key of F#m"; capital letter only: "I am"
    stays); "120bpm" → "120 bpm", "130ish" → "130 ish"; "no more / faster than", "nothing over" → "at most", "not
    under", "no slower than" → "at least", then "less than" / "more than" → "under" / "over" (so that negation
    does not read "less" or "no" as a negator)."""
    # "natural" marks a key read from a chord symbol: "in the key of Am" is A minor, not just any minor key
    text = re.sub(r"\b((?i:in|key of|in the key of)) ([A-G])([#♯b♭]?)m\b",
                  lambda m: f"{m.group(1)} {m.group(2)}{m.group(3) or ' natural'} minor", text)
    text = re.sub(r"\b([a-gA-G])\s*[#♯]", r"\1 sharp ", text)
    text = re.sub(r"\b([a-gA-G])(?:b|♭)(?=\s*(?:major|minor)\b)", r"\1 flat ", text)
    text = re.sub(r"\b(?:no|not|nothing)\s+(?:more\s+than|faster\s+than|over|above)\b", "at most", text,
                  flags=re.IGNORECASE)
    text = re.sub(r"\b(?:no|not|nothing)\s+(?:less\s+than|slower\s+than|under|below)\b", "at least", text,
                  flags=re.IGNORECASE)
    text = re.sub(r"\bless\s+than\b", "under", text, flags=re.IGNORECASE)
    text = re.sub(r"\bmore\s+than\b", "over", text, flags=re.IGNORECASE)
    text = re.sub(r"(\d)ish\b", r"\1 ish", text, flags=re.IGNORECASE)
    return re.sub(r"(\d)(?=bpm\b)", r"\1 ", text, flags=re.IGNORECASE)


# One-word concept phrases ("drums", "fast", "vocals"): what a negation before a tempo may have been spent on
_CONCEPT_WORDS = frozenset(p for c in CONCEPTS for p in c.phrases if len(words(p)) == 1) - {
    "music", "tempo", "bpm", "song", "songs", "track", "tracks", "going", "want"}


def _negation_spent(said: Sequence[str], i: int) -> bool:
    """Whether the negation that declines ``said[i]`` was spent on something before it: a concept word ("no drums
    around 100 bpm") or the word after "too" ("not too fast around 100 bpm") lies between the nearest negator and
    ``said[i]``. Otherwise ("I don't want 120 bpm", "without going over 120 bpm") the tempo is declined."""
    negates = lambda j: said[j] in NEGATORS or (j > 0 and (said[j - 1], said[j]) in NEGATOR_PAIRS)  # noqa: E731
    j = i - 1
    while j >= 0 and said[j] != STOP and not negates(j):
        j -= 1
    between = said[j + 1:i]
    return any(w in _CONCEPT_WORDS or (k > 0 and between[k - 1] == "too") for k, w in enumerate(between))


def _said(text: str) -> tuple[list[str], list[bool]]:
    """The words of ``text`` with its clause stops as :data:`STOP`, and per entry whether a negation declines it
    (stops: False) — the reading :func:`talkplay.intent.undeclined_words` makes, stops kept."""
    both = _words_and_stops(text)
    flags = iter(_declined_flags(both))
    out, declined = [], []
    for w in both:
        if w in CLAUSE_STOPS:
            out.append(STOP)
            declined.append(False)
        else:
            out.append(w)
            declined.append(next(flags))
    return out, declined


class FactReader:
    """The facts of :mod:`talkplay.facts` bound to one catalog's cards (``tracks`` in store-row order).

    ``pieces``: how many tokens the base model's tokenizer splits a word (with its leading space) into — what tells
    a name word from an everyday one (the fewer of its lower-case and capitalised spellings: " christian" splits,
    " Christian" does not); None reads whole names only."""

    def __init__(self, tracks: Sequence, pieces: Callable[[str], int] | None = None):
        self.n = len(tracks)
        self.tempo = np.asarray([caption_tempo(t.caption) for t in tracks], np.float64)
        keys = [caption_key(t.caption) for t in tracks]
        self.pitch = np.asarray([k[0] if k else -1 for k in keys])
        self.mode = np.asarray([k[1] if k else "" for k in keys])
        self.year = np.asarray([t.year if t.year else math.nan for t in tracks], np.float64)
        known = {w for c in CONCEPTS for p in c.phrases for w in words(p)}
        known |= {w for t in tracks for tag in t.tags for w in words(tag)}
        split = (lambda w: min(pieces(w), pieces(w.capitalize()))) if pieces is not None else None
        # names: the generic-free words of every album and artist → the rows they name
        self._names: dict[tuple[str, ...], set[int]] = {}
        for row, t in enumerate(tracks):
            for name in (t.album, t.artist):
                core = tuple(w for w in words(name or "") if w not in GENERIC_NAME_WORDS)
                if core:
                    self._names.setdefault(core, set()).add(row)
        self._prefixes: dict[tuple[str, ...], set[int]] = {}  # whole names and their readable beginnings
        self._words: dict[str, tuple[set[int], bool]] = {}  # a name word → (rows, needs a cue)

        def odd(w: str) -> int:  # how many pieces a name word splits into; 1 for an everyday or concept word
            return 1 if split is None or w.isdigit() or w in known or len(w) < MIN_NAME_LETTERS else split(w)

        for core, rows in self._names.items():
            if len(core) >= 2:
                self._prefixes.setdefault(core, set()).update(rows)
            for w in core:
                p = odd(w)
                if p >= 2:
                    have, cue = self._words.get(w, (set(), True))
                    self._words[w] = (have | rows, cue and p < 3)
            for k in range(2, len(core)):  # "endgame singularity" of "Endgame: Singularity (Advanced Research)"
                if any(odd(x) >= 2 for x in core[:k]):
                    self._prefixes.setdefault(core[:k], set()).update(rows)
        self._prefix_lengths = sorted({len(c) for c in self._prefixes}, reverse=True)
        years = self.year[~np.isnan(self.year)]
        self._years = (int(years.min()), int(years.max())) if len(years) else None
        # a turn reads its request several times (scores, evidence, search, the reply's opening): read once
        self._read = functools.lru_cache(maxsize=1024)(self._read_uncached)

    # ------------------------------------------------------------------------------------------ reading
    def read(self, text: str) -> list[Fact]:
        """The facts ``text`` asks for, undeclined: tempo, key, years, then album and artist names."""
        return list(self._read(text))

    def _read_uncached(self, text: str) -> tuple[Fact, ...]:
        said, declined = _said(_spell_out(text))
        kept = " ".join(w for w, d in zip(said, declined) if not d)
        out = [*self._tempos(said, declined), *self._keys(kept), *self._eras(kept.split())]
        tokens = [w for w in said if w != STOP]
        flags = [d for w, d in zip(said, declined) if w != STOP]
        for start, n, rows in self._name_spans(tokens):
            if not any(flags[start:start + n]):  # "nothing from wesnoth": not asked for
                out.append(Fact("name", " ".join(tokens[start:start + n]), tuple(sorted(rows))))
        return tuple(out)

    @staticmethod
    def _tempos(said: Sequence[str], declined: Sequence[bool]) -> list[Fact]:
        """Tempos asked for. A negation declines one only when it names it ("not 120 bpm"): in "not too fast
        around 100 bpm" (one clause) the flags decline everything after "not", yet 100 BPM is what is asked."""
        full = " ".join(said)

        def asked(start: int) -> bool:  # the match starting at this character of ``full``
            i = len(full[:start].split())
            return not (i < len(declined) and declined[i] and not _negation_spent(said, i))

        return [f for f, start in FactReader._tempo_spans(full) if asked(start)]

    @staticmethod
    def _tempo_spans(kept: str) -> list[tuple[Fact, int]]:
        out = []
        ok = lambda v: 30 <= v <= 300  # noqa: E731
        pair = rf"\b(?:between )?(\d{{2,3}}) (?:to|and|or) (\d{{2,3}})(?: ish)? {_TEMPO_UNIT}\b"
        for m in re.finditer(pair, kept):
            lo, hi = sorted((float(m.group(1)), float(m.group(2))))
            if ok(lo) and ok(hi):
                out.append((Fact("tempo", m.group(0), (lo, hi)), m.start()))
        kept = re.sub(pair, lambda m: " " * len(m.group(0)), kept)  # offsets kept
        bound = "|".join(sorted(_OPEN, key=len, reverse=True))
        for m in re.finditer(rf"\b({bound}) (\d{{2,3}})(?: ish)? {_TEMPO_UNIT}\b", kept):
            v = float(m.group(2))
            if ok(v):
                span = (30.0, v) if _OPEN[m.group(1)] == "hi" else (v, 300.0)
                out.append((Fact("tempo", m.group(0), span), m.start()))
        kept = re.sub(rf"\b({bound}) (\d{{2,3}})(?: ish)? {_TEMPO_UNIT}\b", lambda m: " " * len(m.group(0)), kept)
        for m in re.finditer(rf"\b(\d{{2,3}})(?: ish)? {_TEMPO_UNIT}\b|"
                             r"\b(?:bpm|tempo)(?: of| around| about| near| at| roughly| approximately| is)* (\d{2,3})\b"
                             r"(?! (?:minutes|minute|mins|min|seconds|secs))", kept):
            v = float(m.group(1) or m.group(2))
            if ok(v):
                out.append((Fact("tempo", m.group(0), (v, v)), m.start()))
        return out

    @staticmethod
    def _keys(kept: str) -> list[Fact]:
        out = []
        for m in re.finditer(r"\b(?:(in) )?([a-g])(?: (sharp|flat|natural))? (major|minor)\b"
                             r"(?: (key|keys|scale|tonality)\b)?",
                             kept):
            pre, letter, acc, mode, key = m.groups()
            if letter == "a" and not acc:  # "a minor" is also an article and a word: read only as a key is written
                if key:  # "(in) a minor key": any minor key
                    out.append(Fact("key", m.group(0), (-1, mode)))
                    continue
                if pre != "in" or kept[m.end():].strip()[:1] not in ("", STOP):  # "in A minor" ends its clause
                    continue  # "I'm in a major funk", "in a minor way"
            shift = {"sharp": 1, "flat": -1}.get(acc or "", 0)
            out.append(Fact("key", m.group(0), ((_PITCH[letter] + shift) % 12, mode)))
        if not out:
            for m in re.finditer(r"\b(major|minor) (?:key|keys|tonality|scale)\b", kept):
                out.append(Fact("key", m.group(0), (-1, m.group(1))))
        return out

    def _eras(self, tokens: Sequence[str]) -> list[Fact]:
        out = []
        for m in re.finditer(r"\b(?:between|from) ((?:19|20)\d\d) (?:and|to|till|until) ((?:19|20)\d\d)\b",
                             " ".join(tokens)):
            lo, hi = sorted((int(m.group(1)), int(m.group(2))))
            out.append(Fact("year", m.group(0), (lo, hi)))
        in_range = {w for f in out for w in f.text.split()}
        for i, tok in enumerate(tokens):
            before = tokens[max(0, i - 2):i]
            start = None
            if re.fullmatch(r"(?:19|20)\d0s", tok):
                start = int(tok[:4])
            elif re.fullmatch(r"\d0s", tok):
                if _AGE.intersection(before) and not {"the", "from"}.intersection(before):
                    continue  # "in my 20s", "in their 30s": an age
                d = int(tok[0])
                start = 1920 if d == 2 and "roaring" in before else (2000 + 10 * d if d <= 2 else 1900 + 10 * d)
            elif tok in _DECADE_WORDS and (tok not in ("tens", "teens", "twenties") or (i and tokens[i - 1] == "twenty")):
                start = 1920 if tok == "twenties" and "roaring" in before else _DECADE_WORDS[tok]
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
            elif re.fullmatch(r"(?:19[5-9]|20[0-3])\d", tok) and tok not in in_range and (
                    _YEAR_CUES.intersection(before) or (i + 1 < len(tokens) and tokens[i + 1] in _YEAR_AFTER)):
                out.append(Fact("year", tok, (int(tok), int(tok))))
            elif tok in _RECENT and self._years:
                out.append(Fact("year", tok, (self._years[1] - RECENT_YEARS + 1, self._years[1])))
            elif tok == "oldest" and self._years:
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
            fan = i >= 2 and tokens[i - 1] == "of" and tokens[i - 2] in FANS
            if needs_cue and not (fan or NAME_CUES_BEFORE.intersection(tokens[max(0, i - 2):i])
                                  or NAME_CUES_AFTER.intersection(tokens[i + 1:i + 2])):
                continue
            used[i] = True
            out.append((i, 1, rows))
        return out

    def unread_positions(self, tokens: Sequence[str]) -> set[int]:
        """Positions of ``tokens`` (a request's words, :func:`talkplay.intent.words`) that no concept should read: an
        album's or artist's name, widened over the name's other words next to it ("the battle for wesnoth" from
        "wesnoth"), and a key's words ("a minor key" asks for no piano keys)."""
        out: set[int] = set()
        for start, n, rows in self._name_spans(tokens):
            out.update(range(start, start + n))
            for core in (c for c, r in self._names.items() if r & rows):  # the name's own words on either side
                lo, hi = start, start + n
                while lo > 0 and (tokens[lo - 1] in core or tokens[lo - 1] in GENERIC_NAME_WORDS):
                    lo -= 1
                while hi < len(tokens) and (tokens[hi] in core or tokens[hi] in GENERIC_NAME_WORDS):
                    hi += 1
                out.update(range(lo, hi))
        for i, w in enumerate(tokens):
            if w in ("major", "minor") and i + 1 < len(tokens) and tokens[i + 1] in ("key", "keys", "scale"):
                out.update((i, i + 1))
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
