"""Audio descriptors measured from the signal: where a preview starts, and what the clip sounds like.

This module owns what the demo-catalog build measures *from the audio itself* (the musicnn auto-tagger
lives in ``train.catalog.musicnn``; turning measurements and auto-tags into words lives in ``train.catalog.tagging``):

* :func:`find_preview_section` - where the 30-s preview of a full track starts.
* :func:`compute_descriptors` - tempo, key/mode, loudness, energy, brightness,
  percussiveness and onset rate of a (preview) clip, as :class:`Descriptors`.
* :func:`load_mono` - decode a file to mono at the analysis rate.

Everything here is deterministic and CPU-only; one 30-s clip takes roughly
0.3 s (see ``compute_descriptors``), so ~300 tracks fit in a couple of minutes.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.catalog.descriptors is a module of the train package: import it, or use python -m")

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import librosa
import numpy as np

__all__ = ["ANALYSIS_SR", "Descriptors", "compute_descriptors", "find_preview_section", "load_mono"]
# --------------------------------------------------------------------------- #
# Analysis constants
# --------------------------------------------------------------------------- #

#: Every clip is resampled to this rate before analysis: fixes frame/BPM
#: resolution independently of the decoder and halves the work for 44.1k input.
ANALYSIS_SR = 22050
_N_FFT = 2048
_HOP = 512  # 23 ms frames: fine enough for onset/beat tracking.
_CHROMA_HOP = 2048  # key is a global property; coarse chroma frames suffice.

#: Clips whose peak is below this are treated as digital silence.
_SILENCE_PEAK = 1e-4
#: pyloudnorm returns -inf for silence; clamp to the EBU R128 absolute gate.
_LUFS_FLOOR = -70.0

#: ``energy`` = linear map of mean frame RMS in dBFS: -45 dBFS -> 0, -10 -> 1.
#: -10 dBFS RMS is a loudly mastered rock/metal mix, -45 dBFS is near-inaudible
#: ambience; quiet orchestral passages land around 0.4-0.6.
_ENERGY_DB_LO, _ENERGY_DB_HI = -45.0, -10.0
#: ``brightness`` = log-frequency map of the spectral centroid: 500 Hz -> 0,
#: 5 kHz -> 1 (log scale, because pitch/timbre perception is logarithmic).
_BRIGHT_HZ_LO, _BRIGHT_HZ_HI = 500.0, 5000.0

#: Tempo prior: log-normal, centred at 120 BPM with a 0.7-octave std.  A
#: kick/snare rock beat at 150 BPM repeats exactly only every 2 beats, so its
#: onset autocorrelation at 75 BPM is ~1.4x that at 150; the prior must beat
#: that (150:75 prior ratio 1.44).  Cost: half tempo (60) needs >2.8x the
#: periodicity strength of 120 to win, and beats above ~170 BPM with such
#: accents still come out halved (an inherent AC ambiguity).
_TEMPO_PRIOR_BPM = 120.0
_TEMPO_PRIOR_OCTAVES = 0.7
_TEMPO_GRID_MIN, _TEMPO_GRID_MAX = 40.0, 240.0
#: Tempi are folded by octaves into [lo, hi) after estimation.
_TEMPO_MIN, _TEMPO_MAX = 55.0, 210.0
#: Gaussian smoothing (frames) of the onset envelope before autocorrelation,
#: so that peaks of ~1 frame still overlap at fractional beat periods.
_TEMPO_SMOOTH_FRAMES = 1.0
#: Onset-envelope peaks below this (mean positive mel-dB flux) are not
#: counted as onsets: spectral-leakage flicker of steady tones is ~0.1-0.4.
_ONSET_MIN_FLUX_DB = 0.5
#: A clip needs at least this many onsets to be given a tempo at all.
_MIN_ONSETS_FOR_TEMPO = 4
#: Chroma coefficient of variation below which a clip has no usable pitch
#: content (white noise ~0.01, click track ~0.05, real music >> 0.1).
_MIN_CHROMA_CV = 0.08

# Krumhansl-Kessler probe-tone profiles (Krumhansl 1990), index 0 = tonic.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# --------------------------------------------------------------------------- #
# Data
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Descriptors:
    """Signal descriptors of one clip (normally the 30-s preview).

    All floats are plain Python floats (JSON-serialisable); 0..1 fields are
    clipped to that range.  For a silent clip: tempo 0, key "C" major with
    strength 0, loudness -70 LUFS and all 0..1 fields 0.
    """

    duration_s: float  #: clip length in seconds
    tempo_bpm: float  #: global tempo; 0.0 if silent or < 4 onsets (drone)
    tempo_confidence: float  #: 0..1 onset-autocorrelation at the beat period
    key: str  #: tonic pitch class, e.g. "D" or "F#"
    mode: str  #: "major" or "minor"
    key_strength: float  #: Pearson r with the best Krumhansl profile (-1..1)
    loudness_lufs: float  #: BS.1770 integrated loudness, floored at -70
    rms_db: float  #: mean frame RMS in dBFS (floored at -120)
    energy: float  #: 0..1, see _ENERGY_DB_LO/_HI
    spectral_centroid_hz: float  #: energy-weighted mean spectral centroid
    brightness: float  #: 0..1, see _BRIGHT_HZ_LO/_HI
    percussiveness: float  #: 0..1 share of percussive energy (HPSS)
    onset_rate: float  #: detected onsets per second

    @property
    def key_name(self) -> str:
        """Key as text, e.g. "A minor"."""
        return f"{self.key} {self.mode}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON catalogs."""
        return asdict(self)


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _to_mono_float(y: np.ndarray) -> np.ndarray:
    """Accept (n,), (channels, n) or (n, channels) audio; return float32 mono."""
    y = np.asarray(y)
    if y.ndim == 2:
        # Decoders disagree on layout; channels is always the short axis.
        y = y.mean(axis=0 if y.shape[0] <= y.shape[1] else 1)
    elif y.ndim != 1:
        raise ValueError(f"expected 1-D or 2-D audio, got shape {y.shape}")
    y = y.astype(np.float32, copy=False)
    if not np.all(np.isfinite(y)):
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    return y


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def _fold_tempo(bpm: float) -> float:
    """Fold a tempo by octaves into [_TEMPO_MIN, _TEMPO_MAX)."""
    if not bpm > 0:
        return 0.0
    while bpm < _TEMPO_MIN:
        bpm *= 2.0
    while bpm >= _TEMPO_MAX:
        bpm /= 2.0
    return bpm


