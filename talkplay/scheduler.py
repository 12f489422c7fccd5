"""Continuous batching of concurrent turns: one thread owns the model; turns join and leave between decoding steps.

Each submitted turn (:class:`Ticket`) goes through two phases on the scheduler thread:

1. **Start** (alone, batch 1): prompt prefill — only the part the conversation's previous turn did not compute
   (:class:`talkplay.kvcache.PrefixCache`) — then the music span under that conversation's own rules (catalog
   trie minus its played and rejected tracks, its text match and prior correction), the track, and the grounding
   span. The ``TrackChosen`` event is sent as soon as the track is known. One start runs between two decoding
   steps, so a new listener's prompt never waits for the others' replies to finish, and the rows already
   decoding lose one step's time per start, not a whole prompt's queue.
2. **Reply** (batched): the turn's KV cache is copied into a slot of the shared :class:`talkplay.kvcache.SlotCache`
   and every step feeds one token per row — each row sampled from its own logits with its own settings and seed
   (:class:`talkplay.recommender.ReplyRow`, the same code the single-turn path runs), its events streamed to its
   own ticket. A row leaves at its end-of-turn token, at its length cap, or when its listener is gone
   (``Ticket.close``) — the others never wait for it.

Why not transformers' continuous batching (``ContinuousBatchingManager`` / ``generate_batch``): it takes a whole
prompt and samples until a stop, with one logits-processor list and generation config for all requests. A turn
here changes its rules mid-generation (a catalog-constrained span with per-conversation exclusions and a
shortlist scored by the model, then a grounding span *inserted* by the engine, then a reply with music tokens
banned) and streams the track before the reply; none of that fits a per-request prompt → tokens API. So this is
the smallest scheduler over the model's own forward that can: a slot cache, one padding mask, per-row position
ids. Batching one-token steps is where the gain is (bf16, this CPU: a bare ``generate`` gives 26 tok/s at batch 1,
186 at batch 16; ``reports/bench.md``).

A failure in one turn (an exception in its start or its sampling) is sent to that turn's ticket only; a failure
of a whole batched step fails the rows of that step and the scheduler goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from talkplay.conversation import ConversationState, Event
from talkplay.kvcache import SlotCache

log = logging.getLogger(__name__)

_END = object()


class Ticket:
    """One submitted turn. Iterate it for its events (``TrackChosen``, ``TextDelta``…, ``Done``); an error of the
    turn is raised from the iteration. :meth:`close` cancels it (its row leaves the batch at the next step)."""

    def __init__(self, state: ConversationState, user_text: str, config: Any, extra: tuple[str, ...]):
        # the turn reads a snapshot: the caller's state may change (a skip) while the turn waits or runs
        self.state = ConversationState(list(state.turns), set(state.rejected), state.key)
        self.user_text, self.config, self.extra = user_text, config, extra
        self.submitted = time.perf_counter()
        self.cancelled = False
        self._events: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, item: Event | BaseException | object) -> None:
        self._events.put(item)

    def __iter__(self) -> "Ticket":
        return self

    def __next__(self) -> Event:
        item = self._events.get()
        if item is _END:
            self._events.put(_END)  # iterating again stops again
            raise StopIteration
        if isinstance(item, BaseException):
            self._events.put(_END)
            raise item
        return item

    def close(self) -> None:
        self.cancelled = True


@dataclass
class _Row:
    ticket: Ticket
    reply: Any  # talkplay.recommender.ReplyRow
    token: int  # the token this row feeds at the next step


@dataclass
class SchedulerStats:
    """Counters for benchmarks and the load test (read without a lock: approximate while running)."""

    started: int = 0  # turns whose start phase ran
    finished: int = 0
    failed: int = 0
    cancelled: int = 0
    steps: int = 0  # batched decoding steps
    step_rows: int = 0  # rows summed over steps (mean batch = step_rows / steps)
    step_seconds: float = 0.0
    start_seconds: float = 0.0
    max_rows: int = 0
    queue_waits: list[float] = field(default_factory=list)  # submit → start of each turn, seconds (last 10,000)


class Scheduler:
    """Runs every turn of ``engine`` (a :class:`talkplay.recommender.Recommender`) on one thread, batching replies.

    Args:
        max_batch: rows decoding at once; further turns wait (in submission order) for a row to leave.
    """

    def __init__(self, engine: Any, max_batch: int = 16):
        if max_batch < 1:
            raise ValueError(f"max_batch must be ≥ 1, got {max_batch}")
        self.engine, self.max_batch = engine, max_batch
        self.stats = SchedulerStats()
        self._pending: deque[Ticket] = deque()
        self._rows: list[_Row] = []  # row i lives in slot i of the slot cache
        self._slots = self._new_slots()
        self._cv = threading.Condition()
        self.running = True
        self._thread = threading.Thread(target=self._loop, name="talkplay-scheduler", daemon=True)
        self._thread.start()

    def submit(self, state: ConversationState, user_text: str, config: Any, extra: tuple[str, ...] = ()) -> Ticket:
        """Queue a turn; returns its ticket at once (iterate it for the events)."""
        ticket = Ticket(state, user_text, config, extra)
        with self._cv:
            if not self.running:
                raise RuntimeError("the scheduler is stopped")
            self._pending.append(ticket)
            self._cv.notify()
        return ticket

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the current step; turns still waiting or decoding get a RuntimeError."""
        with self._cv:
            self.running = False
            self._cv.notify()
        self._thread.join(timeout)

    def _new_slots(self) -> SlotCache:
        return SlotCache(self.engine.model.config.num_hidden_layers)

    @property
    def active(self) -> int:
        return len(self._rows)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self.running and not self._pending and not self._rows:
                    self._cv.wait()
                if not self.running:
                    break
                ticket = self._pending.popleft() if self._pending and len(self._rows) < self.max_batch else None
            if ticket is not None:
                self._start(ticket)
            if self._rows:
                self._step()
        stopped = RuntimeError("the scheduler was stopped")
        for row in self._rows:
            row.ticket.put(stopped)
        while self._pending:
            self._pending.popleft().put(stopped)

    def _start(self, ticket: Ticket) -> None:
        """The start phase of one turn (module docstring); its first reply token joins the batch."""
        if ticket.cancelled:
            self.stats.cancelled += 1
            return
        t0 = time.perf_counter()
        waits = self.stats.queue_waits
        waits.append(t0 - ticket.submitted)
        if len(waits) > 10_000:
            del waits[:5_000]
        try:
            chosen, reply, cache = self.engine._start_turn(ticket.state, ticket.user_text, ticket.config, ticket.extra)
            ticket.put(chosen)
            token, events = reply.push(reply.logits)
        except Exception as err:  # this turn only
            self.stats.failed += 1
            ticket.put(err)
            return
        finally:
            self.stats.started += 1
            self.stats.start_seconds += time.perf_counter() - t0
        for event in events:
            ticket.put(event)
        if token is None:
            self._finish(ticket, reply, cache)
            return
        self._slots.add(cache)
        self._rows.append(_Row(ticket, reply, token))
        self.stats.max_rows = max(self.stats.max_rows, len(self._rows))

    def _finish(self, ticket: Ticket, reply: Any, cache: Any) -> None:
        self.engine.prefix.put(reply.key, reply.fed, cache)
        ticket.put(_END)
        self.stats.finished += 1

    def _remove(self, i: int) -> None:
        self._slots.remove(i)  # the last slot's row moves into slot i; mirror that here
        self._rows[i] = self._rows[-1]
        self._rows.pop()

    def _step(self) -> None:
        """One token for every decoding row."""
        for i in reversed(range(len(self._rows))):
            if self._rows[i].ticket.cancelled:
                self.stats.cancelled += 1
                self._remove(i)
        if not self._rows:
            return
        t0 = time.perf_counter()
        engine = self.engine
        try:
            mask, positions = self._slots.step_inputs(engine.device)
            tokens = torch.tensor([[row.token] for row in self._rows], dtype=torch.long)
            logits = engine.forward(tokens, self._slots, attention_mask=mask, position_ids=positions)[:, -1].float()
            self._slots.advance()
        except Exception as err:  # the whole step failed: its rows fail, the scheduler goes on
            log.exception("batched decoding step failed for %d rows", len(self._rows))
            for row in self._rows:
                row.ticket.put(err)
            self.stats.failed += len(self._rows)
            self._rows.clear()
            self._slots = self._new_slots()
            return
        done: list[int] = []
        for i, row in enumerate(self._rows):
            try:
                token, events = row.reply.push(logits[i])
            except Exception as err:  # this row only
                row.ticket.put(err)
                self.stats.failed += 1
                done.append(i)
                continue
            for event in events:
                row.ticket.put(event)
            if token is None:
                self._finish(row.ticket, row.reply, self._slots.extract(i))
                done.append(i)
            else:
                row.token = token
        for i in reversed(done):
            self._remove(i)
        self.stats.steps += 1
        self.stats.step_rows += len(self._rows) + len(done)
        self.stats.step_seconds += time.perf_counter() - t0
