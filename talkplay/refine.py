"""Refinements: "slower", "calmer", "less dark, more upbeat", "without the drums" — relative to the track playing.

A relative request names no track property a card would hold, so matching its words finds nothing; it asks for a
*move* from the previous track along a measured attribute. This module owns that notion for the whole project:

* :func:`directions` reads the directions a request asks for (several at once: "less dark, more upbeat" is
  brighter + livelier), written for how people type, negations and "too …" complaints included;
* :class:`Attributes` are a track's measured tempo, energy, brightness and percussiveness (``features.parquet``)
  with its tempo/mood/drum tags as a fallback for tracks that were not measured;
* :func:`moves` says whether going from one track to another is a direction — the same rule the synthetic
  conversations are generated with (``train.data.conversations`` imports it), so the data and the engine agree on
  what "slower" means: at least :data:`TEMPO_STEP_BPM` slower, and the tags do not say the opposite.

The engine (:meth:`talkplay.recommender.Recommender._choose`) restricts a relative turn's candidates to the
tracks that move the asked way from the previous one, and lets the model choose among those closest to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# How far an attribute must move between two tracks before a listener would notice and name it.
TEMPO_STEP_BPM = 15.0  # "faster" / "slower", "too slow" / "too fast"
ENERGY_STEP = 0.10  # "more energy" / "calmer", "too much" / "too sleepy" (energy 0..1)
BRIGHTNESS_STEP = 0.15  # "brighter" / "darker" (brightness 0..1)
PERCUSSION_STEP = 0.12  # "more / fewer drums" (share of percussive energy 0..1)
MIN_TEMPO_CONFIDENCE = 0.1  # a tempo estimate below this confidence is no tempo at all (no clear pulse)

DIRECTIONS = ("faster", "slower", "livelier", "calmer", "darker", "brighter", "more_drums", "fewer_drums",
              "no_drums")
OPPOSITE = {"faster": "slower", "slower": "faster", "livelier": "calmer", "calmer": "livelier",
            "darker": "brighter", "brighter": "darker", "more_drums": "fewer_drums", "fewer_drums": "more_drums",
            "no_drums": "more_drums"}
TEMPO_RANK = {"slow": 0, "mid-tempo": 1, "fast": 2}


def tag_rank(tags: Iterable[str], low: set[str], high: set[str]) -> int:
    """0 when a tag says low, 2 when one says high, else 1."""
    tags = set(tags)
    return 0 if tags & low else 2 if tags & high else 1


# ------------------------------------------------------------------------------------ reading a request

_W = r"(?:a\s+(?:bit|little|lot)\s+|much\s+|way\s+|even\s+|slightly\s+|somewhat\s+)?"  # "a bit slower"
_PATTERNS: dict[str, tuple[str, ...]] = {
    "slower": (rf"\b{_W}slower\b", r"\bslow(?:\s+it)?\s+down\b", rf"\bless\s+{_W}fast\b", r"\blower\s+(?:the\s+)?tempo\b",
               r"\b(?:too|so)\s+fast\b", r"\bease\s+(?:off|up)\b", r"\b(?:tempo|pace)\s+down\b", r"\bnot\s+so\s+fast\b",
               r"\bdown\s*tempo\b", r"\breduce\s+the\s+(?:tempo|pace|speed)\b"),
    "faster": (rf"\b{_W}faster\b", r"\bspeed\s+(?:it\s+|things\s+)?up\b", r"\bquicker\b", r"\bhigher\s+(?:tempo|bpm)\b",
               r"\b(?:too|so)\s+slow\b", r"\bpick\s+up\s+the\s+(?:pace|tempo)\b", r"\bup\s+the\s+(?:tempo|pace|bpm)\b",
               r"\bmore\s+(?:tempo|speed)\b", r"\bcrank\s+up\s+the\s+tempo\b", r"\b(?:it\s+)?drags\b", r"\bcrawls?\b"),
    "calmer": (rf"\b{_W}(?:calmer|chiller|mellower|gentler|softer|quieter|more\s+relax(?:ed|ing)|more\s+chill|more\s+mellow)\b",
               r"\bless\s+(?:intense|energetic|busy|loud|aggressive|hectic|energy|chaotic|heavy)\b",
               r"\btone\s+(?:it|things)\s+down\b", r"\btake\s+it\s+down\b", r"\bwind\s+down\b", r"\bcalm\s+(?:it|things)\s+down\b",
               r"\b(?:too|so)\s+(?:intense|loud|busy|aggressive|hectic|energetic|heavy|harsh)\b", r"\btoo\s+much\b",
               r"\bchill\s+out\b"),  # "too much", never "so much" ("thank you so much")
    "livelier": (rf"\b{_W}(?:livelier|more\s+(?:energy|energetic|intense|upbeat|lively|exciting|punch|pumped|hype|action))\b",
                 r"\bpump\s+(?:it\s+)?up\b", r"\bless\s+(?:calm|sleepy|boring|mellow|chill|quiet)\b",
                 r"\b(?:too|so)\s+(?:sleepy|calm|boring|mellow|quiet|dull|soft)\b", r"\bwake\s+me\s+up\b",
                 r"\bhype\s+(?:it\s+)?up\b", r"\bmore\s+upbeat\b", r"\bkick\s+it\s+up\b", r"\bamp\s+(?:it\s+)?up\b"),
    "darker": (rf"\b{_W}(?:darker|moodier|gloomier|sadder|grimmer|more\s+(?:dark|moody|sombre|somber|ominous|melanchol\w*|sinister|gloomy|sad))\b",
               r"\bless\s+(?:bright|happy|cheerful|upbeat\s+and\s+happy|sunny)\b", r"\b(?:too|so)\s+(?:bright|happy|cheerful|sunny|cheesy)\b"),
    "brighter": (rf"\b{_W}(?:brighter|happier|cheerier|lighter|sunnier|more\s+(?:bright|happy|cheerful|uplifting|positive|sunny|hopeful))\b",
                 r"\bless\s+(?:dark|gloomy|sad|grim|moody|depressing|ominous|creepy)\b",
                 r"\b(?:too|so)\s+(?:dark|gloomy|sad|grim|depressing|moody|creepy|bleak)\b", r"\bcheer\s+(?:me|it)\s+up\b"),
    "more_drums": (rf"\b{_W}more\s+(?:drums|percussion|beat|beats|drumming|groove)\b", r"\bdrummier\b", r"\bpunchier\b",
                   r"\b(?:heavier|bigger|stronger)\s+(?:beat|drums)\b"),
    "fewer_drums": (rf"\b{_W}(?:less|fewer)\s+(?:drums|percussion|drumming|beat|beats)\b", r"\btone\s+down\s+the\s+drum",
                    r"\b(?:too\s+(?:many|much)\s+)?drums?\s+(?:are|is)\s+too\s+(?:loud|much|busy)\b", r"\btoo\s+drummy\b",
                    r"\bsofter\s+(?:drums|percussion|beat)\b"),
    "no_drums": (r"\b(?:no|without(?:\s+any)?|zero|drop\s+the|lose\s+the)\s+(?:drums|percussion|drumming|beats?)\b",
                 r"\bdrumless\b"),
}
_COMPILED = {d: [re.compile(p, re.IGNORECASE) for p in ps] for d, ps in _PATTERNS.items()}


def directions(text: str) -> tuple[str, ...]:
    """The directions ``text`` asks for, in :data:`DIRECTIONS` order; () for a request that is not relative.

    A direction and its opposite cannot both hold; when a request seems to ask for both (a word read twice)
    neither is kept. "No drums" implies fewer drums, so only ``no_drums`` is kept then."""
    found = {d for d, pats in _COMPILED.items() if any(p.search(text) for p in pats)}
    if "no_drums" in found:
        found.discard("fewer_drums")
    for d in list(found):
        if OPPOSITE[d] in found and d != "no_drums":
            found.discard(d)
            found.discard(OPPOSITE[d])
    return tuple(d for d in DIRECTIONS if d in found)


# ------------------------------------------------------------------------------------ track attributes


@dataclass(frozen=True)
class Attributes:
    """What :func:`moves` compares: measured values (None when not measured or unreliable) and tag ranks."""

    measured: bool
    bpm: float | None
    energy: float | None
    brightness: float | None
    percussiveness: float | None
    tempo_rank: int | None
    energy_rank: int
    brightness_rank: int
    drum_rank: int

    @classmethod
    def of(cls, tags: Iterable[str], row: Mapping[str, Any] | None) -> "Attributes":
        """From a track's tags and its ``features.parquet`` row (None: not measured)."""
        tags = frozenset(tags)

        def num(key: str) -> float | None:
            value = row.get(key) if row else None
            return float(value) if value is not None and value == value else None  # NaN → None

        bpm, conf = num("tempo_bpm"), num("tempo_confidence") or 0.0
        return cls(row is not None, bpm if bpm and bpm > 0 and conf >= MIN_TEMPO_CONFIDENCE else None,
                   num("energy"), num("brightness"), num("percussiveness"),
                   next((TEMPO_RANK[t] for t in tags if t in TEMPO_RANK), None),
                   tag_rank(tags, {"calm", "chill", "quiet"}, {"energetic", "loud"}),
                   tag_rank(tags, {"dark"}, {"bright"}), tag_rank(tags, {"drumless"}, {"drums", "beats", "percussive"}))