# --------------------------------------------------------------------------- #
# Preview section
# --------------------------------------------------------------------------- #

_BLOCK_S = 0.1  # energy envelope resolution for section search
_STEP_S = 0.5  # candidate window spacing


def find_preview_section(y: np.ndarray, sr: int, duration: float = 30.0) -> float:
    """Start time (s) of a representative, energetic ``duration``-long section.

    Score per candidate window (every 0.5 s) on a 0.1-s log-energy envelope
    (dB, clipped 60 dB below the peak): ``0.5 * median + 0.5 * mean``.  The
    median favours the loud body of the track over a quiet intro/outro and
    ignores short spikes; the mean penalises every second of silent break,
    fade or intro inside the window.  A tiny centre bias (<= 0.6 dB) breaks
    ties between equally loud windows towards ~40% of the track (usually
    past the intro, before the loop/fade).  The winner is
    snapped to the nearest onset within +-1 s (so the preview starts on a
    note, not mid-decay) and rounded to 0.1 s.  Always ``0 <= start`` and
    ``start + duration <= track length``; tracks not longer than ``duration``
    give 0.0.
    """
    y = _to_mono_float(y)
    total = len(y) / float(sr)
    if total <= duration or duration <= 0:
        return 0.0
    latest = total - duration

    block = max(1, int(round(_BLOCK_S * sr)))
    n_blocks = len(y) // block
    ms = np.mean(y[: n_blocks * block].reshape(n_blocks, block) ** 2, axis=1)
    env_db = 10.0 * np.log10(ms + 1e-10)  # floor -100 dB: silence, not -inf

    win = int(round(duration / _BLOCK_S))
    step = max(1, int(round(_STEP_S / _BLOCK_S)))
    if n_blocks < win:  # rounding corner case
        return 0.0
    # Clip the envelope 60 dB below its peak: digital silence (-100 dB) would
    # otherwise dominate the mean far more than it is audibly worse.
    env_db = np.maximum(env_db, env_db.max() - 60.0)
    windows = np.lib.stride_tricks.sliding_window_view(env_db, win)[::step]
    score = 0.5 * np.median(windows, axis=1) + 0.5 * windows.mean(axis=1)
    starts = np.arange(len(windows)) * step * _BLOCK_S
    centres = (starts + duration / 2.0) / total
    score = score - 1.0 * np.abs(centres - 0.4)
    # argmax takes the first maximum -> deterministic.
    start = float(min(starts[int(np.argmax(score))], latest))

    start = _snap_to_onset(y, sr, start, latest)
    start = math.floor(start * 10.0 + 0.5) / 10.0
    return float(min(max(0.0, start), math.floor(latest * 10.0) / 10.0))


