"""The assistant's side of the synthetic conversations: reply frames filled only with facts of the recommended
track (title, artist, album, year, tags, caption, tempo, key), short leads keyed by what the listener asked, and
the plain description of a track from its tags ("a fast, dark orchestral piece with strings").

The user's side — phrasings, slot words, the held-out partition — is :mod:`train.data.lexicon`.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.data.reply_frames is a module of the train package: import it, or use python -m")

import random
from collections.abc import Sequence

# {title} {artist} always; {album} {year} {descr} (e.g. "a fast, dark orchestral piece with strings")
# {tags} (the track's own tags, comma-joined) {caption} {bpm} {key} only when the track has them.
REPLY_FRAMES: tuple[str, ...] = (
    "{title} by {artist}. {caption}", "Try “{title}” by {artist}. {caption}",
    "How about {title} by {artist}? It's {descr}.", "Here's {title} by {artist}, {descr}.",
    "{title} by {artist}, from {album}. {caption}", "Queue up {title} by {artist} ({album}, {year}).",
    "{title} by {artist}: {descr}, about {bpm} BPM.", "Give {title} by {artist} a spin: {descr} in {key}.",
    "This is {title} by {artist}, released in {year}. {caption}", "{title}, by {artist}, off {album}: {descr}.",
    "You might like {title} by {artist}, tagged {tags}.", "Playing {title} by {artist}. Expect {descr}.",
    "Up next: {title} by {artist} from {album}. It sits around {bpm} BPM.",
    "Let's go with {title} by {artist} ({year}), {descr}.", "{title} by {artist} should fit: {descr}.",
    "I'd pick {title} by {artist}. It's in {key}, roughly {bpm} BPM.", "Check out {title} by {artist} from {album}.",
    "{title} ({artist}, {year}). {caption}", "Spinning {title} by {artist}: {tags}.",
    "Here's one from {album}: {title} by {artist}. {caption}", "{title}, credited to {artist}, is {descr}.",
    "Listen to {title} by {artist}. Tags: {tags}.", "My pick: {title} by {artist}, {descr} from {album}.",
    "{title} by {artist} came out in {year} on {album}.", "Put on {title} by {artist}, {descr} at about {bpm} BPM.",
    "Recommended: {title} by {artist}. {caption}", "On deck: {title} by {artist}, in {key}. {caption}",
    "{title} by {artist} is {descr}. You'll find it on {album}.", "Try this: {title} by {artist} ({tags}).",
    "Here you go: {title} by {artist}, released {year}.",
)
# Leads say what the listener asked for, without naming an attribute word of their own (those come
# only from the track). Keys: a direction, or "open", "track", "artist", "more", "activity",
# "reject", "accept", "chat".
REPLY_LEADS: dict[str, tuple[str, ...]] = {
    "open": ("Here's a pick.", "Try this one.", "Good call.", "I've got one for that.", "Sure thing.", ""),
    "track": ("Here it is.", "Coming right up.", "Found it.", "Sure, playing it now.", "You got it."),
    "artist": ("Sure, here's one.", "Good taste.", "Coming up.", "Right away."),
    "more": ("In the same vein.", "Staying in that lane.", "More of the same.", "Here's a close cousin."),
    "activity": ("That should fit nicely.", "Good one for that.", "This should set the scene.", ""),
    "faster": ("Picking up the pace.", "Speeding things up.", "Here's a quicker one."),
    "slower": ("Slowing things down.", "Easing off the tempo.", "Here's a slower one."),
    "livelier": ("Turning the energy up.", "Something with more drive.", "Here's a livelier one."),
    "calmer": ("Bringing the energy down.", "Something gentler.", "Here's a calmer one."),
    "darker": ("Going darker.", "Heading into deeper shades.", "Here's a darker one."),
    "brighter": ("Lightening things up.", "Something brighter-sounding.", "Here's a brighter one."),
    "more_drums": ("More rhythm coming up.", "Bringing in the percussion.", "This one hits harder."),
    "fewer_drums": ("Easing off the percussion.", "Lighter on the rhythm section.", "Less percussion here."),
    "no_drums": ("No percussion on this one.", "Dropping the rhythm section entirely.", "Percussion-free."),
    "reject": ("Fair enough, let's switch it up.", "No problem, trying another.", "Got it, scrapping that one.",
               "Understood, something different."),
    "accept": ("Glad you like it!", "Great, noted.", "Happy that one landed.", "Nice!", ""),
    "chat": ("Ha, sounds good.", "Got it!", "Noted.", "Sure thing.", "Love that.", ""),
}

_DESCR_TEMPO = ("slow", "mid-tempo", "fast")
_DESCR_MOOD = ("dark", "bright", "calm", "chill", "energetic", "playful", "romantic", "atmospheric", "quiet", "loud")
_DESCR_STYLE = ("fantasy", "sci-fi", "medieval", "retro", "orchestral", "cinematic", "classical", "electronic",
                "ambient", "techno", "chiptune", "rock", "metal", "folk", "pop", "dance", "jazz", "acoustic",
                "experimental")
_DESCR_INSTRUMENT = {"strings": "strings", "piano": "piano", "synth": "synths", "guitar": "guitar",
                     "drums": "drums", "flute": "flute", "violin": "violin", "cello": "cello",
                     "female vocals": "female vocals"}
_NOUNS = ("track", "piece", "cue", "tune")


def article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    w = word.lower()
    if w.startswith(("uni", "use", "eu", "one")):
        return "a"
    return "an" if w[:1] in "aeiou8" else "a"


def join_and(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe(tags: Sequence[str], rng: random.Random) -> str | None:
    """'a fast, dark orchestral piece with strings and piano' from the track's own tags, None if too few."""
    tempo = [t for t in tags if t in _DESCR_TEMPO][:1]
    mood = [t for t in tags if t in _DESCR_MOOD][:1]
    styles = [t for t in _DESCR_STYLE if t in tags][:2]
    instruments = [_DESCR_INSTRUMENT[t] for t in tags if t in _DESCR_INSTRUMENT][:2]
    if not (styles or mood or tempo):
        return None
    adjectives = ", ".join(tempo + mood)
    head = " ".join(x for x in (adjectives, " ".join(styles), rng.choice(_NOUNS)) if x)
    phrase = f"{article(head)} {head}"
    return phrase + (f" with {join_and(instruments)}" if instruments else "")
