"""Turning a raw LLM completion into a valid training ``Conversation`` — or saying why it cannot.

Models answer in many shapes: JSON wrapped in prose or code fences, lists or wrapper objects, other
role names, titles instead of track ids, turns out of order, replies that forget to name the track.
``parse_and_repair`` accepts those variants, repairs what can be repaired from the prompt's own data
(never inventing facts), and validates the result against the schema and the catalog.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.data.llm_repair is a module of the train package: import it, or use python -m")

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from talkplay.catalog import Catalog, Track
from train.data.conversation_schema import (
    MAX_TEXT_CHARS,
    MAX_TURNS,
    MIN_TURNS,
    Conversation,
    ConversationError,
    Message,
    validate_conversation,
)
from talkplay.bundle import Playlist

class RepairError(ConversationError):
    """A completion cannot be repaired into a valid conversation; ``reason`` is a short category."""

    def __init__(self, where: str, message: str, reason: str):
        self.reason = reason
        super().__init__(where, message)


# ---------------------------------------------------------------- parsing and repair

_USER_ROLES = {"user", "human", "listener", "customer", "client", "person", "me"}
_ASSISTANT_ROLES = {"assistant", "bot", "ai", "system", "recommender", "dj", "model", "gpt", "agent", "chatbot",
                    "host", "curator"}
_MUSIC_ROLES = {"music", "track", "song", "recommendation", "tune", "audio", "play", "track_id", "trackid"}
_ROLE_KEYS = ("role", "speaker", "from", "author", "sender", "type")
_TEXT_KEYS = ("content", "text", "message", "value", "utterance")
_TRACK_KEYS = ("track_id", "trackid", "track", "song")
_LIST_KEYS = ("messages", "conversation", "dialogue", "dialog", "turns", "chat", "conversations", "data")
_BRIDGES = ("What's next?", "Another one like that, please.", "Keep them coming.")  # no rejection cue words
_REJECTION = re.compile(
    r"n't\b|\b(no|nope|nah|not|never|skip|pass|meh|ugh|hate|dislike|too|instead|rather|else|different|change|"
    r"switch|boring|wrong|nothing)\b", re.IGNORECASE)


def _norm(text: str) -> str:
    """Lower-case ASCII words: 'Café – “Title”!' → 'cafe title'."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split())


def _decode_all(text: str) -> list[Any]:
    """Every JSON object or array that starts somewhere in ``text`` (outermost first, left to right)."""
    decoder, found, pos = json.JSONDecoder(), [], 0
    while True:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            return found
        i = min(starts)
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            pos = i + 1
            continue
        if isinstance(obj, (dict, list)):
            found.append(obj)
        pos = end


def _salvage(text: str) -> list[dict]:
    """Complete message objects at the start of a cut-off array (the completion hit max_tokens)."""
    decoder, best = json.JSONDecoder(), []
    for m in re.finditer(r"\[", text):
        pos, items = m.end(), []
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text) or text[pos] != "{":
                break
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                break
            items.append(obj)
        if len(items) > len(best) and all(isinstance(x, dict) for x in items):
            best = items
    return best


def _message_list(obj: Any, depth: int = 0) -> list | None:
    """The list of messages inside a decoded completion, whatever the wrapper."""
    if isinstance(obj, list):
        if obj and all(isinstance(x, list) for x in obj) and depth < 3:  # [[...messages...]]
            return _message_list(obj[0], depth + 1)
        return obj if any(isinstance(x, dict) for x in obj) else None
    if isinstance(obj, dict) and depth < 3:
        for k in _LIST_KEYS:
            if k in obj:
                found = _message_list(obj[k], depth + 1)
                if found is not None:
                    return found
        lists = [v for v in obj.values() if isinstance(v, (list, dict))]
        for v in lists:  # an unexpected key name holding the messages
            found = _message_list(v, depth + 1)
            if found is not None:
                return found
    return None


