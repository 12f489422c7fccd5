"""Tests for train/tokens/quantize.py on tiny synthetic data (Gaussian blobs; hermetic, fast)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from train.tokens.quantize import (
    KMeansQuantizer,
    ResidualKMeansQuantizer,
    RQVAEQuantizer,
    code_stats,
    default_codebook_size,
    load_quantizer,
    quantizer_for,
    read_quantizer,
    save_quantizer,
)

# Small network / schedule so every RQ-VAE fit takes well under a second.
TINY_RQ = {"hidden_dim": 32, "latent_dim": 8, "epochs": 60, "batch_size": 16, "lr": 3e-3}


def blobs(n_blobs: int = 6, per_blob: int = 10, d: int = 16, noise: float = 0.05, seed: int = 0):
    """Well-separated blobs (in direction, since rows get L2-normalized) and their labels."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_blobs, d))
    labels = np.repeat(np.arange(n_blobs), per_blob)
    x = centers[labels] + noise * rng.standard_normal((len(labels), d))
    return x.astype(np.float32), labels


def make(kind: str, reserved: int = 0, **kw):
    if kind == "kmeans":
        return quantizer_for("kmeans", 1, 6, reserved=reserved, **kw)
    if kind == "rkmeans":
        return quantizer_for("rkmeans", 3, 4, reserved=reserved, **kw)
    return quantizer_for("rqvae", 2, 4, reserved=reserved, **{**TINY_RQ, **kw})


KINDS = ["kmeans", "rkmeans", "rqvae"]


# --------------------------------------------------------------------------- #
# Codebook size rule and code statistics
# --------------------------------------------------------------------------- #


def test_default_codebook_size_examples():
    assert default_codebook_size(286) == 17  # sqrt(286) = 16.9
    assert default_codebook_size(1_700_000) == 1024  # sqrt = 1304, clamped to the paper's K
    assert default_codebook_size(286, levels=3) == 4  # 286 ** (1/4) = 4.1
    assert default_codebook_size(1_000_000, levels=3) == 32
    assert default_codebook_size(10**12, levels=2) == 256  # residual clamp
    assert default_codebook_size(3) == 2  # lower clamp
    assert default_codebook_size(1) == 1  # never above N
    with pytest.raises(ValueError, match="n_items"):
        default_codebook_size(0)


def test_code_stats_exact_values():
    codes = np.array([[0, 1], [0, 1], [1, 2], [2, 3]])
    s = code_stats(codes, codebook_size=4)
    assert s.n_items == 4
    assert s.utilization == (0.75, 0.75)
    assert s.entropy == pytest.approx((0.75, 0.75))  # H(1/2, 1/4, 1/4) = 1.5 bits of log2(4) = 2
    assert s.max_share == (0.5, 0.5)
    assert s.collision_rate == 0.5  # rows 0 and 1 share (0, 1)
    assert s.unique_tuples == 3

    # Same matrix shifted by one reserved code, plus two "no data" rows that are not counted.
    shifted = np.vstack([codes + 1, [[0, 0], [0, 0]]])
    assert code_stats(shifted, codebook_size=4, reserved=1) == dataclasses.replace(s, reserved=1)
    flat = code_stats(np.array([0, 1, 2, 3]), codebook_size=4)
    assert flat.utilization == (1.0,) and flat.entropy == (1.0,) and flat.collision_rate == 0.0
    with pytest.raises(ValueError, match="codes must lie"):
        code_stats(codes, codebook_size=3)


# --------------------------------------------------------------------------- #
# Behaviour common to all kinds
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", KINDS)
def test_encode_shape_dtype_range_with_reserved(kind):
    x, _ = blobs()
    q = make(kind, reserved=1)
    q.fit(x, seed=0)
    codes = q.encode(x[:7])
    assert codes.shape == (7, q.levels) and codes.dtype == np.int64
    assert codes.min() >= 1 and codes.max() < 1 + q.codebook_size == q.vocab_size
    assert q.encode(x[:0]).shape == (0, q.levels)
    recon = q.decode(codes)
    assert recon.shape == (7, x.shape[1]) and recon.dtype == np.float32
    with pytest.raises(ValueError, match="reserved codes cannot be decoded"):
        q.decode(np.zeros((1, q.levels), np.int64))
    with pytest.raises(ValueError, match="expected width 16"):
        q.encode(x[:, :5])
    books = q.codebooks()
    assert len(books) == q.levels and all(b.shape[0] == q.codebook_size for b in books)


@pytest.mark.parametrize("kind", KINDS)
def test_fit_is_deterministic_in_seed(kind):
    x, _ = blobs()
    a = make(kind)
    b = make(kind)
    a.fit(x, seed=3)
    b.fit(x, seed=3)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))
    for ba, bb in zip(a.codebooks(), b.codebooks()):
        np.testing.assert_array_equal(ba, bb)
    if kind == "rqvae":  # a different seed gives a different network
        c = make(kind)
        c.fit(x, seed=4)
        assert not np.array_equal(a.codebooks()[0], c.codebooks()[0])


