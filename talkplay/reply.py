"""The reply of one turn once its track is chosen: one row of decoding, alone or in the scheduler's batch."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from talkplay.conversation import Done, Event, Talk, TextDelta, TrackChosen, Turn
from talkplay.render import grounding_ids, reply_opening_ids


REPEAT_WINDOW = 4  # reply tokens back within which a content word may not come again ("ambient ambient")


def repeated_words(reply: list[int], is_content_word) -> list[int]:
    """The content-word tokens among the last :data:`REPEAT_WINDOW` of ``reply``: the next token may not be one of
    them. A small model stutters ("an ambient ambient piece", "loud, loud drums"); a word said again after a few
    others ("calm piano … calm strings") stays allowed. The forced opening counts too: a title's last word is not
    said again right after it."""
    return [t for t in set(reply[-REPEAT_WINDOW:]) if is_content_word(t)]


class ReplyRow:
    """The reply of one turn once its track is chosen: the grounding span is fed, then one token per step is
    sampled under the reply rule (music and control tokens banned), streamed as ``TextDelta`` pieces (whole
    UTF-8 characters only) and closed by ``Done`` at an end-of-turn token or ``max_reply_tokens``.

    The same object is decoded alone (:meth:`Recommender._respond`) or batched with other turns
    (:mod:`talkplay.scheduler`): the caller feeds the token :meth:`push` returns and passes the next logits back.
    ``fed`` is every token the turn's KV cache holds (prompt, span, grounding, reply so far).

    A words-only turn (``chosen`` is a :class:`Talk`) has no span or grounding span: ``context`` is the prompt up to
    the assistant header and the reply follows it; the card of the track playing is in the history it reads. A
    ``composed`` reply (:mod:`talkplay.answers`) is fed whole and ends the turn at the first :meth:`push`.
    """

    def __init__(self, engine: Any, key: str, chosen: TrackChosen | Talk, context: list[int], user_text: str,
                 config: Any, t0: float, composed: str | None = None):
        self.engine, self.key, self.chosen, self.user_text, self.config, self.t0 = \
            engine, key, chosen, user_text, config, t0
        self.talk = isinstance(chosen, Talk)
        self.fed = list(context)
        if not self.talk:
            self.fed += [engine.ids.end_id] + grounding_ids(engine.tokenizer, chosen.track)
        self.reply: list[int] = []
        self.ban: torch.Tensor | None = None
        self.composed = composed is not None  # the whole reply is given (talkplay.answers): fed, then the turn ends
        if self.composed:
            from talkplay.render import composed_ids

            self.reply = composed_ids(engine.tokenizer, composed)
            self.fed += self.reply
        elif config.faithful and not self.talk:  # talkplay.faithful: the name first, no attribute the card lacks
            opening = reply_opening_ids(engine.tokenizer, chosen.track, engine.asked_facts(user_text))
            if len(opening) > config.max_reply_tokens - 1:  # a cut bracket could read "(~13": the name alone
                opening = reply_opening_ids(engine.tokenizer, chosen.track)
            self.reply = opening[: config.max_reply_tokens - 1]
            self.fed += self.reply
            self.ban = torch.as_tensor(engine.attribute_ban().ids(chosen.track), dtype=torch.long)
        self.shown = ""
        # incremental detokenizing: only tokens from ``_prefix_at`` on are decoded per step; the text of
        # reply[_prefix_at:_read_at] was already shown (a window of a few tokens, so a byte-level token that
        # completes a character, or a word-start space, decodes as it would in the whole reply)
        self._prefix_at = self._read_at = 0  # the forced opening is streamed with the first sampled token
        self.gen = engine._generator(replace(config, seed=None if config.seed is None else config.seed + 1))
        self.logits: torch.Tensor | None = None  # the first reply token's logits, once the grounding span is fed

    def _new_text(self) -> str:
        """Text the tokens since the last shown piece add, once it ends in a whole UTF-8 character ('' until
        then); decodes a few tokens, not the whole reply (the reply is decoded whole once, at its end)."""
        decode = self.engine.tokenizer.decode
        shown = decode(self.reply[self._prefix_at:self._read_at], skip_special_tokens=True)
        text = decode(self.reply[self._prefix_at:], skip_special_tokens=True)
        if len(text) <= len(shown) or text.endswith("\ufffd"):
            return ""
        self._prefix_at, self._read_at = self._read_at, len(self.reply)
        return text[len(shown):]

    def push(self, logits: torch.Tensor) -> tuple[int | None, list[Event]]:
        """Sample the next reply token from ``logits`` (V,); returns (token to feed next, or None when the reply
        is complete, and the events it produced)."""
        engine = self.engine
        if self.composed:  # nothing to sample: the given reply ends the turn
            return None, self._done()
        scores = engine.reply_rule(None, logits[None])[0]
        if self.ban is not None and len(self.ban):
            scores[self.ban.to(scores.device)] = float("-inf")
        again = repeated_words(self.reply, engine.content_word)
        if again:
            scores[torch.as_tensor(again, device=scores.device)] = float("-inf")
        token = engine._sample(scores, self.config, self.gen)
        events: list[Event] = []
        if token not in engine.stop_ids:
            self.reply.append(token)
            delta = self._new_text()
            if delta:
                events.append(TextDelta(delta))
                self.shown += delta
            if len(self.reply) < self.config.max_reply_tokens:
                self.fed.append(token)
                return token, events
        return None, events + self._done()

    def _done(self) -> list[Event]:
        """The reply's last text piece and the Done event."""
        events: list[Event] = []
        text = self.engine.tokenizer.decode(self.reply, skip_special_tokens=True)
        if len(text) > len(self.shown):
            events.append(TextDelta(text[len(self.shown):]))
        c = self.chosen
        if self.talk:
            turn = Turn(self.user_text, None, text.strip(), "talk", c.p_music, ())
        else:
            turn = Turn(self.user_text, c.track.track_id, text.strip(), c.match, c.score, c.matched_modalities,
                        c.tokens)
        events.append(Done(turn, len(self.reply), time.perf_counter() - self.t0))
        return events
