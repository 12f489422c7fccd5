"""What the public chat accepts: text cleaning of untrusted input and a per-session rate limit.

Every limit's value is a :class:`talkplay.settings.ServeSettings` field (message length, turns per conversation,
rates, queue concurrency and size); they act in :mod:`talkplay.chat_session` and ``app.py``, the model's context
budget in :mod:`talkplay.render`. Markup and special-token
strings are not removed here: they are escaped for display (:func:`talkplay.browse.escape`) and made
inert for the model (:func:`talkplay.render.make_inert`), so the listener's words reach both intact.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections import deque

# Bidirectional embedding/override/isolate controls: they can reorder how *our* text around a message
# is displayed. Right-to-left letters themselves (Arabic, Hebrew…) are kept, as are ZWJ emoji sequences.
_BIDI_CONTROLS = {0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069}


def clean_text(text: object) -> str:
    """Untrusted text made safe to store, tokenize and show: NFC-normalized, lone surrogates replaced by
    U+FFFD (they cannot be encoded as UTF-8), control characters other than newline/tab removed
    (``\\r\\n`` → ``\\n``), bidi override controls removed. Never raises."""
    s = "" if text is None else str(text)
    s = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s)
    s = unicodedata.normalize("NFC", s.replace("\r\n", "\n").replace("\r", "\n"))
    return "".join(c for c in s if c in "\n\t" or (unicodedata.category(c) != "Cc" and ord(c) not in _BIDI_CONTROLS))


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (a sliding window; thread-safe).

    Used per chat session: turns (each costs seconds of model time) and feedback clicks separately.
    """

    def __init__(self, limit: int, window: float = 60.0, max_keys: int = 100_000):
        if limit < 1 or window <= 0:
            raise ValueError(f"rate limit needs limit ≥ 1 and window > 0, got {limit} per {window} s")
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> float:
        """Record one event for ``key``; returns 0 if allowed, else the seconds to wait (nothing recorded)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._events) >= self.max_keys:  # forget idle sessions rather than grow without bound
                self._events = {k: q for k, q in self._events.items() if q and now - q[-1] < self.window}
            q = self._events.setdefault(key, deque())
            while q and now - q[0] >= self.window:
                q.popleft()
            if len(q) >= self.limit:
                return max(self.window - (now - q[0]), 0.001)
            q.append(now)
            return 0.0
