"""Vocabulary expansion: adding music tokens to a tokenizer and matching rows to a model.

Owns how the strings of :meth:`talkplay.tokens.MusicVocab.special_tokens` become single token ids and
how the embedding (and, when untied, output) rows of those ids are initialized. New rows are drawn
from N(μ, Σ) fitted to the existing rows (Hewitt, "Initializing new word embeddings for pretrained
language models", 2021): their logits then start near the average old logit, so adding thousands of
tokens barely changes what the pretrained model predicts. :func:`init_rows_from_text` can then move
each music token's row towards the base model's own embedding of the words its code stands for (the
tags of the tracks carrying it, their titles and artists, …), so word → token links do not have to be
learned from nothing.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping, Sequence

log = logging.getLogger(__name__)

PAD_MULTIPLE = 64  # embedding rows are padded to a multiple of this (friendlier matmul shapes)
COV_SHRINKAGE = 0.05  # Σ ← (1-λ)Σ + λ·diag(Σ): keeps Σ well-conditioned for the Cholesky factor


def expand_tokenizer(tokenizer: Any, new_tokens: Sequence[str]) -> dict[str, int]:
    """Add ``new_tokens`` as special tokens (skipping ones already present); return token → id.

    Special tokens are never split by the pre-tokenizer, so each becomes exactly one id. Note that
    ``decode(skip_special_tokens=True)`` strips them: decode music text with ``skip_special_tokens=False``.
    """
    vocab = tokenizer.get_vocab()
    missing = list(dict.fromkeys(t for t in new_tokens if t not in vocab))
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    ids = {}
    for token in new_tokens:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"token {token!r} encodes to {len(encoded)} ids {encoded}, expected one")
        ids[token] = encoded[0]
    return ids


def music_token_ids(tokenizer: Any, vocab: Any) -> list[int]:
    """Ids of ``vocab.special_tokens()`` (boundaries + music tokens) in that order; KeyError if absent."""
    table = tokenizer.get_vocab()
    missing = [t for t in vocab.special_tokens() if t not in table]
    if missing:
        raise KeyError(f"tokenizer lacks {len(missing)} music tokens (e.g. {missing[0]!r}); run expand_tokenizer")
    return [table[t] for t in vocab.special_tokens()]


def _sample_like(old: Any, n_new: int, seed: int) -> Any:
    """``n_new`` rows drawn from N(mean, shrunk cov) of ``old`` (rows × dim), computed in float64."""
    import torch

    x = old.detach().to("cpu", torch.float64)
    mean = x.mean(dim=0)
    centered = x - mean
    cov = centered.T @ centered / max(x.shape[0] - 1, 1)
    cov = (1 - COV_SHRINKAGE) * cov + COV_SHRINKAGE * torch.diag(torch.diagonal(cov))
    cov += 1e-9 * torch.eye(cov.shape[0], dtype=cov.dtype)  # guard against all-zero columns
    chol = torch.linalg.cholesky(cov)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n_new, x.shape[1], generator=gen, dtype=torch.float64)
    return mean + z @ chol.T


def _is_tied(model: Any) -> bool:
    """True when the output layer shares its weight tensor with the input embedding."""
    out = model.get_output_embeddings()
    if out is None:
        return True  # no separate output layer to initialize
    shared = out.weight is model.get_input_embeddings().weight
    declared = bool(getattr(model.config.get_text_config(), "tie_word_embeddings", False))
    if declared != shared:
        # Trust the tensors: they decide what training will update.
        log.warning("tie_word_embeddings=%s but the output weight is %sshared; treating as %s",
                    declared, "" if shared else "not ", "tied" if shared else "untied")
    return shared


def expand_model(model: Any, n_old: int, new_token_ids: Sequence[int], seed: int) -> None:
    """Resize ``model`` to hold ``new_token_ids`` and initialize every row ≥ ``n_old``.

    Args:
        model: a transformers causal LM (not 4-bit: expand before quantizing).
        n_old: rows [0, n_old) hold trained vectors (the tokenizer length before expansion); their
            statistics define the sampling distribution. All rows from ``n_old`` on — the new tokens and
            the padding up to a multiple of ``PAD_MULTIPLE`` — are (re)initialized.
        new_token_ids: ids returned by :func:`expand_tokenizer`; each must be ≥ ``n_old``.
        seed: makes the initialization reproducible; calling again with the same arguments gives
            identical weights (so expansion is idempotent).

    Tied models (output weight *is* the input weight) get one initialization; untied ones get their
    output rows drawn separately from the output layer's own statistics (bias rows set to the old mean).
    """
    import torch

    ids = [int(i) for i in new_token_ids]
    emb = model.get_input_embeddings()
    if n_old < 2 or n_old > emb.weight.shape[0]:
        raise ValueError(f"n_old={n_old} must be in [2, {emb.weight.shape[0]}] (the model's embedding rows)")
    if ids and min(ids) < n_old:
        raise ValueError(f"new token id {min(ids)} < n_old={n_old}: it would overwrite a trained row")
    needed = max([emb.weight.shape[0], *(i + 1 for i in ids)])
    tied = _is_tied(model)
    # mean_resizing=False: HF's own sampler ignores our seed; we overwrite the rows below anyway.
    model.resize_token_embeddings(needed, pad_to_multiple_of=PAD_MULTIPLE, mean_resizing=False)
    emb = model.get_input_embeddings()
    rows = emb.weight.shape[0]
    if rows == n_old:
        return
    with torch.no_grad():
        new = _sample_like(emb.weight[:n_old], rows - n_old, seed)
        emb.weight[n_old:] = new.to(emb.weight.device, emb.weight.dtype)
        out = model.get_output_embeddings()
        if tied:
            if out is not None and out.weight is not emb.weight:
                raise RuntimeError("output layer lost its tie to the input embedding while resizing")
        else:
            if out.weight.shape[0] != rows:
                raise RuntimeError(f"output layer has {out.weight.shape[0]} rows after resizing, expected {rows}")
            new_out = _sample_like(out.weight[:n_old], rows - n_old, seed + 1)
            out.weight[n_old:] = new_out.to(out.weight.device, out.weight.dtype)
            if getattr(out, "bias", None) is not None:
                out.bias[n_old:] = out.bias[:n_old].mean()


_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
_STOP = frozenset("the and with for from that this its are was were has have into over about track piece tune "
                  "cue song music".split())


def _text_vector(base: Any, tokenizer: Any, texts: Sequence[str], n_old: int) -> Any:
    """Mean over ``texts`` of the mean base-embedding row of each content word (stop words dropped)."""
    import torch

    per_text = []
    for text in texts:
        words = [w for w in _WORD.findall(text) if w.lower() not in _STOP]
        rows = []
        for w in words:
            ids = [i for i in tokenizer(" " + w, add_special_tokens=False)["input_ids"] if i < n_old]
            if ids:
                rows.append(base[ids].mean(dim=0))
        if rows:
            per_text.append(torch.stack(rows).mean(dim=0))
    return torch.stack(per_text).mean(dim=0) if per_text else None


def init_rows_from_text(model: Any, tokenizer: Any, n_old: int, texts: Mapping[str, Sequence[str]],
                        groups: Sequence[Sequence[str]], blend: float) -> dict:
    """Start music-token rows from the base model's own embeddings of what each code stands for.

    A code's *text vector* is the mean embedding of the content words of its texts (e.g. the tags and
    captions of the tracks carrying it). Within each group (the codes of one position) the group mean is
    subtracted, so what is left is what distinguishes the code from its siblings; that direction is
    scaled to the typical distance of a base row from the base mean μ. The row becomes
    μ + blend · text direction + (1 − blend) · (current row − μ), the current row being the N(μ, Σ) draw of
    :func:`expand_model` (``blend=1`` is text only, ``blend=0`` leaves the draw). Tied models get one
    row per token; an untied output layer gets the same construction from its own rows.

    Args:
        texts: token string → texts describing it (tokens without texts keep their draw).
        groups: token strings whose text vectors are centred together (one group per position).
    Returns:
        {"initialized": n tokens set from text, "blend": blend}
    """
    import torch

    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend={blend}: expected a value in [0, 1]")
    table = tokenizer.get_vocab()
    emb = model.get_input_embeddings().weight
    matrices = [emb]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not emb:
        matrices.append(out.weight)
    done = 0
    with torch.no_grad():
        for weight in matrices:
            base = weight[:n_old].detach().to("cpu", torch.float64)
            mu = base.mean(dim=0)
            typical = (base - mu).norm(dim=1).mean()
            done = 0
            for group in groups:
                vecs = {t: _text_vector(base, tokenizer, texts.get(t, ()), n_old) for t in group}
                vecs = {t: v - mu for t, v in vecs.items() if v is not None}
                if not vecs:
                    continue
                centre = torch.stack(list(vecs.values())).mean(dim=0) if len(vecs) > 1 else torch.zeros_like(mu)
                for token, v in vecs.items():
                    d = v - centre
                    if float(d.norm()) < 1e-9:  # a lone code in its group: keep the shared meaning
                        d = v
                    d = d / d.norm() * typical
                    i = table[token]
                    drawn = weight[i].detach().to("cpu", torch.float64) - mu
                    row = mu + blend * d + (1.0 - blend) * drawn
                    weight[i] = row.to(weight.device, weight.dtype)
                    done += 1
    return {"initialized": done, "blend": blend}
