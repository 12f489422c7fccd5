"""Tests for train/descriptors.py on synthesized audio only (hermetic, fast)."""

from __future__ import annotations

import dataclasses
import math
import re
import numpy as np
import pytest

from train.descriptors import (
    Descriptors,
    compose_caption,
    compute_descriptors,
    descriptor_tags,
    find_preview_section,
    select_auto_tags,
)

SR = 22050


# --------------------------------------------------------------------------- #
# Signal synthesis
# --------------------------------------------------------------------------- #


def click_track(bpm: float, dur: float = 30.0, sr: int = SR) -> np.ndarray:
    """Short decaying noise bursts on every beat."""
    y = np.zeros(int(dur * sr), np.float32)
    n = int(0.01 * sr)
    burst = np.random.default_rng(0).standard_normal(n) * np.exp(-np.arange(n) / (0.002 * sr))
    for t in np.arange(0.0, dur, 60.0 / bpm):
        i = int(round(t * sr))
        seg = y[i : i + n]
        seg += 0.8 * burst[: len(seg)].astype(np.float32)
    return y


def midi_hz(m: int) -> float:
    return 440.0 * 2.0 ** ((m - 69) / 12.0)


def chord(midis: list[int], dur: float, amp: float = 0.1, sr: int = SR) -> np.ndarray:
    """Sum of harmonic tones (3 partials), short attack/release ramps."""
    t = np.arange(int(dur * sr)) / sr
    y = np.zeros_like(t)
    for m in midis:
        f = midi_hz(m)
        y += np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t) + 0.25 * np.sin(6 * np.pi * f * t)
    ramp = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    return (amp * y * ramp).astype(np.float32)


