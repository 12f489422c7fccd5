"""Offline conversation generator and its lexicon: schema and grounding, truthful replies, rejections and
direction changes, requests true of their track, the held-out split, determinism and bounded noise."""

import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from talkplay.catalog import Track, save_catalog
from talkplay.refine import BRIGHTNESS_STEP, ENERGY_STEP, PERCUSSION_STEP, TEMPO_STEP_BPM
from train.data import lexicon as lx
from train.data.conversation_schema import ConversationError, validate_conversation
from train.data.conversations import ConversationConfig, generate_conversations
from train.data.noise import add_noise
from talkplay.bundle import Playlist

# package → (style/instrument tags, album, artist, base year or None, mean bpm, mean energy, mean brightness,
# mean percussiveness); measured tags are derived from the numbers as train.catalog.tagging does.
PACKAGES = {
    "a": (("orchestral", "cinematic", "fantasy", "strings"), "Alpha Quest Soundtrack", "Ann Example", 2004,
          100, 0.65, 0.40, 0.25),
    "b": (("electronic", "techno", "sci-fi", "synth"), "Beta Sessions", "Ben Sample", 2012, 125, 0.80, 0.55, 0.40),
    "c": (("folk", "medieval", "acoustic", "flute"), "Gamma Tales OST", "by the Fixture Team", None, 95, 0.55,
          0.45, 0.15),
    "d": (("chiptune", "pop", "playful", "piano"), "???", "Dee Placeholder", 2019, 135, 0.75, 0.65, 0.30),
}
PER_PACKAGE = 12
COLD = {"a-11", "b-11", "d-11"}


def _measured_tags(bpm, energy, bright, perc):
    tags = ["slow" if bpm < 90 else "fast" if bpm >= 128 else "mid-tempo"]
    tags += ["energetic"] if energy >= 0.7 else ["calm"] if energy < 0.5 else []
    tags += ["dark"] if bright < 0.35 else ["bright"] if bright >= 0.6 else []
    tags += ["percussive"] if perc >= 0.35 else ["drumless"] if perc < 0.12 else []
    return tags


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    rng = random.Random(3)
    tracks, features = [], {}
    for p, (tags, album, artist, year, bpm, energy, bright, perc) in PACKAGES.items():
        for k in range(PER_PACKAGE):
            tid = f"{p}-{k:02d}"
            row = {"track_id": tid, "tempo_bpm": round(max(60.0, rng.gauss(bpm, 25)), 1),
                   "tempo_confidence": 0.6, "energy": min(1.0, max(0.0, rng.gauss(energy, 0.15))),
                   "brightness": min(1.0, max(0.0, rng.gauss(bright, 0.2))),
                   "percussiveness": min(1.0, max(0.0, rng.gauss(perc, 0.15))), "key": "D",
                   "mode": "minor" if k % 2 else "major", "key_strength": 0.7 if k % 3 else 0.3}
            measured = _measured_tags(row["tempo_bpm"], row["energy"], row["brightness"], row["percussiveness"])
            drums = k % 4 == 1 and "drumless" not in measured
            extra = ("female vocals",) if k % 5 == 0 else ("drums",) if drums else ()
            all_tags = tuple(dict.fromkeys(tags[: 2 + k % 3] + extra + tuple(measured)))
            key = f" in D {row['mode']}" if row["key_strength"] >= 0.45 else ""
            title = "Shared Name" if k == 7 and p in "ab" else f"Opus {p.upper()}{k}"
            tracks.append(Track(
                track_id=tid, title=title, artist=artist, license="CC0-1.0", attribution=f"{title} by {artist}",
                source="user", album=album, year=None if year is None else year + k % 6, tags=all_tags,
                caption=f"A {measured[0]} {tags[0]} piece{key}, ~{round(row['tempo_bpm'])} BPM.",
            ))
            features[tid] = row
    catalog = save_catalog(root, tracks, name="fixture")
    ids = {p: [t.track_id for t in tracks if t.track_id.startswith(p + "-")] for p in PACKAGES}
    playlists = []
    for n in range(48):
        split = "train" if n < 30 else "valid" if n < 38 else "test"
        pool = list(ids["abcd"[n % 4]]) + (list(ids["abcd"[(n + 1) % 4]])[:3] if n % 3 == 0 else [])
        pool = [t for t in pool if split == "test" or t not in COLD]
        rng.shuffle(pool)
        length = rng.randint(5, min(14, len(pool)))
        playlists.append(Playlist(f"pl-{n:03d}", f"mix {n}", tuple(pool[:length]), True, "fixture", split))
    playlists.append(Playlist("pl-short", "too short", tuple(ids["a"][:3]), True, "fixture", "train"))
    return catalog, playlists, features


