"""Key/value caches the engine keeps beyond one forward pass: a conversation's last turn, and the batch of turns
decoding together.

* :class:`PrefixCache` keeps, per conversation, the KV cache of its last turn (prompt, music span, grounding and
  reply). The next turn's prompt starts with the same tokens up to where the renderer re-tokenizes the reply, so
  only the rest is prefilled: on this CPU a 900-token history costs 3.4 s to prefill in fp32 on one thread, the
  ~100 new tokens of a turn about 0.4 s. Entries are matched by exact token prefix (never assumed), so a
  re-rendered history (a turn dropped to fit the budget, a track marked rejected) just reuses less. Bounded by
  bytes, least recently used first out.
* :class:`SlotCache` is the batch cache of :mod:`talkplay.scheduler`: one preallocated buffer per layer of shape
  (slots, kv heads, capacity, head dim) in which every decoding row occupies one slot, right-aligned at a common
  end column, padding masked on the left. A decoding step writes one column for all rows — no per-step
  concatenation of the whole cache (``DynamicCache`` copies it every token: at 16 rows × 1,200 tokens that copy
  alone took longer than the model's matmuls here) — and a row joins or leaves by copying only its own slot.

Both speak transformers' ``Cache`` protocol (``update``, ``get_seq_length``, ``get_mask_sizes``), so the model's
own forward fills them; :class:`SlotCache` needs the caller to pass the padding ``attention_mask`` and per-row
``position_ids`` (:meth:`SlotCache.step_inputs`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer


def cache_bytes(cache: Any) -> int:
    """Bytes held by a ``DynamicCache``'s keys and values."""
    return sum(t.numel() * t.element_size() for layer in cache.layers if layer.is_initialized
               for t in (layer.keys, layer.values))