@pytest.mark.parametrize("kind", KINDS)
def test_state_round_trip_encodes_new_points_identically(kind, tmp_path):
    x, _ = blobs()
    new, _ = blobs(seed=1, per_blob=3)
    q = make(kind, reserved=2)
    q.fit(x, seed=0)
    state = q.state_dict()
    assert all(v.dtype in (np.float32, np.int64) for v in state.values())
    loaded = load_quantizer(kind, state)
    np.testing.assert_array_equal(loaded.encode(new), q.encode(new))
    np.testing.assert_allclose(loaded.decode(q.encode(new)), q.decode(q.encode(new)), rtol=1e-6, atol=1e-6)
    assert loaded.config == q.config and loaded.reserved == 2
    assert loaded.params() == q.params() and q.params()["vocab_size"] == 2 + q.codebook_size

    path = tmp_path / f"{kind}.safetensors"
    save_quantizer(q, path)
    from_file = read_quantizer(path)
    assert from_file.kind == kind
    np.testing.assert_array_equal(from_file.encode(new), q.encode(new))
    other = "rqvae" if kind != "rqvae" else "kmeans"
    with pytest.raises(ValueError, match="kind id"):
        load_quantizer(other, state)


# --------------------------------------------------------------------------- #
# Kind-specific behaviour
# --------------------------------------------------------------------------- #


def test_kmeans_recovers_separated_blobs():
    x, labels = blobs()
    q = KMeansQuantizer(6)
    report = q.fit(x, seed=0)
    codes = q.encode(x)[:, 0]
    # One code per blob and one blob per code: a bijection between labels and codes.
    pairs = set(zip(labels.tolist(), codes.tolist()))
    assert len(pairs) == 6 and len({c for _, c in pairs}) == 6
    assert report.stats.utilization == (1.0,) and report.stats.max_share == pytest.approx((1 / 6,))


def test_residual_kmeans_error_decreases_with_levels():
    x, _ = blobs(n_blobs=8, per_blob=8, noise=0.3)
    q = ResidualKMeansQuantizer(3, 4)
    report = q.fit(x, seed=0)
    assert report.level_mse[0] < 1.0  # beats predicting the mean
    assert report.level_mse[0] > report.level_mse[1] > report.level_mse[2]
    # The same holds in input space (rows L2-normalized), decoding code prefixes.
    target = x / np.linalg.norm(x, axis=1, keepdims=True)
    codes = q.encode(x)
    errors = [float(np.mean((q.decode(codes[:, :l]) - target) ** 2)) for l in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


def test_rqvae_trains_and_beats_trivial_baseline():
    x, _ = blobs(n_blobs=8, per_blob=8, noise=0.2)
    q = RQVAEQuantizer(2, 4, **TINY_RQ)
    report = q.fit(x, seed=0)
    loss = report.history["loss"]
    assert len(loss) == 60 and loss[-1] < 0.5 * loss[0]
    assert report.level_mse[-1] < 0.5  # predicting the mean scores 1.0 in standardized space
    target = x / np.linalg.norm(x, axis=1, keepdims=True)
    mean_baseline = float(np.mean((target - target.mean(0)) ** 2))
    assert float(np.mean((q.decode(q.encode(x)) - target) ** 2)) < 0.5 * mean_baseline
    assert min(report.stats.utilization) == 1.0  # k-means init + restarts use every code on blobs


def test_rqvae_dead_code_restarts_revive_codes():
    x, _ = blobs(n_blobs=8, per_blob=8)
    # 16 codes for 8 tight blobs: without restarts training strands about half of them.
    kw = {**TINY_RQ, "codebook_size": 16, "levels": 2}
    on = quantizer_for("rqvae", **kw)
    off = quantizer_for("rqvae", **kw, dead_code_restart=False)
    report = on.fit(x, seed=0)
    off.fit(x, seed=0)
    used_on = code_stats(on.encode(x), 16).utilization
    used_off = code_stats(off.encode(x), 16).utilization
    assert sum(report.history["restarts"]) > 0
    assert min(used_on) >= 0.9
    assert sum(used_on) > sum(used_off) + 0.5


# --------------------------------------------------------------------------- #
# Errors name the offending thing
# --------------------------------------------------------------------------- #


def test_errors():
    x, _ = blobs()
    with pytest.raises(ValueError, match="levels must be 1"):
        quantizer_for("kmeans", 2, 4)
    with pytest.raises(ValueError, match="unknown quantizer kind 'vq'"):
        quantizer_for("vq", 1, 4)
    with pytest.raises(TypeError, match="unknown option"):
        RQVAEQuantizer(2, 4, epoch=3)
    with pytest.raises(ValueError, match="codebook_size 100 > 60 training rows"):
        KMeansQuantizer(100).fit(x)
    with pytest.raises(RuntimeError, match="fitted"):
        KMeansQuantizer(4).encode(x)
    with pytest.raises(ValueError, match="NaN"):
        KMeansQuantizer(4).fit(np.full((10, 3), math.nan))
