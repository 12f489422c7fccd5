"""The one conversation renderer shared by training and inference: messages → token ids and labels.

Each turn of a conversation (user → music → assistant, see ``train.data.conversation_schema``) becomes two
chat messages in the model's own chat template. The music message has no chat role of its own: it is
folded into the assistant message, which the model writes music first (TalkPlay §4.4)::

    <|im_start|>assistant
    <start_of_music><|playlist-3|>…<|audio-7|><end_of_music>[Now playing: “Title” by Artist | album: … | tags: …]
    Here is a calm piece…<|im_end|>

The bracketed *grounding span* (:func:`grounding_text`) names the track the music tokens resolved to and
carries the facts of its card (album, year, tags, caption with key and tempo).
The model reads it but is never trained to write it: at inference the system inserts it once the
generated span resolves, so the reply names the track that actually plays.

Ids are built segment by segment (template glue, each text field, the music span) and concatenated, so
a prompt rendered for inference (:func:`render_prompt`) is, id for id, a prefix of the training
rendering of the same history. Untrusted text (user messages, and also replies and catalog titles) is
made inert first, so it can never produce music-token or chat-control ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from talkplay.tokens import (
    END_OF_MUSIC,
    START_OF_MUSIC,
    contains_music_markup,
    iter_music_tokens,
    neutralize_music_markup,
)

IGNORE_INDEX = -100  # label of a token the loss skips (PyTorch cross-entropy's default ignore_index)
ZERO_WIDTH_SPACE = "\u200b"  # inserted into control-token look-alikes; invisible when shown
CHATML_CONTROL = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")  # inerted even if the tokenizer lacks them

DEFAULT_SYSTEM_PROMPT = (
    "You are TalkPlay, a music recommender. Answer each request with one track: first its music "
    "tokens, then a short reply about it."
)

_SENTINEL = "\ue000{}\ue001"  # private-use placeholder for message content when reading a template


@dataclass(frozen=True)
class RenderConfig:
    """How conversations are laid out and budgeted."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT  # first (system) message of every rendering
    max_tokens: int = 2048  # whole rendering budget; oldest turns are dropped to fit
    grounding: bool = True  # insert the grounding span after each music span
    reply_reserve: int = 256  # render_prompt keeps this many tokens free for the generated span + reply


@dataclass(frozen=True)
class Rendered:
    """A rendered conversation; spans are (start, end) token indices, end exclusive, one per kept turn."""

    input_ids: list[int]  # the whole conversation, template included
    labels: list[int]  # input_ids where supervised, IGNORE_INDEX elsewhere
    text: str  # the exact text the ids were built from (for debugging)
    user_spans: tuple[tuple[int, int], ...]  # user message contents
    music_spans: tuple[tuple[int, int], ...]  # <start_of_music> … <end_of_music> inclusive ((i, i): words only)
    grounding_spans: tuple[tuple[int, int], ...]  # grounding text ((i, i) when grounding is off or words only)
    reply_spans: tuple[tuple[int, int], ...]  # assistant reply text
    end_spans: tuple[tuple[int, int], ...]  # assistant end-of-turn token(s)
    rejected: tuple[bool, ...]  # per kept turn: the listener rejected its track
    dropped_turns: int  # oldest turns left out to fit config.max_tokens


def grounding_text(track: Any) -> str:
    """The grounding span for ``track``: the facts its card shows, in one fixed compact layout.

    ``[Now playing: “Title” by Artist | album: … | year: … | tags: a, b, c | caption]`` plus a newline;
    fields the track lacks are left out. The model reads (never writes) this span before its reply, so
    everything a reply may state about the track — album, year, style, mood, instruments, key, tempo —
    is in front of it instead of having to be recalled from its weights.
    """
    who = f" by {track.artist}" if getattr(track, "artist", "") else ""
    parts = [f"Now playing: “{track.title}”{who}"]
    album, year = getattr(track, "album", None), getattr(track, "year", None)
    tags, caption = list(getattr(track, "tags", None) or ()), (getattr(track, "caption", None) or "").strip()
    if album:
        parts.append(f"album: {album}")
    if year:
        parts.append(f"year: {int(year)}")
    if tags:
        parts.append("tags: " + ", ".join(tags))
    if caption:
        parts.append(caption)
    return "[" + " | ".join(parts) + "]\n"


