"""Known-answer tests for the TF checkpoint reader and the PyTorch musicnn port.

The reference (tests/data/musicnn_reference.npz) was recorded from the original
TensorFlow graphs by train/catalog/tools/record_musicnn_reference.py on a synthetic clip
that these tests regenerate.  Tests needing the musicnn checkpoints skip when the
weights-only package ``musicnn==0.1.0`` is not installed.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from train.catalog.tf_checkpoint import CheckpointError, crc32c, read_checkpoint
from train.catalog.tools.record_musicnn_reference import (
    CLIP_SECONDS,
    CLIP_SEED,
    CLIP_SR,
    MODELS,
    REFERENCE_PATH,
    log_compress,
    synthetic_clip,
)

torch = pytest.importorskip("torch")
musicnn = pytest.importorskip("train.catalog.musicnn")

MUSICNN_DIR = musicnn.find_musicnn_dir()
needs_musicnn = pytest.mark.skipif(
    MUSICNN_DIR is None,
    reason="musicnn==0.1.0 not installed (pip install --no-deps musicnn==0.1.0); its TF checkpoints are needed",
)
ATOL = 1e-4  # vs TF; observed max abs error is ~1e-5 (embedding), ~3e-6 (probabilities)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE_PATH) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def tagger():
    return musicnn.MusicnnTagger()


# --------------------------------------------------------------------------- reader on a hand-built bundle
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _masked(data: bytes) -> int:
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int = 2) -> bytes:
    out, restarts, prev = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        prev = key
    for r in restarts or [0]:
        out += struct.pack("<I", r)
    return bytes(out + struct.pack("<I", len(restarts or [0])))


def _write_bundle(prefix: Path, tensors: dict[str, tuple[int, np.ndarray]], compression: int = 0) -> None:
    """Minimal TF tensor-bundle writer: {name: (dtype enum, little-endian array)}."""
    data = bytearray()
    entries = [(b"", b"\x08\x01")]  # BundleHeaderProto{num_shards: 1}
    for name in sorted(tensors):
        dtype, arr = tensors[name]
        raw = arr.tobytes()
        shape = b"".join(b"\x12" + _varint(len(d)) + d for d in (b"\x08" + _varint(s) for s in arr.shape))
        proto = b"\x08" + _varint(dtype) + b"\x12" + _varint(len(shape)) + shape
        proto += b"\x20" + _varint(len(data)) + b"\x28" + _varint(len(raw)) + b"\x35" + struct.pack("<I", _masked(raw))
        entries.append((name.encode(), proto))
        data += raw
    table = bytearray()

    def put(block: bytes) -> bytes:
        handle = _varint(len(table)) + _varint(len(block))
        trailer = bytes([compression])
        table.extend(block + trailer + struct.pack("<I", _masked(block + trailer)))
        return handle

    data_handle = put(_block(entries))
    meta_handle = put(_block([]))
    index_handle = put(_block([(entries[-1][0], data_handle)]))
    footer = (meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(f"{prefix}.index").write_bytes(bytes(table) + footer)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))


def test_crc32c_known_answer():
    assert crc32c(b"123456789") == 0xE3069283
    blob = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    crc = 0xFFFFFFFF  # bitwise reference, exercises the vectorised lanes + tail
    for byte in blob:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    assert crc32c(blob) == crc ^ 0xFFFFFFFF


def test_reader_roundtrip_synthetic_bundle(tmp_path):
    rng = np.random.default_rng(1)
    f32 = rng.standard_normal((3, 4, 5)).astype("<f4")
    bf16_src = np.array([1.5, -2.25, 2.0**34], dtype=np.float32)
    tensors = {
        "layer/kernel": (1, f32),
        "layer/bias": (1, rng.standard_normal(7).astype("<f4")),  # shares prefix "layer/"
        "step": (9, np.array(42, dtype="<i8")),
        "half": (19, np.array([0.5, 1.0], dtype="<f2")),
        "flags": (10, np.array([True, False])),
        "bf16": (14, (bf16_src.view(np.uint32) >> 16).astype("<u2")),
    }
    _write_bundle(tmp_path / "ck", tensors)
    out = read_checkpoint(tmp_path / "ck")
    assert sorted(out) == sorted(tensors)
    np.testing.assert_array_equal(out["layer/kernel"], f32)
    assert out["step"].shape == () and out["step"] == 42
    assert out["half"].dtype == np.float16 and out["flags"].dtype == np.bool_
    np.testing.assert_array_equal(out["bf16"], bf16_src)  # exactly representable in bfloat16


def test_reader_errors_synthetic(tmp_path):
    _write_bundle(tmp_path / "zipped", {"x": (1, np.zeros(3, "<f4"))}, compression=1)
    with pytest.raises(CheckpointError, match="snappy-compressed"):
        read_checkpoint(tmp_path / "zipped")
    _write_bundle(tmp_path / "strings", {"s": (7, np.zeros(2, "u1"))})
    with pytest.raises(CheckpointError, match="unsupported dtype DT_STRING"):
        read_checkpoint(tmp_path / "strings")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing")
    _write_bundle(tmp_path / "short", {"x": (1, np.arange(100, dtype="<f4"))})
    data = tmp_path / "short.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"short\.data-00000-of-00001: truncated file"):
        read_checkpoint(tmp_path / "short")


# --------------------------------------------------------------------------- reader on musicnn's checkpoints
@needs_musicnn
@pytest.mark.parametrize("model", MODELS)
def test_reader_musicnn_checkpoints(model):
    ck = read_checkpoint(f"{MUSICNN_DIR / model}/")
    assert len(ck) == 150  # 50 model variables + 2 Adam slots each + beta1/beta2_power
    expected = {
        "batch_normalization/gamma": (1,),
        "conv2d/kernel": (7, 38, 1, 204),
        "conv2d_1/kernel": (7, 67, 1, 204),
        "conv2d_2/kernel": (128, 1, 1, 51),
        "conv2d_5/kernel": (7, 561, 1, 64),
        "batch_normalization_9/moving_mean": (1506,),
        "dense/kernel": (1506, 200),
        "dense_1/kernel": (200, 50),
        "beta1_power": (),
    }
    for name, shape in expected.items():
        assert ck[name].shape == shape and ck[name].dtype == np.float32, name
    assert all(np.isfinite(v).all() for v in ck.values())


@needs_musicnn
def test_reader_musicnn_truncated_and_corrupt(tmp_path):
    src = MUSICNN_DIR / "MSD_musicnn"
    dst = tmp_path / "ck"
    dst.mkdir()
    index = (src / ".index").read_bytes()
    (dst / ".index").write_bytes(index[: len(index) // 2])
    with pytest.raises(CheckpointError, match=r"ck/\.index: bad magic number.*truncated"):
        read_checkpoint(f"{dst}/")
    (dst / ".index").write_bytes(index[:20])
    with pytest.raises(CheckpointError, match="truncated file"):
        read_checkpoint(f"{dst}/")

    (dst / ".index").write_bytes(index)
    data = bytearray((src / ".data-00000-of-00001").read_bytes())
    data[1000] ^= 0xFF
    (dst / ".data-00000-of-00001").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        read_checkpoint(f"{dst}/")
    assert len(read_checkpoint(f"{dst}/", verify=False)) == 150


# --------------------------------------------------------------------------- port vs original TF outputs
def test_reference_file_is_small_and_matches_generator(reference):
    assert REFERENCE_PATH.stat().st_size < 200_000
    assert (int(reference["clip_sr"]), float(reference["clip_seconds"]), int(reference["clip_seed"])) == (
        CLIP_SR,
        CLIP_SECONDS,
        CLIP_SEED,
    )
    assert reference["mel_f16"].shape == (3, musicnn.N_FRAMES, 96)


@needs_musicnn
@pytest.mark.parametrize("model", MODELS)
def test_port_matches_tf_on_reference_patches(model, reference, tagger):
    net = tagger.msd if model == "MSD_musicnn" else tagger.mtt
    patches = torch.from_numpy(log_compress(reference["mel_f16"]))
    with torch.inference_mode():
        probs, penultimate = net(patches)
    np.testing.assert_allclose(probs.numpy(), reference[f"{model}/tags"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(penultimate.numpy(), reference[f"{model}/penultimate"], rtol=0, atol=ATOL)


@needs_musicnn
def test_end_to_end_audio_matches_tf(reference, tagger):
    audio = synthetic_clip()
    patches = musicnn.make_patches(musicnn.log_mel(audio, CLIP_SR))
    np.testing.assert_allclose(patches, log_compress(reference["mel_f16"]), rtol=0, atol=1e-5)

    out = tagger(audio, CLIP_SR)
    msd, mtt = reference["MSD_musicnn/tags"], reference["MTT_musicnn/tags"]
    emb = reference["MSD_musicnn/penultimate"]
    np.testing.assert_allclose(out.msd_frame_probs, msd, rtol=0, atol=ATOL)
    np.testing.assert_allclose(out.mtt_frame_probs, mtt, rtol=0, atol=ATOL)
    np.testing.assert_allclose(out.msd_probs, msd.mean(0), rtol=0, atol=ATOL)
    np.testing.assert_allclose(out.mtt_probs, mtt.mean(0), rtol=0, atol=ATOL)
    np.testing.assert_allclose(out.frame_embeddings, emb, rtol=0, atol=ATOL)
    np.testing.assert_allclose(out.embedding, emb.mean(0), rtol=0, atol=ATOL)
    assert out.embedding.shape == (200,) and out.msd_probs.shape == out.mtt_probs.shape == (50,)
    assert out.msd_tags == musicnn.MSD_TAGS and out.mtt_tags == musicnn.MTT_TAGS
    np.testing.assert_allclose(out.patch_starts_s, [0.0, 2.992, 5.984], atol=1e-5)
    top = out.top_tags(3)
    assert len(top) == 3 and top[0][1] == pytest.approx(float(out.msd_probs.max()))

    # Stereo int16 at another rate goes through the same path (mono mix, scaling, resampling).
    stereo = (np.stack([audio, audio]) * 32767).astype(np.int16)
    out2 = tagger(stereo, CLIP_SR)
    np.testing.assert_allclose(out2.msd_probs, out.msd_probs, atol=1e-3)


# --------------------------------------------------------------------------- small pieces
def test_tag_lists():
    assert len(musicnn.MSD_TAGS) == len(set(musicnn.MSD_TAGS)) == 50
    assert len(musicnn.MTT_TAGS) == len(set(musicnn.MTT_TAGS)) == 50
    assert musicnn.MSD_TAGS[0] == "rock" and musicnn.MTT_TAGS[0] == "guitar"


def test_make_patches():
    feats = np.arange(400 * 96, dtype=np.float32).reshape(400, 96)
    assert musicnn.make_patches(feats).shape == (2, 187, 96)  # tail of 26 frames dropped
    assert musicnn.make_patches(feats, hop_frames=100).shape == (3, 187, 96)
    short = musicnn.make_patches(feats[:50])
    assert short.shape == (1, 187, 96)
    np.testing.assert_array_equal(short[0, 50:100], feats[:50])  # repeat-padded
    with pytest.raises(ValueError):
        musicnn.make_patches(feats[:0])


def test_unknown_model_and_missing_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="unsupported model"):
        musicnn.load_musicnn("MSD_vgg")
    with pytest.raises(FileNotFoundError, match="no MSD_musicnn checkpoint"):
        musicnn.load_musicnn("MSD_musicnn", checkpoint_dir=tmp_path)


@needs_musicnn
def test_load_from_copied_checkpoint_dir(tmp_path):
    # checkpoint_dir may be the model folder itself or its parent.
    shutil.copytree(MUSICNN_DIR / "MTT_musicnn", tmp_path / "MTT_musicnn")
    net = musicnn.load_musicnn("MTT_musicnn", checkpoint_dir=tmp_path)
    assert not net.training and net.out.out_features == 50
