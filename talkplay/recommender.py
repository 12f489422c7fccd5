"""The inference engine: one user turn in, a real catalog track and a grounded, streamed reply out.

For each message (TalkPlay §4.4: music first, then words)::

    prompt = render_prompt(history + user text)          # ends with <start_of_music>
    music or words ← P(music) from the model's last hidden state right after the assistant header (a logistic
                  head, :mod:`talkplay.decision`; the LM's own P(<start_of_music>) when the checkpoint has none),
                  read from the same forward pass: below the threshold the turn is answered in words only (a
                  greeting, thanks, a question about the playing track) — no span, no new track
    music span  ← sampled token by token under a span rule (constrained: CatalogTrie minus played and
                  rejected tracks; paper: any code per position, matched afterwards)
    track       ← resolve (constrained) | exact → weighted partial match (paper) | constrained retry
    grounding   ← "[Now playing: “Title” by Artist]" ids appended, exactly as the renderer lays them out
    reply       ← sampled with music/control tokens banned, streamed as TextDelta events

One KV cache carries the prompt, the span, the grounding span and the reply, so nothing is recomputed.
:meth:`Recommender.rank` scores the allowed tracks by the same objective that chooses the played one — the
log-likelihood of a track's music tokens after the same prompt (batched, reusing the prompt's cache) plus the
first stage's terms (:meth:`Recommender.first_stage`: the request's and the conversation's words, closeness to
the kept tracks, popularity) — or by a constrained beam search over the trie when the catalog is large; the
evaluation and "show me alternatives" use it.

Generation is a hand-written sampling loop rather than ``model.generate`` because the grounding span is
inserted mid-generation and events are streamed between steps; the rules themselves are the
``LogitsProcessor`` classes of :mod:`talkplay.constraints`, so they also work inside ``generate``.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from talkplay.catalog import Catalog, load_catalog
from talkplay.constraints import BanTokens, MusicSpanConstraint, SpanFormat
from talkplay.trie import CatalogTrie, ExcludeTracks, NoAllowedTrack, TokenIdMap, resolve
from talkplay.conversation import ConversationState, Done, Event, Talk, TrackChosen, Turn
from talkplay.kvcache import PrefixCache
from talkplay.matching import PAPER_WEIGHTS, match
from talkplay.prior import NEUTRAL_REQUEST, Compose, PriorCorrection, TriePrior
from talkplay.ranking import Ranking
from talkplay.reply import ReplyRow
from talkplay.textmatch import TextEmbedderFn, TextMatch, load_text_embedder
from talkplay.render import RenderConfig, end_of_turn_ids, render_prompt
from talkplay.token_store import TokenStore
from talkplay.tokens import DISAMBIGUATION

log = logging.getLogger(__name__)

MUSIC_TEMPERATURE = 0.0  # default music-span temperature (greedy): valid-split played fit 0.55 / 0.54 / 0.53 / 0.55 / 0.67 at 1.0 / 0.7 / 0.5 / 0.3 / 0
SHORTLIST = 8  # candidates the first stage (words, context, history) proposes and the model scores: valid greedy
# played fit 0.688 / 0.700 / 0.700 at 16 / 8 / 4 (80 first requests, `python -m train.evaluation.fit_check
# --tune-shortlist 16 8 4`), 0.42 / 0.26 / 0.25 s a request; validation MRR the same from 8 to 64
# The ranking objective, w_m · (log-lik − β · prior) + λ · text match + w_c · context + w_h · history + w_p ·
# popularity, chosen on the validation split's conversations (`python -m train.evaluation.blend`; reports/blend_demo.md). Until then the
# objective was log-lik − 1.0 · prior + 2.0 · text match, chosen for the first requests' tag fit alone
# (reports/text_match_tuning.md): it ranked the played track of later turns below BM25.
MODEL_WEIGHT = 0.5  # w_m
TEXT_WEIGHT = 1.0  # λ: the request's own words (talkplay.textmatch)
CONTEXT_WEIGHT = 1.0  # w_c: the whole conversation's words (talkplay.listening.context_scores)
HISTORY_WEIGHT = 4.0  # w_h: closeness to the tracks kept so far (talkplay.listening.Listening.history)
POPULARITY_WEIGHT = 1.0  # w_p: how often the training playlists hold the track (talkplay.listening)
NAMED_HISTORY_SHARE = 0.5  # the history term's share when a later request names a genre, instrument or scene
PRIOR_WEIGHT = 0.5  # β: the share of the neutral request's log-probs taken out (talkplay.prior)
# A conversation's first request (nothing played yet) has no kept tracks and no earlier words to go on, so it may
# have its own weights (GenerationConfig.first_request); `python -m train.evaluation.blend` searches them on the
# validation split's first requests (reports/blend_demo.md). None: the shipped engine weighs a first request like
# any other. The validation conversations hold no held-out phrasings and no cold-start tracks, which the test split
# and real listeners do. For the shipped checkpoint the blend's picks (first requests 0.05, 0.5, 1, 1; later turns
# w_m 0.5, β 0, λ 0.5) raised validation MRR 0.319 → 0.337, but one check on the test split lowered its MRR
# 0.304 → 0.299, first turns 0.132 → 0.125, cold-start targets 0.176 → 0.149: the weights above, which held on
# both, stay
FIRST_REQUEST: tuple[tuple[str, float], ...] | None = None
FIRST_REQUEST_KEYS = ("model_weight", "prior_weight", "text_weight", "popularity_weight")
# threshold on the LM's own P(<start_of_music>) after the assistant header when the checkpoint has no decision head
# (talkplay.decision; a head carries its own threshold, chosen on the validation split): an untuned even split
MUSIC_THRESHOLD = 0.5
PREFIX_CACHE_MB = 512  # KV caches kept for conversations' next turns (~46 kB a token in fp32: ~11k tokens)


_ENGINES: "weakref.WeakValueDictionary[int, Recommender]" = weakref.WeakValueDictionary()
_ENGINE_KEYS = itertools.count()


def _turn_events(engine_key: int, state: ConversationState, user_text: str, config: "GenerationConfig",
                 extra: tuple[str, ...]) -> Iterator[Event]:
    """The events of one turn of engine ``engine_key`` (see :meth:`Recommender.respond`).

    A module-level function taking plain, picklable values because on ZeroGPU ``spaces.GPU`` runs it in a GPU
    worker — a fork of this process — and pickles its arguments and every event it yields across: the engine
    is found in ``_ENGINES`` (inherited by the fork, never pickled), and ``state`` is a copy there, so the
    caller, not this function, records the turn.
    """
    yield from _ENGINES[engine_key]._respond(state, user_text, config, extra)


def _on_gpu(fn):
    """``spaces.GPU(fn)`` on ZeroGPU hardware (a GPU is attached for each call); ``fn`` itself elsewhere."""
    from talkplay.space import zero_gpu

    if not zero_gpu():
        return fn
    import spaces

    return spaces.GPU(duration=60)(fn)  # a turn takes a few seconds; 60 s is the platform's default quota unit


_turn_events_on_device = _on_gpu(_turn_events)


@dataclass(frozen=True)
class GenerationConfig:
    """How a turn is generated. The reply follows the paper: sampling at temperature 1.0, top-p 0.9.

    The music span has its own temperature (``music_temperature``; greedy by default: on the validation split a
    greedy span played fitting tracks far more often than any sampled one, and the conversation's exclusions still
    make every track new). The track is chosen by the ranking objective w_m · (log-lik − β · prior) + λ · text match
    + w_c · conversation words + w_h · closeness to the kept tracks + w_p · popularity (``model_weight``,
    ``prior_weight``, ``text_weight``, ``context_weight``, ``history_weight``, ``popularity_weight``;
    :meth:`Recommender.first_stage`,
    :mod:`talkplay.listening`), weights chosen on the validation conversations with
    ``python -m train.evaluation.blend``; a conversation's first request, with nothing played yet, may be ranked
    with its own w_m, β, λ and w_p (``first_request``; off as shipped, see FIRST_REQUEST). ``temperature=0`` makes
    the whole turn greedy.
    """

    mode: Literal["constrained", "paper"] = "constrained"
    temperature: float = 1.0  # reply sampling temperature; 0 = greedy (span included)
    music_temperature: float | None = MUSIC_TEMPERATURE  # music-span temperature; None = ``temperature``
    prior_weight: float = PRIOR_WEIGHT  # β: subtract β × the neutral request's log-probs (talkplay.prior); 0 = off
    text_weight: float = TEXT_WEIGHT  # λ: add λ × the request's text match to the span (talkplay.textmatch); 0 = off
    model_weight: float = MODEL_WEIGHT  # w_m: the model's log-likelihood of a track's music tokens
    context_weight: float = CONTEXT_WEIGHT  # w_c: the conversation's words (talkplay.listening); 0 = off
    history_weight: float = HISTORY_WEIGHT  # w_h: closeness to the tracks kept (talkplay.listening); 0 = off
    popularity_weight: float = POPULARITY_WEIGHT  # w_p: how often training playlists hold a track; 0 = off
    # the weights above that a conversation's first request (nothing played yet) is ranked with instead
    # (FIRST_REQUEST_KEYS; :meth:`for_state`; a mapping given is kept as sorted pairs, so the config stays
    # hashable); None: a first request is weighed like any other. "auto" (:meth:`first_weights`): FIRST_REQUEST
    # (None as shipped) while w_m, β, λ and w_p are the engine's defaults; weights set otherwise weigh every turn
    first_request: Mapping[str, float] | tuple[tuple[str, float], ...] | Literal["auto"] | None = "auto"
    top_p: float = 0.9
    max_reply_tokens: int = 96
    seed: int | None = None  # None: fresh randomness per turn; an int makes every turn reproducible
    faithful: bool = True  # the reply opens with the track's name and never starts an attribute word its card lacks
    modality_weights: Mapping[str, float] | None = None  # paper mode; None → PAPER_WEIGHTS (25/16/9/4/1)
    hierarchical: bool = True  # paper mode: 3MToken's level-by-level matching of residual codes
    # the model may answer a message in words only (no new track); None: when the checkpoint was trained with such
    # turns (Recommender.talks); False: every turn plays a track
    talk: bool | None = None
    talk_reply: Literal["card", "model"] = "card"  # words-only answers: composed from the card (talkplay.answers)
    # or written by the model
    music_threshold: float | None = None  # P(music) below which the turn is words only; None: the decision head's
    # own threshold (MUSIC_THRESHOLD for the LM's P(<start_of_music>) when there is no head)

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "music_temperature", "prior_weight", "text_weight", "music_threshold",
                     "model_weight", "context_weight", "history_weight", "popularity_weight"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"GenerationConfig.{name}={value}: must be a finite number")
        if self.music_temperature is not None and self.music_temperature < 0:
            raise ValueError(f"GenerationConfig.music_temperature {self.music_temperature} must be ≥ 0")
        if min(self.prior_weight, self.text_weight, self.context_weight, self.history_weight,
               self.popularity_weight) < 0 or \
                self.model_weight <= 0:
            raise ValueError(f"GenerationConfig: prior_weight {self.prior_weight}, text_weight {self.text_weight}, "
                             f"context_weight {self.context_weight}, history_weight {self.history_weight} and "
                             f"popularity_weight {self.popularity_weight} must be ≥ 0, model_weight "
                             f"{self.model_weight} > 0")
        if isinstance(self.first_request, str):
            if self.first_request != "auto":
                raise ValueError(f"GenerationConfig.first_request {self.first_request!r}: expected weights, None or "
                                 "'auto'")
        elif self.first_request is not None:
            pairs = self.first_request.items() if isinstance(self.first_request, Mapping) else self.first_request
            object.__setattr__(self, "first_request", tuple(sorted((str(k), float(v)) for k, v in pairs)) or None)
        first = self.first_weights()
        if first is not None:
            unknown = sorted({k for k, _ in first} - set(FIRST_REQUEST_KEYS))
            if unknown:
                raise ValueError(f"GenerationConfig.first_request: unknown weight(s) {', '.join(unknown)}; expected "
                                 f"some of {', '.join(FIRST_REQUEST_KEYS)}")
            try:  # the same checks on the first request's weights
                replace(self, **dict(first), first_request=None)
            except ValueError as e:
                raise ValueError(f"GenerationConfig.first_request: {e}") from None
        if self.talk_reply not in ("card", "model"):
            raise ValueError(f"GenerationConfig.talk_reply {self.talk_reply!r}: expected 'card' or 'model'")
        if self.mode not in ("constrained", "paper"):
            raise ValueError(f"GenerationConfig.mode {self.mode!r}: expected 'constrained' or 'paper'")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"GenerationConfig: temperature {self.temperature} must be ≥ 0, top_p {self.top_p} in (0, 1]")
        if self.music_threshold is not None and not 0 <= self.music_threshold <= 1:
            raise ValueError(f"GenerationConfig.music_threshold {self.music_threshold} must be in [0, 1]")
        if self.max_reply_tokens < 1:
            raise ValueError("GenerationConfig.max_reply_tokens must be ≥ 1")


    def first_weights(self) -> tuple[tuple[str, float], ...] | None:
        """The weights a first request is ranked with over these, None for none: ``first_request`` resolved —
        "auto" reads FIRST_REQUEST now (not when the config was made), unless w_m, β, λ or w_p differ from the
        engine's defaults (a weight set to its default value counts as not set)."""
        if self.first_request != "auto":
            return self.first_request
        if FIRST_REQUEST is None or any(getattr(self, k) != getattr(GenerationConfig, k) for k in FIRST_REQUEST_KEYS):
            return None
        return tuple(sorted(FIRST_REQUEST))

    def for_state(self, state: ConversationState) -> "GenerationConfig":
        """The config a turn of ``state`` is ranked with: :meth:`first_weights` over these on a conversation's first
        request (nothing played yet — a words-only answer does not count, a turned-down track does), else this
        config. The first request's config has ``first_request=None``: applying it twice is applying it once."""
        if state.played:
            return self
        first = self.first_weights()
        return self if first is None else replace(self, **dict(first), first_request=None)