def extract_messages(text: str, notes: list[str]) -> list:
    """The raw message list from a completion: code fences, surrounding prose, trailing commas, truncation."""
    text = text.strip().lstrip("\ufeff")
    try:
        found = _message_list(json.loads(text))
        if found is not None:
            return found
    except json.JSONDecodeError:
        pass
    fences = re.findall(r"```[A-Za-z]*\s*\n?(.*?)```", text, re.DOTALL)
    for attempt, candidates in enumerate(([*fences, text], [re.sub(r",\s*([}\]])", r"\1", c) for c in [*fences, text]])):
        best: list | None = None
        for cand in candidates:
            for obj in _decode_all(cand):
                found = _message_list(obj)
                if found is not None and (best is None or len(found) > len(best)):
                    best = found
        if best is not None:
            notes.append("json extracted from surrounding text" if attempt == 0 else "trailing commas removed")
            return best
    salvaged = _salvage(text)
    if salvaged:
        notes.append("truncated output salvaged")
        return salvaged
    raise ValueError("no JSON message list found in the completion")


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):  # content parts: [{"type": "text", "text": "..."}]
        parts = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None for p in value]
        joined = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
        return joined or None
    return None


def _role(value: Any) -> str | None:
    r = _norm(value).replace(" ", "_") if isinstance(value, str) else ""
    if r in _USER_ROLES:
        return "user"
    if r in _ASSISTANT_ROLES:
        return "assistant"
    if r in _MUSIC_ROLES:
        return "music"
    return None


def _flatten(items: list, notes: list[str]) -> list[tuple[str, Any, bool]]:
    """(role, content, flagged_rejected) triples; roles renamed, turn-shaped objects expanded."""
    out: list[tuple[str, Any, bool]] = []
    for item in items:
        if not isinstance(item, dict):
            notes.append("message dropped (not an object)")
            continue
        raw_role = next((item[k] for k in _ROLE_KEYS if isinstance(item.get(k), str)), None)
        flagged = item.get("rejected") in (True, "true", "True", "yes", 1)
        if raw_role is None:
            # A turn object: {"user": "...", "track_id": "...", "assistant": "..."}
            parts = [(_role(k), v) for k, v in item.items() if _role(k)]
            if not parts:
                notes.append("message dropped (no role)")
                continue
            notes.append("turn objects expanded")
            order = {"user": 0, "music": 1, "assistant": 2}
            for role, v in sorted(parts, key=lambda p: order[p[0]]):
                out.append((role, v, flagged and role == "music"))
            continue
        role = _role(raw_role)
        if role is None:
            notes.append("message dropped (unknown role)")
            continue
        if role != _norm(raw_role):
            notes.append("role renamed")
        content = next((item[k] for k in _TEXT_KEYS if item.get(k) is not None), None)
        if role == "music":
            track = next((item[k] for k in _TRACK_KEYS if item.get(k) is not None), None)
            if track is None and content is None and isinstance(item.get("id"), str):
                track = item["id"]
            if track is None and content is None and ("title" in item or "artist" in item):
                track = {"title": item.get("title"), "artist": item.get("artist")}
            out.append((role, track if track is not None else content, flagged))
            continue
        track = next((item[k] for k in _TRACK_KEYS if item.get(k) is not None), None)
        if role == "assistant" and track is not None:  # a reply that carries its own track
            notes.append("track split from assistant message")
            out.append(("music", track, flagged))
        out.append((role, content, False))
    return out