def load_attributes(bundle: str | Path, tracks: Iterable[Any]) -> dict[str, Attributes]:
    """Attributes of ``tracks`` from the bundle's ``features.parquet`` (tags alone where a track has no row, or
    when the bundle has no such file)."""
    from talkplay.bundle import read_features  # pyarrow only when a bundle is read

    rows = read_features(bundle, columns=["tempo_bpm", "tempo_confidence", "energy", "brightness", "percussiveness"])
    return {t.track_id: Attributes.of(t.tags or (), rows.get(t.track_id)) for t in tracks}


def _step(a: float | None, b: float | None, step: float, ranks: tuple[int | None, int | None], up: bool,
          measured: bool) -> bool:
    """b is at least ``step`` above (up) / below a, and the tags do not say the opposite. Tags decide
    alone only for tracks without features; a measured but unreliable value (no clear pulse) decides no."""
    ra, rb = ranks
    if a is not None and b is not None:
        moved = (b - a if up else a - b) >= step
        agrees = ra is None or rb is None or (rb >= ra if up else rb <= ra)
        return moved and agrees
    if measured:
        return False
    return ra is not None and rb is not None and (rb > ra if up else rb < ra)


def moves(a: Any, b: Any, direction: str) -> bool:
    """Whether going from track ``a`` to track ``b`` is ``direction`` (:data:`DIRECTIONS`); ``a`` and ``b`` are
    :class:`Attributes` or anything with the same fields (``train.data.conversations.Profile``)."""
    m = a.measured and b.measured
    tempo = (a.tempo_rank, b.tempo_rank)
    energy, bright, drums = (a.energy_rank, b.energy_rank), (a.brightness_rank, b.brightness_rank), \
        (a.drum_rank, b.drum_rank)
    if direction in ("faster", "slower"):
        return _step(a.bpm, b.bpm, TEMPO_STEP_BPM, tempo, direction == "faster", m)
    if direction in ("livelier", "calmer"):
        return _step(a.energy, b.energy, ENERGY_STEP, energy, direction == "livelier", m)
    if direction in ("brighter", "darker"):
        return _step(a.brightness, b.brightness, BRIGHTNESS_STEP, bright, direction == "brighter", m)
    if direction == "more_drums":
        return b.drum_rank == 2 and _step(a.percussiveness, b.percussiveness, PERCUSSION_STEP, drums, True, m)
    if direction == "fewer_drums":
        return a.drum_rank == 2 and _step(a.percussiveness, b.percussiveness, PERCUSSION_STEP, drums, False, m)
    if direction == "no_drums":
        return b.drum_rank == 0 and a.drum_rank >= 1 and _step(a.percussiveness, b.percussiveness,
                                                               PERCUSSION_STEP, drums, False, m)
    raise ValueError(f"unknown direction {direction!r} (see talkplay.refine.DIRECTIONS)")