CONFIG = ConversationConfig(seed=7, reject_prob=0.3)


@pytest.fixture(scope="module")
def convs(world):
    catalog, playlists, features = world
    return generate_conversations(catalog, playlists, features, COLD, CONFIG)


@pytest.fixture(scope="module")
def clean(world):
    """The same conversations without noise (a typo may garble the slot word a check reads back)."""
    catalog, playlists, features = world
    cfg = replace(CONFIG, typo_rate=0.0, lowercase_prob=0.0, drop_punct_prob=0.0)
    return generate_conversations(catalog, playlists, features, COLD, cfg)


def _groups(template_id):
    return [part.rsplit(".", 1)[0] for part in template_id.split("+")]


def _names(catalog):
    names = set()
    for t in catalog:
        names.update({t.title, t.artist, t.album, re.sub(r"\s*(OST|Soundtrack)$", "", t.album)})
    return sorted((n for n in names if n), key=len, reverse=True)


def _without(text, names):
    for n in names:
        text = text.replace(n, " ")
    return text


def _pattern(phrase):
    return r"(?<![\w'-])" + re.escape(phrase) + r"(?![\w'-])"


def test_lexicon_is_sound():
    assert lx.lexicon_problems() == []
    sizes = {}
    for t in lx.TEMPLATE_BY_ID.values():
        sizes[t.intent] = sizes.get(t.intent, 0) + 1
    for intent in ("open_genre", "open_mood", "open_instrument", "open_tempo", "open_era", "open_activity",
                   "specific_track", "specific_artist", "more_like_this", "direction_change", "rejection",
                   "acceptance", "chit_chat"):
        assert sizes[intent] >= 10, intent
    for group, ts in lx.TEMPLATES.items():
        held = sum(t.held_out for t in ts)
        assert 1 <= held <= math.ceil(0.3 * len(ts)), group
    for key, slot in lx.SLOTS.items():
        assert slot.words[0] not in lx.HELD_WORDS[key]
        if len(slot.words) >= 4:
            assert lx.HELD_WORDS[key], key


def test_valid_grounded_and_one_per_playlist(world, convs):
    catalog, playlists, _ = world
    by_id = {p.playlist_id: p for p in playlists}
    assert len(convs) == len(playlists) - 1  # the 3-track playlist cannot make 4 turns
    assert "pl-short" not in {c.playlist_id for c in convs}
    for c in convs:
        validate_conversation(c, catalog)
        pl = by_id[c.playlist_id]
        assert c.split == pl.split and c.synthetic and c.generator == "offline-templates v1 seed=7"
        assert re.fullmatch(rf"fixture-{c.split}-\d{{6}}", c.conversation_id)
        assert 4 <= len(c.turns) <= 10 and len(set(c.tracks)) == len(c.tracks)
        accepted = [m.content for m in c.messages if m.role == "music" and not m.rejected]
        start = pl.track_ids.index(accepted[0])
        assert list(pl.track_ids[start:start + len(accepted)]) == accepted  # a contiguous run, in order
        for u, _, _ in c.turns:
            assert u.intent and u.template and all(g in lx.GROUP_INTENT for g in _groups(u.template))
    assert len({c.conversation_id for c in convs}) == len(convs)


