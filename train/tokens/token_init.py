"""What each music token stands for, in words: the texts that text-grounded row initialization embeds.

For every code of every position of a token store, the texts of the tracks carrying that code:

* semantic, audio and playlist codes — each track's tags and caption (what the track *is*; a playlist
  code gathers tracks that are played together, which the tags of those tracks describe best);
* metadata codes — "title by artist from album";
* lyrics codes — the lyrics; the reserved "no data" code → "instrumental, no vocals, no lyrics";
* the disambiguation position means nothing in words and keeps its random draw.

:func:`talkplay.expansion.init_rows_from_text` turns these into embedding rows (one group per position).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.tokens.token_init is a module of the train package: import it, or use python -m")

from typing import Any

from talkplay.tokens import DISAMBIGUATION, NO_DATA_CODE

NO_LYRICS_TEXT = "instrumental, no vocals, no lyrics"


def _track_text(track: Any, modality: str) -> str:
    if modality == "metadata":
        album = f" from {track.album}" if track.album else ""
        return f"{track.title} by {track.artist}{album}"
    if modality == "lyrics":
        return track.lyrics or NO_LYRICS_TEXT
    return ", ".join(track.tags) + (f". {track.caption}" if track.caption else "")


def code_texts(catalog: Any, store: Any, max_tracks: int = 64) -> tuple[dict[str, list[str]], list[list[str]]]:
    """(token string → texts, groups of token strings by position) for ``store``'s codes.

    Args:
        max_tracks: at most this many tracks' texts per code (the first in store order), which bounds
            the work on a large catalog without changing the mean much.
    """
    vocab = store.vocab
    texts: dict[str, list[str]] = {}
    groups: list[list[str]] = []
    for p, position in enumerate(vocab.positions):
        if position.modality == DISAMBIGUATION:
            continue
        reserved = vocab.spec(position.modality).reserved
        group = []
        for code in range(vocab.size(p)):
            token = vocab.token(position, code)
            if code < reserved and code == NO_DATA_CODE:
                texts[token] = [NO_LYRICS_TEXT] if position.modality == "lyrics" else []
            else:
                rows = store.postings(p, code)[:max_tracks]
                texts[token] = [_track_text(catalog[store.track_ids[r]], position.modality) for r in rows]
            if texts[token]:
                group.append(token)
        groups.append(group)
    return texts, groups