def cropped_copy(cache: Any, length: int) -> DynamicCache:
    """A new ``DynamicCache`` holding the first ``length`` positions of ``cache`` (copied, not shared)."""
    out = DynamicCache()
    for i, layer in enumerate(cache.layers):
        out.update(layer.keys[..., :length, :].clone(), layer.values[..., :length, :].clone(), i)
    return out


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """The last turn's KV cache of each conversation, reused by its next turn (thread-safe, LRU, bounded by bytes).

    Args:
        max_bytes: total size kept; 0 turns the cache off.
        min_reuse: shorter common prefixes are not worth a copy (the turn is prefilled from scratch).
    """

    def __init__(self, max_bytes: int, min_reuse: int = 16):
        self.max_bytes, self.min_reuse = max_bytes, min_reuse
        self._entries: OrderedDict[str, tuple[tuple[int, ...], Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.reused_tokens = 0

    def take(self, key: str, ids: Sequence[int]) -> tuple[DynamicCache, int]:
        """A cache holding the longest usable prefix of ``ids`` that ``key``'s last turn computed, and its length.

        At least the last token of ``ids`` is left to feed (its logits are the turn's first); the entry is
        consumed (the turn stores a longer one when it ends)."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._bytes -= entry[2]
        if entry is None:
            return DynamicCache(), 0
        stored, cache, _ = entry
        n = min(common_prefix(stored, ids), len(ids) - 1)
        if n < self.min_reuse:
            return DynamicCache(), 0
        if n < len(stored):
            cache.crop(n - len(stored))  # transformers 5: a negative count removes that many positions
        with self._lock:
            self.hits += 1
            self.reused_tokens += n
        return cache, n

    def put(self, key: str, ids: Sequence[int], cache: Any) -> None:
        """Keep ``cache`` (which must hold exactly ``ids``) as ``key``'s last turn; evicts the oldest beyond the budget."""
        if self.max_bytes <= 0 or cache.get_seq_length() != len(ids):
            return
        size = cache_bytes(cache)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[key] = (tuple(ids), cache, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, _, freed) = self._entries.popitem(last=False)
                self._bytes -= freed

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes


class _SlotLayer(DynamicLayer):
    """One layer of a :class:`SlotCache`: writes new columns for the active rows, returns the window's view."""

    def __init__(self, owner: "SlotCache", index: int):
        super().__init__()
        self.owner, self.index = owner, index
        self.k: torch.Tensor | None = None  # (slots, heads, capacity, dim)
        self.v: torch.Tensor | None = None
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        o = self.owner
        q = key_states.shape[-2]
        self.k[:o.rows, :, o.end:o.end + q] = key_states
        self.v[:o.rows, :, o.end:o.end + q] = value_states
        return self.k[:o.rows, :, o.start:o.end + q], self.v[:o.rows, :, o.start:o.end + q]

    def get_seq_length(self) -> int:
        return self.owner.end - self.owner.start

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1


class SlotCache(Cache):
    """KV cache of the rows decoding together (see the module docstring). Not thread-safe: one owner thread.

    Row ``r`` holds ``lengths[r]`` real positions in columns ``[end - lengths[r], end)`` of slot ``r``; the
    window ``[start, end)`` covers the longest row. Rows are kept packed in slots ``0 … rows-1``.
    """

    def __init__(self, n_layers: int):
        self._slot_layers = [_SlotLayer(self, i) for i in range(n_layers)]
        super().__init__(layers=self._slot_layers)
        self.rows = 0
        self.start = self.end = 0
        self.lengths: list[int] = []

    @property
    def capacity(self) -> tuple[int, int]:
        k = self._slot_layers[0].k
        return (0, 0) if k is None else (k.shape[0], k.shape[2])

    def _reserve(self, slots: int, columns: int, like: torch.Tensor) -> None:
        """Make room for ``slots`` rows and ``columns`` positions (doubling), keeping the contents in place."""
        have_slots, have_cols = self.capacity
        if slots <= have_slots and columns <= have_cols:
            return
        new_slots, new_cols = max(slots, have_slots, 1), max(columns, have_cols, 64)
        if slots > have_slots:
            new_slots = max(slots, 2 * have_slots)
        if columns > have_cols:
            new_cols = max(columns, 2 * have_cols)
        for layer in self._slot_layers:
            shape = (new_slots, like.shape[1], new_cols, like.shape[3])
            k = torch.zeros(shape, dtype=like.dtype, device=like.device)
            v = torch.zeros(shape, dtype=like.dtype, device=like.device)
            if layer.k is not None and self.rows:
                k[:self.rows, :, :self.end] = layer.k[:self.rows, :, :self.end]
                v[:self.rows, :, :self.end] = layer.v[:self.rows, :, :self.end]
            layer.k, layer.v = k, v

    def _shift(self, by: int) -> None:
        """Move every row's columns right by ``by`` (a longer row is joining) or left by ``-by`` (compaction)."""
        if by == 0:
            return
        lo, hi = self.start, self.end
        for layer in self._slot_layers:
            for t in (layer.k, layer.v):
                t[:self.rows, :, lo + by:hi + by] = t[:self.rows, :, lo:hi].clone()
        self.start, self.end = lo + by, hi + by

    def add(self, cache: Any) -> int:
        """Copy a batch-1 ``DynamicCache`` in as a new row (right-aligned with the others); returns its slot."""
        first = cache.layers[0].keys
        length = first.shape[-2]
        if self.rows == 0:
            self.start = self.end = 0
        grow = max(0, length - self.end)  # the new row needs `length` columns left of `end`
        self._reserve(self.rows + 1, self.end + grow + 1, first)
        self._shift(grow)
        slot = self.rows
        lo = self.end - length
        for layer, src in zip(self._slot_layers, cache.layers):
            layer.k[slot, :, :self.end].zero_()  # masked columns hold zeros, never a previous row's values
            layer.v[slot, :, :self.end].zero_()
            layer.k[slot, :, lo:self.end] = src.keys[0]
            layer.v[slot, :, lo:self.end] = src.values[0]
        self.rows += 1
        self.lengths.append(length)
        self.start = min(self.start, lo)
        return slot

    def remove(self, slot: int) -> None:
        """Drop the row in ``slot``; the last row moves into it (callers re-index that row)."""
        last = self.rows - 1
        if slot != last:
            for layer in self._slot_layers:
                layer.k[slot, :, self.start:self.end] = layer.k[last, :, self.start:self.end]
                layer.v[slot, :, self.start:self.end] = layer.v[last, :, self.start:self.end]
            self.lengths[slot] = self.lengths[last]
        self.lengths.pop()
        self.rows = last
        self.start = self.end - max(self.lengths, default=0)

    def extract(self, slot: int) -> DynamicCache:
        """The row in ``slot`` as a batch-1 ``DynamicCache`` (copied), e.g. for the conversation's prefix cache."""
        lo = self.end - self.lengths[slot]
        out = DynamicCache()
        for i, layer in enumerate(self._slot_layers):
            out.update(layer.k[slot:slot + 1, :, lo:self.end].clone(), layer.v[slot:slot + 1, :, lo:self.end].clone(), i)
        return out

    def step_inputs(self, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(attention_mask (rows, window + 1), position_ids (rows, 1)) for a one-token step of every row; makes room
        for the new column first."""
        k = self._slot_layers[0].k
        if self.end + 1 > k.shape[2]:
            if self.start > 0:
                self._shift(-self.start)
            self._reserve(self.rows, self.end + 1, k)
        width = self.end - self.start
        lengths = torch.as_tensor(self.lengths, dtype=torch.long)
        columns = torch.arange(width + 1)
        mask = (columns[None, :] >= (width - lengths)[:, None]).long()
        return mask.to(device), lengths[:, None].to(device)

    def advance(self) -> None:
        """After a one-token step: every row is one position longer."""
        self.end += 1
        self.lengths = [n + 1 for n in self.lengths]