# ---------------------------------------------------------------------------------------- safety


def _control_strings(tokenizer) -> list[str]:
    """Special/control token strings of ``tokenizer`` (music tokens excluded: a regex handles those)."""
    found = set(CHATML_CONTROL)
    found.update(getattr(tokenizer, "all_special_tokens", []) or [])
    for added in getattr(tokenizer, "added_tokens_decoder", {}).values():
        if added.special:
            found.add(added.content)
    # Music tokens and span boundaries are neutralize_music_markup's job; listing thousands here would be slow.
    keep = [s for s in found if len(s) > 1 and list(iter_music_tokens(s)) != [s]]
    return sorted(keep, key=len, reverse=True)


def _forbidden_ids(tokenizer) -> set[int]:
    """Ids that untrusted text must never produce: special and music ids, except <unk>."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    ids.update(i for i, added in getattr(tokenizer, "added_tokens_decoder", {}).items()
               if added.special or contains_music_markup(added.content))
    ids.discard(tokenizer.unk_token_id)  # unknown text may map to <unk>; that injects nothing
    return ids


def make_inert(text: str, controls: Sequence[str]) -> str:
    """``text`` with music markup neutralized and every control string broken by a zero-width space.

    (transformers' ``apply_chat_template(sanitize_control_tokens=True)`` does similar, but only when it
    tokenizes the whole chat; we tokenize segment by segment, so we sanitize the text ourselves.)
    """
    text = neutralize_music_markup(text)
    if not controls:
        return text
    pattern = re.compile("|".join(re.escape(c) for c in controls))
    for _ in range(8):  # a fixpoint: breaking one string must not assemble another
        broken = pattern.sub(lambda m: m.group(0)[0] + ZERO_WIDTH_SPACE + m.group(0)[1:], text)
        if broken == text:
            return text
        text = neutralize_music_markup(broken)
    raise ValueError(f"cannot make text inert for the tokenizer: {text[:80]!r}")


# ---------------------------------------------------------------------------------------- template


def _glue(tokenizer, roles: Sequence[str]) -> list[str]:
    """The template text around each message: ``len(roles) + 1`` pieces (before, between, after).

    The template is rendered once with placeholder contents, which are then cut out, so any chat
    template that copies contents verbatim works (ChatML, Llama 3, …).
    """
    messages = [{"role": r, "content": _SENTINEL.format(i)} for i, r in enumerate(roles)]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    pieces, at = [], 0
    for i in range(len(roles)):
        mark = _SENTINEL.format(i)
        if text.count(mark) != 1:
            raise ValueError(f"chat template of {type(tokenizer).__name__} does not copy message {i} "
                             f"({roles[i]}) content exactly once; cannot render TalkPlay turns with it")
        cut = text.index(mark, at)
        pieces.append(text[at:cut])
        at = cut + len(mark)
    pieces.append(text[at:])
    return pieces


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _music_ids(tokenizer, tokens: Sequence[str]) -> list[int]:
    """Ids of a music span's token strings; each must be one token of the tokenizer."""
    ids = []
    for tok in tokens:
        i = tokenizer.convert_tokens_to_ids(tok)
        if i is None or (i == tokenizer.unk_token_id and tok != tokenizer.unk_token):
            raise ValueError(f"tokenizer has no token {tok!r}; add the vocabulary's special_tokens() first")
        ids.append(i)
    return ids


class _Builder:
    """Accumulates ids, labels and text segment by segment."""

    def __init__(self, tokenizer, forbidden: set[int]):
        self.tokenizer, self.forbidden = tokenizer, forbidden
        self.ids: list[int] = []
        self.labels: list[int] = []
        self.text: list[str] = []
        self.special = {i for i, a in tokenizer.added_tokens_decoder.items() if a.special}

    def add(self, text: str, supervised: bool = False, ids: list[int] | None = None,
            untrusted: str = "") -> tuple[int, int]:
        """Append one segment; ``untrusted`` names text that must not produce special ids."""
        ids = _encode(self.tokenizer, text) if ids is None else ids
        if untrusted and self.forbidden.intersection(ids):
            raise ValueError(f"{untrusted} text still produces special-token ids after sanitizing: {text[:80]!r}")
        start = len(self.ids)
        self.ids.extend(ids)
        self.labels.extend(ids if supervised else [IGNORE_INDEX] * len(ids))
        self.text.append(text)
        return start, len(self.ids)

    def add_end_of_turn(self, glue: str) -> tuple[int, int]:
        """Glue after an assistant message: its tokens through the first special one are supervised."""
        ids = _encode(self.tokenizer, glue)
        cut = next((k + 1 for k, i in enumerate(ids) if i in self.special), None)
        if cut is None:
            raise ValueError(f"chat template of {type(self.tokenizer).__name__} ends assistant messages with "
                             f"{glue!r}, which has no special end-of-turn token to learn")
        start = len(self.ids)
        self.ids.extend(ids)
        self.labels.extend(ids[:cut] + [IGNORE_INDEX] * (len(ids) - cut))
        self.text.append(glue)
        return start, start + cut


