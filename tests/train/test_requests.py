"""Text → music examples (train.data.text_requests): every request is true of its track, only training phrasings are
used, cold-start tracks are never targets, and the output is deterministic."""

import re

from train.data import lexicon as lx
from train.data.text_requests import generate_requests

from tests.train.test_conversations import COLD, world  # noqa: F401  (the module-scoped fixture bundle)


def _requests(world, **kw):  # noqa: F811
    catalog, _, features = world
    return generate_requests(catalog, features, per_track=kw.pop("per_track", 12), seed=kw.pop("seed", 0),
                             exclude=kw.pop("exclude", COLD))


def test_requests_are_true_of_their_track(world):  # noqa: F811
    catalog = world[0]
    reqs = _requests(world)
    assert reqs and {r.kind for r in reqs} >= {"conversation", "slots", "tags", "name"}
    checked = 0
    for r in reqs:
        track = catalog[r.track_id]
        tags = frozenset(track.tags)
        text = r.text
        for name in (track.title, track.artist, track.album):  # names may contain slot words
            text = re.sub(re.escape(name), " ", text, flags=re.IGNORECASE) if name else text
        for key, word in lx.find_slot_words(text):
            if key.startswith("era:") or (r.kind == "negation" and key == "instrument:drums"):  # "no drums"
                continue
            assert lx.SLOTS[key].satisfied_by(tags), (r, key, word)
            checked += 1
        if r.kind == "negation":
            assert "drumless" in tags
        if r.kind == "tags":  # two to four of the track's own tags (a typo may hide one)
            assert sum(t in r.text.lower() for t in tags) >= 1
    assert checked > len(reqs) // 2


def test_only_training_phrasings_and_no_cold_start_targets(world):  # noqa: F811
    reqs = _requests(world)
    held = lx.held_out_phrases()
    for r in reqs:
        assert r.track_id not in COLD
        for key, word in lx.find_slot_words(r.text):
            assert word not in {w.lower() for w in held.get(key, ())}, (r.text, key, word)


def test_deterministic_per_track_and_bounded(world):  # noqa: F811
    a, b = _requests(world), _requests(world)
    assert a == b
    assert a != _requests(world, seed=1)
    per = {}
    for r in a:
        per[r.track_id] = per.get(r.track_id, 0) + 1
    assert max(per.values()) <= 12
    fewer = _requests(world, exclude=COLD | {"a-00"})  # one track less changes no other track's requests
    assert [r for r in a if r.track_id != "a-00"] == fewer