def test_replies_state_only_facts_of_their_track(world, convs):
    catalog, _, features = world
    tag_vocab = sorted({t for tr in catalog for t in tr.tags}, key=len, reverse=True)
    albums = {tr.album for tr in catalog}
    for c in convs:
        for _, m, a in c.turns:
            tr, f = catalog[m.content], features[m.content]
            assert tr.title in a.content and tr.artist in a.content
            rest = _without(a.content, [x for x in (tr.title, tr.artist, tr.album, tr.caption) if x])
            for year in re.findall(r"\b(?:19|20)\d\d\b", rest):
                assert int(year) == tr.year, (a.content, tr)
            for bpm in re.findall(r"(\d+) BPM", rest):
                assert int(bpm) == round(f["tempo_bpm"]), a.content
            for key, mode in re.findall(r"\b([A-G]#?) (major|minor)\b", rest):
                assert (key, mode) == (f["key"], f["mode"]) and f["key_strength"] >= 0.45, a.content
            for album in albums - {tr.album}:
                assert album not in rest, a.content
            low = rest.lower()
            for tag in tag_vocab:
                if re.search(_pattern(tag), low):
                    assert tag in tr.tags, (tag, a.content, tr.tags)
                    low = re.sub(_pattern(tag), " ", low)


def _check_direction(direction, a, b):
    """The measured attribute really moved from feature row a to b."""
    if direction == "faster":
        return b["tempo_bpm"] - a["tempo_bpm"] >= TEMPO_STEP_BPM
    if direction == "slower":
        return a["tempo_bpm"] - b["tempo_bpm"] >= TEMPO_STEP_BPM
    if direction == "livelier":
        return b["energy"] - a["energy"] >= ENERGY_STEP
    if direction == "calmer":
        return a["energy"] - b["energy"] >= ENERGY_STEP
    if direction == "brighter":
        return b["brightness"] - a["brightness"] >= BRIGHTNESS_STEP
    if direction == "darker":
        return a["brightness"] - b["brightness"] >= BRIGHTNESS_STEP
    if direction == "more_drums":
        return b["percussiveness"] - a["percussiveness"] >= PERCUSSION_STEP
    return a["percussiveness"] - b["percussiveness"] >= PERCUSSION_STEP  # fewer_drums, no_drums


def test_direction_changes_follow_the_measured_difference(world, convs):
    catalog, _, features = world
    seen = set()
    for c in convs:
        turns = c.turns
        for i, (u, m, _) in enumerate(turns):
            if u.intent == "rejection" or i == 0:
                continue
            dirs = [g for g in _groups(u.template) if g in lx.DIRECTIONS]
            if u.intent == "direction_change" or dirs:
                assert len(dirs) == 1 and not turns[i - 1][1].rejected
                prev = turns[i - 1][1].content
                assert _check_direction(dirs[0], features[prev], features[m.content]), (u, prev, m.content)
                if dirs[0] == "no_drums":
                    assert "drumless" in catalog[m.content].tags
                seen.add(dirs[0])
    assert len(seen) >= 4


def test_rejections_are_negatives_with_true_reasons(world, clean):
    convs = clean
    catalog, playlists, features = world
    by_id = {p.playlist_id: p for p in playlists}
    n_rejections = 0
    for c in convs:
        if c.split != "test":
            assert not set(c.negatives) & COLD
        assert not set(c.negatives) & set(by_id[c.playlist_id].track_ids)
        turns = c.turns
        for i, (u, m, _) in enumerate(turns):
            if not m.rejected:
                continue
            n_rejections += 1
            assert m.content in c.negatives and m.content not in by_id[c.playlist_id].track_ids
            reply, wanted = turns[i + 1][0], turns[i + 1][1]
            assert reply.intent == "rejection" and not wanted.rejected
            nf, tf = features[m.content], features[wanted.content]
            groups = _groups(reply.template)
            reasons = [g for g in groups if g in lx.REASONS]
            assert len(reasons) == 1, reply.template
            reason = reasons[0]
            if reason in lx.REASON_DIRECTION:
                assert _check_direction(lx.REASON_DIRECTION[reason], nf, tf), (reason, nf, tf)
            elif reason == "wrong_style":
                text = _without(reply.content, _names(catalog))
                styles = [k for k, _ in lx.find_slot_words(text) if k.startswith("style:")]
                assert any(lx.SLOTS[k].satisfied_by(frozenset(catalog[m.content].tags))
                           and not lx.SLOTS[k].satisfied_by(frozenset(catalog[wanted.content].tags))
                           for k in styles), reply.content
            else:
                assert "female vocals" in catalog[m.content].tags
                assert "female vocals" not in catalog[wanted.content].tags
            for d in (g for g in groups if g in lx.DIRECTIONS):
                assert _check_direction(d, nf, tf)
    assert n_rejections >= 10


