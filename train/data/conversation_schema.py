"""Training conversations: typed records in the TalkPlay paper's format, validation, JSONL files.

A conversation is a list of messages with role ``user``, ``music`` (content = a catalog track_id) or
``assistant``, organised in turns: ``user → music → assistant``, one track per turn, 4–10 turns. A
music message flagged ``rejected`` is a recommendation the listener turns down in the next user message
(drawn from the playlist's negative set); the assistant then adapts. Generation metadata (intent,
template id, held-out flag) rides along on each message so that statistics and the held-out-phrasing
guarantee can be checked, and every conversation says which generator made it and that it is synthetic.

Validation errors name the file, the conversation (row), the message index and the field.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.data.conversation_schema is a module of the train package: import it, or use python -m")

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from talkplay.catalog import Catalog, CatalogError, atomic_write

ROLES = ("user", "music", "assistant")
MIN_TURNS, MAX_TURNS = 4, 10
MAX_TEXT_CHARS = 2000
INTENTS = (
    "open_genre", "open_mood", "open_instrument", "open_tempo", "open_era", "open_activity",
    "specific_track", "specific_artist", "more_like_this", "direction_change", "rejection", "acceptance",
    "chit_chat",
)


@dataclass(frozen=True)
class Message:
    role: str  # "user" | "music" | "assistant"
    content: str  # text, or a track_id for music messages
    intent: str | None = None  # user messages: one of INTENTS
    template: str | None = None  # id of the phrasing template that produced a user message
    held_out: bool = False  # user messages: uses a phrasing or slot word held out of training
    rejected: bool = False  # music messages: the listener rejects this track in the next user message


@dataclass(frozen=True)
class Conversation:
    conversation_id: str  # unique within a file
    messages: tuple[Message, ...]  # user/music/assistant turns
    split: str  # "train" | "valid" | "test"
    playlist_id: str | None = None  # the playlist the conversation was grown from
    negatives: tuple[str, ...] = ()  # track ids the listener would reject (the paper's negative set)
    generator: str = ""  # e.g. "offline-templates v1 seed=0" or "llm:<model>"
    synthetic: bool = True  # always True for generated data; shown as such in docs and UI

    @property
    def turns(self) -> list[tuple[Message, Message, Message]]:
        m = self.messages
        return [(m[i], m[i + 1], m[i + 2]) for i in range(0, len(m) - 2, 3)]

    @property
    def tracks(self) -> list[str]:
        return [m.content for m in self.messages if m.role == "music"]

    def to_json(self) -> dict:
        data = asdict(self)
        data["messages"] = [{k: v for k, v in asdict(msg).items() if v not in (None, False)} for msg in self.messages]
        data["negatives"] = list(self.negatives)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Conversation":
        msgs = tuple(Message(**m) for m in data["messages"])
        return cls(data["conversation_id"], msgs, data["split"], data.get("playlist_id"),
                   tuple(data.get("negatives", ())), data.get("generator", ""), data.get("synthetic", True))


class ConversationError(CatalogError):
    """A conversation breaks the schema; the message names file, row (conversation), message and field."""


def validate_conversation(conv: Conversation, catalog: Catalog | None = None, where: str = "conversation",
                          row: int | None = None, require_grounding: bool = True) -> None:
    """Check structure, track ids and grounding of one conversation.

    Args:
        catalog: if given, every music message must name one of its tracks, and (with
            ``require_grounding``) each assistant reply must name the title or artist of the track it follows.
    Raises:
        ConversationError
    """

    def fail(msg: str, index: int | None = None, fld: str | None = None) -> None:
        at = f"conversation {conv.conversation_id!r}" + (f", message {index}" if index is not None else "")
        raise ConversationError(where, f"{at}: {msg}", row=row, field=fld)

    if not conv.conversation_id:
        fail("empty conversation_id", fld="conversation_id")
    if conv.split not in ("train", "valid", "test"):
        fail(f"split {conv.split!r} is not train/valid/test", fld="split")
    msgs = conv.messages
    if len(msgs) % 3 or not MIN_TURNS <= len(msgs) // 3 <= MAX_TURNS:
        fail(f"{len(msgs)} messages: expected {MIN_TURNS}–{MAX_TURNS} turns of user → music → assistant",
             fld="messages")
    seen: set[str] = set()
    for i, m in enumerate(msgs):
        expected = ROLES[i % 3]
        if m.role != expected:
            fail(f"role {m.role!r}, expected {expected!r} (turns are user → music → assistant)", i, "role")
        if not isinstance(m.content, str) or not m.content.strip():
            fail("empty content", i, "content")
        if len(m.content) > MAX_TEXT_CHARS:
            fail(f"content longer than {MAX_TEXT_CHARS} characters", i, "content")
        if m.role == "user" and m.intent is not None and m.intent not in INTENTS:
            fail(f"unknown intent {m.intent!r}", i, "intent")
        if m.role == "music":
            if catalog is not None and m.content not in catalog:
                fail(f"track {m.content!r} is not in the catalog", i, "content")
            if m.content in seen:
                fail(f"track {m.content!r} is recommended twice", i, "content")
            seen.add(m.content)
            if m.rejected and i + 1 + 2 >= len(msgs):
                fail("a rejected track must be followed by another turn", i, "rejected")
            if catalog is not None and require_grounding:
                t = catalog[m.content]
                reply = msgs[i + 1].content.lower()
                if t.title.lower() not in reply and t.artist.lower() not in reply:
                    fail(f"assistant reply does not name {t.title!r} or {t.artist!r}", i + 1, "content")
        if m.role != "music" and m.rejected:
            fail("only music messages can be rejected", i, "rejected")
    for i in range(2, len(msgs) - 1, 3):
        if msgs[i - 1].rejected and msgs[i + 1].intent not in (None, "rejection"):
            fail("the message after a rejected track must be the rejection", i + 1, "intent")


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write JSON lines atomically (gzip-compressed when the name ends in .gz, with a fixed mtime so the
    bytes depend only on the content); returns the number of records."""
    import gzip

    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]
    data = ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")
    path = Path(path)
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return len(lines)


