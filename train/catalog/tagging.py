"""Words for tracks: descriptor words, auto-tag selection, merged tag lists and one-sentence captions.

* :func:`descriptor_tags` - human words ("slow", "dark", ...) from measured :class:`Descriptors`.
* :func:`select_auto_tags` - thresholding + canonicalisation of the 50 MSD and
  50 MTT musicnn tag probabilities into a short, de-duplicated tag list.
* :func:`merge_tags` - curated + auto + measured tags as one list without contradictions.
* :func:`compose_caption` - one natural English sentence per track.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.catalog.tagging is a module of the train package: import it, or use python -m")

from typing import Iterable, Mapping, Sequence

import numpy as np

from train.catalog.descriptors import Descriptors

__all__ = ["compose_caption", "descriptor_tags", "merge_tags", "select_auto_tags", "canonical_tag"]

# --------------------------------------------------------------------------- #
# Descriptor-tag thresholds (documented in descriptor_tags)
# --------------------------------------------------------------------------- #
SLOW_BPM = 90.0  # tempo < 90 -> "slow"
FAST_BPM = 128.0  # tempo >= 128 -> "fast"; in between -> "mid-tempo"
CALM_ENERGY = 0.5  # energy < 0.5 (RMS < -27.5 dBFS) -> "calm"
ENERGETIC_ENERGY = 0.7  # energy >= 0.7 (RMS >= -20.5 dBFS) ...
ENERGETIC_ONSET_RATE = 2.5  # ... and >= 2.5 onsets/s -> "energetic"
CALM_ONSET_RATE = 1.0  # < 1 onset/s (sustained pads) is also "calm"
DARK_BRIGHTNESS = 0.35  # centroid < ~1.1 kHz -> "dark"
BRIGHT_BRIGHTNESS = 0.6  # centroid >= ~2.0 kHz -> "bright"
PERCUSSIVE_SHARE = 0.35  # percussive energy share >= 0.35 -> "percussive"
DRUMLESS_SHARE = 0.12  # share < 0.12 -> "drumless"
#: Below this tempo confidence there is no reliable pulse (drones, noise,
#: rubato): descriptor_tags/compose_caption then say nothing about tempo.
MIN_TEMPO_CONFIDENCE = 0.1
#: Caption mentions the key only if the Krumhansl correlation is at least this
#: (atonal noise/ambience correlates ~0.2-0.4 with every key).
KEY_CAPTION_MIN_STRENGTH = 0.45




# --------------------------------------------------------------------------- #
# Descriptor words
# --------------------------------------------------------------------------- #


def _tempo_word(d: Descriptors) -> str | None:
    if d.tempo_bpm <= 0 or d.tempo_confidence < MIN_TEMPO_CONFIDENCE:
        return None
    if d.tempo_bpm < SLOW_BPM:
        return "slow"
    if d.tempo_bpm >= FAST_BPM:
        return "fast"
    return "mid-tempo"


def _energy_word(d: Descriptors) -> str | None:
    busy = d.onset_rate >= ENERGETIC_ONSET_RATE or d.percussiveness >= PERCUSSIVE_SHARE
    if d.energy >= ENERGETIC_ENERGY and busy:
        return "energetic"
    # A quiet but drum-driven mix is not "calm"; a loud sustained pad is.
    if (d.energy < CALM_ENERGY and not busy) or d.onset_rate < CALM_ONSET_RATE:
        return "calm"
    return None


def _brightness_word(d: Descriptors) -> str | None:
    if d.brightness < DARK_BRIGHTNESS:
        return "dark"
    if d.brightness >= BRIGHT_BRIGHTNESS:
        return "bright"
    return None


def _percussion_word(d: Descriptors) -> str | None:
    if d.percussiveness >= PERCUSSIVE_SHARE:
        return "percussive"
    if d.percussiveness < DRUMLESS_SHARE:
        return "drumless"
    return None


def descriptor_tags(d: Descriptors) -> list[str]:
    """Human words for a clip, in the order tempo, energy, brightness, drums.

    ========== ===================================================== =========
    word       rule                                                  middle
    ========== ===================================================== =========
    slow       tempo < 90 BPM                                        mid-tempo
    fast       tempo >= 128 BPM                                      (90-128)
    energetic  energy >= 0.7 and busy                                no word
    calm       (energy < 0.5 and not busy) or onset rate < 1/s       no word
    dark       brightness < 0.35 (centroid below ~1.1 kHz)           no word
    bright     brightness >= 0.6 (centroid above ~2.0 kHz)           no word
    percussive percussive energy share >= 0.35                       no word
    drumless   percussive energy share < 0.12                        no word
    ========== ===================================================== =========

    "busy" = onset rate >= 2.5/s or percussive share >= 0.35.  No tempo word
    if ``tempo_confidence < 0.1`` (no reliable pulse).  A silent clip gets no
    words.
    """
    if d.tempo_bpm <= 0 and d.energy <= 0:
        return []
    words = [_tempo_word(d), _energy_word(d), _brightness_word(d), _percussion_word(d)]
    return [w for w in words if w]


# --------------------------------------------------------------------------- #
# Auto-tag selection
# --------------------------------------------------------------------------- #

#: Raw musicnn tag (lower-cased) -> canonical tag.  Tags not listed map to
#: their lower-cased selves.  Merged tags take the max probability.
#:
#: ===================================================== =============
#: raw (MSD / MTT)                                       canonical
#: ===================================================== =============
#: female vocalists, female vocalist, female vocal,       female vocals
#: female voice, female, woman
#: male vocalists, male vocal, male voice, male, man      male vocals
#: vocal, vocals, voice, singing                         vocals
#: no vocals, no vocal, no voice, instrumental           instrumental
#: choral, choir                                         choir
#: electronic, electronica, electro                      electronic
#: classical, classic                                    classical
#: beat, beats                                           beats
#: chill, chillout                                       chill
#: heavy metal, metal                                    metal
#: Hip-Hop -> hip-hop, rnb -> r&b, Mellow -> mellow      (lower-case)
#: ===================================================== =============
TAG_CANONICAL: dict[str, str] = {
    "female vocalists": "female vocals",
    "female vocalist": "female vocals",
    "female vocal": "female vocals",
    "female voice": "female vocals",
    "female": "female vocals",
    "woman": "female vocals",
    "male vocalists": "male vocals",
    "male vocal": "male vocals",
    "male voice": "male vocals",
    "male": "male vocals",
    "man": "male vocals",
    "vocal": "vocals",
    "vocals": "vocals",
    "voice": "vocals",
    "singing": "vocals",
    "no vocals": "instrumental",
    "no vocal": "instrumental",
    "no voice": "instrumental",
    "instrumental": "instrumental",
    "choral": "choir",
    "choir": "choir",
    "electronica": "electronic",
    "electro": "electronic",
    "classic": "classical",
    "beat": "beats",
    "chillout": "chill",
    "heavy metal": "metal",
    "hip-hop": "hip-hop",
    "rnb": "r&b",
}

#: Tags that rarely describe instrumental game music (decades, vocal styles,
#: song-market genres, "sexy"...).  musicnn emits them with low probability on
#: almost anything, so they need ``SUSPECT_THRESHOLD`` and are never used to
#: fill up the "top few".
SUSPECT_TAGS: frozenset[str] = frozenset(
    {
        "00s", "60s", "70s", "80s", "90s", "oldies",
        "sexy", "party", "catchy",
        "female vocals", "male vocals", "vocals", "opera",
        "hip-hop", "r&b", "soul", "funk", "country", "blues", "jazz", "punk",
        "indie", "indie rock", "indie pop", "alternative", "alternative rock",
        "pop", "classic rock", "easy listening", "house", "indian", "sitar",
    }
)  # fmt: skip
SUSPECT_THRESHOLD = 0.5
#: Mutually exclusive pairs: if both survive, the less probable side is dropped.
_EXCLUSIVE: tuple[tuple[frozenset[str], frozenset[str]], ...] = (
    (frozenset({"instrumental"}), frozenset({"vocals", "female vocals", "male vocals", "opera"})),
    (frozenset({"slow"}), frozenset({"fast"})),
    (frozenset({"quiet", "soft"}), frozenset({"loud"})),
    (frozenset({"sad"}), frozenset({"happy"})),
)


def canonical_tag(tag: str) -> str:
    """Lower-case, whitespace-normalised canonical form of one tag."""
    t = " ".join(tag.strip().lower().replace("_", " ").split())
    return TAG_CANONICAL.get(t, t)


def select_auto_tags(
    msd: Mapping[str, float],
    mtt: Mapping[str, float],
    threshold: float = 0.2,
    top_k: int = 3,
    max_tags: int = 10,
) -> list[str]:
    """Canonical auto-tags, most probable first.

    1. Both tag sets are canonicalised (:data:`TAG_CANONICAL`) and merged with
       the max probability (so "female vocalist" 0.3 + "woman" 0.6 -> 0.6).
    2. A tag is kept if p >= ``threshold`` (default 0.2: musicnn sigmoid
       outputs are low-ish; 0.2 keeps ~3-8 tags per track), or p >= 0.5 for
       :data:`SUSPECT_TAGS`.
    3. The ``top_k`` most probable non-suspect tags are always kept (so every
       track gets some tags), as long as p > 0.
    4. Of mutually exclusive tags (instrumental/vocals, slow/fast, quiet/loud,
       sad/happy) only the more probable side stays.
    5. At most ``max_tags`` tags.  Ties are broken alphabetically (deterministic).
    """
    scores: dict[str, float] = {}
    for source in (msd, mtt):
        for raw, p in source.items():
            p = float(p)
            if not np.isfinite(p):
                continue
            tag = canonical_tag(raw)
            if tag and p > scores.get(tag, -1.0):
                scores[tag] = p
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))

    keep: set[str] = set()
    for tag, p in ranked:
        need = SUSPECT_THRESHOLD if tag in SUSPECT_TAGS else threshold
        if p >= need:
            keep.add(tag)
    for tag, p in [kv for kv in ranked if kv[0] not in SUSPECT_TAGS and kv[1] > 0][:top_k]:
        keep.add(tag)

    for side_a, side_b in _EXCLUSIVE:
        a = [t for t in keep if t in side_a]
        b = [t for t in keep if t in side_b]
        if a and b:
            pa, pb = max(scores[t] for t in a), max(scores[t] for t in b)
            keep.difference_update(b if pa >= pb else a)

    return [t for t, _ in ranked if t in keep][:max_tags]


# --------------------------------------------------------------------------- #
# Caption
# --------------------------------------------------------------------------- #

#: Genre/style vocabulary -> (adjective used in the caption, noun).  The first
#: tag of the caller's list that is in here wins, so curated source genres
#: (put first by the catalog build) beat auto-tags.
GENRE_VOCAB: dict[str, tuple[str, str]] = {
    "orchestral": ("orchestral", "piece"),
    "classical": ("classical", "piece"),
    "chiptune": ("chiptune", "track"),
    "8-bit": ("8-bit", "track"),
    "folk": ("folk", "tune"),
    "celtic": ("Celtic", "tune"),
    "electronic": ("electronic", "track"),
    "ambient": ("ambient", "piece"),
    "new age": ("new age", "piece"),
    "rock": ("rock", "track"),
    "hard rock": ("hard rock", "track"),
    "progressive rock": ("progressive rock", "track"),
    "classic rock": ("classic rock", "track"),
    "metal": ("metal", "track"),
    "techno": ("techno", "track"),
    "house": ("house", "track"),
    "dance": ("dance", "track"),
    "jazz": ("jazz", "piece"),
    "blues": ("blues", "track"),
    "funk": ("funk", "track"),
    "pop": ("pop", "track"),
    "punk": ("punk", "track"),
    "experimental": ("experimental", "piece"),
    "cinematic": ("cinematic", "piece"),
    "soundtrack": ("soundtrack", "piece"),
    "country": ("country", "track"),
    "opera": ("operatic", "piece"),
}

#: Instrument vocabulary -> phrase used after "with".
INSTRUMENT_VOCAB: dict[str, str] = {
    "strings": "strings",
    "piano": "piano",
    "choir": "choir",
    "synth": "synths",
    "synthesizer": "synths",
    "guitar": "guitar",
    "electric guitar": "electric guitar",
    "acoustic": "acoustic guitar",
    "acoustic guitar": "acoustic guitar",
    "drums": "drums",
    "percussion": "percussion",
    "flute": "flute",
    "violin": "violin",
    "cello": "cello",
    "harp": "harp",
    "harpsichord": "harpsichord",
    "sitar": "sitar",
    "organ": "organ",
    "brass": "brass",
    "horns": "horns",
    "bass": "bass",
    "bells": "bells",
    "female vocals": "female vocals",
    "male vocals": "male vocals",
    "vocals": "vocals",
}
MAX_CAPTION_INSTRUMENTS = 3

#: Mood tags (from auto-tags) -> caption adjective; beat descriptor words.
MOOD_VOCAB: dict[str, str] = {
    "sad": "melancholic",
    "melancholic": "melancholic",
    "happy": "upbeat",
    "upbeat": "upbeat",
    "mellow": "mellow",
    "chill": "laid-back",
    "epic": "epic",
    "dark": "dark",
    "weird": "eerie",
    "beautiful": "gentle",
}

# Words starting with a vowel letter but a consonant sound, and vice versa.
_A_EXCEPTIONS = ("uni", "use", "usu", "eu", "one", "once", "ubi", "uto")
_AN_EXCEPTIONS = ("hour", "honest", "honou", "heir", "8", "11", "18", "80")


def _article(word: str) -> str:
    w = word.lower()
    if w.startswith(_AN_EXCEPTIONS):
        return "an"
    if w.startswith(_A_EXCEPTIONS):
        return "a"
    return "an" if w[:1] in "aeiou" else "a"


def _join_and(items: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _dedupe(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for it in items:
        if it and it not in out:
            out.append(it)
    return out


def compose_caption(title_kind_tags: list[str], d: Descriptors) -> str:
    """One sentence, e.g. "A slow, dark orchestral piece in D minor with strings
    and choir, ~72 BPM."

    ``title_kind_tags`` is a plain list of tags (curated genre tags first, then
    auto-tags; "a/b" entries are split).  Parts, each omitted when unknown:

    * adjectives: tempo word (slow / mid-tempo / fast, only with a reliable
      pulse) and one mood word: the first mood tag (:data:`MOOD_VOCAB`),
      else from the descriptors "energetic" > "dark" > "calm" > "bright";
    * genre: first tag in :data:`GENRE_VOCAB` (+ its noun), else
      "instrumental piece" / "piece";
    * "in <key> <mode>" if ``key_strength >= KEY_CAPTION_MIN_STRENGTH``;
    * "with X, Y and Z": up to 3 tags from :data:`INSTRUMENT_VOCAB`;
    * ", ~N BPM" if a reliable tempo was found (confidence >= 0.1).

    No word is repeated (e.g. "ambient" mood + "ambient" genre).
    """
    # Curated genres may come as "electronic/ambient" or "rock, metal".
    parts = (p for t in title_kind_tags if isinstance(t, str) for p in t.replace(",", "/").split("/"))
    tags = _dedupe(canonical_tag(p) for p in parts)

    genre_adj, noun = None, "piece"
    for t in tags:
        if t in GENRE_VOCAB:
            genre_adj, noun = GENRE_VOCAB[t]
            break
    if genre_adj is None and "instrumental" in tags:
        genre_adj = "instrumental"

    mood = next((MOOD_VOCAB[t] for t in tags if t in MOOD_VOCAB), None)
    if mood is None:
        energy_word = _energy_word(d) if d.energy > 0 else None
        bright_word = _brightness_word(d) if d.spectral_centroid_hz > 0 else None
        if energy_word == "energetic":
            mood = "energetic"
        else:
            mood = bright_word if bright_word == "dark" else (energy_word or bright_word)

    used: set[str] = set()

    def fresh(phrase: str | None) -> str | None:
        """Return ``phrase`` unless one of its words was already used."""
        if not phrase:
            return None
        words = set(phrase.lower().split())
        if words & used:
            return None
        used.update(words)
        return phrase

    genre_adj = fresh(genre_adj)
    noun = fresh(noun) or noun
    adjectives = _dedupe(w for w in (fresh(_tempo_word(d)), fresh(mood)) if w)

    head = ", ".join(adjectives)
    head = f"{head} {genre_adj}" if head and genre_adj else (head or genre_adj or "")
    head = f"{head} {noun}".strip()
    sentence = f"{_article(head)} {head}"

    if d.key_strength >= KEY_CAPTION_MIN_STRENGTH and d.key:
        sentence += f" in {d.key} {d.mode}"

    instruments = []
    for t in tags:
        phrase = INSTRUMENT_VOCAB.get(t)
        if phrase and len(instruments) < MAX_CAPTION_INSTRUMENTS:
            phrase = fresh(phrase)
            if phrase:
                instruments.append(phrase)
    if instruments:
        sentence += " with " + _join_and(instruments)

    if d.tempo_bpm > 0 and d.tempo_confidence >= MIN_TEMPO_CONFIDENCE:
        sentence += f", ~{int(round(d.tempo_bpm))} BPM"

    return sentence[0].upper() + sentence[1:] + "."


# Descriptor words measure the preview itself, so they overrule auto-tags that claim the opposite;
# an auto-tagged instrument (drums) is more specific than the HPSS share, so it overrules "drumless".
_OVERRULED_BY_DESCRIPTOR: dict[str, set[str]] = {
    "slow": {"fast"},
    "mid-tempo": {"slow", "fast"},
    "fast": {"slow"},
    "calm": {"loud"},
    "energetic": {"quiet", "soft"},
}
_OVERRULES_DESCRIPTOR: dict[str, set[str]] = {"drumless": {"drums", "beats"}}


def merge_tags(curated: Iterable[str], auto: Iterable[str], measured: Iterable[str]) -> list[str]:
    """One consistent tag list: curated facts first, then auto-tags, then descriptor words.

    Contradictions are resolved (e.g. auto "slow" vs measured "mid-tempo" keeps "mid-tempo"; auto
    "drums" vs measured "drumless" keeps "drums"); duplicates are dropped, order is kept.
    """
    curated, auto, measured = list(curated), list(auto), list(measured)
    present = set(curated) | set(auto)
    measured = [m for m in measured if not (_OVERRULES_DESCRIPTOR.get(m, set()) & present)]
    dropped = set().union(*(_OVERRULED_BY_DESCRIPTOR.get(m, set()) for m in measured)) if measured else set()
    auto = [a for a in auto if a not in dropped]
    return _dedupe([t.strip().lower() for t in (*curated, *auto, *measured) if t and t.strip()])