# ---------------------------------------------------------------------------------------- rendering


def _turns(messages: Sequence[Any], where: str, partial: bool = False) -> list[tuple[Any, Any | None, Any | None]]:
    """Group messages into (user, music, assistant) turns — (user, None, assistant) for a turn answered in words
    only — and with ``partial`` the last is a lone user message (user, None, None)."""
    msgs = list(messages)
    out = []
    i = 0
    while i < len(msgs):
        if msgs[i].role != "user":
            raise ValueError(f"{where}: message {i} has role {msgs[i].role!r}; expected user → music → assistant "
                             f"(or user → assistant) turns")
        roles = tuple(m.role for m in msgs[i + 1:i + 3])
        if roles == ("music", "assistant"):
            out.append(tuple(msgs[i:i + 3]))
            i += 3
        elif roles[:1] == ("assistant",):
            out.append((msgs[i], None, msgs[i + 1]))
            i += 2
        elif partial and i + 1 == len(msgs):
            out.append((msgs[i], None, None))
            i += 1
        else:
            raise ValueError(f"{where}: messages {i}–{min(i + 2, len(msgs) - 1)} have roles "
                             f"{[m.role for m in msgs[i:i + 3]]}; expected user → music → assistant (or user → "
                             f"assistant) turns" + (" ending with a user message" if partial else ""))
    if not out:
        raise ValueError(f"{where}: no turns to render")
    if partial and out[-1][2] is not None:
        raise ValueError("history: must end with the user message to answer")
    return out


def _render(tokenizer, turns, store, catalog, config: RenderConfig, dropped: int) -> Rendered:
    """Render complete turns; a final turn with no music/assistant stops after ``<start_of_music>``.

    A turn answered in words only (music None, assistant given) has no music or grounding span: its reply
    follows the assistant header directly, so the position that predicts ``<start_of_music>`` in a music turn
    predicts the reply's first word here — the model's "music or not" decision (:mod:`talkplay.recommender`)."""
    roles = ["system"] + [r for _ in turns for r in ("user", "assistant")]
    glue = _glue(tokenizer, roles)
    controls = _control_strings(tokenizer)
    b = _Builder(tokenizer, _forbidden_ids(tokenizer))
    start_id, end_id = _music_ids(tokenizer, [START_OF_MUSIC, END_OF_MUSIC])
    spans: dict[str, list[tuple[int, int]]] = {k: [] for k in ("user", "music", "grounding", "reply", "end")}
    rejected = []

    b.add(glue[0])
    b.add(make_inert(config.system_prompt, controls), untrusted="system prompt")
    b.add(glue[1])
    for t, (user, music, assistant) in enumerate(turns):
        # glue[1 + 2t] (before this user message) was added by the previous end of turn, or just above.
        spans["user"].append(b.add(make_inert(user.content, controls), untrusted="user"))
        b.add(glue[2 + 2 * t])
        if music is None and assistant is None:  # inference: the model generates from here
            b.add(START_OF_MUSIC, ids=[start_id])
            break
        if music is None:  # answered in words only
            rejected.append(False)
            spans["music"].append((len(b.ids), len(b.ids)))
            spans["grounding"].append((len(b.ids), len(b.ids)))
            spans["reply"].append(b.add(make_inert(assistant.content, controls), True, untrusted="reply"))
            spans["end"].append(b.add_end_of_turn(glue[3 + 2 * t]))
            continue
        # A rejected track is one the listener turned down: never teach the model to pick it.
        supervise_music = not music.rejected
        rejected.append(bool(music.rejected))
        ids = [start_id, *_music_ids(tokenizer, store.tokens_of(music.content)), end_id]
        spans["music"].append(b.add(store.vocab.span(store.codes_of(music.content)), supervise_music, ids=ids))
        ground = make_inert(grounding_text(catalog[music.content]), controls) if config.grounding else ""
        spans["grounding"].append(b.add(ground, untrusted="grounding"))
        spans["reply"].append(b.add(make_inert(assistant.content, controls), True, untrusted="reply"))
        spans["end"].append(b.add_end_of_turn(glue[3 + 2 * t]))
    return Rendered(b.ids, b.labels, "".join(b.text), *(tuple(spans[k]) for k in ("user", "music", "grounding",
                    "reply", "end")), tuple(rejected), dropped)


