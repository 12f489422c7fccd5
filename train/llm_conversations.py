"""Optional: training conversations written by an LLM behind an OpenAI-compatible chat endpoint.

    python -m train.llm_conversations --catalog catalog/demo --base-url http://localhost:8000/v1 \\
        --model my-model --limit 20 --out catalog/demo/conversations_llm.jsonl

The TalkPlay paper built its dialogues by showing an LLM a playlist (tracks with metadata) and a
negative set (tracks the listener would turn down) and asking for a music-discovery chat as JSON.
This module owns our version of that pipeline for people who have such an endpoint:

* ``build_prompt`` — the one place the prompt lives (system + user message);
* ``call_chat`` — a standard-library HTTP client (Bearer key from an environment variable, JSON mode
  with a fallback, retries with backoff on 429/5xx/timeouts, a simple requests-per-minute limit);
* ``parse_and_repair`` — turns a raw completion into a valid ``Conversation`` or says why it cannot;
* ``generate_with_llm`` — the loop over playlists, with a JSONL cache of raw responses so a rerun
  never pays twice for the same prompt.

Nothing here runs without an endpoint; the offline generator remains the default. Every record is
marked synthetic and names its generator as ``llm:<model>``. The API key is read from the environment
at call time and never logged, cached or put into error messages.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import sys
import threading
import time
import unicodedata
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkplay.catalog import Catalog, CatalogError, Track, load_catalog
from train.conversation_schema import (
    MAX_TEXT_CHARS,
    MAX_TURNS,
    MIN_TURNS,
    Conversation,
    ConversationError,
    Message,
    validate_conversation,
    write_conversations,
)
from train.playlists import Playlist, read_playlists

USER_AGENT = "TalkPlay-llm-conversations/1"


@dataclass(frozen=True)
class LLMConfig:
    """How to reach the chat endpoint and how to sample from it."""

    base_url: str = "http://localhost:8000/v1"  # OpenAI-compatible API root; /chat/completions is appended
    model: str = ""  # model name sent to the endpoint; also recorded as generator "llm:<model>"
    api_key_env: str | None = "OPENAI_API_KEY"  # env var holding the key; None/unset → no Authorization header
    temperature: float = 0.8  # sampling temperature: dialogues should vary between playlists
    max_tokens: int = 3000  # completion budget; 10 turns of JSON fit comfortably
    timeout_s: float = 120.0  # per-request socket timeout
    max_retries: int = 4  # extra attempts after a 429, a 5xx, a timeout or a dropped connection
    backoff_s: float = 2.0  # first wait before a retry; doubles each attempt (Retry-After wins when given)
    requests_per_minute: float = 0.0  # client-side rate limit; 0 = unlimited
    json_mode: bool = True  # ask for response_format json_object (dropped automatically on HTTP 400)
    seed: int = 0  # seeds negatives, turn counts and prompt variations; also sent to the endpoint

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"LLMConfig.base_url {self.base_url!r} must start with http:// or https://")
        if self.max_retries < 0 or self.timeout_s <= 0 or self.requests_per_minute < 0 or self.max_tokens <= 0:
            raise ValueError("LLMConfig: max_retries ≥ 0, timeout_s > 0, max_tokens > 0 and requests_per_minute ≥ 0")


class LLMError(RuntimeError):
    """The chat endpoint failed; the message names the URL and the HTTP status, never the key."""

    def __init__(self, url: str, message: str, status: int | None = None):
        self.url, self.status = url, status
        super().__init__(f"POST {url}: " + (f"HTTP {status}: " if status is not None else "") + message)


class RepairError(ConversationError):
    """A completion cannot be repaired into a valid conversation; ``reason`` is a short category."""

    def __init__(self, where: str, message: str, reason: str):
        self.reason = reason
        super().__init__(where, message)


# ---------------------------------------------------------------- the prompt

_OPENINGS = (
    "with a vague mood or feeling",
    "by describing what they are doing and want music for",
    "by naming a genre or style",
    "by asking for a particular instrument or sound",
    "by describing a scene or setting (a game level, a film moment, a place)",
    "by asking for a specific artist or track they already know from the playlist",
    "with a short, casual request and few details",
)

_SYSTEM_PROMPT = (
    "You write training dialogues for a conversational music recommender. You are shown one listener's "
    "playlist and a few tracks that listener would turn down, and you write a single realistic chat in which "
    "the listener discovers music and the recommender plays tracks for them. You never invent tracks or facts: "
    "every track played comes from the lists you are given, and everything the recommender says about a track "
    "is supported by that track's metadata. You answer with one JSON object and nothing else."
)


def _track_line(t: Track) -> str:
    # One compact JSON object per track: exact ids and titles survive, and empty fields cost no tokens.
    d: dict[str, Any] = {"track_id": t.track_id, "title": t.title, "artist": t.artist}
    if t.album:
        d["album"] = t.album
    if t.year is not None:
        d["year"] = t.year
    if t.tags:
        d["tags"] = list(t.tags)
    if t.caption:
        d["caption"] = t.caption
    return json.dumps(d, ensure_ascii=False)


def plan_rejections(n_playlist: int, n_negatives: int, n_turns: int, rng: random.Random) -> int:
    """How many turns play a negative-set track that the listener turns down (0 without negatives)."""
    if n_negatives == 0:
        return 0
    want = rng.choice((1, 1, 2)) if n_turns >= 5 else 1
    need = max(0, n_turns - n_playlist)  # a short playlist needs rejections to reach n_turns
    return max(need, min(want, n_negatives, n_turns - 1))


def build_prompt(playlist_tracks: Sequence[Track], negative_tracks: Sequence[Track], n_turns: int,
                 rng: random.Random, playlist_name: str = "") -> list[dict]:
    """The chat messages (system + user) asking for one dialogue of ``n_turns`` turns as JSON.

    ``rng`` picks how the listener opens and how many rejections to include, so prompts vary between
    playlists but are reproducible for a seed.

    Raises:
        ValueError: if ``n_turns`` is outside 4–10 or the tracks cannot fill that many turns.
    """
    if not MIN_TURNS <= n_turns <= MAX_TURNS:
        raise ValueError(f"n_turns {n_turns} must be between {MIN_TURNS} and {MAX_TURNS}")
    k = plan_rejections(len(playlist_tracks), len(negative_tracks), n_turns, rng)
    if n_turns - k > len(playlist_tracks) or k > len(negative_tracks) or k >= n_turns:
        raise ValueError(f"{len(playlist_tracks)} playlist and {len(negative_tracks)} negative tracks "
                         f"cannot fill {n_turns} turns")
    opening = rng.choice(_OPENINGS)
    if k == 0:
        rejections = "- Every turn plays a track from the playlist."
    else:
        which = "one turn plays" if k == 1 else f"{k} turns play"
        rejections = (
            f"- Exactly {which} a track from the negative set, and the listener turns it down in their next "
            "message, saying in their own words why it does not fit and what they want instead; the recommender "
            "adapts. Never make such a turn the last one. All other turns play tracks from the playlist.")
    title = f' called "{playlist_name}"' if playlist_name else ""
    user = "\n".join([
        f"## Listener's playlist{title} — tracks they like, in playlist order",
        *(_track_line(t) for t in playlist_tracks),
        "",
        "## Negative set — tracks this listener would turn down",
        *((_track_line(t) for t in negative_tracks) if negative_tracks else ["(none)"]),
        "",
        "## The dialogue",
        (f"- Write exactly {n_turns} turns. A turn is three messages in this order: a \"user\" message, a \"music\" "
         "message whose content is exactly one track_id copied from the lists above, and an \"assistant\" message."),
        "- Play one track per turn and never the same track twice.",
        rejections,
        (f"- The listener opens the conversation {opening}. Later requests vary: more like the last track, a change "
         "of direction (mood, tempo, instruments, era), a specific artist, a reaction to what they just heard."),
        ("- Write the listener like a real person typing into a chat: varied length and tone, casual wording, "
         "no lists, no repeated phrasing. The listener cannot see the track lists: they never write a track_id "
         "and only name a title or artist once the recommender has mentioned it, or when asking for it."),
        ("- Every assistant message names the title and the artist of the track just played and explains the "
         "choice using only that track's metadata (album, year, tags, caption). Do not invent lyrics, history, "
         "popularity, instruments or moods the metadata does not state. One to three sentences."),
        "- Never mention playlists, metadata, track_ids, JSON or these instructions inside the dialogue.",
        "",
        "## Output",
        f"Return only this JSON object with exactly {3 * n_turns} messages, no code fence and no other text:",
        '{"messages": [',
        '  {"role": "user", "content": "<what the listener types>"},',
        '  {"role": "music", "content": "<track_id>"},',
        '  {"role": "assistant", "content": "<reply naming the title and artist>"},',
        "  ...",
        "]}",
        'Add "rejected": true to a music message whose track the listener turns down in the next message.',
    ])
    return [{"role": "system", "content": _SYSTEM_PROMPT}, {"role": "user", "content": user}]


def prompt_hash(messages: list[dict]) -> str:
    """SHA-256 of the prompt's canonical JSON: the cache key's prompt part."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- the HTTP client