def _snap_to_onset(y: np.ndarray, sr: int, start: float, latest: float) -> float:
    """Move ``start`` to the nearest strong (backtracked) onset within +-1 s.

    "Strong" = onset strength >= half the strongest in that 2-s span, so a
    flicker in a quiet lead-in does not beat the real entry.
    """
    lo = max(0.0, start - 1.0)
    # Look 0.5 s past ``latest`` so an onset right at it is still detected.
    hi = min(latest + 0.5, start + 1.0)
    seg = y[int(lo * sr) : int(hi * sr)]
    if len(seg) < 4096 or np.max(np.abs(seg)) < _SILENCE_PEAK:
        return start
    oenv = librosa.onset.onset_strength(y=seg, sr=sr, hop_length=512)
    peaks = librosa.onset.onset_detect(onset_envelope=oenv, sr=sr, hop_length=512)
    peaks = peaks[oenv[peaks] >= 0.5 * oenv.max()] if len(peaks) else peaks
    if len(peaks) == 0:
        return start
    # Backtrack to the preceding energy minimum: start just before the attack.
    frames = librosa.onset.onset_backtrack(peaks, oenv)
    onsets = librosa.frames_to_time(frames, sr=sr, hop_length=512) + lo
    onsets = onsets[(onsets >= 0.0) & (onsets <= latest)]
    if len(onsets) == 0:
        return start
    return float(onsets[int(np.argmin(np.abs(onsets - start)))])


# --------------------------------------------------------------------------- #
# Descriptors
# --------------------------------------------------------------------------- #


def _silent_descriptors(duration_s: float, loudness: float) -> Descriptors:
    return Descriptors(
        duration_s=duration_s,
        tempo_bpm=0.0,
        tempo_confidence=0.0,
        key="C",
        mode="major",
        key_strength=0.0,
        loudness_lufs=loudness,
        rms_db=-120.0,
        energy=0.0,
        spectral_centroid_hz=0.0,
        brightness=0.0,
        percussiveness=0.0,
        onset_rate=0.0,
    )


def _loudness_lufs(y: np.ndarray, sr: int) -> float:
    """BS.1770 integrated loudness; -70 for silence or clips < 0.4 s."""
    import pyloudnorm as pyln  # local: only this function needs it

    if len(y) < int(0.4 * sr) + 1:  # shorter than one gating block
        return _LUFS_FLOOR
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clipping warnings are not our concern
        lufs = pyln.Meter(sr).integrated_loudness(y.astype(np.float64))
    if not np.isfinite(lufs):
        return _LUFS_FLOOR
    return float(max(_LUFS_FLOOR, lufs))