def sine(freq: float, dur: float = 10.0, amp: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(int(dur * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def clicks120() -> Descriptors:
    return compute_descriptors(click_track(120.0), SR)


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
# compute_descriptors
# --------------------------------------------------------------------------- #


def test_tempo_click_120(clicks120: Descriptors) -> None:
    assert abs(clicks120.tempo_bpm - 120.0) <= 2.0
    assert clicks120.tempo_confidence > 0.5


@pytest.mark.parametrize("bpm", [90.0, 72.0, 140.0])
def test_tempo_click_other(bpm: float) -> None:
    d = compute_descriptors(click_track(bpm, dur=20.0), SR)
    assert abs(d.tempo_bpm - bpm) <= 2.0


def test_tempo_at_44k_stereo() -> None:
    y = click_track(90.0, dur=20.0, sr=44100)
    d = compute_descriptors(np.stack([y, y]), 44100)  # (channels, n) layout
    assert abs(d.tempo_bpm - 90.0) <= 2.0
    d2 = compute_descriptors(np.stack([y, y], axis=1), 44100)  # (n, channels)
    assert abs(d2.tempo_bpm - 90.0) <= 2.0


def test_key_a_minor() -> None:
    # Sustained A-minor triad with an A2 bass, then an A-C-E arpeggio.
    y = np.concatenate(
        [chord([45, 57, 60, 64], 6.0)] + [chord([m], 0.5, amp=0.2) for m in [57, 60, 64, 69] * 3]
    )
    d = compute_descriptors(y, SR)
    assert (d.key, d.mode) == ("A", "minor")
    assert d.key_strength > 0.6


def test_key_c_major() -> None:
    # I-IV-V-I progression followed by an ascending C-major scale.
    prog = [[48, 52, 55, 60], [53, 57, 60, 65], [55, 59, 62, 67], [48, 52, 55, 60]]
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    y = np.concatenate([chord(c, 1.5) for c in prog * 2] + [chord([m], 0.4, amp=0.2) for m in scale])
    d = compute_descriptors(y, SR)
    assert (d.key, d.mode) == ("C", "major")
    assert d.key_name == "C major"


def test_noise_brighter_than_low_sine() -> None:
    noise = (0.1 * np.random.default_rng(1).standard_normal(10 * SR)).astype(np.float32)
    dn = compute_descriptors(noise, SR)
    ds = compute_descriptors(sine(110.0), SR)
    assert dn.spectral_centroid_hz > 4 * ds.spectral_centroid_hz
    assert dn.brightness > 0.8 > 0.2 > ds.brightness
    assert "bright" in descriptor_tags(dn) and "dark" in descriptor_tags(ds)
    # Flat chroma: no key claimed for white noise.
    assert dn.key_strength == 0.0


def test_clicks_more_percussive_than_tone(clicks120: Descriptors) -> None:
    tone = compute_descriptors(chord([57, 60, 64], 10.0), SR)
    assert clicks120.percussiveness > 0.8
    assert tone.percussiveness < 0.2
    assert clicks120.onset_rate > tone.onset_rate
    # A drone has no pulse, so no tempo word.
    assert not {"slow", "mid-tempo", "fast"} & set(descriptor_tags(tone))


@pytest.mark.parametrize("n", [0, 100, 10 * SR])
def test_silence_and_tiny_clips(n: int) -> None:
    d = compute_descriptors(np.zeros(n, np.float32), SR)
    for f in dataclasses.fields(d):
        v = getattr(d, f.name)
        if isinstance(v, float):
            assert math.isfinite(v), f.name
    assert d.tempo_bpm == 0.0 and d.energy == 0.0
    assert d.loudness_lufs == -70.0
    assert descriptor_tags(d) == []
    assert compose_caption([], d) == "A piece."


def test_short_nonsilent_clip_no_crash() -> None:
    d = compute_descriptors(sine(440.0, dur=0.05), SR)
    assert math.isfinite(d.loudness_lufs) and 0.0 <= d.energy <= 1.0


def test_loudness_and_energy_scale() -> None:
    loud = compute_descriptors(sine(440.0, amp=0.5), SR)
    quiet = compute_descriptors(sine(440.0, amp=0.005), SR)
    assert loud.loudness_lufs > quiet.loudness_lufs + 35.0
    assert loud.energy > quiet.energy
    assert 0.0 <= quiet.energy <= loud.energy <= 1.0


def test_deterministic(clicks120: Descriptors) -> None:
    assert compute_descriptors(click_track(120.0), SR) == clicks120


# --------------------------------------------------------------------------- #
# find_preview_section
# --------------------------------------------------------------------------- #


def test_preview_picks_loud_part() -> None:
    rng = np.random.default_rng(2)
    sr = 8000  # keeps this 80-s test cheap
    y = np.concatenate([0.002 * rng.standard_normal(40 * sr), 0.3 * rng.standard_normal(40 * sr)])
    start = find_preview_section(y.astype(np.float32), sr)
    assert 39.0 <= start <= 50.0
    assert start == round(start, 1)
    assert find_preview_section(y.astype(np.float32), sr) == start  # deterministic


def test_preview_never_past_end_and_short_tracks() -> None:
    sr = 8000
    rng = np.random.default_rng(3)
    y = np.concatenate([np.zeros(50 * sr), 0.3 * rng.standard_normal(10 * sr)]).astype(np.float32)
    start = find_preview_section(y, sr)
    assert 0.0 <= start and start + 30.0 <= 60.0 + 1e-9
    assert start >= 25.0  # includes as much of the loud ending as possible
    assert find_preview_section(y[: 25 * sr], sr) == 0.0
    assert find_preview_section(np.zeros(90 * sr, np.float32), sr) >= 0.0


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
    from train.descriptors import merge_tags

    assert merge_tags(["electronic"], ["synth", "slow", "drums"], ["mid-tempo", "drumless", "dark"]) == [
        "electronic", "synth", "drums", "mid-tempo", "dark"]
    assert merge_tags(["orchestral"], ["loud", "strings"], ["calm", "orchestral"]) == ["orchestral", "strings", "calm"]
