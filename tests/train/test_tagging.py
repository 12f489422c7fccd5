"""Tests for train/catalog/tagging.py: descriptor words, auto-tag selection, merged tags and captions."""

from __future__ import annotations

import re

import pytest

from train.catalog.descriptors import Descriptors
from train.catalog.tagging import compose_caption, descriptor_tags, merge_tags, select_auto_tags


def desc(**kw) -> Descriptors:
    """A plausible Descriptors with overrides."""
    base = dict(
        duration_s=30.0,
        tempo_bpm=100.0,
        tempo_confidence=0.8,
        key="D",
        mode="minor",
        key_strength=0.8,
        loudness_lufs=-16.0,
        rms_db=-20.0,
        energy=0.6,
        spectral_centroid_hz=1500.0,
        brightness=0.48,
        percussiveness=0.2,
        onset_rate=2.0,
    )
    base.update(kw)
    return Descriptors(**base)


# --------------------------------------------------------------------------- #
# descriptor_tags
# --------------------------------------------------------------------------- #


def test_descriptor_tags_buckets() -> None:
    assert descriptor_tags(desc(tempo_bpm=70.0))[0] == "slow"
    assert descriptor_tags(desc(tempo_bpm=110.0))[0] == "mid-tempo"
    assert descriptor_tags(desc(tempo_bpm=150.0))[0] == "fast"
    hot = desc(energy=0.9, onset_rate=4.0, brightness=0.8, percussiveness=0.5)
    assert descriptor_tags(hot)[1:] == ["energetic", "bright", "percussive"]
    cool = desc(energy=0.3, onset_rate=0.5, brightness=0.1, percussiveness=0.05)
    assert descriptor_tags(cool)[1:] == ["calm", "dark", "drumless"]
    assert not {"slow", "mid-tempo", "fast"} & set(descriptor_tags(desc(tempo_confidence=0.02)))


# --------------------------------------------------------------------------- #
# select_auto_tags
# --------------------------------------------------------------------------- #


def test_select_auto_tags_merges_and_filters() -> None:
    msd = {"rock": 0.05, "female vocalists": 0.25, "00s": 0.3, "sexy": 0.1, "ambient": 0.45,
           "electronica": 0.3, "electronic": 0.2, "female vocalist": 0.1}  # fmt: skip
    mtt = {"no vocals": 0.6, "no voice": 0.3, "woman": 0.2, "choral": 0.3, "choir": 0.1,
           "synth": 0.35, "slow": 0.4, "fast": 0.1, "female voice": 0.15}  # fmt: skip
    tags = select_auto_tags(msd, mtt)
    assert tags[0] == "instrumental"  # merged no vocals/no voice, max prob
    assert {"ambient", "electronic", "choir", "synth", "slow"} <= set(tags)
    assert "00s" not in tags and "sexy" not in tags  # suspect tags need >= 0.5
    assert "female vocals" not in tags  # suspect and < 0.5
    assert "fast" not in tags and "rock" not in tags
    assert len(tags) == len(set(tags))
    assert all(t == t.lower() for t in tags)


def test_select_auto_tags_top_few_and_exclusivity() -> None:
    msd = {"Mellow": 0.12, "80s": 0.15, "female vocalists": 0.7, "jazz": 0.09}
    mtt = {"piano": 0.15, "no vocal": 0.55, "quiet": 0.05}
    tags = select_auto_tags(msd, mtt)
    # Everything is below 0.2 except vocals/instrumental: the top 3 non-suspect
    # tags are still kept, and the more probable vocal side wins.
    assert tags[:1] == ["female vocals"] and "instrumental" not in tags
    assert {"piano", "mellow"} <= set(tags)
    assert "80s" not in tags and "jazz" not in tags and "quiet" not in tags


# --------------------------------------------------------------------------- #
# compose_caption
# --------------------------------------------------------------------------- #