class BudgetExceeded(ValueError):
    """The system prompt plus the last turn alone do not fit the token budget."""


def fit_to_budget(render, n_turns: int, budget: int, where: str = "conversation") -> Rendered:
    """Render the newest turns that fit ``budget`` tokens, dropping the oldest whole turns first.

    Args:
        render: ``render(first_turn) -> Rendered`` for turns ``first_turn..``; the system prompt and the
            last turn are always kept.
    Raises:
        BudgetExceeded: if the system prompt plus the last turn alone exceed the budget.
    """
    out = render(0)
    if len(out.input_ids) <= budget or n_turns <= 1:  # the common case: everything fits, one render
        if len(out.input_ids) <= budget:
            return out
        raise BudgetExceeded(f"{where}: the system prompt and the last turn take {len(out.input_ids)} tokens, "
                             f"more than the budget of {budget}")
    # The length only falls as older turns are dropped: binary search for the fewest dropped (log2 renders,
    # not one per dropped turn).
    lo, hi, best = 1, n_turns - 1, None  # render(lo - 1) is too long; find the smallest first that fits
    while lo <= hi:
        mid = (lo + hi) // 2
        cand = render(mid)
        if len(cand.input_ids) <= budget:
            best, hi = cand, mid - 1
        else:
            lo, out = mid + 1, cand
    if best is None:
        last = render(n_turns - 1) if out is None or lo - 1 != n_turns - 1 else out
        raise BudgetExceeded(f"{where}: the system prompt and the last turn take {len(last.input_ids)} tokens, "
                             f"more than the budget of {budget}")
    return best


def render_conversation(tokenizer, conversation_messages: Sequence[Any], store, catalog,
                        config: RenderConfig = RenderConfig()) -> Rendered:
    """Render complete user → music → assistant turns (and user → assistant turns answered in words only) for
    training.

    Supervised (labels = ids): each turn's music span (``<start_of_music>`` through ``<end_of_music>``),
    its reply text and the template's end-of-turn token. A *rejected* turn's music span is NOT
    supervised — the model must not learn to recommend tracks the listener turns down — but its reply
    is (it still describes the track that played). System prompt, user text, grounding span and the
    rest of the template are never supervised. Oldest turns are dropped to fit ``config.max_tokens``.

    Args:
        conversation_messages: ``Message``-like objects (role, content, rejected), e.g. ``conv.messages``.
        store: a TokenStore with codes for every music message's track.
        catalog: maps track_id → Track (title, artist) for the grounding span.
    """
    turns = _turns(conversation_messages, "conversation")
    return fit_to_budget(lambda k: _render(tokenizer, turns[k:], store, catalog, config, k), len(turns),
                         config.max_tokens)


def render_prompt(tokenizer, history: Sequence[Any], store, catalog,
                  config: RenderConfig = RenderConfig()) -> list[int]:
    """Ids for inference: complete turns, then the new user message, ending with the assistant header
    and ``<start_of_music>`` so constrained decoding of the music span starts at once.

    Equals, id for id, the prefix of :func:`render_conversation` for the same history (as long as
    neither is truncated). Oldest turns are dropped so that ``config.reply_reserve`` tokens stay free.
    """
    turns = _turns(history, "history", partial=True)
    budget = config.max_tokens - config.reply_reserve
    return fit_to_budget(lambda k: _render(tokenizer, turns[k:], store, catalog, config, k), len(turns),
                         budget, "history").input_ids


def grounding_ids(tokenizer, track: Any) -> list[int]:
    """Ids of the grounding span for ``track`` exactly as :func:`render_conversation` lays it out.

    Inference appends these after the generated ``<end_of_music>`` once the span resolves to a track.
    """
    return _encode(tokenizer, make_inert(grounding_text(track), _control_strings(tokenizer)))


