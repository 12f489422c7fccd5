"""Training examples: rendering both TalkPlay tasks to ids/labels, mixing them, and batching.

Two tasks share one chat template (:mod:`talkplay.render`):

* conversation — :func:`talkplay.render.render_conversation` (music spans, replies and end-of-turn
  supervised), fitted to ``max_tokens`` by dropping the oldest turns;
* playlist continuation (L_playlist) — :func:`render_continuation`: a user message "Continue this
  playlist:" followed by the prefix tracks' music spans, and an assistant message made of the
  continuation's music spans; only the assistant message (and its end-of-turn token) is supervised.

* text → music (3MToken's text-to-music instructions) — :func:`render_request_example`: a first-turn prompt
  and the target's music span (``train.data.text_requests``), only the span supervised.

Mixing policy (:class:`MixedStream`): the k-th example of the training stream is a text → music example
iff ⌊(k+1)·q⌋ > ⌊k·q⌋ with q = ``request_fraction``; the remaining positions, renumbered j = 0, 1, …, hold a
playlist example iff ⌊(j+1)·r⌋ > ⌊j·r⌋ with r = ``playlist_fraction``. Every window of examples thus
holds the tasks in fixed proportions (no randomness in the ratio). Within a task, examples are visited in
a fresh seeded permutation per pass. The stream is random access (``stream[k]``), so resuming at step s
needs only s.

Batching (:func:`length_chunks`): a step's examples are sorted by length and cut into chunks of at most
``max_tokens`` padded tokens, so a 60-token request is never padded to a 500-token conversation.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.training.dataset is a module of the train package: import it, or use python -m")

import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from talkplay.render import CONTINUE_PROMPT, IGNORE_INDEX, RenderConfig, render_conversation, render_prompt  # noqa: F401
from talkplay.render import render_continuation as _render_continuation
from talkplay.tokens import END_OF_MUSIC

CONVERSATION, PLAYLIST, REQUEST = "conversation", "playlist", "request"  # task names (CSV columns use them)
TASKS = (CONVERSATION, PLAYLIST, REQUEST)  # the task code of an example is its index here


@dataclass(frozen=True)
class Example:
    """One rendered training example."""

    input_ids: list[int]  # whole rendering, chat template included
    labels: list[int]  # input_ids where supervised, IGNORE_INDEX elsewhere
    task: str  # CONVERSATION, PLAYLIST or REQUEST
    source: str  # conversation_id or playlist_id (for error messages and debugging)


def render_continuation(tokenizer, prefix: Sequence[str], continuation: Sequence[str], store,
                        config: RenderConfig = RenderConfig(), source: str = "") -> Example:
    """A playlist-continuation example (rendering lives in ``talkplay.render.render_continuation``)."""
    ids, labels = _render_continuation(tokenizer, prefix, continuation, store, config, source)
    return Example(ids, labels, PLAYLIST, source)


def render_conversation_example(tokenizer, conversation, store, catalog, config: RenderConfig) -> Example:
    """A conversation (train.data.conversation_schema.Conversation) as an Example (oldest turns dropped to fit)."""
    out = render_conversation(tokenizer, conversation.messages, store, catalog, config)
    return Example(out.input_ids, out.labels, CONVERSATION, conversation.conversation_id)


def render_request_example(tokenizer, request, store, catalog, config: RenderConfig) -> Example:
    """A text → music example (``train.data.text_requests.Request``): the first-turn prompt exactly as inference
    renders it, then the target track's music span; only ``<start_of_music>`` … ``<end_of_music>`` is
    supervised (no grounding, no reply: those are the conversation task's)."""
    from train.data.conversation_schema import Message

    prompt = render_prompt(tokenizer, [Message("user", request.text)], store, catalog, config)
    music = [*tokenizer.convert_tokens_to_ids(store.tokens_of(request.track_id)),
             tokenizer.convert_tokens_to_ids(END_OF_MUSIC)]
    labels = [IGNORE_INDEX] * (len(prompt) - 1) + [prompt[-1]] + music  # prompt[-1] is <start_of_music>
    return Example(prompt + music, labels, REQUEST, f"{request.track_id}:{request.text[:40]}")


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


def request_examples(tokenizer, requests, store, catalog, config: RenderConfig) -> TaskExamples:
    """From train.data.text_requests.Request records (text, track_id)."""
    return TaskExamples(REQUEST, requests,
                        lambda r: render_request_example(tokenizer, r, store, catalog, config))


def continuation_examples(tokenizer, sequences, store, config: RenderConfig) -> TaskExamples:
    """From train.data.sequences.ContinuationExample records (prefix, continuation track ids)."""
    return TaskExamples(PLAYLIST, sequences,
                        lambda s: render_continuation(tokenizer, s.prefix, s.continuation, store, config,
                                                      s.playlist_id))


# ---------------------------------------------------------------------------------------- mixing


class MixedStream:
    """An endless, deterministic, random-access stream mixing the tasks (see module docstring).

    Args:
        conversations / playlists / requests: per-task examples (any may be empty, not all).
        playlist_fraction: share r of playlist examples among the non-request positions, in [0, 1];
            forced to 0 or 1 when one of conversations/playlists is empty.
        seed: the per-pass permutations.
        request_fraction: share q of text → music examples in the whole stream, in [0, 1); 0 when
            there are none, 1 when they are all there is.
    """

    def __init__(self, conversations: Sequence[Example], playlists: Sequence[Example], playlist_fraction: float,
                 seed: int, requests: Sequence[Example] = (), request_fraction: float = 0.0):
        for name, value in (("playlist_fraction", playlist_fraction), ("request_fraction", request_fraction)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value}: expected a value in [0, 1]")
        if not len(conversations) and not len(playlists) and not len(requests):
            raise ValueError("MixedStream: no conversation, playlist or text → music examples")
        if not len(requests):
            request_fraction = 0.0
        elif not len(conversations) and not len(playlists):
            request_fraction = 1.0
        elif request_fraction >= 1.0:
            raise ValueError("request_fraction=1 would never use the conversation and playlist examples")
        if not len(playlists):
            playlist_fraction = 0.0
        elif not len(conversations):
            playlist_fraction = 1.0
        self.tasks = {CONVERSATION: conversations, PLAYLIST: playlists, REQUEST: requests}
        self.r, self.q, self.seed = playlist_fraction, request_fraction, seed
        self._perms: dict[tuple[str, int], list[int]] = {}

    @staticmethod
    def _split(k: int, share: float) -> tuple[bool, int]:
        """(position k belongs to the minority task, its index in that task's or the rest's own order)."""
        before = int(k * share)  # floor: minority positions among 0..k-1
        if int((k + 1) * share) > before:
            return True, before
        return False, k - before

    def task_of(self, k: int) -> tuple[str, int]:
        """(task, index of this example within the task's own stream) for stream position k."""
        is_request, j = self._split(k, self.q)
        if is_request:
            return REQUEST, j
        is_playlist, i = self._split(j, self.r)
        return (PLAYLIST if is_playlist else CONVERSATION), i

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

    Also returns ``task`` (the example's index in ``TASKS``: 0 conversation, 1 playlist, 2 text → music)
    for per-task losses.
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
    task = torch.tensor([TASKS.index(e.task) for e in examples], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "task": task}


def length_chunks(examples: Sequence[Example], max_tokens: int, pad_multiple: int = 1) -> list[list[Example]]:
    """Cut ``examples`` into chunks of similar length, each at most ``max_tokens`` padded tokens
    (rows × width rounded up to ``pad_multiple``; a single longer example is a chunk of its own).

    Sorting by length first means short examples are padded only to their neighbours' length; the
    order is deterministic (length, then the examples' order), so a resumed run sees the same chunks.
    """
    if max_tokens <= 0:
        return [list(examples)] if examples else []
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].input_ids), i))
    chunks: list[list[Example]] = []
    current: list[Example] = []
    for i in order:
        e = examples[i]
        width = -(-len(e.input_ids) // pad_multiple) * pad_multiple
        if current and width * (len(current) + 1) > max_tokens:
            chunks.append(current)
            current = []
        current.append(e)
    if current:
        chunks.append(current)
    return chunks


def supervised_count(example: Example) -> int:
    """Supervised next-token targets of an example (labels after the first position that are not ignored)."""
    return sum(1 for x in example.labels[1:] if x != IGNORE_INDEX)