class _Resolver:
    """Maps what the model wrote for a track (id, title, 'Title by Artist', …) to an allowed track."""

    def __init__(self, allowed: list[Track]):
        self.allowed = allowed
        self.by_id = {t.track_id: t for t in allowed}
        self.by_id_ci = {t.track_id.casefold(): t for t in reversed(allowed)}
        self.by_title: dict[str, list[Track]] = {}
        for t in allowed:
            self.by_title.setdefault(_norm(t.title), []).append(t)

    def _pick(self, tracks: list[Track], artist_hint: str, used: set[str]) -> Track | None:
        if artist_hint:
            named = [t for t in tracks if _norm(t.artist) and _norm(t.artist) in artist_hint]
            tracks = named or tracks
        fresh = [t for t in tracks if t.track_id not in used]
        return (fresh or tracks or [None])[0]

    def resolve(self, value: Any, used: set[str]) -> tuple[Track | None, str]:
        """(track, how) with how in id / title / text; (None, reason) when nothing matches."""
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, dict):
            inner = next((value[k] for k in ("track_id", "id", "content") if isinstance(value.get(k), str)), None)
            if inner is not None:
                value = inner
            else:
                title, artist = value.get("title"), value.get("artist")
                value = f"{title} by {artist}" if isinstance(title, str) and isinstance(artist, str) else title
        if not isinstance(value, str) or not value.strip():
            return None, "empty track"
        s = value.strip().strip("\"'`“”‘’[]()<> ")
        if s in self.by_id:
            return self.by_id[s], "id"
        if s.casefold() in self.by_id_ci:
            return self.by_id_ci[s.casefold()], "id"
        n = _norm(s)
        if n in self.by_title:
            return self._pick(self.by_title[n], "", used), "title"
        for sep in (" — ", " – ", " - ", " by ", " BY ", " By ", " / ", ": "):  # 'Title by Artist', 'Artist - Title'
            if sep in s:
                a, b = s.split(sep, 1)
                for title, artist in ((a, b), (b, a)):
                    if _norm(title) in self.by_title:
                        return self._pick(self.by_title[_norm(title)], _norm(artist), used), "title"
        ids = [t for t in self.allowed if re.search(rf"(?<![\w.:-]){re.escape(t.track_id)}(?![\w.:-])", s)]
        if ids:
            return max(ids, key=lambda t: len(t.track_id)), "id"
        named = self.find_in_text(s, used)
        if named is not None:
            return named, "title"
        return None, "unknown"

    def find_in_text(self, text: str, used: set[str]) -> Track | None:
        """The unused allowed track whose title (longest first) appears in free text, if any."""
        padded = f" {_norm(text)} "
        hits = [t for t in self.allowed if t.track_id not in used and len(_norm(t.title)) >= 4
                and f" {_norm(t.title)} " in padded]
        if not hits:
            return None
        longest = max(len(_norm(t.title)) for t in hits)
        hits = [t for t in hits if len(_norm(t.title)) == longest]
        return self._pick(hits, _norm(text), used)


@dataclass
class _Turn:
    user: list[str] = field(default_factory=list)
    track: Track | None = None
    flagged: bool = False  # the model marked the music message rejected
    before: list[str] = field(default_factory=list)  # assistant text before the track (intro or question)
    after: list[str] = field(default_factory=list)  # assistant text after the track


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1].rstrip() + "…"


def factual_reply(track: Track) -> str:
    """A reply built from metadata alone, for a track the model played without saying anything."""
    reply = f"Here's “{track.title}” by {track.artist}"
    if track.album:
        reply += f", from {track.album}"
    if track.year:
        reply += f" ({track.year})"
    reply += "."
    return f"{reply} {track.caption}" if track.caption else reply


def is_rejection(text: str) -> bool:
    """Whether a user message turns the previous track down (a cue word: no, not, skip, too, instead, …)."""
    return bool(_REJECTION.search(text.replace("’", "'")))


