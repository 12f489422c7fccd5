"""PyTorch port of the musicnn music auto-tagger (Pons & Serra, 2019).

This module owns everything needed to run musicnn without TensorFlow:

* the architecture (:class:`MusiCNN`), written to reproduce the original TF1
  graph numerically (same layer order, padding, pooling and batch-norm epsilon);
* weight loading from the TF checkpoints shipped in the PyPI package
  ``musicnn==0.1.0`` (:func:`load_musicnn`), read with
  :mod:`train.catalog.tf_checkpoint` -- musicnn's own Python code is never imported,
  since it needs TF1 and an old numpy;
* musicnn's preprocessing (:func:`log_mel`, :func:`make_patches`);
* a high-level tagger (:class:`MusicnnTagger`, :func:`tag_audio`) returning
  MSD and MTT tag probabilities and the 200-d MSD "penultimate" embedding.

The port is checked against outputs recorded from the original TF graph by
``train/catalog/tools/record_musicnn_reference.py`` (see ``tests/train/test_musicnn.py``).

Architecture (input: patches of 187 frames x 96 mel bands, log-compressed):

* front-end: batch norm of the input; two "timbral" convs (7 x 38 and 7 x 67,
  204 filters) on the input zero-padded by 3 frames in time; three "temporal"
  convs (128 x 1, 64 x 1, 32 x 1, 51 filters, TF 'same' padding).  Each is
  conv -> relu -> batch norm -> max over frequency.  Concatenated: 561 channels.
* mid-end: three 1-D convs over time (64 filters, kernel 7, zero-pad 3), each
  conv -> relu -> batch norm, the 2nd and 3rd with a residual connection.
  Front-end and the three mid-end outputs are concatenated: 753 channels.
* back-end: max and mean over time, *interleaved* per channel (TF concatenated
  them on a trailing axis of size 2 and flattened), batch norm, dense 200 relu,
  batch norm (= penultimate embedding), dense 50, sigmoid.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.catalog.musicnn is a module of the train package: import it, or use python -m")

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from train.catalog.tf_checkpoint import read_checkpoint

__all__ = [
    "MSD_TAGS",
    "MTT_TAGS",
    "MODEL_TAGS",
    "SR",
    "N_FRAMES",
    "MusiCNN",
    "MusicnnOutput",
    "MusicnnTagger",
    "find_musicnn_dir",
    "load_musicnn",
    "log_mel",
    "make_patches",
    "tag_audio",
]

# Preprocessing constants (musicnn's configuration).
SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
N_FRAMES = 187  # ~3 s patches: librosa.time_to_frames(3 s) + 1
BN_EPS = 1e-3  # tf.layers.batch_normalization default (also read from the graph)

# The package's config.json files hold training settings but not the tag names;
# these are musicnn's label lists in output-unit order.
MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist",
    "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy", "catchy", "funk",
    "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip
MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal",
    "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age",
    "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice", "weird", "country",
    "metal", "female voice", "choral",
)  # fmt: skip
MODEL_TAGS: dict[str, tuple[str, ...]] = {"MSD_musicnn": MSD_TAGS, "MTT_musicnn": MTT_TAGS}


# --------------------------------------------------------------------------- preprocessing
def _to_float_mono(audio: np.ndarray) -> np.ndarray:
    y = np.asarray(audio)
    if np.issubdtype(y.dtype, np.integer):
        # PCM integers -> [-1, 1), as soundfile/librosa would deliver them.
        y = y.astype(np.float32) / float(2 ** (8 * y.dtype.itemsize - 1))
    y = y.astype(np.float32, copy=False)
    if y.ndim == 2:
        # Multichannel: the shorter axis is the channel axis; average like librosa.to_mono.
        y = y.mean(axis=0 if y.shape[0] <= y.shape[1] else 1, dtype=np.float32)
    elif y.ndim != 1:
        raise ValueError(f"audio must be 1-D or 2-D, got shape {y.shape}")
    return y


def log_mel(audio: np.ndarray, sr: int) -> np.ndarray:
    """musicnn input features of a clip: (frames, 96) float32 log-mel.

    Mono, resampled to 16 kHz with soxr_hq (what ``librosa.load`` does), librosa
    mel power spectrogram (n_fft 512, hop 256, 96 bands), quantised to float16
    (musicnn stored and fed its spectrograms as float16), then
    ``log10(10000 x + 1)`` in float32.  Float32 matters: under numpy >= 2 the
    same expression on a float16 array stays float16 and overflows to inf for
    x > 6.55; musicnn ran on numpy 1.x, which promoted to float32.
    """
    import librosa  # heavy import, only needed for audio input

    y = _to_float_mono(audio)
    if sr != SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=SR, res_type="soxr_hq").astype(np.float32, copy=False)
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS).T
    mel16 = mel.astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000) * mel16 + np.float32(1))


def make_patches(logmel: np.ndarray, n_frames: int = N_FRAMES, hop_frames: int | None = None) -> np.ndarray:
    """Cut (frames, 96) features into (n, n_frames, 96) patches.

    Non-overlapping by default (``hop_frames = n_frames``), dropping the
    incomplete tail as musicnn does.  A clip shorter than one patch is
    repeat-padded (musicnn's training used "repeat-pad" for short clips; its
    extractor would simply fail).
    """
    hop = n_frames if hop_frames is None else hop_frames
    if hop <= 0:
        raise ValueError(f"hop_frames must be positive, got {hop}")
    if logmel.ndim != 2 or logmel.shape[0] == 0:
        raise ValueError(f"expected non-empty (frames, bands) features, got shape {logmel.shape}")
    if logmel.shape[0] < n_frames:
        reps = -(-n_frames // logmel.shape[0])
        logmel = np.tile(logmel, (reps, 1))[:n_frames]
    starts = range(0, logmel.shape[0] - n_frames + 1, hop)
    return np.stack([logmel[s : s + n_frames] for s in starts]).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- model
def _same_pad(k: int) -> tuple[int, int]:
    """TF 'SAME' padding for stride 1: the extra element goes after."""
    return (k - 1) // 2, k // 2


class _FrontBranch(nn.Module):
    """conv -> relu -> batch norm -> max over frequency; output (B, C, T).

    Computed without materialising relu/batch-norm on the large (B, C, T, F)
    conv output: both are monotonic per channel, so the max over frequency of
    ``bn(relu(z))`` is ``bn(relu(max z))`` where the batch-norm scale is positive
    and ``bn(relu(min z))`` where it is negative.  Same values, ~2x faster on CPU.
    """

    def __init__(self, out_ch: int, kernel: tuple[int, int], time_pad: tuple[int, int]):
        super().__init__()
        self.time_pad = time_pad
        self.conv = nn.Conv2d(1, out_ch, kernel)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)  # holds the parameters; applied by hand

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 1, T, 96)
        z = self.conv(F.pad(x, (0, 0, *self.time_pad)))
        zmin, zmax = torch.aminmax(z, dim=3)
        scale, shift = _bn_affine(self.bn)
        scale, shift = scale[:, None], shift[:, None]
        return torch.where(scale > 0, F.relu(zmax), F.relu(zmin)) * scale + shift


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference batch norm as per-channel ``x * scale + shift``."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class _MidLayer(nn.Module):
    """Conv over time (kernel 7, zero-pad 3) -> relu -> batch norm; output (B, C, T)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, 7, padding=3)
        self.bn = nn.BatchNorm1d(out_ch, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class MusiCNN(nn.Module):
    """musicnn network.  ``forward(x)`` maps (B, 187, 96) log-mel patches to
    ``(probabilities (B, n_classes), penultimate (B, n_units))``.

    Any number of frames works (the back-end pools over time), but the models
    were trained on 187.  Inference only: the front-end applies its batch norms
    with the stored running statistics whatever ``train()`` says.
    """

    def __init__(self, n_classes: int = 50, n_mels: int = N_MELS, midend_filters: int = 64, backend_units: int = 200):
        super().__init__()
        timbral_filters, temporal_filters = int(1.6 * 128), int(1.6 * 32)  # 204, 51
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.front = nn.ModuleList(
            [
                _FrontBranch(timbral_filters, (7, int(0.4 * n_mels)), (3, 3)),
                _FrontBranch(timbral_filters, (7, int(0.7 * n_mels)), (3, 3)),
                _FrontBranch(temporal_filters, (128, 1), _same_pad(128)),
                _FrontBranch(temporal_filters, (64, 1), _same_pad(64)),
                _FrontBranch(temporal_filters, (32, 1), _same_pad(32)),
            ]
        )
        front_ch = 2 * timbral_filters + 3 * temporal_filters  # 561
        self.mid = nn.ModuleList(
            [
                _MidLayer(front_ch, midend_filters),
                _MidLayer(midend_filters, midend_filters),
                _MidLayer(midend_filters, midend_filters),
            ]
        )
        pooled = 2 * (front_ch + 3 * midend_filters)  # 1506
        self.pool_bn = nn.BatchNorm1d(pooled, eps=BN_EPS)
        self.dense = nn.Linear(pooled, backend_units)
        self.dense_bn = nn.BatchNorm1d(backend_units, eps=BN_EPS)
        self.out = nn.Linear(backend_units, n_classes)
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # channels_last makes oneDNN's 1-input-channel convs ~1.5x faster on CPU.
        x = self.input_bn(x.unsqueeze(1)).contiguous(memory_format=torch.channels_last)  # (B, 1, T, 96)
        front = torch.cat([branch(x) for branch in self.front], dim=1)  # (B, 561, T)
        m1 = self.mid[0](front)
        m2 = self.mid[1](m1) + m1
        m3 = self.mid[2](m2) + m2
        feats = torch.cat([front, m1, m2, m3], dim=1)  # (B, 753, T)
        # TF: concat([max, mean], axis=-1) on (B, 753, 1) then flatten -> interleaved.
        pooled = torch.stack([feats.amax(dim=2), feats.mean(dim=2)], dim=2).flatten(1)
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return torch.sigmoid(self.out(penultimate)), penultimate


# --------------------------------------------------------------------------- loading
def find_musicnn_dir() -> Path | None:
    """Folder of the installed ``musicnn`` package (holding the checkpoints), or None.

    Uses ``find_spec``, which locates the package without executing it.
    """
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _checkpoint_prefix(model: str, checkpoint_dir: Path | None) -> str:
    candidates: list[Path] = []
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        candidates = [checkpoint_dir, checkpoint_dir / model]
    else:
        root = find_musicnn_dir()
        if root is None:
            raise FileNotFoundError(
                "musicnn checkpoints not found: install the weights-only package with "
                "`pip install --no-deps musicnn==0.1.0` or pass checkpoint_dir"
            )
        candidates = [root / model]
    for folder in candidates:
        if (folder / ".index").is_file():
            return str(folder) + "/"  # musicnn's checkpoint prefix is "<dir>/"
    raise FileNotFoundError(f"no {model} checkpoint (.index) in {', '.join(map(str, candidates))}")


def _tf_to_torch_state(ck: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map TF variable names (layer creation order) to this module's parameters."""
    state: dict[str, np.ndarray] = {}

    def bn(tf_name: str, prefix: str) -> None:
        state[f"{prefix}.weight"] = ck[f"{tf_name}/gamma"]
        state[f"{prefix}.bias"] = ck[f"{tf_name}/beta"]
        state[f"{prefix}.running_mean"] = ck[f"{tf_name}/moving_mean"]
        state[f"{prefix}.running_var"] = ck[f"{tf_name}/moving_variance"]

    def tf_bn(i: int) -> str:
        return "batch_normalization" + (f"_{i}" if i else "")

    def tf_conv(i: int) -> str:
        return "conv2d" + (f"_{i}" if i else "")

    bn(tf_bn(0), "input_bn")
    for i in range(5):  # conv2d..conv2d_4 / batch_normalization_1..5: f74, f77, s1, s2, s3
        k = ck[f"{tf_conv(i)}/kernel"]  # TF HWIO -> torch OIHW
        state[f"front.{i}.conv.weight"] = k.transpose(3, 2, 0, 1)
        state[f"front.{i}.conv.bias"] = ck[f"{tf_conv(i)}/bias"]
        bn(tf_bn(i + 1), f"front.{i}.bn")
    for j in range(3):  # conv2d_5..7 / batch_normalization_6..8
        k = ck[f"{tf_conv(5 + j)}/kernel"]  # (7, C_in as "width", 1, C_out) -> (C_out, C_in, 7)
        state[f"mid.{j}.conv.weight"] = k[:, :, 0, :].transpose(2, 1, 0)
        state[f"mid.{j}.conv.bias"] = ck[f"{tf_conv(5 + j)}/bias"]
        bn(tf_bn(6 + j), f"mid.{j}.bn")
    bn(tf_bn(9), "pool_bn")
    state["dense.weight"] = ck["dense/kernel"].T
    state["dense.bias"] = ck["dense/bias"]
    bn(tf_bn(10), "dense_bn")
    state["out.weight"] = ck["dense_1/kernel"].T
    state["out.bias"] = ck["dense_1/bias"]

    # Every model variable must be used: an unmapped one means the graph differs.
    optimizer_state = {"beta1_power", "beta2_power"}
    used = {k for k in ck if not k.endswith(("/Adam", "/Adam_1")) and k not in optimizer_state}
    mapped = {f"{n}/{s}" for n in [tf_bn(i) for i in range(11)] for s in ("gamma", "beta", "moving_mean", "moving_variance")}
    mapped |= {f"{tf_conv(i)}/{s}" for i in range(8) for s in ("kernel", "bias")}
    mapped |= {f"{d}/{s}" for d in ("dense", "dense_1") for s in ("kernel", "bias")}
    if used != mapped:
        raise ValueError(f"unexpected checkpoint variables: extra {sorted(used - mapped)}, missing {sorted(mapped - used)}")
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}


def load_musicnn(model: str = "MSD_musicnn", checkpoint_dir: Path | None = None) -> MusiCNN:
    """Build :class:`MusiCNN` with weights from a musicnn TF checkpoint (eval mode, float32).

    ``model`` is ``"MSD_musicnn"`` or ``"MTT_musicnn"``.  ``checkpoint_dir`` is
    the folder holding the model's ``.index``/``.data-*`` files, or a folder
    containing ``<model>/``; by default the installed ``musicnn`` package.
    """
    if model not in MODEL_TAGS:
        raise ValueError(f"unsupported model {model!r}; choose one of {sorted(MODEL_TAGS)} (the vgg models are not ported)")
    ck = read_checkpoint(_checkpoint_prefix(model, checkpoint_dir))
    n_classes = ck["dense_1/bias"].shape[0]
    net = MusiCNN(
        n_classes=n_classes,
        midend_filters=ck["conv2d_5/bias"].shape[0],
        backend_units=ck["dense/bias"].shape[0],
    )
    # strict: any missing/extra parameter or shape mismatch is an error.
    net.load_state_dict(_tf_to_torch_state(ck), strict=True)
    return net.eval().float()


# --------------------------------------------------------------------------- tagger
@dataclass(frozen=True)
class MusicnnOutput:
    """musicnn results for one clip ("frames" are the ~3 s patches).

    ``msd_frame_probs``/``mtt_frame_probs``: (n_patches, 50) tag probabilities;
    ``msd_probs``/``mtt_probs``: their means over patches, (50,);
    ``frame_embeddings``: (n_patches, 200) MSD_musicnn penultimate features;
    ``embedding``: their mean, (200,); ``patch_starts_s``: patch start times.
    """

    msd_frame_probs: np.ndarray
    msd_probs: np.ndarray
    mtt_frame_probs: np.ndarray
    mtt_probs: np.ndarray
    frame_embeddings: np.ndarray
    embedding: np.ndarray
    patch_starts_s: np.ndarray
    msd_tags: tuple[str, ...] = field(default=MSD_TAGS)
    mtt_tags: tuple[str, ...] = field(default=MTT_TAGS)

    def top_tags(self, k: int = 5, source: str = "msd") -> list[tuple[str, float]]:
        """The ``k`` most probable clip-level tags of ``source`` ("msd" or "mtt")."""
        probs, names = (self.msd_probs, self.msd_tags) if source == "msd" else (self.mtt_probs, self.mtt_tags)
        order = np.argsort(-probs)[:k]
        return [(names[i], float(probs[i])) for i in order]


class MusicnnTagger:
    """Runs MSD_musicnn and MTT_musicnn on audio; see :meth:`__call__`.

    Models are loaded once; patches are batched (``batch_size`` bounds memory:
    the first layer holds ~9 MB of activations per patch).
    """

    def __init__(self, checkpoint_dir: Path | None = None, batch_size: int = 16, hop_frames: int | None = None):
        self.msd = load_musicnn("MSD_musicnn", checkpoint_dir)
        self.mtt = load_musicnn("MTT_musicnn", checkpoint_dir)
        self.batch_size = batch_size
        self.hop_frames = hop_frames

    @torch.inference_mode()
    def _run(self, net: MusiCNN, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, pens = [], []
        for i in range(0, len(patches), self.batch_size):
            p, e = net(torch.from_numpy(np.ascontiguousarray(patches[i : i + self.batch_size], dtype=np.float32)))
            probs.append(p.numpy())
            pens.append(e.numpy())
        return np.concatenate(probs), np.concatenate(pens)

    def tag_patches(self, patches: np.ndarray) -> MusicnnOutput:
        """Tag precomputed (n, 187, 96) log-mel patches (see :func:`log_mel`, :func:`make_patches`)."""
        msd_p, msd_e = self._run(self.msd, patches)
        mtt_p, _ = self._run(self.mtt, patches)
        hop = N_FRAMES if self.hop_frames is None else self.hop_frames
        return MusicnnOutput(
            msd_frame_probs=msd_p,
            msd_probs=msd_p.mean(axis=0),
            mtt_frame_probs=mtt_p,
            mtt_probs=mtt_p.mean(axis=0),
            frame_embeddings=msd_e,
            embedding=msd_e.mean(axis=0),
            patch_starts_s=np.arange(len(patches), dtype=np.float32) * (hop * HOP / SR),
        )

    def __call__(self, audio: np.ndarray, sr: int) -> MusicnnOutput:
        """Tag a clip: ``audio`` is mono (n,) or multichannel (2-D) samples at rate ``sr``."""
        return self.tag_patches(make_patches(log_mel(audio, sr), hop_frames=self.hop_frames))


@functools.lru_cache(maxsize=1)
def _default_tagger() -> MusicnnTagger:
    return MusicnnTagger()


def tag_audio(audio: np.ndarray, sr: int) -> MusicnnOutput:
    """Tag a clip with a process-wide :class:`MusicnnTagger` (weights from the installed package)."""
    return _default_tagger()(audio, sr)