CAPTION_CASES = [
    (["orchestral", "strings", "choir"], desc(tempo_bpm=72.0, brightness=0.2, key="D", mode="minor"),
     "A slow, dark orchestral piece in D minor with strings and choir, ~72 BPM."),
    (["ambient", "synth", "ambient", "piano", "calm"], desc(tempo_bpm=0.0, tempo_confidence=0.0,
     energy=0.3, onset_rate=0.4, key="E", mode="major", brightness=0.45),
     "A calm ambient piece in E major with synths and piano."),
    (["chiptune", "electronic", "fast", "synth"], desc(tempo_bpm=150.4, energy=0.85, onset_rate=5.0,
     brightness=0.8, key_strength=0.3),
     "A fast, energetic chiptune track with synths, ~150 BPM."),
    (["orchestral"], desc(tempo_bpm=110.0, energy=0.9, onset_rate=4.0, percussiveness=0.5),
     "A mid-tempo, energetic orchestral piece in D minor, ~110 BPM."),
    (["instrumental"], desc(tempo_bpm=0.0, tempo_confidence=0.0, energy=0.6, brightness=0.5,
     onset_rate=2.0, key_strength=0.1),
     "An instrumental piece."),
    (["electronic/ambient", "female vocalists", "vocals", "drums", "guitar", "flute"],
     desc(tempo_bpm=128.0, key="F#", brightness=0.7),
     "A fast, bright electronic track in F# minor with female vocals, drums and guitar, ~128 BPM."),
    (["folk", "sad", "violin", "harp"], desc(tempo_bpm=95.0, key="G", mode="major"),
     "A mid-tempo, melancholic folk tune in G major with violin and harp, ~95 BPM."),
]  # fmt: skip


@pytest.mark.parametrize("tags,d,expected", CAPTION_CASES)
def test_caption_examples(tags: list[str], d: Descriptors, expected: str) -> None:
    assert compose_caption(tags, d) == expected


def test_caption_a_vs_an() -> None:
    d = desc(tempo_bpm=0.0, tempo_confidence=0.0, energy=0.9, onset_rate=4.0)
    assert compose_caption(["electronic"], d).startswith("An energetic electronic track")
    d2 = desc(tempo_confidence=0.0, energy=0.6, brightness=0.5, onset_rate=2.0, key_strength=0.0)
    assert compose_caption(["orchestral"], d2) == "An orchestral piece."
    assert compose_caption(["ambient"], d2) == "An ambient piece."
    assert compose_caption(["rock"], d2) == "A rock track."


@pytest.mark.parametrize("genre", [[], ["orchestral"], ["chiptune"], ["metal", "rock"], ["ambient"]])
@pytest.mark.parametrize("tempo", [0.0, 60.0, 100.0, 170.0])
@pytest.mark.parametrize("extra", [[], ["piano"], ["strings", "choir", "harp", "flute"], ["happy", "guitar"]])
def test_caption_grammar_matrix(genre: list[str], tempo: float, extra: list[str]) -> None:
    for d in (desc(tempo_bpm=tempo, brightness=0.1), desc(tempo_bpm=tempo, energy=0.9, onset_rate=4.0)):
        cap = compose_caption(genre + extra, d)
        assert cap.endswith(".") and cap.count(".") == 1
        assert cap[0].isupper()
        assert "  " not in cap and " ," not in cap and ",," not in cap and ", ." not in cap
        words = re.findall(r"[a-z#-]+", cap.lower())
        content = [w for w in words if w not in {"a", "an", "in", "with", "and", "bpm"}]
        assert len(content) == len(set(content)), cap
        first = words[1]
        article = words[0]
        assert article == ("an" if first[0] in "aeiou" else "a"), cap


def test_merge_tags_resolves_contradictions():
    assert merge_tags(["electronic"], ["synth", "slow", "drums"], ["mid-tempo", "drumless", "dark"]) == [
        "electronic", "synth", "drums", "mid-tempo", "dark"]
    assert merge_tags(["orchestral"], ["loud", "strings"], ["calm", "orchestral"]) == ["orchestral", "strings", "calm"]