def parse_and_repair(text: str, catalog: Catalog, playlist: Playlist, negatives: Sequence[str],
                     conversation_id: str, split: str, model: str = "", notes: list[str] | None = None
                     ) -> Conversation:
    """Turn one raw completion into a valid ``Conversation`` grounded in ``catalog``.

    Tracks must come from the playlist or the negative set (given by id or, failing that, by title);
    turns are rebuilt as user → music → assistant; a negative-set track the listener turns down in the
    next message is marked ``rejected``. Every repair applied is appended to ``notes`` when given.

    Raises:
        RepairError (a ConversationError): with a short ``reason`` when no valid conversation results.
    """
    notes = notes if notes is not None else []
    where = f"LLM response for playlist {playlist.playlist_id!r}"

    def fail(message: str, reason: str) -> None:
        raise RepairError(where, f"conversation {conversation_id!r}: {message}", reason)

    try:
        items = extract_messages(text, notes)
    except ValueError as err:
        fail(str(err), "no JSON")
    flat = _flatten(items, notes)
    allowed_ids = list(dict.fromkeys([*playlist.track_ids, *negatives]))
    resolver = _Resolver([catalog[t] for t in allowed_ids if t in catalog])
    negative_set = set(negatives)

    turns: list[_Turn] = []
    cur: _Turn | None = None
    used: set[str] = set()  # tracks already assigned, so that ambiguous titles prefer a fresh track
    for role, content, flagged in flat:
        if role == "music":
            track, how = resolver.resolve(content, used)
            if track is None:
                in_catalog = isinstance(content, str) and content.strip() in catalog
                notes.append("track outside playlist+negatives dropped" if in_catalog else "unknown track dropped")
                continue
            if how != "id":
                notes.append("music given by title")
            if cur is None:
                notes.append("track before any user message dropped")
            elif cur.track is None:
                cur.track, cur.flagged = track, flagged
                used.add(track.track_id)
            elif not cur.after and track.track_id != cur.track.track_id:
                notes.append("extra track in one turn dropped")
            elif cur.after:  # a second track after the reply, with no listener message in between
                notes.append("bridging user message inserted")
                turns.append(cur)
                cur = _Turn(user=[_BRIDGES[len(turns) % len(_BRIDGES)]], track=track, flagged=flagged)
                used.add(track.track_id)
            continue
        value = _text(content)
        if value is None:
            notes.append(f"empty {role} message dropped")
            continue
        if role == "user":
            if cur is None:
                cur = _Turn(user=[value])
            elif cur.track is None:
                named = resolver.find_in_text(" ".join(cur.before), used) if cur.before else None
                if named is not None:  # the reply named a track the music message failed to give
                    notes.append("track found in assistant text")
                    cur.track, cur.after, cur.before = named, cur.before, []
                    used.add(named.track_id)
                    turns.append(cur)
                    cur = _Turn(user=[value])
                    continue
                if cur.before:
                    notes.append("clarifying exchange merged")
                    cur.before.clear()  # the question is answered by the merged user text
                else:
                    notes.append("consecutive user messages merged")
                cur.user.append(value)
            else:
                turns.append(cur)
                cur = _Turn(user=[value])
        elif cur is None:
            notes.append("assistant message before any user message dropped")
        elif cur.track is None:
            cur.before.append(value)
        else:
            if cur.after:
                notes.append("consecutive assistant messages merged")
            cur.after.append(value)
    if cur is not None:
        turns.append(cur)

    kept: list[_Turn] = []
    seen: set[str] = set()
    for t in turns:
        if t.track is None:
            named = resolver.find_in_text(" ".join(t.before), seen)
            if named is None or named.track_id in seen:
                notes.append("turn without a track dropped")
                continue
            notes.append("track found in assistant text")
            t.track = named
        if t.track.track_id in seen:
            notes.append("repeated track dropped")
            continue
        seen.add(t.track.track_id)
        kept.append(t)
    if len(kept) > MAX_TURNS:
        notes.append(f"capped at {MAX_TURNS} turns")
        kept = kept[:MAX_TURNS]
    while kept and kept[-1].track.track_id in negative_set:
        notes.append("trailing negative-set turn dropped")  # the dialogue should end on a track they like
        kept.pop()
    if len(kept) < MIN_TURNS:
        fail(f"only {len(kept)} usable turn(s) after repair; need {MIN_TURNS}–{MAX_TURNS}", "too few turns")

    messages: list[Message] = []
    rejected_prev = False
    for i, t in enumerate(kept):
        rejected = (t.track.track_id in negative_set and i + 1 < len(kept)
                    and is_rejection(" ".join(kept[i + 1].user)))
        if t.flagged and not rejected:
            notes.append("rejected flag ignored (not a negative-set track turned down)")
        reply = " ".join(t.before + t.after)
        if not reply:
            notes.append("missing reply inserted")
            reply = factual_reply(t.track)
        low = reply.lower()
        if t.track.title.lower() not in low and t.track.artist.lower() not in low:
            notes.append("grounding mention added")
            reply = f"“{t.track.title}” by {t.track.artist} — {reply}"
        user = " ".join(t.user)
        if len(user) > MAX_TEXT_CHARS or len(reply) > MAX_TEXT_CHARS:
            notes.append("text shortened")
        messages += [Message("user", _shorten(user), intent="rejection" if rejected_prev else None),
                     Message("music", t.track.track_id, rejected=rejected),
                     Message("assistant", _shorten(reply))]
        rejected_prev = rejected
    conv = Conversation(conversation_id, tuple(messages), split, playlist.playlist_id,
                        tuple(negatives), f"llm:{model or 'unknown'}", True)
    try:
        validate_conversation(conv, catalog, where)
    except ConversationError as err:  # a safety net: the repairs above should leave nothing to find
        raise RepairError(where, str(err).split(": ", 1)[-1], f"invalid {err.field or 'conversation'}") from err
    return conv
