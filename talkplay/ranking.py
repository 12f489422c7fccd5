"""Scoring catalog tracks' music-token spans under the model: the ranking and the shortlist scoring.

:class:`Ranking` is a mixin of :class:`talkplay.recommender.Recommender` (it uses the engine's model, store and
forward pass). Spans are scored exactly, by log-likelihood, without feeding each one alone: candidates are packed
as a prefix tree in one sequence with a block mask (:meth:`Ranking._packed`), optionally in the same pass as the
prompt (:meth:`Ranking._lead_and_tree`); large catalogs use a constrained beam over the trie instead.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from talkplay.conversation import ConversationState

RELATIVE_PENALTY = 1e4  # ranking: a track that does not move the asked way ("slower") comes after every one that does


@dataclass(frozen=True)
class Ranked:
    """One ranked track and its score under the ranking objective (``Ranking.rank``; with every weight but the
    model's at 0 and w_m = 1, the summed log-probability of its music tokens given the conversation)."""

    track_id: str
    logprob: float


class Ranking:
    """Span scoring for the engine (mixin: needs ``model``, ``store``, ``ids``, ``trie``, ``forward``, ``_step``,
    ``_prompt``, ``generation``, ``prior``, ``text_match``, ``_relative``, ``first_stage``, ``referenced_ids``,
    ``exhaustive_limit``, ``rank_batch``)."""

    def _lead_and_tree(self, lead: list[int], cache: Any, ids: torch.Tensor, before: bool | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None] | tuple[torch.Tensor, torch.Tensor | None,
                                                                           torch.Tensor | None]:
        """Feed ``lead`` after ``cache`` and, in the same forward pass, the items ``ids`` (n, L) packed as a prefix
        tree after it (as :meth:`_packed`). Returns fp32 log-probs after ``lead`` (V,) and after each item's tokens
        but the last ((n, L − 1, V), None when L is 1); ``cache`` is left holding ``lead`` only. With ``before`` given
        (a third element is returned) and true,
        also (the log-probs after ``lead[:-1]`` (V,), the hidden state there when the engine has a decision head)
        — None when ``lead`` has one token — the engine's "music or words" decision, read from the same pass."""
        past, n_lead = cache.get_seq_length(), len(lead)
        if n_lead == 0:
            raise ValueError("at least the prompt's last token must be fed")
        tokens, depth, where, own = self._tree(ids[:, :-1].tolist())
        m = len(tokens)
        mask = torch.zeros(n_lead + m, past + n_lead + m, dtype=torch.bool)
        mask[:, :past] = True
        mask[:n_lead, past:past + n_lead] = torch.ones(n_lead, n_lead, dtype=torch.bool).tril()
        mask[n_lead:, past:past + n_lead] = True
        mask[n_lead:, past + n_lead:] = own
        positions = torch.cat([torch.arange(n_lead), n_lead + torch.tensor(depth, dtype=torch.long)]) + past
        extra = 1 if before and n_lead > 1 else 0
        kw = dict(attention_mask=mask[None, None].to(self.device), position_ids=positions[None].to(self.device))
        hidden = None
        if extra and getattr(self, "decision", None) is not None:  # the decision head reads the header's state
            logits, hidden = self.forward_hidden(torch.tensor([lead + tokens]), cache, m + 2, n_lead - 2, **kw)
        else:
            logits = self.forward(torch.tensor([lead + tokens]), cache, logits_to_keep=m + 1 + extra, **kw)
        if m:
            cache.crop(-m)
        lp = torch.log_softmax(logits[0, extra:].float(), dim=-1)
        out = lp[0].cpu(), (lp[1:][where.to(lp.device)] if m else None)
        if before is None:
            return out
        return (*out, (torch.log_softmax(logits[0, 0].float(), dim=-1).cpu(), hidden) if extra else None)

    @staticmethod
    def _tree(rows: list[list[int]]) -> tuple[list[int], list[int], torch.Tensor, torch.Tensor]:
        """Items' token lists packed as a prefix tree (items sharing their first tokens share those nodes):
        (node tokens, node depths, (item, depth) → node, (m, m) mask where each node sees itself and its ancestors).
        """
        width = len(rows[0]) if rows else 0
        node_of: dict[tuple[int, ...], int] = {}
        tokens, depth, parent = [], [], []
        where = torch.empty(len(rows), width, dtype=torch.long)
        for item, row in enumerate(rows):
            for d in range(width):
                key = tuple(row[:d + 1])
                if key not in node_of:
                    node_of[key] = len(tokens)
                    tokens.append(row[d])
                    depth.append(d)
                    parent.append(node_of[key[:-1]] if d else -1)
                where[item, d] = node_of[key]
        own = torch.eye(len(tokens), dtype=torch.bool)
        for j, up in enumerate(parent):  # ancestors come first, so their rows are complete
            if up >= 0:
                own[j] |= own[up]
        return tokens, depth, where, own

    def _code_ids(self, rows: np.ndarray) -> torch.Tensor:
        """(len(rows), n_positions) token ids of the store rows' music tokens."""
        codes = self.store.codes[rows]
        cols = [self.ids.position_ids[p][codes[:, p]] for p in range(self.ids.n_positions)]
        return torch.as_tensor(np.stack(cols, axis=1), dtype=torch.long)

    @torch.no_grad()
    def _continuation_logits(self, cache: Any, prefixes: torch.Tensor) -> torch.Tensor:
        """fp32 log-softmax after each token of ``prefixes`` (B, L) fed after the prompt cache: (B, L, V)."""
        c = copy.deepcopy(cache)
        c.batch_repeat_interleave(prefixes.shape[0])
        return torch.log_softmax(self.forward(prefixes, c).float(), dim=-1)

    @torch.no_grad()
    def rank(self, state: ConversationState, user_text: str, k: int = 10, method: str = "auto",
             beam: int | None = None, prior_weight: float | None = None,
             text_weight: float | None = None, generation: Any = None, shortlist: int | None = None) -> list[Ranked]:
        """Top-``k`` allowed tracks (not played, not rejected) for ``user_text`` by the engine's ranking objective:
        w_m · (the log-likelihood of their music tokens − β · prior) + the first stage (λ · text match + w_c ·
        the conversation's words + w_h · closeness to the tracks kept + w_p · popularity: ``first_stage``), or,
        for a request relative to the track playing ("slower"), w_m · (log-likelihood − β · prior) + λ ·
        closeness, tracks that move the
        asked way first — what playing a track maximizes. Weights: ``generation`` (default the engine's
        GenerationConfig; its ``first_request`` weights on a first request), with ``prior_weight``/``text_weight``
        overriding β/λ.

        Args:
            method: "exhaustive" (the model scores every allowed track, batched, prompt cache shared),
                "shortlist" (the model scores the ``shortlist`` (default: the engine's) tracks the first stage ranks highest —
                as playing a track does with the engine's own shortlist — the rest follow in first-stage order;
                every track when there is no first stage), "beam" (constrained beam search over the trie, width
                ``beam`` or max(k, 16), the likelihood alone), or "auto" (exhaustive up to ``exhaustive_limit``
                allowed tracks, else beam).
        """
        from dataclasses import replace

        from transformers import DynamicCache

        # a first request's own weights (GenerationConfig.for_state); β and λ given here override them too
        config = (generation if generation is not None else self.generation).for_state(state)
        if prior_weight is not None or text_weight is not None:
            config = replace(config, prior_weight=config.prior_weight if prior_weight is None else prior_weight,
                             text_weight=config.text_weight if text_weight is None else text_weight)
        excluded = state.exclude(self.referenced_ids(user_text))  # "something like X" ranks the others
        rows = self.trie.rows([], excluded)
        if len(rows) == 0:
            return []
        cache = DynamicCache()
        first = torch.log_softmax(self._step(self._prompt(state, user_text), cache), dim=-1).cpu()
        if method == "auto":
            method = "exhaustive" if len(rows) <= self.exhaustive_limit else "beam"
        if method in ("exhaustive", "shortlist"):
            relative = self._relative(state, user_text, rows) if config.text_weight else None
            if relative is not None:  # as respond plays it: tracks moving the asked way first, closest first
                moving, closeness = relative
                stage = config.text_weight * closeness[rows] - RELATIVE_PENALTY * ~np.isin(rows, moving)
            else:
                full = self.first_stage(state, user_text, config)
                stage = full[rows] if full is not None else None
            beta = config.prior_weight
            model = np.full(len(rows), 0.0)
            scored = np.arange(len(rows))
            if method == "shortlist" and stage is not None:
                scored = np.lexsort((rows, -stage))[: shortlist or self.shortlist]
            model[scored] = self._exhaustive(cache, first, rows[scored])
            if beta:
                model[scored] -= beta * self.prior().row_scores[rows[scored]]
            scores = config.model_weight * model + (stage if stage is not None else 0.0)
            if len(scored) < len(rows):  # not scored by the model: after every scored track, in first-stage order
                rest = np.ones(len(rows), bool)
                rest[scored] = False
                scores[rest] = stage[rest] - RELATIVE_PENALTY * 10
        elif method == "beam":
            scores = self._beam(cache, first, excluded, beam or max(k, 16))
            rows = np.asarray([r for r, _ in scores], dtype=np.int64)
            scores = np.asarray([s for _, s in scores])
        else:
            raise ValueError(f"rank method {method!r}: expected 'auto', 'exhaustive', 'shortlist' or 'beam'")
        order = np.lexsort((rows, -scores))[:k]  # best first; ties by store row
        return [Ranked(self.store.track_ids[int(rows[i])], float(scores[i])) for i in order]

    def _packed(self, cache: Any, ids: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Log-softmax after each of items' music tokens (all but the last), fed after the cached prompt:
        yields (first item index, (n, width, V) fp32 log-probs) per chunk of ``rank_batch`` items.

        A chunk's items are packed into one sequence as a prefix tree: items sharing their first tokens share
        those positions (16 shortlisted tracks' 160 tokens are ~125 distinct prefixes), and a block mask lets
        each position see the prompt and its own ancestors only, with position ids by depth. The prompt's KV
        cache is shared as is — never copied per item — and cropped back afterwards. The log-probs are exactly
        those of feeding each item alone.
        """
        past = cache.get_seq_length()
        for i in range(0, ids.shape[0], self.rank_batch):
            tokens, depth, where, own = self._tree(ids[i:i + self.rank_batch, :-1].tolist())
            m = len(tokens)
            mask = torch.cat([torch.ones(m, past, dtype=torch.bool), own], dim=1)[None, None]
            logits = self.forward(torch.tensor([tokens]), cache, attention_mask=mask.to(self.device),
                                  position_ids=(past + torch.tensor(depth))[None].to(self.device))
            cache.crop(-m)
            lp = torch.log_softmax(logits[0].float(), dim=-1)
            yield i, lp[where.to(lp.device)]

    @torch.no_grad()
    def _exhaustive(self, cache: Any, first: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        """Summed log-probabilities of every row's music tokens after the cached prompt."""
        ids = self._code_ids(rows)
        out = first[ids[:, 0]].double().numpy()
        if ids.shape[1] == 1:
            return out
        for i, lp in self._packed(cache, ids):
            chunk = ids[i:i + lp.shape[0]]
            out[i:i + lp.shape[0]] += lp.gather(2, chunk[:, 1:, None].to(lp.device))[..., 0].sum(dim=1).double().cpu().numpy()
        return out

    def _beam(self, cache: Any, first: torch.Tensor, excluded, width: int) -> list[tuple[int, float]]:
        """Constrained beam search: keep the ``width`` best prefixes per depth among trie continuations."""
        beams: list[tuple[list[int], float]] = [([], 0.0)]
        for depth in range(self.ids.n_positions):
            if depth == 0:
                step = first[None]
            else:
                prefixes = torch.as_tensor([[int(self.ids.position_ids[p][c]) for p, c in enumerate(codes)]
                                            for codes, _ in beams], dtype=torch.long)
                step = torch.cat([self._continuation_logits(cache, prefixes[i:i + self.rank_batch])[:, -1].cpu()
                                  for i in range(0, len(beams), self.rank_batch)])
            cands = []
            for b, (codes, score) in enumerate(beams):
                allowed = self.trie.allowed(codes, excluded)
                lps = step[b, torch.as_tensor(self.ids.position_ids[depth][allowed])].tolist()
                cands += [(codes + [int(c)], score + lp) for c, lp in zip(allowed, lps)]
            cands.sort(key=lambda x: -x[1])
            beams = cands[:width]
        out = []
        for codes, score in beams:
            for track_id in self.store.tracks_with(codes):
                if track_id not in excluded:
                    out.append((self.store.row(track_id), score))
        return out
