"""Conversation state and the events a recommendation turn streams: plain typed records, no torch.

The caller (app, terminal chat, evaluation) holds a :class:`ConversationState` and passes it to
:meth:`talkplay.recommender.Recommender.respond`, which yields :class:`TrackChosen` (a new track plays) or
:class:`Talk` (the model answers in words only: a greeting, thanks, a question about the playing track), then
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

MatchKind = Literal["constrained", "exact", "partial", "fallback", "talk"]


@dataclass(frozen=True)
class Turn:
    """One answered message: the user's text, the track that played (None when the model answered in words only),
    and the reply."""

    user: str
    track_id: str | None
    reply: str
    match: MatchKind  # how the span became a track ("constrained" decoding, paper-mode matching), or "talk"
    score: float  # log-probability of the span (constrained), the partial-match score (paper), or P(music) (talk)
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
class Talk:
    """The model chose to answer in words only (no music span): no new track; the one playing keeps playing."""

    p_music: float  # the model's probability of opening a music span here (below the engine's threshold)
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


Event = TrackChosen | Talk | TextDelta | Done


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
        """The tracks played so far, in order (turns answered in words only have none)."""
        return [t.track_id for t in self.turns if t.track_id is not None]

    @property
    def last_track(self) -> str | None:
        """The track playing now: the last one played (None before the first)."""
        return next((t.track_id for t in reversed(self.turns) if t.track_id is not None), None)

    def reject(self, track_id: str | None = None) -> str:
        """Mark ``track_id`` (default: the last played track) as rejected; returns it."""
        if track_id is None:
            track_id = self.last_track
            if track_id is None:
                raise ValueError("nothing has played yet, so nothing can be rejected")
        self.rejected.add(track_id)
        return track_id

    def exclude(self, extra: Iterable[str] = ()) -> ExcludeTracks:
        """Tracks the next turn must not recommend: everything played, everything rejected, and ``extra``."""
        return ExcludeTracks(played=frozenset(self.played) | frozenset(extra), rejected=frozenset(self.rejected))

    def messages(self, user_text: str) -> list[_Message]:
        """History as user → music → assistant messages (user → assistant for a turn answered in words only),
        ending with the new ``user_text``."""
        out: list[_Message] = []
        for t in self.turns:
            out.append(_Message("user", t.user))
            if t.track_id is not None:
                out.append(_Message("music", t.track_id, t.track_id in self.rejected))
            out.append(_Message("assistant", t.reply))
        out.append(_Message("user", user_text))
        return out
