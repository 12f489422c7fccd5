"""Training losses: next-token cross-entropy at supervised positions only, and the self-similarity loss.

TalkPlay trains with L = L_conversation + L_playlist + λ·L_self-sim. The first two are ordinary
shifted next-token cross-entropy over the supervised (label ≠ -100) tokens of their examples; the
third keeps the geometry of each position's music-token embeddings close to that of the codebook
centroids the codes came from, so tokens that are neighbours in audio/metadata/playlist space stay
neighbours in the LLM's embedding space.

Why a custom CE: on CPU the vocabulary-wide output layer (~49k × 576 for SmolLM2) costs more than
the decoder body, yet only a minority of positions are supervised (the system prompt, user text and
grounding spans are not). :func:`supervised_ce` runs the decoder body and applies the LM head only
to the hidden states that predict a supervised label; the result equals the full-head loss.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.training.losses is a module of the train package: import it, or use python -m")

from typing import Any, Mapping

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # same value as talkplay.render.IGNORE_INDEX and PyTorch's default ignore_index


def causal_lm(model: Any) -> Any:
    """The transformers causal LM inside ``model`` (unwraps a peft PeftModel; LoRA layers stay injected)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _decoder(model: Any) -> Any:
    lm = causal_lm(model)
    decoder = lm.get_decoder() if hasattr(lm, "get_decoder") else getattr(lm, "model", None)
    if decoder is None:
        raise TypeError(f"{type(lm).__name__}: cannot find the decoder body (no get_decoder() or .model)")
    return decoder


def token_losses(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 labels: torch.Tensor, full_head: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token fp32 cross-entropy at supervised positions and the batch row each one belongs to.

    Position t of the hidden states predicts token t+1, so hidden[:, :-1] is paired with labels[:, 1:]
    and only pairs whose label ≠ IGNORE_INDEX go through the LM head (``full_head=True`` applies the head
    everywhere first, as transformers does; same result, kept for timing comparisons).

    Returns:
        (losses, rows): both of shape (n_supervised,); ``rows[i]`` is the example index of ``losses[i]``.
    """
    if input_ids.shape != labels.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and labels {tuple(labels.shape)} differ in shape")
    out = _decoder(model)(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    rows = keep.nonzero(as_tuple=True)[0]
    head = causal_lm(model).get_output_embeddings()
    if full_head:
        logits = head(hidden)[:, :-1][keep]
    else:
        logits = head(hidden[:, :-1][keep])  # (n_supervised, vocab): the saving is here
    return F.cross_entropy(logits.float(), target[keep], reduction="none"), rows


def supervised_ce(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  labels: torch.Tensor) -> torch.Tensor:
    """Mean shifted next-token cross-entropy over supervised tokens, with the LM head applied only there.

    Equals ``model(input_ids, attention_mask=…, labels=labels).loss`` of a transformers causal LM (whose
    loss also shifts and ignores -100), computed in fp32. A batch with no supervised token gives 0 with a
    gradient path (so a training step never crashes on it).
    """
    losses, _ = token_losses(model, input_ids, attention_mask, labels)
    if losses.numel() == 0:
        return losses.sum()
    return losses.mean()


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities of the rows of ``x`` (n × d → n × n), computed in fp32."""
    x = F.normalize(x.float(), dim=-1, eps=1e-8)
    return x @ x.T


def self_similarity_loss(embedding_weight: torch.Tensor, token_ids_by_position: Mapping[str, torch.Tensor],
                         centroids: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """MSE between the cosine-similarity matrices of music-token embeddings and of their centroids.

    For each position (e.g. "audio1"), row i of ``token_ids_by_position[label]`` is the token id whose
    code's centroid is row i of ``centroids[label]`` (learned codes only: reserved codes have no centroid
    and must not be listed). Cosine matrices are dimension-free, so embedding and centroid widths may
    differ; the loss is 0 exactly when the embeddings reproduce the centroids' angles (e.g. equal rows,
    or any rotation/scaling of them). Positions with fewer than two codes carry no geometry and are
    skipped; the result is the mean over the remaining positions (0 if none).
    """
    terms = []
    for label, ids in token_ids_by_position.items():
        if label not in centroids:
            raise KeyError(f"self-similarity: position {label!r} has token ids but no centroids")
        target = torch.as_tensor(centroids[label])
        ids = torch.as_tensor(ids, dtype=torch.long, device=embedding_weight.device)
        if ids.ndim != 1 or target.ndim != 2 or target.shape[0] != ids.shape[0]:
            raise ValueError(f"self-similarity: position {label!r} has {tuple(ids.shape)} token ids but centroids "
                             f"of shape {tuple(target.shape)}; expected one centroid row per token id")
        if ids.shape[0] < 2:
            continue
        emb_cos = cosine_matrix(embedding_weight[ids])
        with torch.no_grad():
            tgt_cos = cosine_matrix(target.to(embedding_weight.device))
        terms.append(F.mse_loss(emb_cos, tgt_cos))
    if not terms:
        return embedding_weight.sum() * 0.0
    return torch.stack(terms).mean()


def self_similarity_targets(tokenizer: Any, store: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Token ids and centroids per position of ``store`` for :func:`self_similarity_loss`.

    Code c of a position whose modality reserves r codes is centroid row c − r; reserved codes are left
    out. Positions the store has no centroids for (a disambiguation position, an all-reserved modality)
    are skipped. Returns ({} , {}) for a store without centroids.
    """
    raw = store.centroids()
    ids_by_position, targets = {}, {}
    table = tokenizer.get_vocab()
    for p, position in enumerate(store.vocab.positions):
        if position.label not in raw:
            continue
        reserved = store.vocab.spec(position.modality).reserved
        tokens = store.vocab.position_tokens(p)[reserved:]
        cent = torch.as_tensor(raw[position.label], dtype=torch.float32)
        if cent.shape[0] != len(tokens):
            raise ValueError(f"centroids[{position.label!r}] has {cent.shape[0]} rows but the position has "
                             f"{len(tokens)} learned codes ({reserved} reserved)")
        missing = [t for t in tokens if t not in table]
        if missing:
            raise KeyError(f"tokenizer lacks music token {missing[0]!r}; expand the vocabulary first")
        ids_by_position[position.label] = torch.tensor([table[t] for t in tokens], dtype=torch.long)
        targets[position.label] = cent
    return ids_by_position, targets