def reply_opening_ids(tokenizer, track: Any, asked: tuple[str, ...] = ()) -> list[int]:
    """Ids of the reply's forced opening (:func:`talkplay.faithful.reply_opening`; ``asked``: the kinds of fact the
    request named), tokenized as the start of a reply is in training (right after the grounding span's newline)."""
    from talkplay.faithful import reply_opening

    return _encode(tokenizer, make_inert(reply_opening(track, asked), _control_strings(tokenizer)))


def composed_ids(tokenizer, text: str) -> list[int]:
    """Ids of a reply given whole (a words-only answer, :mod:`talkplay.answers`), tokenized as a reply is in training
    (right after the assistant header)."""
    return _encode(tokenizer, make_inert(text, _control_strings(tokenizer)))


def end_of_turn_ids(tokenizer) -> list[int]:
    """The special id(s) that end an assistant message in the chat template (e.g. ``<|im_end|>``).

    These are the supervised end-of-turn tokens of training, so generation of a reply stops at them.
    """
    glue = _glue(tokenizer, ["system", "user", "assistant"])
    special = {i for i, a in tokenizer.added_tokens_decoder.items() if a.special}
    ids = _encode(tokenizer, glue[3])
    stop = [i for i in ids if i in special][:1]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stop:
        stop.append(tokenizer.eos_token_id)
    return stop


# ---------------------------------------------------------------------------------------- playlist continuation

CONTINUE_PROMPT = "Continue this playlist:\n"  # user text before the prefix tracks' music spans


def _span_ids(tokenizer, store, track_id: str, start_id: int, end_id: int) -> tuple[str, list[int]]:
    codes = store.codes_of(track_id)
    return store.vocab.span(codes), [start_id, *_music_ids(tokenizer, store.tokens_of(track_id)), end_id]


def _render_continuation_once(tokenizer, prefix, continuation, store, config: RenderConfig) -> tuple[list[int], list[int]]:
    glue = _glue(tokenizer, ["system", "user", "assistant"])
    controls = _control_strings(tokenizer)
    b = _Builder(tokenizer, _forbidden_ids(tokenizer))
    start_id, end_id = _music_ids(tokenizer, [START_OF_MUSIC, END_OF_MUSIC])
    b.add(glue[0])
    b.add(make_inert(config.system_prompt, controls), untrusted="system prompt")
    b.add(glue[1])
    b.add(CONTINUE_PROMPT)
    for track in prefix:  # the prefix is read, never predicted
        text, ids = _span_ids(tokenizer, store, track, start_id, end_id)
        b.add(text, ids=ids)
    b.add(glue[2])
    for track in continuation:
        text, ids = _span_ids(tokenizer, store, track, start_id, end_id)
        b.add(text, supervised=True, ids=ids)
    b.add_end_of_turn(glue[3])
    return b.ids, b.labels


def render_continuation(tokenizer, prefix: Sequence[str], continuation: Sequence[str], store,
                        config: RenderConfig = RenderConfig(), source: str = "") -> tuple[list[int], list[int]]:
    """Render one playlist-continuation example (the paper's L_playlist task) in the chat template.

    The user turn is ``CONTINUE_PROMPT`` followed by the prefix tracks' music spans; the assistant turn is
    the continuation's music spans, which (with the end-of-turn token) are the only supervised tokens.
    The oldest prefix tracks are dropped until the rendering fits ``config.max_tokens`` (at least one
    prefix track is kept).

    Returns:
        (input_ids, labels)
    Raises:
        ValueError: if the continuation or prefix is empty, or one prefix track plus the continuation do not fit.
        KeyError: if a track has no codes in ``store``.
    """
    if not continuation:
        raise ValueError(f"playlist example {source!r}: empty continuation")
    if not prefix:
        raise ValueError(f"playlist example {source!r}: empty prefix")
    for first in range(len(prefix)):
        ids, labels = _render_continuation_once(tokenizer, prefix[first:], continuation, store, config)
        if len(ids) <= config.max_tokens:
            return ids, labels
    raise ValueError(f"playlist example {source!r}: one prefix track plus {len(continuation)} continuation "
                     f"tracks take {len(ids)} tokens, more than max_tokens={config.max_tokens}")