def _satisfied(key, track):
    if key.startswith("era:"):
        return key in lx.era_keys(track.year)
    return lx.SLOTS[key].satisfied_by(frozenset(track.tags))


def test_requests_are_true_of_the_track_they_lead_to(world, clean):
    convs = clean
    catalog, _, features = world
    names = _names(catalog)
    for c in convs:
        turns = c.turns
        for i, (u, m, _) in enumerate(turns):
            target = catalog[turns[i + 1][1].content if m.rejected else m.content]
            text = _without(u.content, names)
            for key, word in lx.find_slot_words(text):
                if u.intent == "rejection":
                    assert _satisfied(key, target) or _satisfied(key, catalog[turns[i - 1][1].content]), u
                else:
                    assert _satisfied(key, target), (key, word, u.content, target.tags)
            for year in re.findall(r"\b(?:19|20)\d\d\b", text):
                assert int(year) == target.year, u.content
            for bpm in re.findall(r"(\d+)(?:-ish)? BPM|Tempo around (\d+)", text, flags=re.IGNORECASE):
                value = int(bpm[0] or bpm[1])
                assert abs(value - features[target.track_id]["tempo_bpm"]) <= 3, u.content
            if u.intent == "specific_track":
                assert target.title in u.content  # noise never touches a quoted title


def test_held_out_phrasings_only_in_test(world, convs):
    catalog, _, _ = world
    names = _names(catalog)
    held_words_in_test = held_templates_in_test = 0
    for c in convs:
        users = [t[0] for t in c.turns]
        for u in users:
            parts = u.template.split("+")
            words = lx.find_slot_words(_without(u.content, names))
            held_words = [w for k, w in words if w in {x.lower() for x in lx.HELD_WORDS[k]}]
            held_parts = [p for p in parts if p in lx.HELD_TEMPLATE_IDS]
            if c.split in ("train", "valid"):
                assert not u.held_out and not held_parts and not held_words, u
            else:
                held_words_in_test += len(held_words)
                held_templates_in_test += len(held_parts)
                if held_parts or held_words:
                    assert u.held_out, u
        if c.split == "test":
            assert sum(u.held_out for u in users) >= 0.5 * len(users)
    assert held_words_in_test > 0 and held_templates_in_test > 0


def test_cold_start_tracks_appear_in_test_only(convs):
    for c in convs:
        if c.split != "test":
            assert not set(c.tracks) & COLD
    assert any(set(c.tracks) & COLD for c in convs if c.split == "test")


def test_deterministic_and_independent_of_input_order(world, convs):
    catalog, playlists, features = world
    dump = lambda cs: [json.dumps(c.to_json(), sort_keys=True) for c in cs]
    shuffled = list(reversed(playlists))
    feats = dict(reversed(list(features.items())))
    again = generate_conversations(catalog, shuffled, feats, frozenset(COLD), CONFIG)
    assert dump(again) == dump(convs)
    other = generate_conversations(catalog, playlists, features, COLD, replace(CONFIG, seed=8))
    assert dump(other) != dump(convs)
    assert other[0].generator == "offline-templates v1 seed=8"


