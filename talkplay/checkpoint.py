"""The TalkPlay checkpoint: what training adds to a base model, small enough to live in a catalog bundle.

A checkpoint directory (``<bundle>/model/`` for a packaged catalog) holds::

    checkpoint.json          format, base model, base vocabulary size, the added tokens in id order,
                             the token store it belongs to (variant + fingerprint), LoRA scale, training summary
    adapter.safetensors      LoRA factors per adapted linear layer: "<module>.lora_A" (r × in) and
                             "<module>.lora_B" (out × r); the delta is scale · B @ A
    music_rows.safetensors   "embed": the input-embedding rows from the first added token on; "lm_head" (+ "lm_head_bias")
                             too when the model's output layer is untied
    MODEL_CARD.md            written by the training side (train.catalog.package)

Only the deltas are stored (a few MB), never the base weights. :func:`load_checkpoint` rebuilds the full
model once — base + added tokens + rows + merged LoRA — into a cache directory keyed by the checkpoint's
content, then loads that directory through :func:`talkplay.model.load_base`, so every device/precision
path (CPU bf16, CUDA 4-bit NF4, …) applies unchanged. We store plain factors instead of a peft adapter
directory because the runtime merges them once and never needs peft's wrappers.

The checkpoint also records a *signature of its base weights* (a few dozen numbers sampled from the
embedding matrix and the norm layers, which training never changes): a checkpoint applied to any other
base — a different model, or the same name with other weights — is refused with both fingerprints named,
unless ``TALKPLAY_ALLOW_OTHER_BASE=1`` says to go ahead anyway (the deltas then land on weights they were
not trained for: expect nonsense).

The token store fingerprint covers the music vocabulary and the quantizer centroids — what the music
tokens *mean* — not which tracks carry them, so tracks added later with the same quantizers
(:mod:`train.catalog.cold_start`) keep the checkpoint valid without retraining.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from talkplay.catalog import atomic_write_dir

log = logging.getLogger(__name__)

FORMAT = "talkplay-checkpoint/1"
CHECKPOINT_DIR = "model"  # inside a catalog bundle
MANIFEST_FILE = "checkpoint.json"
ADAPTER_FILE = "adapter.safetensors"
ROWS_FILE = "music_rows.safetensors"
CARD_FILE = "MODEL_CARD.md"
_MERGED_MARKER = "talkplay-merged.json"  # written last into a merged cache directory


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing/corrupt files, or a base model / token store mismatch."""


