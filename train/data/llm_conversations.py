"""Optional: training conversations written by an LLM behind an OpenAI-compatible chat endpoint.

    python -m train.data.llm_conversations --catalog catalog/demo --base-url http://localhost:8000/v1 \\
        --model my-model --limit 20 --out catalog/demo/conversations_llm.jsonl

The TalkPlay paper built its dialogues by showing an LLM a playlist (tracks with metadata) and a
negative set (tracks the listener would turn down) and asking for a music-discovery chat as JSON.
This module owns our version of that pipeline for people who have such an endpoint:

* ``build_prompt`` — the one place the prompt lives (system + user message);
* ``generate_with_llm`` — the loop over playlists, with a JSONL cache of raw responses so a rerun
  never pays twice for the same prompt (the HTTP client is ``train.data.llm_client``; parsing and repair
  of completions is ``train.data.llm_repair``).

Nothing here runs without an endpoint; the offline generator remains the default. Every record is
marked synthetic and names its generator as ``llm:<model>``. The API key is read from the environment
at call time and never logged, cached or put into error messages.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.data.llm_conversations")

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from talkplay.catalog import Catalog, CatalogError, Track, load_catalog
from train.data.conversation_schema import (
    MAX_TURNS,
    MIN_TURNS,
    Conversation,
    write_conversations,
)
from train.data.llm_client import LLMConfig, LLMError, ResponseCache, _api_key, call_chat, prompt_hash  # noqa: F401
from train.data.llm_repair import RepairError, _norm, factual_reply, is_rejection, parse_and_repair  # noqa: F401
from talkplay.bundle import Playlist, read_playlists

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
        prog="python -m train.data.llm_conversations",
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
