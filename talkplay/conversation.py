"""Conversation state and the events a recommendation turn streams: plain typed records, no torch.

The caller (app, terminal chat, evaluation) holds a :class:`ConversationState` and passes it to
:meth:`talkplay.recommender.Recommender.respond`, which yields :class:`TrackChosen`, then
:class:`TextDelta` pieces, then :class:`Done` — and appends the finished :class:`Turn` to the state.
Played and rejected tracks are derived from the state, so a conversation never repeats a track or
brings back a rejected one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from talkplay.trie import ExcludeTracks

MatchKind = Literal["constrained", "exact", "partial", "fallback"]


@dataclass(frozen=True)
class Turn:
    """One answered request: the user's text, the track that played, and the reply about it."""

    user: str
    track_id: str
    reply: str
    match: MatchKind  # how the span became a track ("constrained" decoding, or paper-mode matching)
    score: float  # log-probability of the span (constrained) or the partial-match score (paper mode)
    matched_modalities: tuple[str, ...]  # modalities the generated tokens share with the track
    tokens: tuple[str, ...] = ()  # the generated music tokens


@dataclass(frozen=True)
class TrackChosen:
    """The music span resolved: ``track`` plays now; the reply that follows is about it."""

    track: Any  # talkplay.catalog.Track
    score: float
    matched_modalities: tuple[str, ...]
    match: MatchKind = "constrained"
    tokens: tuple[str, ...] = ()
    seconds: float = 0.0  # time from the request to this event


@dataclass(frozen=True)
class TextDelta:
    """The next piece of the reply (concatenate them in order)."""

    text: str


@dataclass(frozen=True)
class Done:
    """The turn is complete and has been appended to the state."""

    turn: Turn
    reply_tokens: int = 0
    seconds: float = 0.0  # whole turn


Event = TrackChosen | TextDelta | Done


@dataclass(frozen=True)
class _Message:
    """The message shape :mod:`talkplay.render` reads (role, content, rejected)."""

    role: str
    content: str
    rejected: bool = False


@dataclass
class ConversationState:
    """History of one conversation plus the tracks the listener rejected. Mutable; one per conversation."""

    turns: list[Turn] = field(default_factory=list)
    rejected: set[str] = field(default_factory=set)
    # identifies the conversation to the engine's per-conversation caches (talkplay.kvcache.PrefixCache)
    key: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False)

    @property
    def played(self) -> list[str]:
        return [t.track_id for t in self.turns]

    def reject(self, track_id: str | None = None) -> str:
        """Mark ``track_id`` (default: the last played track) as rejected; returns it."""
        if track_id is None:
            if not self.turns:
                raise ValueError("nothing has played yet, so nothing can be rejected")
            track_id = self.turns[-1].track_id
        self.rejected.add(track_id)
        return track_id

    def exclude(self, extra: Iterable[str] = ()) -> ExcludeTracks:
        """Tracks the next turn must not recommend: everything played, everything rejected, and ``extra``."""
        return ExcludeTracks(played=frozenset(self.played) | frozenset(extra), rejected=frozenset(self.rejected))

    def messages(self, user_text: str) -> list[_Message]:
        """History as user → music → assistant messages, ending with the new ``user_text``."""
        out: list[_Message] = []
        for t in self.turns:
            out += [_Message("user", t.user), _Message("music", t.track_id, t.track_id in self.rejected),
                    _Message("assistant", t.reply)]
        out.append(_Message("user", user_text))
        return out