def _estimate_tempo(oenv: np.ndarray, sr: int) -> tuple[float, float]:
    """(bpm, confidence) from an onset envelope at hop ``_HOP``.

    librosa's tempogram only scores integer lags, so a beat period of 21.5
    frames (120 BPM at hop 512) is split between two lags while its double
    (43 frames, exactly integer) is not, which causes half-tempo errors on
    steady material.  Instead: smooth the envelope a little, take its global
    (unbiased, normalised) autocorrelation, read it at the fractional lag of
    every candidate on a fine log-BPM grid, weight by a log-normal tempo
    prior (octave-error control), and refine the winner with a least-squares
    line through librosa's tracked beats (kept only if within 6%).
    Confidence = autocorrelation at the final period (1 = metronome).
    """
    if len(oenv) < 16 or not np.any(oenv > 0):
        return 0.0, 0.0
    from scipy.ndimage import gaussian_filter1d  # scipy is a librosa dependency

    x = gaussian_filter1d(oenv.astype(np.float64), _TEMPO_SMOOTH_FRAMES)
    x = x - x.mean()
    ac = librosa.autocorrelate(x)
    if ac[0] <= 0:
        return 0.0, 0.0
    n = len(x)
    lags_all = np.arange(n, dtype=np.float64)
    # Unbiased: fewer overlapping samples at long lags shrink the raw sum.
    ac = ac / ac[0] * n / np.maximum(1.0, n - lags_all)

    bpms = np.geomspace(_TEMPO_GRID_MIN, _TEMPO_GRID_MAX, 800)
    lags = 60.0 * sr / (_HOP * bpms)
    ok = lags < n / 2  # need at least two periods in the clip
    if not np.any(ok):
        return 0.0, 0.0
    bpms, lags = bpms[ok], lags[ok]
    strength = np.interp(lags, lags_all, ac)
    prior = np.exp(-0.5 * (np.log2(bpms / _TEMPO_PRIOR_BPM) / _TEMPO_PRIOR_OCTAVES) ** 2)
    best = int(np.argmax(np.maximum(strength, 0.0) * prior))
    coarse = float(bpms[best])

    bpm = coarse
    _, beats = librosa.beat.beat_track(
        onset_envelope=oenv, sr=sr, hop_length=_HOP, bpm=coarse, units="frames"
    )
    beats = np.asarray(beats, dtype=float)
    if len(beats) >= 8:
        slope = np.polyfit(np.arange(len(beats)), beats, 1)[0]  # frames/beat
        if slope > 0:
            refined = 60.0 * sr / (_HOP * slope)
            if abs(refined / coarse - 1.0) < 0.06:
                bpm = refined
    conf = _clip01(float(np.interp(60.0 * sr / (_HOP * bpm), lags_all, ac)))
    return float(_fold_tempo(bpm)), conf


def _estimate_key(y: np.ndarray, sr: int, S: np.ndarray) -> tuple[str, str, float]:
    """Krumhansl-Schmuckler key finding on an energy-weighted CQT chroma.

    ``S`` is the clip's magnitude STFT, reused for tuning estimation (saves a
    second STFT inside chroma_cqt; detuned game rips are common).
    """
    tuning = float(librosa.estimate_tuning(S=S, sr=sr, n_fft=_N_FFT))
    if not np.isfinite(tuning):
        tuning = 0.0
    # norm=None keeps loud frames more influential than quiet/silent ones.
    chroma = librosa.feature.chroma_cqt(
        y=y, sr=sr, hop_length=_CHROMA_HOP, norm=None, n_octaves=7, tuning=tuning
    )
    profile = chroma.sum(axis=1)
    if not np.isfinite(profile).all() or profile.mean() <= 0:
        return "C", "major", 0.0
    if profile.std() / profile.mean() < _MIN_CHROMA_CV:
        # Flat chroma (noise, unpitched percussion): any "key" would be random.
        return "C", "major", 0.0
    best = ("C", "major", -2.0)
    for tonic in range(12):
        # Rotate the pitch-class profile so index 0 is the candidate tonic.
        rotated = np.roll(profile, -tonic)
        for mode, ref in (("major", _KK_MAJOR), ("minor", _KK_MINOR)):
            r = float(np.corrcoef(rotated, ref)[0, 1])
            if r > best[2]:
                best = (_PITCH_CLASSES[tonic], mode, r)
    return best


def compute_descriptors(y: np.ndarray, sr: int) -> Descriptors:
    """Descriptors of a mono (or multi-channel, down-mixed) float clip.

    Cost: ~0.25 s per 30-s clip on one CPU core (the expensive full-resolution
    HPSS is replaced by HPSS on a 128-band mel spectrogram, ~13x cheaper).
    """
    with warnings.catch_warnings():
        # librosa warns on edge cases we handle (very short clips, empty
        # tuning estimates on noise); they would only spam the catalog build.
        warnings.simplefilter("ignore", UserWarning)
        return _compute_descriptors(y, sr)


