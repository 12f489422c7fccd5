"""Record known-answer outputs of the ORIGINAL TensorFlow musicnn models.

TensorFlow is used ONLY by this maintainer script, in a throw-away virtualenv;
the project itself never imports or depends on it (it reads the checkpoints with
``train.catalog.tf_checkpoint`` and runs the PyTorch port in ``train.catalog.musicnn``).

How to run (from the repository root)::

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 numpy librosa==0.11.0 soundfile
    /tmp/tfvenv/bin/python train/catalog/tools/record_musicnn_reference.py \
        --musicnn-dir /work/main/.venv/lib/python3.11/site-packages/musicnn

``--musicnn-dir`` is the folder of the PyPI ``musicnn==0.1.0`` package (it ships
the checkpoints); it is found automatically when that package is importable.
The script writes ``tests/data/musicnn_reference.npz``.

What it does, and why it is a fair reference:

* The graph is rebuilt from each model's ``.meta`` file with
  ``tf.compat.v1.train.import_meta_graph`` and the checkpoint restored with the
  saver stored there, so the reference does not depend on our reading of the
  architecture.  (The only edit to the stored graph is dropping the
  ``_output_shapes`` hints, which TF 1.12 wrote for the gradient nodes in a form
  that modern TF rejects; they are hints, not computation.)
* The input is the log-mel of a fixed synthetic clip (:func:`synthetic_clip`,
  numpy only, seeded), preprocessed here independently of ``train.catalog.musicnn``:
  mono, resample to 16 kHz with soxr_hq (as ``librosa.load``), librosa mel
  spectrogram (n_fft 512, hop 256, 96 mels), float16 quantisation, then
  ``log10(10000 x + 1)`` in float32 -- what musicnn computed with numpy 1.x
  (numpy >= 2 would keep float16 and overflow to inf above x = 6.55).
* ``is_training`` is fed False; we fetch ``model/Sigmoid`` (tag probabilities)
  and the output of the last batch norm (the 200-d "penultimate" features).

This module must stay importable without TensorFlow or librosa: the tests
import :func:`synthetic_clip` and the constants from here.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.catalog.tools.record_musicnn_reference")

import argparse
import platform
from pathlib import Path

import numpy as np

REFERENCE_PATH = Path(__file__).resolve().parents[3] / "tests" / "data" / "musicnn_reference.npz"
CLIP_SR = 22050  # deliberately not 16 kHz, so the resampling step is exercised
CLIP_SECONDS = 9.0  # 9 s at 16 kHz -> 563 frames -> 3 patches of 187
CLIP_SEED = 20240517
MODELS = ("MSD_musicnn", "MTT_musicnn")

# Graph tensor names in musicnn's saved training graph (verified by listing it).
INPUT_TENSOR = "model/Placeholder:0"  # (None, 187, 96) log-mel patches
IS_TRAINING_TENSOR = "model/Placeholder_2:0"  # bool
TAGS_TENSOR = "model/Sigmoid:0"  # (None, 50)
PENULTIMATE_TENSOR = "model/batch_normalization_10/batchnorm/add_1:0"  # (None, 200)

N_FRAMES = 187


def synthetic_clip(sr: int = CLIP_SR, seconds: float = CLIP_SECONDS, seed: int = CLIP_SEED) -> np.ndarray:
    """Deterministic ~music-like test clip (float32 mono, peak 0.5).

    A sequence of harmonic tones (varying pitch and timbre), a bass line,
    filtered noise bursts on a beat grid, and clicks -- enough spectral variety
    that all front-end filters see non-trivial input.
    """
    rng = np.random.default_rng(seed)
    n = int(round(sr * seconds))
    t = np.arange(n) / sr
    y = np.zeros(n, dtype=np.float64)

    # Melody: 0.5 s notes, 5 harmonics with per-note decaying amplitude.
    note_len = int(0.5 * sr)
    midi = rng.integers(55, 80, size=n // note_len + 1)
    for i, m in enumerate(midi):
        start, stop = i * note_len, min(n, (i + 1) * note_len)
        if start >= n:
            break
        f0 = 440.0 * 2 ** ((m - 69) / 12)
        tt = t[start:stop] - t[start]
        env = np.exp(-3.0 * tt) * np.minimum(1.0, tt / 0.01)
        tone = sum((0.6**h) * np.sin(2 * np.pi * f0 * (h + 1) * tt + rng.uniform(0, 2 * np.pi)) for h in range(5))
        y[start:stop] += 0.25 * env * tone

    # Bass line: 1 s notes, two octaves below.
    for i in range(int(seconds) + 1):
        start, stop = i * sr, min(n, (i + 1) * sr)
        if start >= n:
            break
        f0 = 440.0 * 2 ** ((rng.integers(36, 48) - 69) / 12)
        y[start:stop] += 0.15 * np.sin(2 * np.pi * f0 * t[start:stop])

    # Noise bursts ("hi-hats"/"snares") every 0.25 s, crudely high-passed.
    beat = int(0.25 * sr)
    burst_len = int(0.06 * sr)
    for start in range(0, n - burst_len, beat):
        noise = rng.standard_normal(burst_len)
        noise = np.diff(noise, prepend=0.0)  # first difference: tilt towards highs
        env = np.exp(-np.arange(burst_len) / (0.015 * sr))
        y[start : start + burst_len] += 0.08 * env * noise

    # Clicks at random positions.
    for pos in rng.integers(0, n - 1, size=12):
        y[pos] += rng.choice([-0.4, 0.4])

    y *= 0.5 / np.max(np.abs(y))
    return y.astype(np.float32)


def reference_mel_f16(audio: np.ndarray, sr: int) -> np.ndarray:
    """musicnn's mel power spectrogram, (frames, 96), quantised to float16.

    Independent re-statement of the preprocessing, kept here so the reference
    does not merely echo ``train.catalog.musicnn``.  Imports librosa lazily.
    """
    import librosa

    y = np.asarray(audio, dtype=np.float32)
    if sr != 16000:
        y = librosa.resample(y, orig_sr=sr, target_sr=16000, res_type="soxr_hq")
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96).T
    return mel.astype(np.float16)


def log_compress(mel_f16: np.ndarray) -> np.ndarray:
    """log10(10000 x + 1) evaluated in float32, as musicnn did under numpy 1.x."""
    return np.log10(np.float32(10000) * mel_f16.astype(np.float32) + np.float32(1))


def _find_musicnn_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("musicnn")  # locates the folder without executing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("musicnn package not found; pass --musicnn-dir")
    return Path(list(spec.submodule_search_locations)[0])


def _run_tf_model(model_dir: Path, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    tf.compat.v1.disable_eager_execution()
    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString((model_dir / ".meta").read_bytes())
    for node in meta.graph_def.node:
        node.attr.pop("_output_shapes", None)
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, str(model_dir) + "/")  # checkpoint prefix is "<dir>/"
            tags, pen = sess.run(
                [TAGS_TENSOR, PENULTIMATE_TENSOR],
                feed_dict={INPUT_TENSOR: patches, IS_TRAINING_TENSOR: False},
            )
    return tags.astype(np.float32), pen.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--musicnn-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REFERENCE_PATH)
    args = parser.parse_args()
    musicnn_dir = args.musicnn_dir or _find_musicnn_dir()

    import librosa
    import soxr
    import tensorflow as tf

    audio = synthetic_clip()
    mel16 = reference_mel_f16(audio, CLIP_SR)
    n_patches = mel16.shape[0] // N_FRAMES
    mel16 = mel16[: n_patches * N_FRAMES].reshape(n_patches, N_FRAMES, 96)
    patches = log_compress(mel16)
    assert np.isfinite(patches).all()

    out: dict[str, np.ndarray] = {
        "mel_f16": mel16,
        "clip_sr": np.array(CLIP_SR),
        "clip_seconds": np.array(CLIP_SECONDS),
        "clip_seed": np.array(CLIP_SEED),
        "versions": np.array(
            [
                f"tensorflow={tf.__version__}",
                f"numpy={np.__version__}",
                f"librosa={librosa.__version__}",
                f"soxr={soxr.__version__}",
                f"python={platform.python_version()}",
                "musicnn=0.1.0",
            ]
        ),
    }
    for model in MODELS:
        tags, pen = _run_tf_model(musicnn_dir / model, patches)
        out[f"{model}/tags"] = tags
        out[f"{model}/penultimate"] = pen
        print(f"{model}: tags {tags.shape} range [{tags.min():.4f}, {tags.max():.4f}], penultimate {pen.shape}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