def open_jsonl(path: str | os.PathLike):
    """A text reader for plain or .gz JSON-lines files."""
    import gzip

    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def write_conversations(path: str | os.PathLike, conversations: Iterable[Conversation]) -> int:
    """Write conversations as JSONL (.jsonl or .jsonl.gz) atomically; returns the number written."""
    return write_jsonl(path, (c.to_json() for c in conversations))


def read_conversations(path: str | os.PathLike, catalog: Catalog | None = None,
                       require_grounding: bool = True) -> list[Conversation]:
    """Read and validate a JSONL file of conversations (rows counted from 1)."""
    return list(iter_conversations(path, catalog, require_grounding))


def iter_conversations(path: str | os.PathLike, catalog: Catalog | None = None,
                       require_grounding: bool = True) -> Iterator[Conversation]:
    path = Path(path)
    seen: set[str] = set()
    with open_jsonl(path) as f:
        for row, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                conv = Conversation.from_json(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ConversationError(path, f"not a conversation record ({err})", row=row) from err
            if conv.conversation_id in seen:
                raise ConversationError(path, f"duplicate conversation_id {conv.conversation_id!r}", row=row,
                                        field="conversation_id")
            seen.add(conv.conversation_id)
            validate_conversation(conv, catalog, str(path), row, require_grounding)
            yield conv


@dataclass
class ConversationStats:
    """Numbers for the paper's Table 1 (per split)."""

    playlists: int = 0
    dialogues: int = 0
    tracks: int = 0  # distinct tracks recommended
    vocabulary: int = 0  # distinct lower-cased word types in user and assistant text
    avg_turns: float = 0.0
    avg_query_words: float = 0.0
    avg_response_words: float = 0.0
    intents: dict[str, int] = field(default_factory=dict)
    held_out_user_turns: int = 0
    cold_start_dialogues: int = 0  # dialogues recommending at least one cold-start track


def conversation_stats(conversations: list[Conversation], cold: set[str] = frozenset()) -> ConversationStats:
    import re

    words: set[str] = set()
    q, r, turns, intents = [], [], [], {}
    for c in conversations:
        turns.append(len(c.messages) // 3)
        for m in c.messages:
            if m.role == "music":
                continue
            toks = re.findall(r"[\w']+", m.content.lower())
            words.update(toks)
            (q if m.role == "user" else r).append(len(toks))
            if m.role == "user" and m.intent:
                intents[m.intent] = intents.get(m.intent, 0) + 1
    mean = lambda xs: round(sum(xs) / len(xs), 2) if xs else 0.0  # noqa: E731
    return ConversationStats(
        playlists=len({c.playlist_id for c in conversations if c.playlist_id}),
        dialogues=len(conversations),
        tracks=len({t for c in conversations for t in c.tracks}),
        vocabulary=len(words), avg_turns=mean(turns), avg_query_words=mean(q), avg_response_words=mean(r),
        intents=dict(sorted(intents.items(), key=lambda kv: -kv[1])),
        held_out_user_turns=sum(1 for c in conversations for m in c.messages if m.role == "user" and m.held_out),
        cold_start_dialogues=sum(1 for c in conversations if set(c.tracks) & cold),
    )