def _compute_descriptors(y: np.ndarray, sr: int) -> Descriptors:
    y = _to_mono_float(y)
    duration = len(y) / float(sr) if sr > 0 else 0.0
    loudness = _loudness_lufs(y, sr)
    if len(y) == 0 or np.max(np.abs(y)) < _SILENCE_PEAK:
        return _silent_descriptors(duration, loudness)

    if sr != ANALYSIS_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=ANALYSIS_SR)
        sr = ANALYSIS_SR
    if len(y) < _N_FFT:  # too short to frame: pad rather than fail
        y = np.pad(y, (0, _N_FFT - len(y)))

    S = np.abs(librosa.stft(y, n_fft=_N_FFT, hop_length=_HOP))
    power = S**2

    # Energy: mean frame RMS (from the STFT, Parseval) mapped to 0..1.
    rms = librosa.feature.rms(S=S, frame_length=_N_FFT, hop_length=_HOP)[0]
    rms_db = float(20.0 * np.log10(max(float(np.mean(rms)), 1e-6)))
    energy = _clip01((rms_db - _ENERGY_DB_LO) / (_ENERGY_DB_HI - _ENERGY_DB_LO))

    # Brightness: centroid averaged with frame-energy weights so near-silent
    # frames (whose centroid is just noise) do not drag it around.
    centroid = librosa.feature.spectral_centroid(S=S, sr=sr, n_fft=_N_FFT)[0]
    w = power.sum(axis=0)
    centroid_hz = float(np.sum(centroid * w) / np.sum(w)) if np.sum(w) > 0 else 0.0
    brightness = (
        _clip01(math.log(centroid_hz / _BRIGHT_HZ_LO) / math.log(_BRIGHT_HZ_HI / _BRIGHT_HZ_LO))
        if centroid_hz > 0
        else 0.0
    )

    # Percussiveness: HPSS on the mel magnitude. 31 frames (0.7 s) along time
    # keeps sustained notes harmonic; 9 mel bands across frequency keeps
    # broadband hits percussive while a single partial is not.
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=128)
    H, P = librosa.decompose.hpss(np.sqrt(mel), kernel_size=(31, 9))
    h_e, p_e = float(np.sum(H**2)), float(np.sum(P**2))
    percussiveness = _clip01(p_e / (h_e + p_e)) if h_e + p_e > 0 else 0.0

    # Onsets and tempo from the same mel spectrogram (no second STFT).
    oenv = librosa.onset.onset_strength(S=librosa.power_to_db(mel, ref=np.max), sr=sr)
    onsets = librosa.onset.onset_detect(onset_envelope=oenv, sr=sr, hop_length=_HOP)
    onsets = onsets[oenv[onsets] >= _ONSET_MIN_FLUX_DB]
    onset_rate = len(onsets) / duration if duration > 0 else 0.0
    if len(onsets) >= _MIN_ONSETS_FOR_TEMPO:
        tempo, tempo_conf = _estimate_tempo(oenv, sr)
    else:  # drones / pure tones: periodicity of leakage flicker is no tempo
        tempo, tempo_conf = 0.0, 0.0

    key, mode, key_strength = _estimate_key(y, sr, S)

    return Descriptors(
        duration_s=round(duration, 3),
        tempo_bpm=round(tempo, 2),
        tempo_confidence=round(tempo_conf, 3),
        key=key,
        mode=mode,
        key_strength=round(key_strength, 3),
        loudness_lufs=round(loudness, 2),
        rms_db=round(rms_db, 2),
        energy=round(energy, 3),
        spectral_centroid_hz=round(centroid_hz, 1),
        brightness=round(brightness, 3),
        percussiveness=round(percussiveness, 3),
        onset_rate=round(float(onset_rate), 3),
    )



def load_mono(path, sr: int = 22050) -> np.ndarray:
    """Decode a whole audio file to mono float32 at ``sr`` (the rate the analyses use)."""
    import librosa
    import soundfile as sf

    y, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    return librosa.resample(y.mean(axis=1), orig_sr=file_sr, target_sr=sr, res_type="soxr_hq")