@dataclass(frozen=True)
class CheckpointInfo:
    """The contents of ``checkpoint.json``."""

    base_model: str  # ModelConfig.base_model it was trained on (e.g. "offline:smollm2-135m-instruct")
    base_vocab_size: int  # len(tokenizer) before the music tokens were added; the first added id
    hidden_size: int  # embedding width (a cheap check that a base model fits)
    tokens: tuple[str, ...]  # added tokens; token i has id base_vocab_size + i
    store_variant: str  # token store the tokens belong to
    store_fingerprint: str  # store_fingerprint() of that store
    lora_scale: float  # alpha / r: merged delta = lora_scale · B @ A
    lora_rank: int
    tied: bool  # output layer shares the input embedding
    training: dict = field(default_factory=dict)  # summary written by the trainer (steps, losses, time, …)
    format: str = FORMAT
    base_signature: tuple[float, ...] = ()  # base_signature() of the base it was trained on; () = not recorded

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["tokens"] = list(self.tokens)
        data["base_signature"] = list(self.base_signature)
        return data

    @classmethod
    def from_json(cls, data: dict, where: str) -> "CheckpointInfo":
        if data.get("format") != FORMAT:
            raise CheckpointError(f"{where}: format {data.get('format')!r}, expected {FORMAT!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in names if n not in data and n not in ("training", "format", "base_signature")]
        if missing:
            raise CheckpointError(f"{where}: missing field {missing[0]!r}")
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["tokens"] = tuple(kwargs["tokens"])
        kwargs["base_signature"] = tuple(float(x) for x in kwargs.get("base_signature", ()))
        return cls(**kwargs)


def store_fingerprint(store: Any) -> str:
    """sha256 (hex, 16 chars) of a token store's vocabulary layout and centroids — what its tokens mean."""
    import numpy as np

    h = hashlib.sha256(json.dumps(store.vocab.to_json(), sort_keys=True).encode())
    for name, array in sorted(store.centroids().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


ALLOW_OTHER_BASE_ENV = "TALKPLAY_ALLOW_OTHER_BASE"  # "1": apply a checkpoint to a base whose signature differs
SIGNATURE_SAMPLES = 24  # embedding entries sampled (evenly spaced) into the signature
SIGNATURE_RTOL = 1e-3  # signatures match within this relative tolerance (dequantization may differ in the last bits)


def base_signature(model: Any, base_vocab_size: int) -> tuple[float, ...]:
    """Numbers that identify a model's base weights: mean, std and evenly spaced entries of the first
    ``base_vocab_size`` embedding rows, and the sum of every norm layer's weight. Training (LoRA + music
    rows) changes none of them, so a trained model and its base give the same signature."""
    import torch

    with torch.no_grad():
        emb = model.get_input_embeddings().weight[:base_vocab_size].detach().to("cpu", torch.float64)
        flat = emb.reshape(-1)
        # integer spacing: a float linspace rounds past the last index on large matrices
        picks = flat[torch.arange(SIGNATURE_SAMPLES) * (flat.numel() - 1) // (SIGNATURE_SAMPLES - 1)]
        norms = [p.detach().to("cpu", torch.float64).sum() for n, p in model.named_parameters()
                 if "norm" in n.lower() and "lora_" not in n]
        values = [emb.mean(), emb.std(), *picks, *norms]
    return tuple(round(float(v), 8) for v in values)


def signature_fingerprint(signature: Sequence[float]) -> str:
    """A short, printable name for a signature (sha256 of its values at 3 significant digits)."""
    return hashlib.sha256(",".join(f"{v:.3g}" for v in signature).encode()).hexdigest()[:12]


def same_base(a: Sequence[float], b: Sequence[float]) -> bool:
    import numpy as np

    return len(a) == len(b) and bool(np.allclose(np.asarray(a), np.asarray(b), rtol=SIGNATURE_RTOL, atol=1e-6))


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """The checkpoint directory for a bundle or a checkpoint directory; CheckpointError if there is none."""
    path = Path(path)
    for cand in (path, path / CHECKPOINT_DIR):
        if (cand / MANIFEST_FILE).is_file():
            return cand
    raise CheckpointError(f"{path}: no {MANIFEST_FILE} (neither a checkpoint nor a bundle with {CHECKPOINT_DIR}/)")


def read_info(path: str | os.PathLike) -> CheckpointInfo:
    d = checkpoint_dir(path)
    where = str(d / MANIFEST_FILE)
    try:
        data = json.loads((d / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{where}: unreadable ({exc})") from exc
    return CheckpointInfo.from_json(data, where)


# ---------------------------------------------------------------------------------------------- export


def _lora_factors(model: Any) -> tuple[dict[str, Any], float, int]:
    """{"<module>.lora_A"/"lora_B": tensor} of a peft LoRA model (adapter "default"), its scale and rank."""
    factors, scales, ranks = {}, set(), set()
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if lora_a is None or "default" not in lora_a:
            continue
        key = name.removeprefix("base_model.model.")
        factors[f"{key}.lora_A"] = lora_a["default"].weight.detach().float().cpu().contiguous()
        factors[f"{key}.lora_B"] = module.lora_B["default"].weight.detach().float().cpu().contiguous()
        scales.add(float(module.scaling["default"]))
        ranks.add(int(lora_a["default"].weight.shape[0]))
    if not factors:
        raise CheckpointError("model has no LoRA adapters: a checkpoint stores LoRA deltas (train with LoRA, "
                              "or use the trainer's full export for full fine-tuning)")
    if len(scales) != 1 or len(ranks) != 1:
        raise CheckpointError(f"LoRA layers differ in scale {sorted(scales)} or rank {sorted(ranks)}")
    return factors, scales.pop(), ranks.pop()


def _causal_lm(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def export_checkpoint(model: Any, tokenizer: Any, store: Any, out: str | os.PathLike, *, base_model: str,
                      base_vocab_size: int, training: dict | None = None, card: str | None = None) -> Path:
    """Write the checkpoint of a LoRA-trained, vocabulary-expanded ``model`` to ``out`` (atomically).

    Args:
        model: a peft LoRA model whose embedding rows ≥ ``base_vocab_size`` hold the music tokens.
        tokenizer: the expanded tokenizer (its tokens from ``base_vocab_size`` on are stored in order).
        store: the TokenStore the music tokens come from (its variant and fingerprint are recorded).
        base_model: the ModelConfig.base_model string the base was loaded from.
        card: MODEL_CARD.md text, if any.
    """
    from safetensors.torch import save_file

    factors, scale, rank = _lora_factors(model)
    lm = _causal_lm(model)
    n_new = len(tokenizer) - base_vocab_size
    if n_new <= 0:
        raise CheckpointError(f"tokenizer has {len(tokenizer)} tokens, not more than base_vocab_size={base_vocab_size}")
    tokens = tuple(tokenizer.convert_ids_to_tokens(list(range(base_vocab_size, len(tokenizer)))))
    wanted = set(store.vocab.special_tokens())
    if not wanted.issubset(tokens):
        raise CheckpointError(f"tokenizer lacks {len(wanted - set(tokens))} tokens of store {store.variant!r}")
    emb = lm.get_input_embeddings().weight
    # Every row from base_vocab_size on, the padding rows past the last token included, so that a
    # loaded model's logits equal the trained one's over the whole output.
    rows = {"embed": emb[base_vocab_size:].detach().float().cpu().contiguous()}
    head = lm.get_output_embeddings()
    tied = head is None or head.weight is emb
    if not tied:
        rows["lm_head"] = head.weight[base_vocab_size:].detach().float().cpu().contiguous()
        if getattr(head, "bias", None) is not None:
            rows["lm_head_bias"] = head.bias[base_vocab_size:].detach().float().cpu().contiguous()
    info = CheckpointInfo(base_model=base_model, base_vocab_size=base_vocab_size, hidden_size=int(emb.shape[1]),
                          tokens=tokens, store_variant=store.variant, store_fingerprint=store_fingerprint(store),
                          lora_scale=scale, lora_rank=rank, tied=tied, training=dict(training or {}),
                          base_signature=base_signature(lm, base_vocab_size))

    def write(tmp: Path) -> None:
        save_file(factors, str(tmp / ADAPTER_FILE), metadata={"format": FORMAT})
        save_file(rows, str(tmp / ROWS_FILE), metadata={"format": FORMAT})
        if card is not None:
            (tmp / CARD_FILE).write_text(card)
        (tmp / MANIFEST_FILE).write_text(json.dumps(info.to_json(), indent=1, ensure_ascii=False) + "\n")

    return atomic_write_dir(Path(out), write)


# ---------------------------------------------------------------------------------------------- load


def _load_tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # missing file, truncated header, …
        raise CheckpointError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


def apply_checkpoint(model: Any, tokenizer: Any, path: str | os.PathLike) -> CheckpointInfo:
    """Add a checkpoint to an fp32 base ``model``/``tokenizer`` in place: tokens, rows, merged LoRA."""
    import torch

    from talkplay.expansion import expand_model, expand_tokenizer

    d = checkpoint_dir(path)
    info = read_info(d)
    if len(tokenizer) != info.base_vocab_size:
        raise CheckpointError(f"{d}: trained on a base with {info.base_vocab_size} tokens ({info.base_model}); "
                              f"this tokenizer has {len(tokenizer)}")
    emb = model.get_input_embeddings().weight
    if emb.shape[1] != info.hidden_size:
        raise CheckpointError(f"{d}: hidden size {info.hidden_size}, the base model has {emb.shape[1]}")
    if info.base_signature:
        got = base_signature(model, info.base_vocab_size)
        if not same_base(info.base_signature, got):
            msg = (f"{d}: trained on base {info.base_model!r} with fingerprint "
                   f"{signature_fingerprint(info.base_signature)}, but the base loaded here has fingerprint "
                   f"{signature_fingerprint(got)} — load the base it was trained on")
            if os.environ.get(ALLOW_OTHER_BASE_ENV) != "1":
                raise CheckpointError(msg + f" (or set {ALLOW_OTHER_BASE_ENV}=1 to use this base anyway)")
            log.warning("%s; %s=1, so it is used anyway", msg, ALLOW_OTHER_BASE_ENV)
    ids = expand_tokenizer(tokenizer, info.tokens)
    expected = {t: info.base_vocab_size + i for i, t in enumerate(info.tokens)}
    if ids != expected:
        raise CheckpointError(f"{d}: added tokens got different ids than at training time")
    expand_model(model, info.base_vocab_size, list(ids.values()), seed=0)
    rows = _load_tensors(d / ROWS_FILE)
    factors = _load_tensors(d / ADAPTER_FILE)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        n = emb.shape[0] - info.base_vocab_size  # added tokens + padding rows
        if tuple(rows["embed"].shape) != (n, emb.shape[1]):
            raise CheckpointError(f"{d / ROWS_FILE}: 'embed' has shape {tuple(rows['embed'].shape)}, "
                                  f"expected {(n, emb.shape[1])}")
        emb[info.base_vocab_size:info.base_vocab_size + n] = rows["embed"].to(emb.dtype)
        head = model.get_output_embeddings()
        if not info.tied:
            if head is None or head.weight is emb:
                raise CheckpointError(f"{d}: trained with an untied output layer; this base model ties it")
            head.weight[info.base_vocab_size:info.base_vocab_size + n] = rows["lm_head"].to(head.weight.dtype)
            if "lm_head_bias" in rows:
                head.bias[info.base_vocab_size:info.base_vocab_size + n] = rows["lm_head_bias"]
        modules = dict(model.named_modules())
        for key in sorted(k.removesuffix(".lora_A") for k in factors if k.endswith(".lora_A")):
            module = modules.get(key)
            if module is None or not hasattr(module, "weight"):
                raise CheckpointError(f"{d / ADAPTER_FILE}: layer {key!r} is not in the base model")
            a, b = factors[f"{key}.lora_A"], factors[f"{key}.lora_B"]
            delta = info.lora_scale * (b.double() @ a.double())
            if tuple(delta.shape) != tuple(module.weight.shape):
                raise CheckpointError(f"{d / ADAPTER_FILE}: {key} delta {tuple(delta.shape)} ≠ weight "
                                      f"{tuple(module.weight.shape)}")
            module.weight += delta.to(module.weight.dtype)
    return info


def _content_hash(d: Path, base_source: str) -> str:
    h = hashlib.sha256(base_source.encode())
    for name in (MANIFEST_FILE, ADAPTER_FILE, ROWS_FILE):
        h.update((d / name).read_bytes())
    return h.hexdigest()[:16]


def merged_dir(path: str | os.PathLike, config: Any = None) -> Path:
    """Build (once) and return the cache directory holding base + checkpoint as a plain fp32 model.

    Keyed by the checkpoint's content and the base model's location, written to a temporary sibling
    and renamed, so concurrent or interrupted builds never leave a half-written model behind.
    """
    from talkplay.model import ModelConfig, load_base, publish_model_dir, resolve_base

    d = checkpoint_dir(path)
    info = read_info(d)
    config = config or ModelConfig(base_model=info.base_model)
    source = resolve_base(config)
    out = Path(config.cache_dir) / f"talkplay-merged-{_content_hash(d, source)}"
    if (out / _MERGED_MARKER).is_file():
        return out
    model, tokenizer = load_base(dataclasses.replace(config, device="cpu", precision="fp32"))
    apply_checkpoint(model, tokenizer, d)
    return publish_model_dir(model, tokenizer, out, _MERGED_MARKER, {"checkpoint": str(d), "base": source})


def _check_store(path: str | os.PathLike, info: CheckpointInfo, store: Any) -> None:
    got = store_fingerprint(store)
    if got != info.store_fingerprint:
        raise CheckpointError(
            f"{checkpoint_dir(path)}: trained for token store {info.store_variant!r} ({info.store_fingerprint}); "
            f"the given store {store.variant!r} has fingerprint {got} — retrain or use the matching store")


def verify_checkpoint(path: str | os.PathLike, store: Any = None) -> CheckpointInfo:
    """Check a checkpoint without loading a model (seconds, for an app before it starts serving).

    Reads ``checkpoint.json``, reads both tensor files in full (a truncated or damaged file fails here,
    not on the first request) and, given ``store``, checks its fingerprint. Raises CheckpointError
    naming the file.
    """
    info = read_info(path)
    d = checkpoint_dir(path)
    for name in (ADAPTER_FILE, ROWS_FILE):
        _load_tensors(d / name)
    if store is not None:
        _check_store(path, info, store)
    return info


def load_checkpoint(path: str | os.PathLike, config: Any = None, store: Any = None) -> tuple[Any, Any, CheckpointInfo]:
    """Load a ready (model, tokenizer, info) from a checkpoint or a bundle holding ``model/``.

    Args:
        config: a :class:`talkplay.model.ModelConfig` for device/precision (its ``base_model`` must be the
            one the checkpoint names, or a path/id of the same model); default: the checkpoint's base model
            with the automatic device/precision policy.
        store: when given, the TokenStore the model will decode against; CheckpointError if its fingerprint
            differs from the one the checkpoint was trained with.
    """
    from talkplay.model import ModelConfig, load_base

    info = read_info(path)
    if store is not None:
        _check_store(path, info, store)
    config = config or ModelConfig(base_model=info.base_model)
    merged = merged_dir(path, config)
    model, tokenizer = load_base(dataclasses.replace(config, base_model=str(merged)))
    return model, tokenizer, info

