"""HTTP client for OpenAI-compatible chat endpoints, and a cache of raw completions.

Standard library only: a Bearer key read from an environment variable at call time (never logged,
cached or echoed in errors), JSON mode with a fallback for servers that refuse it, retries with
exponential backoff on 429/5xx/timeouts honouring Retry-After, and a client-side requests-per-minute
limit. ``ResponseCache`` keeps raw completions in an append-only JSONL file keyed by
(model, playlist_id, prompt hash), so a rerun never pays twice for the same prompt.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.data.llm_client is a module of the train package: import it, or use python -m")

import hashlib
import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
