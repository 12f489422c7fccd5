"""Tests for train/catalog/descriptors.py on synthesized audio only (hermetic, fast)."""

from __future__ import annotations

import dataclasses
import math
import numpy as np
import pytest

from train.catalog.descriptors import Descriptors, compute_descriptors, find_preview_section
from train.catalog.tagging import compose_caption, descriptor_tags

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