class Recommender(Ranking):
    """Base model + checkpoint + catalog bundle, ready to answer turns.

    Args:
        model, tokenizer: a vocabulary-expanded causal LM (e.g. from :func:`talkplay.checkpoint.load_checkpoint`).
        catalog: the tracks that may be recommended (every store track must be in it).
        store: the token store the model's music tokens belong to.
    """

    def __init__(self, model: Any, tokenizer: Any, catalog: Catalog, store: TokenStore,
                 generation: GenerationConfig = GenerationConfig(), render: RenderConfig = RenderConfig(),
                 exhaustive_limit: int = 4096, rank_batch: int = 32,
                 text_embedder: Callable[[], TextEmbedderFn | None] | None = None, shortlist: int = SHORTLIST,
                 prefix_cache_mb: float = PREFIX_CACHE_MB, talks: bool = False, decision: Any = None,
                 listening: Any = None):
        missing = [t for t in store.track_ids if t not in catalog]
        if missing:
            raise ValueError(f"token store {store.variant!r} has {len(missing)} tracks missing from catalog "
                             f"{catalog.root} (e.g. {missing[0]!r})")
        self.model, self.tokenizer, self.catalog, self.store = model.eval(), tokenizer, catalog, store
        # transformers ≥ 5.23 names the KV cache argument `cache` (`past_key_values` is deprecated, removed in 5.40);
        # older 5.x releases (a GPU machine's preinstalled one) know only `past_key_values`
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params or "past_key_values" not in params else "past_key_values"
        context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if isinstance(context, int) and render.max_tokens > context:  # the budget never exceeds the model's context
            render = replace(render, max_tokens=context, reply_reserve=min(render.reply_reserve, context // 2))
        self.generation, self.render = generation, render
        self.exhaustive_limit, self.rank_batch = exhaustive_limit, rank_batch
        self.ids = TokenIdMap.build(tokenizer, store.vocab)
        self.trie = CatalogTrie(store)
        self.stop_ids = set(end_of_turn_ids(tokenizer))
        head = model.get_output_embeddings()  # an int8 (dynamically quantized) head has weight() as a method
        rows = (head.weight() if callable(head.weight) else head.weight).shape[0]
        special = set(tokenizer.all_special_ids) | {i for i, a in tokenizer.added_tokens_decoder.items() if a.special}
        banned = (special | set(self.ids.music_ids().tolist()) | {self.ids.start_id} | set(range(len(tokenizer), rows)))
        self.reply_rule = BanTokens(banned - self.stop_ids)
        self.device = next(model.parameters()).device
        names = [m.name for m in store.vocab.modalities if m.name != DISAMBIGUATION]
        self.all_modalities = tuple(names)
        self._prior: TriePrior | None = None
        self._prior_lock = threading.Lock()  # concurrent first turns build the prior once
        self.shortlist = shortlist
        self.talks = talks  # the model learned turns answered in words only (GenerationConfig.talk=None follows it)
        self.decision = decision  # talkplay.decision.MusicDecision over the header's hidden state (None: LM's P)
        self.listening = listening  # talkplay.listening.Listening in store row order (None: no history term)
        if listening is not None and len(listening.vectors) != len(store):
            raise ValueError(f"listening vectors for {len(listening.vectors)} tracks, the store has {len(store)}")
        if decision is not None and not hasattr(model, "get_decoder"):
            raise ValueError("a decision head needs the model's hidden states (model.get_decoder())")
        self._text_embedder = text_embedder  # loads a sentence embedder for the text match (None: BM25 only)
        self._text_match: TextMatch | None = None
        self._text_lock = threading.Lock()
        self._attribute_ban: Any = None
        self._content_words: dict[int, bool] = {}  # token id → starts a content word (content_word)
        self._attributes: dict[str, Any] | None = None
        self.prefix = PrefixCache(int(prefix_cache_mb * 2**20))  # each conversation's last turn, reused by its next
        self.scheduler: Any = None  # a running talkplay.scheduler.Scheduler batches concurrent turns (serve())
        self._key = next(_ENGINE_KEYS)
        _ENGINES[self._key] = self

    @classmethod
    def load(cls, bundle: str | Path, model_config: Any = None, generation: GenerationConfig = GenerationConfig(),
             render: RenderConfig = RenderConfig(), **kwargs) -> "Recommender":
        """Load a bundle's catalog, default token store and packaged checkpoint (``<bundle>/model``); words-only
        answers are on when the checkpoint was trained with such turns (its manifest's ``talk_fraction``)."""
        from talkplay.checkpoint import load_checkpoint
        from talkplay.token_store import load_default_store

        catalog = load_catalog(bundle)
        store = load_default_store(bundle, catalog)
        from talkplay.checkpoint import checkpoint_dir
        from talkplay.decision import load_decision

        model, tokenizer, info = load_checkpoint(bundle, model_config, store=store)
        kwargs.setdefault("text_embedder", load_text_embedder)
        kwargs.setdefault("decision", load_decision(checkpoint_dir(bundle)))
        if "listening" not in kwargs:
            from talkplay.listening import LISTENING_FILE, Listening

            from talkplay.listening import code_vectors

            path = checkpoint_dir(bundle) / LISTENING_FILE
            kwargs["listening"] = Listening.load(path, store.track_ids, code_vectors(store)) \
                if path.exists() else None
        # a checkpoint trained without words-only turns has a meaningless P(music): it always plays a track
        kwargs.setdefault("talks", bool(info.training.get("talk_fraction")) and kwargs["decision"] is not None)
        return cls(model, tokenizer, catalog, store, generation, render, **kwargs)

    # ------------------------------------------------------------------------------------ model steps

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, cache: Any, **kwargs) -> torch.Tensor:
        """The model's logits for ``input_ids`` fed after ``cache`` (extended in place); never tracks gradients
        (``no_grad`` is per thread, and the scheduler calls this from its own threads)."""
        kwargs[self._cache_arg] = cache
        return self.model(input_ids=input_ids.to(self.device), use_cache=True, **kwargs).logits

    @torch.no_grad()
    def forward_hidden(self, input_ids: torch.Tensor, cache: Any, keep: int, at: int, **kwargs
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`forward` with ``logits_to_keep=keep``, plus the last hidden state (H,) of position ``at`` of
        ``input_ids`` (the decision head's input). Runs the decoder and the LM head separately, so it serves models
        whose logits are ``lm_head(last hidden state)`` (Llama, SmolLM2, Qwen2, …)."""
        kwargs[self._cache_arg] = cache
        hidden = self.model.get_decoder()(input_ids=input_ids.to(self.device), use_cache=True, **kwargs).last_hidden_state
        return self.model.get_output_embeddings()(hidden[:, -keep:]), hidden[0, at]

    def _header(self, lead: list[int], cache: Any) -> tuple[tuple[torch.Tensor, torch.Tensor | None], torch.Tensor]:
        """Feed ``lead`` (ending with the header and <start_of_music>); returns ((the header's log-probs, its hidden
        state when there is a decision head), the logits after <start_of_music>)."""
        ids = torch.tensor([lead])
        if self.decision is not None:
            both, hidden = self.forward_hidden(ids, cache, 2, len(lead) - 2)
        else:
            both, hidden = self.forward(ids, cache, logits_to_keep=2), None
        both = both[0].float()
        return (torch.log_softmax(both[0], dim=-1), hidden), both[1]

    def _step(self, ids: list[int], cache: Any) -> torch.Tensor:
        """Feed ``ids`` after ``cache`` (extended in place); fp32 logits of the next token, shape (V,).

        Only the last position goes through the LM head (``logits_to_keep=1``): over a 49k vocabulary the head is
        a fifth of a position's work, wasted on every prefilled position but the last."""
        return self.forward(torch.tensor([ids], dtype=torch.long), cache, logits_to_keep=1)[0, -1].float()

    def _fit_prompt(self, state: ConversationState, user_text: str) -> tuple[list[int], str]:
        """Prompt ids and the request they hold: a request too long for the context budget even without
        history is shortened from the end until it fits (oldest turns are dropped first, by the renderer)."""
        from talkplay.render import BudgetExceeded

        for _ in range(32):
            try:
                return render_prompt(self.tokenizer, state.messages(user_text), self.store, self.catalog,
                                     self.render), user_text
            except BudgetExceeded:
                user_text = user_text[: len(user_text) * 3 // 4]
        raise ValueError("the system prompt alone exceeds the model's context budget")

    def _prompt(self, state: ConversationState, user_text: str) -> list[int]:
        return self._fit_prompt(state, user_text)[0]

    @staticmethod
    def _sample(scores: torch.Tensor, config: GenerationConfig, gen: torch.Generator) -> int:
        """Sample from masked fp32 scores (V,) with temperature and nucleus (top-p) filtering."""
        if config.temperature == 0:
            return int(torch.argmax(scores))
        scores = scores.float().cpu()  # the generator is a CPU one: the same seed samples the same on any device
        probs = torch.softmax(scores / config.temperature, dim=-1)
        if config.top_p < 1.0:
            # The nucleus is a prefix of the probabilities sorted high to low; it almost always lies within the top
            # 256 (a full sort of the 49k-token vocabulary per row per step cost ~10 % of a loaded server's CPU).
            # Exact: when the top 256 hold less than top_p, the full sort is done.
            top = min(256, probs.shape[0])
            sorted_p, order = torch.topk(probs, top)
            if float(sorted_p.sum()) < config.top_p and top < probs.shape[0]:
                sorted_p, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_p, dim=0) - sorted_p < config.top_p  # the first token is always kept
            sorted_p = sorted_p * keep
            choice = torch.multinomial(sorted_p / sorted_p.sum(), 1, generator=gen)
            return int(order[choice])
        return int(torch.multinomial(probs, 1, generator=gen))

    def _span(self, ids: list[int], logits: torch.Tensor, cache: Any, rule: Any, config: GenerationConfig,
              gen: torch.Generator, excluded: ExcludeTracks | None = None) -> tuple[list[int], float]:
        """Sample a music span after ``ids`` (ending with START) until END; returns (code ids, raw log-prob).

        The END token is not fed (nor, under the catalog constraint, a last code that ends the span): the caller
        feeds it together with the grounding span.
        Sampled at ``config.music_temperature`` (``config.temperature`` when None; greedy when that is 0).
        Under the catalog constraint (``excluded`` given), codes that have no alternative (one track left, or
        every track left sharing the next code) are fed with the sampled token in one pass instead of one pass
        each (same span under greedy decoding, same log-prob; on a CPU a pass costs about as much for one token
        as for ten). Seeded sampling draws only at real choices.
        """
        if config.temperature != 0 and config.music_temperature is not None:
            config = replace(config, temperature=config.music_temperature)
        span: list[int] = []
        logprob = 0.0
        for _ in range(self.ids.n_positions + 1):
            scores = rule(torch.tensor([ids + span], device=self.device), logits[None])[0]
            token = self._sample(scores, config, gen)
            if token == self.ids.end_id:
                return span, logprob
            logprob += float(torch.log_softmax(logits, dim=-1)[token])
            span.append(token)
            rest = self._forced(span, excluded) if excluded is not None else []
            if excluded is not None and not rest and len(span) == self.ids.n_positions:
                return span, logprob  # only END can follow; the caller feeds the last code with it
            out = self.forward(torch.tensor([[token] + rest]), cache, logits_to_keep=len(rest) + 1)[0].float()
            if rest:
                lp = torch.log_softmax(out[:-1], dim=-1)
                logprob += float(sum(lp[i, t] for i, t in enumerate(rest)))
                span += rest
            logits = out[-1]
        raise RuntimeError("music span did not end after all positions (span rule misconfigured)")

    def _forced(self, span: list[int], excluded: ExcludeTracks) -> list[int]:
        """The code ids that must follow ``span`` under the catalog constraint: while the next position has a
        single allowed code (one track left, or all tracks left sharing it), that code."""
        prefix = [c for _, c in self.ids.decode(span)]
        rest: list[int] = []
        while len(prefix) < self.ids.n_positions:
            allowed = self.trie.allowed(prefix, excluded)
            if len(allowed) != 1:
                break
            prefix.append(int(allowed[0]))
            rest.append(int(self.ids.position_ids[len(prefix) - 1][prefix[-1]]))
        return rest

    @torch.no_grad()
    def _rerank(self, lead: list[int], cache: Any, rows: np.ndarray, stage: np.ndarray, config: GenerationConfig,
                gen: torch.Generator) -> tuple[list[int], float, int, torch.Tensor | None]:
        """The span of the best of the ``shortlist`` allowed ``rows`` that the first stage (``stage``, per store row,
        already weighted: :meth:`first_stage`, or a relative request's closeness) ranks highest, scored by the
        ranking objective exactly: w_m · (the model's log-likelihood of their music tokens − β · prior) + stage.
        Greedy at music temperature 0, else sampled ∝ exp(score / T).

        ``lead`` (the prompt's tokens not yet in ``cache``) and the candidates are fed in one forward pass
        (:meth:`_lead_and_tree`): on a CPU a forward pass costs about the same for 1 token as for 50 (the weights
        are read once either way), so a turn's start takes as few passes as it can. ``cache`` is returned holding
        the prompt only; the caller feeds the span with the grounding span. Returns (span ids, log-likelihood, row,
        the header's log-probs and hidden state — the "music or words" decision — when the turn may be words only;
        None otherwise or when the lead is one token).
        """
        order = np.lexsort((rows, -stage[rows]))[: self.shortlist]  # best first-stage scores first; ties by row
        cand = rows[order]
        ids = self._code_ids(cand)
        first, tree, header = self._lead_and_tree(lead, cache, ids, before=self.may_talk(config))
        model = first[ids[:, 0]].double().numpy()
        if tree is not None:
            model += tree.gather(2, ids[:, 1:, None].to(tree.device))[..., 0].sum(dim=1).double().cpu().numpy()
        own = model - config.prior_weight * self.prior().row_scores[cand] if config.prior_weight else model
        score = config.model_weight * own + stage[cand]
        temperature = 0.0 if config.temperature == 0 else \
            (config.temperature if config.music_temperature is None else config.music_temperature)
        if temperature == 0:
            i = int(np.argmax(score))
        else:
            p = torch.softmax(torch.as_tensor(score, dtype=torch.float64) / temperature, dim=0)
            i = int(torch.multinomial(p, 1, generator=gen))
        span = [int(t) for t in ids[i]]
        return span, float(model[i]), int(cand[i]), header

    # ------------------------------------------------------------------------------------ respond

    def respond(self, state: ConversationState, user_text: str, *, generation: GenerationConfig | None = None,
                exclude: tuple[str, ...] = ()) -> Iterator[Event]:
        """Answer ``user_text``: yields TrackChosen (or Talk, for an answer in words only), TextDelta…, Done; appends
        the Turn to ``state`` at the end.

        A request too long for the context budget is shortened first (the Turn records what the model read).

        Args:
            exclude: extra track ids not to recommend in this turn (beyond played and rejected ones).
        Raises:
            NoAllowedTrack: the message asks for music but every catalog track has been played or rejected in this
                conversation.
        """
        config = (generation or self.generation).for_state(state)  # a first request's own weights
        scheduler = self.scheduler
        if scheduler is not None and scheduler.running:
            events = scheduler.submit(state, user_text, config, tuple(exclude))
        else:
            events = _turn_events_on_device(self._key, state, user_text, config, tuple(exclude))
        try:
            for event in events:
                if isinstance(event, Done):
                    state.turns.append(event.turn)
                yield event
        finally:
            events.close()  # a listener gone mid-turn (generator closed): its row leaves the batch at once

    def serve(self, max_batch: int = 16, start_thread: bool | None = None) -> Any:
        """Start batching concurrent turns (:class:`talkplay.scheduler.Scheduler`: its threads own the model);
        :meth:`respond` then goes through it. Not on ZeroGPU, where each turn gets the GPU for one call."""
        from talkplay.scheduler import Scheduler
        from talkplay.space import zero_gpu

        if zero_gpu():
            return None
        if self.scheduler is None or not self.scheduler.running:
            self.scheduler = Scheduler(self, max_batch=max_batch, start_thread=start_thread)
        return self.scheduler

    def choose(self, state: ConversationState, user_text: str, *, generation: GenerationConfig | None = None,
               exclude: tuple[str, ...] = ()) -> TrackChosen:
        """Only the music span: the track ``respond`` would play if the message asked for one, without the reply;
        ``state`` is unchanged."""
        config = replace((generation or self.generation).for_state(state), talk=False)
        return self._choose(state, user_text, config, tuple(exclude), self._generator(config), time.perf_counter())[0]

    @staticmethod
    def _generator(config: GenerationConfig) -> torch.Generator:
        seed = config.seed if config.seed is not None else int(torch.randint(0, 2**31 - 1, (1,)))
        return torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def music_probability(self, state: ConversationState, user_text: str) -> float:
        """P(music) right after the assistant header for ``user_text`` (:meth:`_p_music`): how sure the model is that
        the message asks for music (a turn is words only below :meth:`threshold`)."""
        from transformers import DynamicCache

        header, _ = self._header(self._prompt(state, user_text), DynamicCache())
        return self._p_music(header)

    def may_talk(self, config: GenerationConfig) -> bool:
        """Whether a turn under ``config`` may be answered in words only."""
        return self.talks if config.talk is None else config.talk

    def _p_music(self, header: tuple[torch.Tensor, torch.Tensor | None]) -> float:
        """P(music) at the assistant header: the decision head's on the hidden state, else the LM's P(<start_of_music>)."""
        logprobs, hidden = header
        if self.decision is not None and hidden is not None:
            return self.decision.p_music(hidden)
        return math.exp(float(logprobs[self.ids.start_id]))

    def threshold(self, config: GenerationConfig) -> float:
        """The P(music) below which a turn under ``config`` is words only."""
        if config.music_threshold is not None:
            return config.music_threshold
        return self.decision.threshold if self.decision is not None else MUSIC_THRESHOLD

    def _asks_for_a_title(self, user_text: str) -> bool:
        """"play Battle Theme": a message that asks to play a catalog track by its title is a request, whatever the
        decision head reads (a rare phrasing among its synthetic requests; titles are this catalog's own)."""
        from talkplay.intent import words

        match = self.text_match()
        return match.intent is not None and bool({"play", "hear", "queue"}.intersection(words(user_text))) and \
            bool(match.intent.titled(user_text).any())

    def _talks(self, header: tuple[torch.Tensor, torch.Tensor | None] | None, config: GenerationConfig) -> float | None:
        """P(music) after the assistant header when it is below the threshold (answer in words only); None when the
        turn plays music (or the decision cannot be read: the prompt's last pass fed one token)."""
        if not self.may_talk(config) or header is None:
            return None
        p = self._p_music(header)
        return p if p < self.threshold(config) else None

    def _choose(self, state, user_text, config, extra, gen, t0
                ) -> tuple[TrackChosen | Talk, list[int], list[int], Any, str, torch.Tensor | None]:
        """Prompt → music or words → music span → track. Returns (event, prompt ids, span ids, KV cache, the
        request as the model read it, the first reply token's log-probs when the turn is words only).

        The cache holds the prompt and all or none of the span (a shortlisted span is not fed: the caller feeds it
        with what follows, in one pass); for a words-only turn (:class:`Talk`) the prompt without its
        ``<start_of_music>``, and the span is empty. The prompt's prefix that the conversation's last turn computed
        is reused from :attr:`prefix` (only the rest is prefilled)."""
        config = config.for_state(state)  # idempotent: respond and choose have applied it already
        excluded = state.exclude((*extra, *self.referenced_ids(user_text)))  # "like X" asks for others than X
        allowed = self.trie.rows([], excluded)  # computed once per turn: the relative and shortlist paths share it
        prompt, user_text = self._fit_prompt(state, user_text)
        cache, reused = self.prefix.take(state.key, prompt)

        def talk(header: torch.Tensor | None):
            p = self._talks(header, config)
            if p is None or self._asks_for_a_title(user_text):
                return None
            cache.crop(-1)  # the prompt's <start_of_music>: the reply follows the assistant header
            return Talk(p, time.perf_counter() - t0), prompt[:-1], [], cache, user_text, header[0]

        if len(allowed) == 0:  # every track heard: "thanks" still gets its words; a request cannot be answered
            lead = prompt[reused:]
            if self.may_talk(config) and len(lead) > 1:
                words = talk(self._header(lead, cache)[0])
                if words is not None:
                    return words
            raise NoAllowedTrack(f"all {len(self.store)} tracks were played or rejected in this conversation")

        constrained = MusicSpanConstraint(self.ids, self.trie, excluded)
        moving = self._relative(state, user_text, allowed) \
            if config.mode == "constrained" and config.text_weight else None
        relative = (moving[0], config.text_weight * moving[1]) if moving is not None else None
        if relative is None and config.mode == "constrained":
            stage = self.first_stage(state, user_text, config)
            relative = (allowed, stage) if stage is not None else None
        if relative is not None:  # a shortlist: "slower"/"less dark" (the tracks that move that way, the closest
            # first), or the request's words (the best text matches); the prompt is fed with the candidates
            span, logprob, row, header = self._rerank(prompt[reused:], cache, *relative, config, gen)
            words = talk(header) if moving is None else None  # a move from the track playing asks for a track
            if words is not None:
                return words
            track_id, kind, score, matched = self.store.track_ids[row], "constrained", logprob, self.all_modalities
            tokens = tuple(self.tokenizer.convert_ids_to_tokens(span))
            event = TrackChosen(self.catalog[track_id], score, matched, kind, tokens, time.perf_counter() - t0)
            return event, prompt, span, cache, user_text, None
        lead = prompt[reused:]
        if self.may_talk(config) and len(lead) > 1:  # the header's and <start_of_music>'s logits from one pass
            header, logits = self._header(lead, cache)
            words = talk(header)
            if words is not None:
                return words
        else:
            logits = self._step(lead, cache)
        if config.mode == "constrained":
            rule = constrained if not config.prior_weight else \
                Compose(constrained, PriorCorrection(self.ids, self.prior(), config.prior_weight))
            span, logprob = self._span(prompt, logits, cache, rule, config, gen, excluded)
            codes = [c for _, c in self.ids.decode(span)]
            track_id = resolve(self.store, codes, excluded)
            kind, score, matched = "constrained", logprob, self.all_modalities
        else:
            span, logprob = self._span(prompt, logits, cache, SpanFormat(self.ids), config, gen)
            codes = [c for _, c in self.ids.decode(span)]
            result = match(self.store, codes, config.modality_weights or PAPER_WEIGHTS, excluded, config.hierarchical)
            if result.track_id is not None:
                track_id, kind, score, matched = result.track_id, result.kind, result.score, result.matched_modalities
            else:  # nothing shares a token: decode again under the catalog constraint (still a real track)
                extra = cache.get_seq_length() - len(prompt)  # the free span's codes (whichever of them were fed)
                if extra:
                    cache.crop(-extra)  # transformers 5: a negative count removes that many tokens
                span, logprob = self._span(prompt, logits, cache, constrained, config, gen, excluded)
                codes = [c for _, c in self.ids.decode(span)]
                track_id = resolve(self.store, codes, excluded)
                kind, score, matched = "fallback", logprob, self.all_modalities
        tokens = tuple(self.tokenizer.convert_ids_to_tokens(span))
        event = TrackChosen(self.catalog[track_id], score, matched, kind, tokens, time.perf_counter() - t0)
        return event, prompt, span, cache, user_text, None

    def _start_turn(self, state, user_text, config, extra) -> tuple[TrackChosen | Talk, "ReplyRow", Any]:
        """Everything of a turn before its reply tokens: prompt, music span, track, grounding span fed (or, for a
        words-only turn, the prompt up to the assistant header). Returns (the TrackChosen or Talk event, the
        reply's row, KV cache holding all of it)."""
        t0 = time.perf_counter()
        chosen, prompt, span, cache, user_text, first = self._choose(state, user_text, config, extra,
                                                                     self._generator(config), t0)
        composed = None
        if isinstance(chosen, Talk) and config.talk_reply == "card":  # the answer from the playing track's card
            from talkplay.answers import compose

            playing = state.last_track
            composed = compose(user_text, self.catalog[playing] if playing is not None else None, config.seed)[1]
        row = ReplyRow(self, state.key, chosen, prompt + span, user_text, config, t0, composed)
        if first is not None and composed is None:  # words by the model: the header's log-probs are its first token's
            row.logits = first
        else:
            # span (unless fed), grounding and opening — or a composed answer, fed only so that the next turn's
            # prompt finds it in the conversation's KV cache (its logits go unused)
            row.logits = self._step(row.fed[cache.get_seq_length():], cache)
        return chosen, row, cache

    def _respond(self, state, user_text, config, extra) -> Iterator[Event]:
        """The turn's events, one row decoded alone; ``state`` is only read (:meth:`respond` records the turn
        from ``Done``). :mod:`talkplay.scheduler` runs the same :class:`ReplyRow` batched with other turns."""
        chosen, row, cache = self._start_turn(state, user_text, config, extra)
        yield chosen
        logits = row.logits
        while True:
            token, events = row.push(logits)
            if token is None:  # kept before Done is yielded: a caller may stop reading at Done
                self.prefix.put(state.key, row.fed, cache)
            yield from events
            if token is None:
                return
            logits = self._step([token], cache)

    def chat(self, state: ConversationState, user_text: str, **kwargs) -> Turn:
        """Non-streaming convenience: run :meth:`respond` to the end and return the turn."""
        for event in self.respond(state, user_text, **kwargs):
            if isinstance(event, Done):
                return event.turn
        raise RuntimeError("respond ended without a Done event")


    def attributes(self) -> dict[str, Any]:
        """Measured tempo/energy/brightness/percussiveness and tag ranks of the store's tracks
        (:mod:`talkplay.refine`), read once from the bundle's ``features.parquet``."""
        with self._text_lock:
            if self._attributes is None:
                from talkplay.refine import load_attributes

                self._attributes = load_attributes(self.catalog.root, [self.catalog[t] for t in self.store.track_ids])
            return self._attributes

    def _relative(self, state: ConversationState, user_text: str, rows: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray] | None:
        """For a request relative to the previous track (:func:`talkplay.refine.directions`): the allowed ``rows``
        that move every asked way from it, and per store row its closeness to it (z-scored card similarity, plus
        the request's text match when its words name something on a card). None when the request is not
        relative, nothing played before, or no allowed track moves that way (the model then reads the request
        against the history alone)."""
        from talkplay.refine import directions, moves

        like = self.referenced_ids(user_text)  # "something like Battle Music but slower": slower than that one
        prev = like[0] if like else state.last_track
        wanted = directions(user_text) if prev is not None else ()
        if {"slower", "faster"} & set(wanted) and "tempo" in self.asked_facts(user_text):
            # "not too fast, around 100 bpm" after an 80 BPM track: the asked tempo says where to go (the facts' fit
            # places it), not only which way; read as "slower" it played a 60 BPM track in a listener's check
            wanted = tuple(d for d in wanted if d not in ("slower", "faster"))
        if not wanted or prev not in self.store:
            return None
        attrs = self.attributes()
        a = attrs[prev]
        ids = self.store.track_ids
        moving = np.asarray([r for r in rows if all(moves(a, attrs[ids[int(r)]], d) for d in wanted)], dtype=np.int64)
        if len(moving) == 0:
            return None
        closeness = self.text_match().similar_to(self.store.row(prev))
        if self.text_match().has_evidence(user_text, first_turn=False, concepts=False):
            # the words' own matches, not their concepts: "less dark, more upbeat" is a move from this track,
            # which the candidates already make; the concepts' weight would outvote the closeness
            closeness = closeness + self.text_match().scores(user_text, concepts=False)
        return moving, closeness

    def first_stage_terms(self, state: ConversationState, user_text: str) -> dict[str, np.ndarray] | None:
        """The unweighted terms of :meth:`first_stage` (float64 per store row): "words" (the request's text match;
        absent when its words cannot speak for it), "context" (the conversation's words, this request's included;
        absent on a first request), "history" (closeness to the tracks kept; absent before the first kept track or
        without listening vectors) and "popularity" (absent without listening counts). None when neither the
        words nor a kept track can speak."""
        from talkplay.listening import context_scores
        from talkplay.textmatch import tokenize

        match = self.text_match()
        kept = [self.store.row(t) for t in state.played if t not in state.rejected and t in self.store]
        # "something like Battle Music": that track is the measure, in place of the kept ones — its playlist
        # neighbours (the history term) and the cards closest to its own (added to the words' match). Kept tracks
        # alongside it outvoted it: "songs similar to Tranquilforest" (folk) after a Wesnoth orchestral track
        # played another Wesnoth orchestral track in a listener's check
        like = [self.store.row(t) for t in self.referenced_ids(user_text)]
        kept = like or kept
        out: dict[str, np.ndarray] = {}
        if match.has_evidence(user_text, first_turn=not state.played):
            out["words"] = match.scores(user_text)
            if like:
                out["words"] = out["words"] + np.mean([match.similar_to(r) for r in like], axis=0)
        if self.listening is not None and kept:
            out["history"] = self.listening.history(kept)
            if "words" in out and match.names_a_search(user_text):
                # "now some heavy metal" after three folk tracks names what to look for: the kept tracks' neighbours
                # must not outvote it (at full weight they did, in a listener's check: another folk track); at 0
                # validation MRR fell 0.32 → 0.27 (the synthetic playlists' next track often shares the named
                # genre), at 0.5 to 0.31 and the listener's "heavy metal" played a metal-tagged track
                out["history"] = NAMED_HISTORY_SHARE * out["history"]
        if not out:
            return None
        if self.listening is not None and self.listening.popularity is not None:
            out["popularity"] = self.listening.popularity
        if state.played:  # a first request's words are the text match's alone: BM25 of them again would outvote
            # the concepts it fits (valid first requests: top-1 fit fell with it, and BM25 alone fits 0.59)
            said = [w for t in state.turns for w in (t.user, t.reply)] + [user_text]
            out["context"] = context_scores(match.bm25, tokenize(" ".join(said)))
        return out

    def first_stage(self, state: ConversationState, user_text: str, config: GenerationConfig
                    ) -> np.ndarray | None:
        """float64 per store row: λ · the request's text match (when its words can speak for it) + w_c · the
        conversation's words + w_h · closeness to the tracks kept + w_p · popularity (:mod:`talkplay.listening`;
        :meth:`first_stage_terms`) — everything in the
        ranking objective but the model's own term, which is computed for the best of these only. None when nothing
        but the model can speak (no words to search for and nothing kept yet, or those terms weighted 0): the
        model's span decides alone."""
        terms = self.first_stage_terms(state, user_text)
        weights = {"words": config.text_weight, "history": config.history_weight, "context": config.context_weight,
                   "popularity": config.popularity_weight}
        if terms is None or not any(weights[k] for k in terms if k not in ("context", "popularity")):
            return None
        return sum(weights[k] * v for k, v in terms.items())

    def asked_facts(self, user_text: str) -> tuple[str, ...]:
        """The kinds of fact ``user_text`` asks for ("tempo", "key", "year", "name"; :mod:`talkplay.facts`): the
        reply's opening states the played track's (:func:`talkplay.faithful.reply_opening`)."""
        facts = self.text_match().facts
        return tuple(dict.fromkeys(f.kind for f in facts.read(user_text))) if facts is not None else ()

    def content_word(self, token: int) -> bool:
        """Whether ``token`` starts a word of four letters or more (" ambient", " loud"): such a token may not
        come again within a few reply tokens (:func:`talkplay.reply.repeated_words`). Cached per token."""
        hit = self._content_words.get(token)
        if hit is None:
            text = self.tokenizer.decode([token])
            hit = self._content_words[token] = text.startswith(" ") and len(text) > 4 and text[1:].isalpha()
        return hit

    def attribute_ban(self) -> Any:
        """Attribute words each track's card lacks, as banned reply tokens (:mod:`talkplay.faithful`), built once."""
        with self._text_lock:
            if self._attribute_ban is None:
                from talkplay.faithful import AttributeBan

                self._attribute_ban = AttributeBan(self.tokenizer, [self.catalog[t] for t in self.store.track_ids])
            return self._attribute_ban

    def referenced_ids(self, user_text: str) -> tuple[str, ...]:
        """The tracks ``user_text`` names as the measure of what it wants — "something like Battle Music", "songs
        similar to Tranquilforest" (:meth:`talkplay.intent.IntentReader.referenced`): not played this turn, and
        the ranking looks for their neighbours in place of the tracks kept (:meth:`first_stage_terms`)."""
        intent = self.text_match().intent
        if intent is None:
            return ()
        ids = self.store.track_ids
        return tuple(ids[int(r)] for r in np.flatnonzero(intent.referenced(user_text)))

    def text_match(self) -> TextMatch:
        """The text match of the store's tracks (:mod:`talkplay.textmatch`), built once per engine: BM25, plus
        sentence vectors when the engine was given an embedder loader and it loads; album and artist names are told
        from everyday words by the base model's tokenizer (:mod:`talkplay.facts`)."""
        with self._text_lock:
            if self._text_match is None:
                embed = self._text_embedder() if self._text_embedder is not None else None
                from talkplay.facts import tokenizer_pieces

                self._text_match = TextMatch.build([self.catalog[t] for t in self.store.track_ids], embed,
                                                   pieces=tokenizer_pieces(self.tokenizer))
            return self._text_match

    @torch.no_grad()
    def prior(self) -> TriePrior:
        """The neutral request's log-probabilities at every trie node (:mod:`talkplay.prior`), built once
        per engine — one ranking pass — the first time a turn or a ranking needs it."""
        with self._prior_lock:
            if self._prior is None:
                from transformers import DynamicCache

                cache = DynamicCache()
                first = torch.log_softmax(self._step(self._prompt(ConversationState(), NEUTRAL_REQUEST), cache),
                                          dim=-1).cpu()
                rows = np.arange(len(self.store))
                ids = self._code_ids(rows)
                logprobs = [np.tile(first[self.ids.position_ids[0]].numpy(), (len(rows), 1))]
                logprobs += [np.zeros((len(rows), len(self.ids.position_ids[k])))
                             for k in range(1, self.ids.n_positions)]
                if ids.shape[1] > 1:
                    for i, lp in self._packed(cache, ids):
                        for k in range(1, self.ids.n_positions):
                            cols = torch.as_tensor(self.ids.position_ids[k], device=lp.device)
                            logprobs[k][i:i + lp.shape[0]] = lp[:, k - 1, cols].double().cpu().numpy()
                self._prior = TriePrior.from_logprobs(self.store.codes[rows], logprobs)
            return self._prior


def load_recommender(bundle: str | Path = "catalog/demo", device: str = "auto", precision: str = "auto",
                     generation: GenerationConfig = GenerationConfig(), base_model: str | None = None,
                     max_batch: int = 1) -> Recommender:
    """One call from a bundle path to a ready :class:`Recommender` (device/precision per ModelConfig);
    ``max_batch`` > 1 starts the batching scheduler (:meth:`Recommender.serve`) for that many concurrent turns."""
    from talkplay.checkpoint import read_info
    from talkplay.model import ModelConfig

    info = read_info(bundle)
    config = ModelConfig(base_model=base_model or info.base_model, device=device, precision=precision)
    rec = Recommender.load(bundle, config, generation)
    if max_batch > 1:
        rec.serve(max_batch)
    return rec
