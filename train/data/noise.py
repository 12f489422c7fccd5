"""Light noise for synthetic user messages: casing, dropped punctuation and occasional typos.

Real people type "cuold you play smth chill" — the model should read that too. Noise never touches a
protected span (a quoted track title or artist name the user asks for) and never creates a word that
the lexicon uses as a slot value, so held-out accounting and grounding checks stay exact.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.data.noise is a module of the train package: import it, or use python -m")

import random
import re
from collections.abc import Iterable

from train.data.lexicon import SLOTS

# A typo must not create a slot word: statistics and checks read slot words back out of the text.
_SLOT_SINGLE = frozenset(w.lower() for slot in SLOTS.values() for w in slot.words if " " not in w)
_WORD = re.compile(r"[A-Za-z]{4,}")


def _protected_spans(text: str, protect: Iterable[str]) -> list[tuple[int, int]]:
    spans = []
    for p in protect:
        if p:
            spans += [(m.start(), m.end()) for m in re.finditer(re.escape(p), text)]
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)  # keep the first letter: people rarely miss it
    if rng.random() < 0.5:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + word[i + 1:]


def add_noise(text: str, rng: random.Random, typo_rate: float = 0.03, max_typos: int = 2,
              lowercase_prob: float = 0.25, drop_punct_prob: float = 0.3, protect: Iterable[str] = ()) -> str:
    """The message as a hurried person types it; spans in ``protect`` (quoted titles, names) stay intact.

    With one draw each: everything lower-cased; commas, quotes, apostrophes and the final stop dropped.
    Then each word of ≥ 4 letters gets, with probability ``typo_rate``, one adjacent-letter swap or one
    deleted letter (never the first), at most ``max_typos`` per message; a typo never makes a slot word.
    """
    lower = rng.random() < lowercase_prob
    drop = rng.random() < drop_punct_prob
    budget = [max_typos]

    def noisy_word(m: re.Match) -> str:
        w = m.group(0)
        if budget[0] > 0 and rng.random() < typo_rate:
            new = _typo(w, rng)
            if new.lower() not in _SLOT_SINGLE:
                budget[0] -= 1
                return new
        return w

    def noisy(piece: str) -> str:
        if lower:
            piece = piece.lower()
        if drop:
            piece = re.sub(r"[,'\"“”]", "", piece)
        return _WORD.sub(noisy_word, piece) if typo_rate > 0 else piece

    out, pos = [], 0
    for a, b in _protected_spans(text, protect):
        out += [noisy(text[pos:a]), text[a:b]]
        pos = b
    tail = noisy(text[pos:])
    out.append(re.sub(r"[.!?]+$", "", tail) if drop else tail)  # the final stop is what people skip
    result = re.sub(r" {2,}", " ", "".join(out)).strip()
    return result or text
