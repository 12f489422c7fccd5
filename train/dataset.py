"""Training examples: rendering both TalkPlay tasks to ids/labels, mixing them, and batching.

Two tasks share one chat template (:mod:`talkplay.render`):

* conversation — :func:`talkplay.render.render_conversation` (music spans, replies and end-of-turn
  supervised), fitted to ``max_tokens`` by dropping the oldest turns;
* playlist continuation (L_playlist) — :func:`render_continuation`: a user message "Continue this
  playlist:" followed by the prefix tracks' music spans, and an assistant message made of the
  continuation's music spans; only the assistant message (and its end-of-turn token) is supervised.

Mixing policy (:class:`MixedStream`): the k-th example of the training stream is a playlist example iff
⌊(k+1)·r⌋ > ⌊k·r⌋ with r = ``playlist_fraction``, so every window of examples holds the two tasks in
the ratio r : 1−r (no randomness in the ratio). Within a task, examples are visited in a fresh seeded
permutation per pass. The stream is random access (``stream[k]``), so resuming at step s needs only s.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from talkplay.render import CONTINUE_PROMPT, IGNORE_INDEX, RenderConfig, render_conversation  # noqa: F401
from talkplay.render import render_continuation as _render_continuation

CONVERSATION, PLAYLIST = "conversation", "playlist"  # task names (CSV columns use them)


@dataclass(frozen=True)
class Example:
    """One rendered training example."""

    input_ids: list[int]  # whole rendering, chat template included
    labels: list[int]  # input_ids where supervised, IGNORE_INDEX elsewhere
    task: str  # CONVERSATION or PLAYLIST
    source: str  # conversation_id or playlist_id (for error messages and debugging)


def render_continuation(tokenizer, prefix: Sequence[str], continuation: Sequence[str], store,
                        config: RenderConfig = RenderConfig(), source: str = "") -> Example:
    """A playlist-continuation example (rendering lives in ``talkplay.render.render_continuation``)."""
    ids, labels = _render_continuation(tokenizer, prefix, continuation, store, config, source)
    return Example(ids, labels, PLAYLIST, source)


def render_conversation_example(tokenizer, conversation, store, catalog, config: RenderConfig) -> Example:
    """A conversation (train.conversation_schema.Conversation) as an Example (oldest turns dropped to fit)."""
    out = render_conversation(tokenizer, conversation.messages, store, catalog, config)
    return Example(out.input_ids, out.labels, CONVERSATION, conversation.conversation_id)


class TaskExamples:
    """Lazily rendered examples of one task (rendering thousands up front would delay step 1)."""

    def __init__(self, task: str, items: Sequence[Any], render):
        self.task, self.items, self._render = task, list(items), render
        self._cache: dict[int, Example] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Example:
        if i not in self._cache:
            self._cache[i] = self._render(self.items[i])
        return self._cache[i]


def conversation_examples(tokenizer, conversations, store, catalog, config: RenderConfig) -> TaskExamples:
    return TaskExamples(CONVERSATION, conversations,
                        lambda c: render_conversation_example(tokenizer, c, store, catalog, config))


def continuation_examples(tokenizer, sequences, store, config: RenderConfig) -> TaskExamples:
    """From train.sequences.ContinuationExample records (prefix, continuation track ids)."""
    return TaskExamples(PLAYLIST, sequences,
                        lambda s: render_continuation(tokenizer, s.prefix, s.continuation, store, config,
                                                      s.playlist_id))


# ---------------------------------------------------------------------------------------- mixing


class MixedStream:
    """An endless, deterministic, random-access stream mixing the two tasks (see module docstring).

    Args:
        conversations / playlists: per-task examples (either may be empty, not both).
        playlist_fraction: share r of playlist examples in the stream, in [0, 1]; forced to 0 or 1
            when one task has no examples.
        seed: the per-pass permutations.
    """

    def __init__(self, conversations: Sequence[Example], playlists: Sequence[Example], playlist_fraction: float,
                 seed: int):
        if not 0.0 <= playlist_fraction <= 1.0:
            raise ValueError(f"playlist_fraction={playlist_fraction}: expected a value in [0, 1]")
        if not len(conversations) and not len(playlists):
            raise ValueError("MixedStream: no conversation and no playlist examples")
        if not len(playlists):
            playlist_fraction = 0.0
        elif not len(conversations):
            playlist_fraction = 1.0
        self.tasks = {CONVERSATION: conversations, PLAYLIST: playlists}
        self.r, self.seed = playlist_fraction, seed
        self._perms: dict[tuple[str, int], list[int]] = {}

    def task_of(self, k: int) -> tuple[str, int]:
        """(task, index of this example within the task's own stream) for stream position k."""
        n_play_before = int(k * self.r)  # floor: playlist examples among positions 0..k-1
        if int((k + 1) * self.r) > n_play_before:
            return PLAYLIST, n_play_before
        return CONVERSATION, k - n_play_before

    def _perm(self, task: str, epoch: int) -> list[int]:
        key = (task, epoch)
        if key not in self._perms:
            order = list(range(len(self.tasks[task])))
            random.Random(f"{self.seed}:{task}:{epoch}").shuffle(order)
            self._perms = {k: v for k, v in self._perms.items() if k[0] != task or k[1] >= epoch - 1}
            self._perms[key] = order
        return self._perms[key]

    def __getitem__(self, k: int) -> Example:
        if k < 0:
            raise IndexError(f"MixedStream index {k} < 0")
        task, i = self.task_of(k)
        n = len(self.tasks[task])
        return self.tasks[task][self._perm(task, i // n)[i % n]]

    def batch(self, start: int, size: int) -> list[Example]:
        return [self[k] for k in range(start, start + size)]


# ---------------------------------------------------------------------------------------- batching


def collate(examples: Sequence[Example], pad_id: int, pad_multiple: int = 1) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example (rounded up to ``pad_multiple``): input_ids with ``pad_id``, labels
    with IGNORE_INDEX, mask 0.

    Also returns ``task`` (1 for playlist examples, 0 for conversations) for per-task loss logging.
    """
    if not examples:
        raise ValueError("collate: empty batch")
    width = max(len(e.input_ids) for e in examples)
    width = -(-width // pad_multiple) * pad_multiple
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        if len(e.input_ids) != len(e.labels):
            raise ValueError(f"example {e.source!r}: {len(e.input_ids)} ids but {len(e.labels)} labels")
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        labels[row, :n] = torch.tensor(e.labels, dtype=torch.long)
        mask[row, :n] = 1
    task = torch.tensor([e.task == PLAYLIST for e in examples], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "task": task}
