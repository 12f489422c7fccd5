"""Continuous batching of concurrent turns: turns join and leave the batch between decoding steps.

Each submitted turn (:class:`Ticket`) goes through two phases:

1. **Start** (alone, batch 1): prompt prefill — only the part the conversation's previous turn did not compute
   (:class:`talkplay.kvcache.PrefixCache`) — then the music span under that conversation's own rules (catalog
   trie minus its played and rejected tracks, its text match and prior correction), the track, and the grounding
   span. The ``TrackChosen`` event is sent as soon as the track is known. Starts run in submission order, one at
   a time, whenever a batch row is free.
2. **Reply** (batched): the turn's KV cache is copied into a slot of the shared :class:`talkplay.kvcache.SlotCache`
   and every step feeds one token per row — each row sampled from its own logits with its own settings and seed
   (:class:`talkplay.reply.ReplyRow`, the same code the single-turn path runs), its events streamed to its
   own ticket. A row leaves at its end-of-turn token, at its length cap, or when its listener is gone
   (``Ticket.close``) — the others never wait for it.

On a CPU the two phases run on two threads, each with half of torch's threads: the start thread prefills while
the batch thread decodes. Measured on the 2-core demo machine (bf16): a 100-token prefill takes 111 ms and a
16-row step 83 ms with 2 threads, one after the other; with one thread each, side by side, 195 and 142 ms — about
1.3× the work per unit of time, and under load (the web server and clients also want a core) the one-thread ops
lose less to preemption. With one thread (or on a GPU) the batch thread runs one start between two steps.

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
    reply: Any  # talkplay.reply.ReplyRow
    token: int  # the token this row feeds at the next step
    cache: Any = None  # the turn's own KV cache until the row joins the slot cache


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
    """Runs every turn of ``engine`` (a :class:`talkplay.recommender.Recommender`), batching replies.

    Args:
        max_batch: rows decoding at once; further turns wait (in submission order) for a row to leave.
        start_thread: run turn starts on a thread of their own, beside the thread that decodes the batch, each
            with half of torch's CPU threads (module docstring). Default: on a CPU with at least 2 torch threads.
    """

    def __init__(self, engine: Any, max_batch: int = 16, start_thread: bool | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be ≥ 1, got {max_batch}")
        self.engine, self.max_batch = engine, max_batch
        self.stats = SchedulerStats()
        self._stats_lock = threading.Lock()  # the start thread and the batch thread both count
        self._pending: deque[Ticket] = deque()
        self._ready: deque[_Row] = deque()  # started turns waiting to join the batch
        self._starting = 0  # turns in their start phase
        self._starter_busy = False  # the start thread is running a start
        self._rows: list[_Row] = []  # row i lives in slot i of the slot cache
        self._slots = self._new_slots()
        self._cv = threading.Condition()
        self.running = True
        threads = torch.get_num_threads()
        on_cpu = getattr(engine, "device", torch.device("cpu")).type == "cpu"
        self.start_thread = (on_cpu and threads >= 2) if start_thread is None else start_thread
        # torch's CPU thread count is per calling thread (OpenMP): each worker sets its own share
        self._threads_each = max(1, threads // 2) if self.start_thread and on_cpu else None
        self._threads_all = threads
        self._workers = [threading.Thread(target=self._loop, name="talkplay-scheduler", daemon=True)]
        if self.start_thread:
            self._workers.append(threading.Thread(target=self._start_loop, name="talkplay-starts", daemon=True))
        for worker in self._workers:
            worker.start()

    def submit(self, state: ConversationState, user_text: str, config: Any, extra: tuple[str, ...] = ()) -> Ticket:
        """Queue a turn; returns its ticket at once (iterate it for the events)."""
        ticket = Ticket(state, user_text, config, extra)
        with self._cv:
            if not self.running:
                raise RuntimeError("the scheduler is stopped")
            self._pending.append(ticket)
            self._cv.notify_all()
        return ticket

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the current step; turns still waiting or decoding get a RuntimeError."""
        with self._cv:
            self.running = False
            self._cv.notify_all()
        for worker in self._workers:
            worker.join(timeout)
        if not any(worker.is_alive() for worker in self._workers):
            self._stop()  # belt and braces: nothing may be left waiting once both threads are gone

    def _new_slots(self) -> SlotCache:
        return SlotCache(self.engine.model.config.num_hidden_layers)

    @property
    def active(self) -> int:
        return len(self._rows)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ the loops

    def _count(self, **added: float) -> None:
        with self._stats_lock:
            for name, n in added.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)

    def _room(self) -> bool:
        """A turn may start: the rows decoding, started and starting leave a row free (caller holds the lock)."""
        return len(self._rows) + len(self._ready) + self._starting < self.max_batch

    def _may_start_here(self) -> bool:
        """The batch thread runs a start: it has no start thread, or that thread is busy with another start —
        so when turns queue up, starts get both threads and the batch fills up (caller holds the lock)."""
        return bool(self._pending) and self._room() and (not self.start_thread or self._starter_busy)

    def _set_threads(self, n: int) -> None:
        """This thread's torch CPU threads. Read first: a thread's first parallel op would otherwise reset its count
        to the last value any thread set (torch's lazy per-thread init)."""
        torch.get_num_threads()
        torch.set_num_threads(n)

    def _loop(self) -> None:
        """The batch: started rows join it, every row gets a token per step, and a start runs between two steps
        when :meth:`_may_start_here`."""
        if self._threads_each:
            self._set_threads(self._threads_each)
        while True:
            ticket = None
            with self._cv:
                while self.running and not self._rows and not self._ready and not self._may_start_here():
                    self._cv.wait()
                if not self.running:
                    break
                while self._ready:
                    self._join(self._ready.popleft())
                if self._may_start_here():
                    ticket = self._pending.popleft()
                    self._starting += 1
            if ticket is not None:
                self._started(ticket, by_start_thread=False)
            if self._rows:
                left = self._step()
                if left and self.start_thread:
                    with self._cv:
                        self._cv.notify_all()  # a row is free for the next start
        self._stop()

    def _start_loop(self) -> None:
        """Starts, in submission order, whenever a row is free; each started turn waits in ``_ready``. While no
        reply is decoding (a lone listener), a start gets all of torch's threads, else half."""
        threads = None
        while True:
            try:
                threads = self._start_one(threads)
            except Exception:  # noqa: BLE001 — the start thread must outlive any one turn's bug
                log.exception("turn start failed outside its turn")
            if not self.running:
                return

    def _start_one(self, threads: int | None) -> int | None:
        """Wait for a turn that may start, run its start; returns this thread's torch thread count."""
        with self._cv:
            while self.running and not (self._pending and self._room()):
                self._cv.wait()
            if not self.running:
                return threads
            ticket = self._pending.popleft()
            self._starting += 1
            self._starter_busy = True
            if self._pending:
                self._cv.notify_all()  # the batch thread may take the next one
            alone = not self._rows and not self._ready and self._starting == 1
        wanted = (self._threads_all if alone else self._threads_each) if self._threads_each else threads
        if wanted != threads:
            try:
                self._set_threads(wanted)
            except Exception:  # noqa: BLE001 — the start runs anyway, at the old count
                log.exception("could not set torch's threads to %s", wanted)
                wanted = threads
        self._started(ticket, by_start_thread=True)
        return wanted

    def _started(self, ticket: Ticket, by_start_thread: bool) -> None:
        """Run ``ticket``'s start, then, under the lock, count it out of the start phase and place its row in the
        same step (so :meth:`_room` never sees a row nowhere): the batch thread's joins the batch, the start
        thread's waits in ``_ready`` — or, if the scheduler stopped meanwhile, the turn gets the stop error."""
        row = None
        try:
            row = self._start(ticket)
        except Exception as err:  # outside the turn's own error handling (e.g. storing its cache): still its error
            log.exception("turn start failed")
            ticket.put(err)
        finally:
            with self._cv:
                self._starting -= 1
                if by_start_thread:
                    self._starter_busy = False
                if row is not None:
                    if not self.running:
                        row.ticket.put(RuntimeError("the scheduler was stopped"))
                    elif by_start_thread:
                        self._ready.append(row)
                    else:
                        self._join(row)
                self._cv.notify_all()  # a row may be free, or a started one ready

    def _stop(self) -> None:
        """Every turn still decoding, started or waiting gets the stop error (once: the lists are emptied)."""
        stopped = RuntimeError("the scheduler was stopped")
        with self._cv:
            for row in [*self._rows, *self._ready]:
                row.ticket.put(stopped)
            self._rows, self._ready = [], deque()
            while self._pending:
                self._pending.popleft().put(stopped)

    def _join(self, row: _Row) -> None:
        self._slots.add(row.cache)
        row.cache = None  # the slot holds it now
        self._rows.append(row)
        self.stats.max_rows = max(self.stats.max_rows, len(self._rows))

    def _start(self, ticket: Ticket) -> "_Row | None":
        """The start phase of one turn (module docstring); returns its row, ready for its first reply token to join
        the batch (None when the turn ended, failed or was cancelled)."""
        if ticket.cancelled:
            self._count(cancelled=1)
            return None
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
            self._count(failed=1)
            ticket.put(err)
            return None
        finally:
            self._count(started=1, start_seconds=time.perf_counter() - t0)
        for event in events:
            ticket.put(event)
        if token is None:
            self._finish(ticket, reply, cache)
            return None
        return _Row(ticket, reply, token, cache)

    def _finish(self, ticket: Ticket, reply: Any, cache: Any) -> None:
        self.engine.prefix.put(reply.key, reply.fed, cache)
        ticket.put(_END)
        self._count(finished=1)

    def _remove(self, i: int) -> None:
        self._slots.remove(i)  # the last slot's row moves into slot i; mirror that here
        self._rows[i] = self._rows[-1]
        self._rows.pop()

    def _step(self) -> bool:
        """One token for every decoding row; True when a row left the batch."""
        before = len(self._rows)
        for i in reversed(range(len(self._rows))):
            if self._rows[i].ticket.cancelled:
                self._count(cancelled=1)
                self._remove(i)
        if not self._rows:
            return True
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
            self._count(failed=len(self._rows))
            self._rows.clear()
            self._slots = self._new_slots()
            return True
        done: list[int] = []
        for i, row in enumerate(self._rows):
            try:
                token, events = row.reply.push(logits[i])
            except Exception as err:  # this row only
                row.ticket.put(err)
                self._count(failed=1)
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
        self._count(steps=1, step_rows=len(self._rows) + len(done), step_seconds=time.perf_counter() - t0)
        return len(self._rows) < before
