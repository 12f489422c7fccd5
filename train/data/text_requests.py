"""Text → music examples: short first requests paired with a track they fit (3MToken's text-to-music task).

A conversation example costs hundreds of tokens and teaches the word → music-token link once per turn,
mixed with reply writing. These examples are one user message and the target track's music span, so a
CPU second teaches many more links, and every one of them is a *first* turn (no history to lean on),
the turn the model was weakest at. Each request is true of its track — it is built only from the
track's own tags (through ``train.data.lexicon`` slots), caption, title, artist or game — in the ways people
type them:

* conversation-style first requests (``train.data.conversations``' own request builder, training phrasings);
* terse slot combinations: "dark ambient with piano", "chill synths for coding", "fast chiptune";
* negations a track satisfies: "orchestral, no drums" (only for tracks tagged drumless);
* tag lists ("orchestral, fantasy, strings, slow") and captions without numbers;
* names: "something like Heroes Rite", "more by Wansti", "music from SuperTux".

A request like "calm piano" has many fitting tracks; drawing the target among them (every track yields
requests from its own slots) teaches the model the spread of fitting tracks, which is what sampling
from it should reproduce. Only the lexicon's *training* words and templates are used, so test
conversations' held-out phrasings stay unseen. Cold-start tracks are never targets.

    python -m train.data.text_requests --catalog catalog/demo --show 20     # print a sample
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.data.text_requests")

import argparse
import hashlib
import random
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from talkplay.catalog import Catalog
from train.data import lexicon as lx
from train.data.conversations import ConversationConfig, Profile, _Relations, _Turns, build_profiles
from train.data.noise import add_noise

GENERATOR = "requests v1"  # bump when the output for a seed changes


@dataclass(frozen=True)
class Request:
    """One text → track example."""

    text: str  # the user's message
    track_id: str  # a track the message is true of
    kind: str  # which builder made it ("conversation", "slots", "negation", "tags", "caption", "name")


# Terse phrasings (lower-case; noise may change casing and add typos). Placeholders are slot kinds.
_TERSE: tuple[str, ...] = (
    "{mood} {style}", "{style} with {instrument}", "{mood} {style} with {instrument}", "{tempo} {style}",
    "{style} for {activity}", "something {mood} for {activity}", "music for {activity}", "{mood} music",
    "{instrument} music", "{mood} {instrument}", "something {mood} and {tempo}", "{tempo} {mood} {style}",
    "{style} please", "i want {mood} {style}", "any {style} with {instrument}?", "songs for {activity}",
    "{mood} stuff for {activity}", "need something {mood}", "{style}, {mood}, {tempo}",
    "give me some {style} with {instrument}", "play {mood} {style}", "a playlist for {activity}",
    "something {tempo} with {instrument}", "{mood} {tempo} {style} for {activity}",
)
_NEGATION: tuple[str, ...] = (
    "{style} without drums", "{mood} music, no drums", "no drums please, something {mood}",
    "something with no percussion", "{instrument} but no drums", "nothing with a beat, {mood} please",
)
_NAME: tuple[tuple[str, str], ...] = (
    ("title", "something like {title}"), ("title", "more like {title}"), ("title", "play {title}"),
    ("title", "songs similar to {title}"), ("artist", "something by {artist}"), ("artist", "more {artist}"),
    ("artist", "play me {artist}"), ("source", "music from {source}"), ("source", "the {source} soundtrack"),
    ("source", "something from {source}"),
)
_KIND_WEIGHTS = (("conversation", 0.35), ("slots", 0.35), ("negation", 0.05), ("tags", 0.08), ("caption", 0.07),
                 ("name", 0.10))
_NUMBERS = re.compile(r",?\s*~?\d+\s*BPM|\s+in\s+[A-G][#b♯♭]?\s+(major|minor)", re.IGNORECASE)


def _rng(seed: int, *names: str) -> random.Random:
    digest = hashlib.sha256("|".join([str(seed), GENERATOR, *names]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _word(key: str, rng: random.Random) -> str:
    return rng.choice(lx.words(key, held_out=False))


def _slots_text(p: Profile, templates: Sequence[str], rng: random.Random) -> str | None:
    """A template whose every slot the track satisfies, filled with training words of those slots."""
    fitting = [t for t in templates if all(p.keys.get(s) for s in lx.placeholders(t))]
    if not fitting:
        return None
    tmpl = rng.choice(fitting)
    return tmpl.format(**{s: _word(rng.choice(p.keys[s]), rng) for s in lx.placeholders(tmpl)})


def _one(p: Profile, turns: _Turns, rng: random.Random) -> tuple[str, str, tuple[str, ...]] | None:
    """(kind, text, protected names) of one request for ``p``, or None when the drawn kind does not apply."""
    kind = rng.choices([k for k, _ in _KIND_WEIGHTS], [w for _, w in _KIND_WEIGHTS])[0]
    t = p.track
    if kind == "conversation":
        _, part, _ = turns.request(p, None, held_mode=False)
        return (kind, part.text, part.protect) if part is not None else None
    if kind == "slots":
        text = _slots_text(p, _TERSE, rng)
        return (kind, text, ()) if text else None
    if kind == "negation":
        if "drumless" not in p.tags:
            return None
        text = _slots_text(p, _NEGATION, rng)
        return (kind, text, ()) if text else None
    if kind == "tags":
        if len(t.tags) < 2:
            return None
        picked = rng.sample(list(t.tags), rng.randint(2, min(4, len(t.tags))))
        return kind, rng.choice((", ", " ", " and ")).join(picked), ()
    if kind == "caption":
        caption = _NUMBERS.sub("", t.caption or "").strip().rstrip(".")
        if not caption:
            return None
        lead = rng.choice(("", "i want ", "looking for ", "play ", "something like: "))
        return kind, lead + caption[0].lower() + caption[1:], ()
    names = {"title": t.title if p.title_unique else None, "artist": t.artist if p.artist_ok else None,
             "source": p.source}
    options = [(slot, tmpl) for slot, tmpl in _NAME if names[slot]]
    if not options:
        return None
    slot, tmpl = rng.choice(options)
    return kind, tmpl.format(**{slot: names[slot]}), (names[slot],)


def generate_requests(catalog: Catalog, features: Mapping[str, Mapping], per_track: int, seed: int = 0,
                      exclude: set[str] | frozenset[str] = frozenset()) -> list[Request]:
    """``per_track`` requests for every catalog track not in ``exclude`` (cold-start tracks), deterministic.

    Each track draws from its own generator seeded by (seed, track id), so adding a track changes no
    other track's requests. Duplicate texts of one track are dropped (so a track may get fewer).
    """
    profiles = build_profiles(catalog, features)
    config = ConversationConfig(seed=seed)
    rel = _Relations()
    out: list[Request] = []
    for track_id in sorted(profiles):
        if track_id in exclude:
            continue
        p, rng = profiles[track_id], _rng(seed, track_id)
        turns = _Turns(rel, config, rng)
        seen: set[str] = set()
        for _ in range(per_track * 4):  # some draws do not apply to a track; stop once enough are made
            if len(seen) >= per_track:
                break
            made = _one(p, turns, rng)
            if made is None:
                continue
            kind, text, protect = made
            text = add_noise(text, rng, protect=protect)
            if text.lower() not in seen:
                seen.add(text.lower())
                out.append(Request(text, track_id, kind))
    return out


def load_features(bundle: Path) -> dict[str, dict]:
    """track_id → features row of a bundle ({} when it has no features.parquet)."""
    import pyarrow.parquet as pq

    path = Path(bundle) / "features.parquet"
    if not path.exists():
        return {}
    columns = ["track_id", "tempo_bpm", "tempo_confidence", "energy", "brightness", "percussiveness", "key",
               "mode", "key_strength"]
    table = pq.read_table(path)
    return {r["track_id"]: r for r in table.select([c for c in columns if c in table.schema.names]).to_pylist()}


def bundle_requests(bundle: Path, per_track: int, seed: int = 0) -> list[Request]:
    """Requests for a bundle's tracks, its cold-start tracks (data/manifest.json) excluded."""
    import json

    from talkplay.catalog import load_catalog

    manifest = Path(bundle) / "data" / "manifest.json"
    cold = set(json.loads(manifest.read_text()).get("cold_start_tracks", [])) if manifest.exists() else set()
    return generate_requests(load_catalog(bundle), load_features(bundle), per_track, seed, cold)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.data.text_requests", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle directory")
    p.add_argument("--per-track", type=int, default=40, help="requests per track")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--show", type=int, default=20, help="print this many random requests")
    args = p.parse_args(argv)
    requests = bundle_requests(args.catalog, args.per_track, args.seed)
    from collections import Counter

    print(f"{len(requests)} requests for {len({r.track_id for r in requests})} tracks; kinds: "
          f"{dict(Counter(r.kind for r in requests))}")
    for r in random.Random(args.seed).sample(requests, min(args.show, len(requests))):
        print(f"  [{r.kind}] {r.text!r} → {r.track_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
