"""Playlist-continuation examples: the TalkPlay paper's L_playlist "pretraining" task on music tokens.

From each playlist we cut one example: a prefix of the playlist (at least two tracks) and the tracks
that follow it (up to ``max_continuation``). The model reads the prefix's music tokens and learns to
write the continuation's, which teaches it co-occurrence in the token space before (and alongside)
conversations. Examples inherit their playlist's split, so test continuations involve cold-start
tracks exactly where the test playlists do. Deterministic for a seed.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.data.sequences is a module of the train package: import it, or use python -m")

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from train.data.conversation_schema import open_jsonl, write_jsonl


@dataclass(frozen=True)
class SequenceConfig:
    min_prefix: int = 2  # shortest prefix shown to the model
    max_prefix: int = 15  # longest prefix (keeps examples short on CPU)
    max_continuation: int = 5  # tracks to predict after the prefix
    seed: int = 0  # prefix-length sampling


@dataclass(frozen=True)
class ContinuationExample:
    playlist_id: str  # source playlist
    split: str  # the playlist's split
    prefix: tuple[str, ...]  # track ids shown
    continuation: tuple[str, ...]  # track ids to predict, in order
    synthetic: bool  # whether the source playlist is synthetic


def make_examples(playlists: Sequence, config: SequenceConfig = SequenceConfig()) -> list[ContinuationExample]:
    """One continuation example per playlist long enough to have a prefix and a continuation."""
    out = []
    for p in playlists:
        tracks = list(p.track_ids)
        if len(tracks) < config.min_prefix + 1:
            continue
        # seeded per playlist so adding or removing playlists does not shift the others' examples
        rng = random.Random(f"{config.seed}:{p.playlist_id}")
        n = rng.randint(config.min_prefix, min(config.max_prefix, len(tracks) - 1))
        out.append(ContinuationExample(p.playlist_id, p.split or "train", tuple(tracks[:n]),
                                       tuple(tracks[n:n + config.max_continuation]), p.synthetic))
    return out


def write_examples(path: str | Path, examples: Iterable[ContinuationExample]) -> int:
    return write_jsonl(path, (asdict(e) for e in examples))


def read_examples(path: str | Path) -> list[ContinuationExample]:
    with open_jsonl(path) as f:
        import json

        return [ContinuationExample(**{**r, "prefix": tuple(r["prefix"]), "continuation": tuple(r["continuation"])})
                for r in map(json.loads, f) if r]