_HASH_SEED_SCRIPT = """
import hashlib, json, sys
from talkplay.catalog import load_catalog
from train.data.conversations import ConversationConfig, generate_conversations
from talkplay.bundle import Playlist
data = json.load(open(sys.argv[1]))
playlists = [Playlist(**p) for p in data["playlists"]]
convs = generate_conversations(load_catalog(data["root"]), playlists, data["features"], set(data["cold"]),
                               ConversationConfig(seed=7, reject_prob=0.3))
print(hashlib.sha256("".join(json.dumps(c.to_json(), sort_keys=True) for c in convs).encode()).hexdigest())
"""


def test_same_output_under_different_hash_seeds(world, convs, tmp_path):
    """Set and dict iteration order changes with PYTHONHASHSEED; the conversations must not."""
    catalog, playlists, features = world
    spec = {"root": str(catalog.root), "features": features, "cold": sorted(COLD),
            "playlists": [dict(p.__dict__, track_ids=list(p.track_ids)) for p in playlists]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        out = subprocess.run([sys.executable, "-c", _HASH_SEED_SCRIPT, str(tmp_path / "spec.json")], env=env,
                             capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    here = hashlib.sha256("".join(json.dumps(c.to_json(), sort_keys=True) for c in convs).encode()).hexdigest()
    assert digests == {here}


def _levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _norm(text):
    return re.sub(r"\s+", " ", re.sub(r"[.,!?'\"“”]", "", text.lower())).strip()


@pytest.mark.parametrize("typo_rate", [CONFIG.typo_rate, 1.0])
def test_noise_is_bounded_and_changes_nothing_else(world, convs, clean, typo_rate):
    catalog, playlists, features = world
    noisy = convs if typo_rate == CONFIG.typo_rate else generate_conversations(
        catalog, playlists, features, COLD, replace(CONFIG, typo_rate=typo_rate))
    changed = total = 0
    for c, n in zip(clean, noisy):
        assert [m for m in c.messages if m.role != "user"] == [m for m in n.messages if m.role != "user"]
        for cu, nu in zip((t[0] for t in c.turns), (t[0] for t in n.turns)):
            assert (cu.intent, cu.template, cu.held_out) == (nu.intent, nu.template, nu.held_out)
            dist = _levenshtein(_norm(cu.content), _norm(nu.content))
            assert dist <= 2 * CONFIG.max_typos, (cu.content, nu.content)
            changed += dist > 0
            total += 1
    if typo_rate < 1:
        assert 0 < changed < 0.3 * total
    else:
        assert changed > 0.5 * total


def test_add_noise_keeps_protected_names():
    rng = random.Random(0)
    for _ in range(200):
        out = add_noise("Please play Wonderful Elaborate Title by Someone Important now, thanks!", rng,
                           typo_rate=1.0, max_typos=2, lowercase_prob=0.5, drop_punct_prob=0.5,
                           protect=("Wonderful Elaborate Title", "Someone Important"))
        assert "Wonderful Elaborate Title" in out and "Someone Important" in out
    assert add_noise("Play something.", random.Random(1), typo_rate=0.0, lowercase_prob=0.0,
                        drop_punct_prob=0.0) == "Play something."


def test_errors_name_the_playlist(world):
    catalog, _, features = world
    bad = [Playlist("pl-bad", "x", ("a-00", "nope", "a-01", "a-02"), True, "fixture", "train")]
    with pytest.raises(ConversationError, match=r"pl-bad.*'nope'"):
        generate_conversations(catalog, bad, features, COLD, CONFIG)
    unsplit = [Playlist("pl-unsplit", "x", ("a-00", "a-01", "a-02", "a-03"), True, "fixture", None)]
    with pytest.raises(ConversationError, match=r"pl-unsplit.*split"):
        generate_conversations(catalog, unsplit, features, COLD, CONFIG)
    with pytest.raises(ValueError, match="turns"):
        ConversationConfig(min_turns=3)


def test_tracks_without_features_are_described_by_tags(world):
    catalog, playlists, _ = world
    convs = generate_conversations(catalog, playlists[:10], {}, COLD, CONFIG)
    for c in convs:
        validate_conversation(c, catalog)
        for _, m, a in c.turns:
            assert "BPM" not in _without(a.content, [catalog[m.content].caption])