_NO_JSON_MODE: set[tuple[str, str]] = set()  # (base_url, model) that answered HTTP 400 to response_format
_RATE_LOCK = threading.Lock()
_LAST_REQUEST: dict[str, float] = {}  # base_url → monotonic time of the last request start


def _api_key(config: LLMConfig) -> str | None:
    return (os.environ.get(config.api_key_env) or None) if config.api_key_env else None


def _wait_for_rate_limit(config: LLMConfig) -> None:
    if config.requests_per_minute <= 0:
        return
    interval = 60.0 / config.requests_per_minute
    with _RATE_LOCK:
        now = time.monotonic()
        due = _LAST_REQUEST.get(config.base_url, -1e18) + interval
        if due > now:
            time.sleep(due - now)
        _LAST_REQUEST[config.base_url] = time.monotonic()


def _redact(text: str, key: str | None) -> str:
    # Some servers echo the rejected key in their error body; it must not reach logs or exceptions.
    return text.replace(key, "***") if key else text


def _retry_after(headers: Any) -> float | None:
    try:
        return min(60.0, max(0.0, float(headers.get("Retry-After"))))
    except (TypeError, ValueError, AttributeError):
        return None


def call_chat(config: LLMConfig, messages: list[dict], sleep: Callable[[float], None] = time.sleep) -> str:
    """POST ``{base_url}/chat/completions`` and return the first choice's message content.

    Retries 429, 5xx, timeouts and dropped connections up to ``config.max_retries`` times with
    exponential backoff. When JSON mode is on and the server answers HTTP 400, the request is repeated
    once without ``response_format`` (remembered for this base URL and model).

    Raises:
        LLMError: naming the URL and the status (or the network error), never the key.
    """
    url = config.base_url.rstrip("/") + "/chat/completions"
    key = _api_key(config)
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body: dict[str, Any] = {"model": config.model, "messages": messages, "temperature": config.temperature,
                            "max_tokens": config.max_tokens, "seed": config.seed}
    if config.json_mode and (config.base_url, config.model) not in _NO_JSON_MODE:
        body["response_format"] = {"type": "json_object"}
    attempt = 0
    while True:
        _wait_for_rate_limit(config)
        request = urllib.request.Request(url, json.dumps(body).encode("utf-8"), headers, method="POST")
        wait: float | None = None
        try:
            with urllib.request.urlopen(request, timeout=config.timeout_s) as response:
                raw = response.read()
            break
        except urllib.error.HTTPError as err:
            detail = _redact(err.read().decode("utf-8", "replace")[:300].strip(), key)
            if err.code == 400 and "response_format" in body:
                del body["response_format"]  # JSON mode unsupported here: ask again without it
                _NO_JSON_MODE.add((config.base_url, config.model))
                continue
            if err.code != 429 and err.code < 500:
                raise LLMError(url, detail or str(err.reason) or "request refused", err.code) from None
            problem, status = detail or str(err.reason), err.code
            wait = _retry_after(err.headers)
        except TimeoutError as err:  # socket.timeout is TimeoutError since 3.10
            problem, status = f"no answer within {config.timeout_s:g} s ({err})", None
        except urllib.error.URLError as err:
            problem, status = f"cannot connect ({_redact(str(err.reason), key)})", None
        except (ConnectionError, http.client.HTTPException) as err:
            problem, status = f"connection dropped ({type(err).__name__}: {_redact(str(err), key)})", None
        if attempt >= config.max_retries:
            raise LLMError(url, f"{problem} (gave up after {attempt + 1} attempts)", status) from None
        sleep(wait if wait is not None else config.backoff_s * 2 ** attempt)
        attempt += 1
    try:
        data = json.loads(raw)
        content = data["choices"][0]["message"]["content"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as err:
        raise LLMError(url, f"not a chat completion response ({type(err).__name__}: {err})") from None
    if not isinstance(content, str) or not content.strip():
        raise LLMError(url, "the completion has no text content")
    return content


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


# ---------------------------------------------------------------- negatives, cache and the loop


def choose_negatives(catalog: Catalog, playlist_tracks: Sequence[Track], k: int, rng: random.Random) -> list[Track]:
    """``k`` catalog tracks unlike the playlist: outside it, other artists and albums, least tag overlap.

    Sampled from the least similar third so that negative sets differ between similar playlists.
    """
    inside = {t.track_id for t in playlist_tracks}
    artists = {_norm(t.artist) for t in playlist_tracks}
    albums = {_norm(t.album) for t in playlist_tracks if t.album}
    profile = Counter(tag for t in playlist_tracks for tag in t.tags)
    outside = [t for t in catalog if t.track_id not in inside]
    foreign = [t for t in outside if _norm(t.artist) not in artists and _norm(t.album) not in albums]
    pool = foreign if len(foreign) >= k else outside

    def overlap(t: Track) -> float:
        return sum(profile[tag] for tag in t.tags) / max(1, len(t.tags))

    ranked = sorted(pool, key=lambda t: (overlap(t), t.track_id))
    candidates = rng.sample(ranked[: max(k, len(ranked) // 3)], min(len(ranked), max(k, len(ranked) // 3)))
    # One track per album first: a negative set of four cuts from one soundtrack teaches little.
    picked, sources = [], set()
    for t in candidates:
        if _norm(t.album or t.artist) not in sources:
            picked.append(t)
            sources.add(_norm(t.album or t.artist))
    picked += [t for t in candidates if t not in picked]
    return picked[:k]


class ResponseCache:
    """Raw completions in a JSONL file, keyed by (model, playlist_id, prompt hash); appended as they come."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self.entries: dict[tuple[str, str, str], str] = {}
        self.unreadable = 0  # lines that did not parse (e.g. a write cut short by a crash)
        if self.path and self.path.is_file():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        r = json.loads(line)
                        self.entries[(r["model"], r["playlist_id"], r["prompt_sha256"])] = r["response"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        self.unreadable += line.strip() != ""

    def get(self, model: str, playlist_id: str, phash: str) -> str | None:
        return self.entries.get((model, playlist_id, phash))

    def put(self, model: str, playlist_id: str, phash: str, response: str) -> None:
        self.entries[(model, playlist_id, phash)] = response
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record = {"model": model, "playlist_id": playlist_id, "prompt_sha256": phash, "response": response,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            with open(self.path, "a", encoding="utf-8") as f:  # one line per response: a crash loses at most one
                f.write(json.dumps(record, ensure_ascii=False) + "\n")


def prepare_prompt(catalog: Catalog, playlist: Playlist, config: LLMConfig, negatives_per_playlist: int = 6,
                   max_playlist_tracks: int = 20) -> tuple[list[dict], list[Track]]:
    """The prompt and negative set for one playlist, reproducible from ``config.seed`` and the playlist id.

    Raises:
        ValueError: if the playlist has too few catalog tracks for a 4-turn dialogue.
    """
    rng = random.Random(f"{config.seed}:{playlist.playlist_id}")
    tracks = [catalog[t] for t in dict.fromkeys(playlist.track_ids) if t in catalog][:max_playlist_tracks]
    negatives = choose_negatives(catalog, tracks, negatives_per_playlist, rng)
    most = min(MAX_TURNS, len(tracks) + min(2, len(negatives)))
    if most < MIN_TURNS:
        raise ValueError(f"playlist {playlist.playlist_id!r} has {len(tracks)} catalog tracks: too few for "
                         f"{MIN_TURNS} turns")
    n_turns = rng.randint(MIN_TURNS, most)
    return build_prompt(tracks, negatives, n_turns, rng, playlist.name), negatives


def generate_with_llm(catalog: Catalog, playlists: Sequence[Playlist], config: LLMConfig,
                      negatives_per_playlist: int = 6, limit: int | None = None, progress: bool = True,
                      cache_path: str | os.PathLike | None = None, max_playlist_tracks: int = 20,
                      max_consecutive_errors: int = 3) -> tuple[list[Conversation], dict]:
    """One LLM dialogue per playlist (the first ``limit`` of them); returns conversations and statistics.

    Raw responses are cached in ``cache_path`` (JSONL) before parsing, so a rerun — even with a better
    repair step — sends no request that was already answered. Endpoint errors on one playlist are
    counted; ``max_consecutive_errors`` in a row stop the run (the endpoint is down or misconfigured).

    Raises:
        LLMError: after ``max_consecutive_errors`` consecutive endpoint failures.
    """
    if not config.model:
        raise ValueError("LLMConfig.model is empty: name the model the endpoint serves")
    started = time.perf_counter()
    cache = ResponseCache(cache_path)
    todo = list(playlists)[: limit] if limit is not None else list(playlists)
    conversations: list[Conversation] = []
    failures: Counter[str] = Counter()
    repairs: Counter[str] = Counter()
    examples: list[dict] = []  # the first few failures, for the report
    api_calls = from_cache = repaired = errors_in_row = 0
    for n, playlist in enumerate(todo, 1):
        status = "ok"
        try:
            messages, negatives = prepare_prompt(catalog, playlist, config, negatives_per_playlist,
                                                 max_playlist_tracks)
        except ValueError as err:
            failures["playlist too short"] += 1
            status = f"skipped: {err}"
        else:
            phash = prompt_hash(messages)
            raw = cache.get(config.model, playlist.playlist_id, phash)
            if raw is not None:
                from_cache += 1
            else:
                try:
                    raw = call_chat(config, messages)
                    api_calls += 1
                    errors_in_row = 0
                    cache.put(config.model, playlist.playlist_id, phash, raw)
                except LLMError as err:
                    errors_in_row += 1
                    failures["endpoint error"] += 1
                    status = f"endpoint error: {err}"
                    if errors_in_row >= max_consecutive_errors:
                        raise
            if raw is not None:
                notes: list[str] = []
                try:
                    conv = parse_and_repair(raw, catalog, playlist, [t.track_id for t in negatives],
                                            f"llm-{playlist.playlist_id}", playlist.split or "train",
                                            config.model, notes)
                except RepairError as err:
                    failures[err.reason] += 1
                    status = f"failed: {err}"
                else:
                    conversations.append(conv)
                    repaired += bool(notes)
                    repairs.update(set(notes))
                    status = f"ok ({len(conv.messages) // 3} turns{', repaired' if notes else ''})"
        if not status.startswith("ok") and len(examples) < 10:
            examples.append({"playlist_id": playlist.playlist_id, "error": status})
        if progress:
            print(f"[{n}/{len(todo)}] {playlist.playlist_id}: {status}", file=sys.stderr, flush=True)
    turns = [len(c.messages) // 3 for c in conversations]
    stats = {
        "model": config.model, "base_url": config.base_url, "requested": len(todo), "valid": len(conversations),
        "repaired": repaired, "failed": sum(failures.values()), "failure_reasons": dict(failures.most_common()),
        "failure_examples": examples, "repairs": dict(repairs.most_common()), "api_calls": api_calls,
        "from_cache": from_cache, "cache_unreadable_lines": cache.unreadable,
        "mean_turns": round(sum(turns) / len(turns), 2) if turns else 0.0,
        "rejected_turns": sum(m.rejected for c in conversations for m in c.messages),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return conversations, stats


def main(argv: list[str] | None = None) -> int:
    d = LLMConfig()
    parser = argparse.ArgumentParser(
        prog="python -m train.llm_conversations",
        description="Optional: write training conversations with an LLM behind an OpenAI-compatible chat "
                    "endpoint (one dialogue per playlist, grounded in the catalog, marked synthetic). Raw "
                    "responses are cached so that a rerun resumes without paying twice.")
    parser.add_argument("--catalog", type=Path, required=True, help="bundle directory with tracks.parquet and playlists.parquet")
    parser.add_argument("--base-url", default=d.base_url, help=f"API root of the endpoint; /chat/completions is appended (default {d.base_url})")
    parser.add_argument("--model", required=True, help="model name the endpoint serves; recorded as generator llm:<model>")
    parser.add_argument("--api-key-env", default=d.api_key_env,
                        help=f"environment variable holding the API key; unset → no Authorization header (default {d.api_key_env})")
    parser.add_argument("--out", type=Path, default=None,
                        help="conversations JSONL to write (default <catalog>/conversations_llm.jsonl)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="raw-response cache JSONL (default: the output path with suffix .raw.jsonl)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the raw-response cache")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N playlists (default all)")
    parser.add_argument("--splits", nargs="+", default=["train", "valid", "test"], choices=["train", "valid", "test"],
                        help="playlist splits to use; unsplit playlists count as train (default all three)")
    parser.add_argument("--negatives", type=int, default=6, help="negative-set size shown per playlist (default 6)")
    parser.add_argument("--max-playlist-tracks", type=int, default=20,
                        help="playlist tracks shown in the prompt, from the start of the playlist (default 20)")
    parser.add_argument("--temperature", type=float, default=d.temperature, help=f"sampling temperature (default {d.temperature})")
    parser.add_argument("--max-tokens", type=int, default=d.max_tokens, help=f"completion token budget (default {d.max_tokens})")
    parser.add_argument("--timeout", type=float, default=d.timeout_s, help=f"seconds per request (default {d.timeout_s:g})")
    parser.add_argument("--max-retries", type=int, default=d.max_retries,
                        help=f"retries on 429/5xx/timeouts, with exponential backoff (default {d.max_retries})")
    parser.add_argument("--rpm", type=float, default=d.requests_per_minute,
                        help="client-side limit in requests per minute; 0 = unlimited (default 0)")
    parser.add_argument("--no-json-mode", action="store_true",
                        help="never send response_format json_object (it is dropped automatically on HTTP 400)")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed for negatives, turn counts and prompt variety (default {d.seed})")
    parser.add_argument("--show-prompt", action="store_true", help="print the first playlist's prompt and exit (no request)")
    parser.add_argument("--quiet", action="store_true", help="no per-playlist progress lines on stderr")
    args = parser.parse_args(argv)
    try:
        config = LLMConfig(base_url=args.base_url, model=args.model, api_key_env=args.api_key_env or None,
                           temperature=args.temperature, max_tokens=args.max_tokens, timeout_s=args.timeout,
                           max_retries=args.max_retries, requests_per_minute=args.rpm,
                           json_mode=not args.no_json_mode, seed=args.seed)
        catalog = load_catalog(args.catalog)
        playlists = [p for p in read_playlists(args.catalog, [t.track_id for t in catalog])
                     if (p.split or "train") in args.splits]
        if not playlists:
            raise ValueError(f"{args.catalog}: no playlists in splits {', '.join(args.splits)}")
        if args.show_prompt:
            messages, _ = prepare_prompt(catalog, playlists[0], config, args.negatives, args.max_playlist_tracks)
            for m in messages:
                print(f"=== {m['role']} ===\n{m['content']}\n")
            return 0
        if config.api_key_env and not _api_key(config):
            print(f"note: ${config.api_key_env} is not set; sending no Authorization header", file=sys.stderr)
        out = args.out or args.catalog / "conversations_llm.jsonl"
        cache = None if args.no_cache else (args.cache or out.with_suffix(".raw.jsonl"))
        conversations, stats = generate_with_llm(catalog, playlists, config, args.negatives, args.limit,
                                                 not args.quiet, cache, args.max_playlist_tracks)
        write_conversations(out, conversations)
        stats.update(out=str(out), cache=str(cache) if cache else None)
    except (CatalogError, LLMError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(stats, indent=2, ensure_ascii=False))
    return 0 if conversations else 1


if __name__ == "__main__":
    sys.exit(main())
