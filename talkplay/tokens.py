"""The music-token vocabulary: the only place that knows how codes become token strings and back.

A track is a short sequence of codes, one per *position*; a position is a (modality, level) pair in a
fixed generation order (TalkPlay: playlist, semantic, metadata, lyrics, audio; 3MToken: coarse-to-fine
levels within each modality). Token strings:

* flat codes (one level):      ``<|audio-17|>``
* residual codes (level l ≥ 1): ``<|audio2-17|>`` (level 2 of the audio modality)
* boundaries of a music span:   ``<start_of_music>`` … ``<end_of_music>``

Modality names are lower-case letters and underscores only, so a trailing number is always a level.
Codes below ``reserved`` have fixed meanings: code 0 of a modality with ``reserved=1`` means "no data"
(an instrumental track's lyrics), whatever the quantizer learned. No other module builds or parses
these strings.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

START_OF_MUSIC = "<start_of_music>"
END_OF_MUSIC = "<end_of_music>"
NO_DATA_CODE = 0  # the reserved code of a modality whose track has no input (e.g. no lyrics)

DEFAULT_MODALITIES = ("playlist", "semantic", "metadata", "lyrics", "audio")  # TalkPlay's order
DISAMBIGUATION = "dis"  # name of the optional position that separates tracks sharing a full tuple

_NAME = re.compile(r"^[a-z_]+$")
_TOKEN = re.compile(r"^<\|([a-z_]+)(\d*)-(\d+)\|>$")
_ANY_TOKEN = re.compile(r"<\|[a-z_]+\d*-\d+\|>|<start_of_music>|<end_of_music>")


@dataclass(frozen=True)
class ModalitySpec:
    """How one modality is coded."""

    name: str  # lower-case letters/underscores, e.g. "audio"
    levels: int = 1  # 1 = flat codes; > 1 = residual levels (coarse to fine)
    codebook_size: int = 16  # codes per level, reserved ones included
    reserved: int = 0  # codes [0, reserved) have fixed meanings (0 = no data)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"modality name {self.name!r}: use lower-case letters and '_' only")
        # reserved == codebook_size is legal: a modality no track has data for (an all-instrumental
        # catalog's lyrics) has only its "no data" code.
        if self.levels < 1 or self.codebook_size < 1 or not 0 <= self.reserved <= self.codebook_size:
            raise ValueError(f"modality {self.name!r}: need levels ≥ 1, codebook_size ≥ 1, 0 ≤ reserved ≤ size")


@dataclass(frozen=True)
class Position:
    """One token slot of a track: a modality and a level (0 for flat codes)."""

    modality: str
    level: int  # 0 = flat; 1..L = residual level

    @property
    def label(self) -> str:
        """Column-style name: 'audio' or 'audio2'."""
        return f"{self.modality}{self.level or ''}"


@dataclass(frozen=True)
class TokenRef:
    """A parsed music token."""

    position: Position
    code: int


class MusicVocab:
    """Positions, token strings and their ids-free mapping for one token store.

    Args:
        modalities: the coded modalities, in generation order.
    """

    def __init__(self, modalities: Sequence[ModalitySpec]):
        names = [m.name for m in modalities]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"modalities must be distinct and non-empty: {names}")
        self.modalities: tuple[ModalitySpec, ...] = tuple(modalities)
        self._spec = {m.name: m for m in self.modalities}
        self.positions: tuple[Position, ...] = tuple(
            Position(m.name, 0) if m.levels == 1 else Position(m.name, level)
            for m in self.modalities
            for level in range(1, m.levels + 1)
        )
        self._index = {p: i for i, p in enumerate(self.positions)}
        self._tokens = [self._position_tokens(p) for p in self.positions]
        self._lookup = {tok: (i, code) for i, toks in enumerate(self._tokens) for code, tok in enumerate(toks)}

    # ------------------------------------------------------------------ structure

    def __len__(self) -> int:
        return len(self.positions)

    def spec(self, modality: str) -> ModalitySpec:
        return self._spec[modality]

    def size(self, position: int) -> int:
        """Number of codes at ``position`` (index into ``positions``)."""
        return self._spec[self.positions[position].modality].codebook_size

    def positions_of(self, modality: str) -> list[int]:
        """Indices of the positions of one modality, coarse to fine."""
        return [i for i, p in enumerate(self.positions) if p.modality == modality]

    # ------------------------------------------------------------------ strings

    @staticmethod
    def token(position: Position, code: int) -> str:
        return f"<|{position.modality}{position.level or ''}-{code}|>"

    def _position_tokens(self, p: Position) -> list[str]:
        return [self.token(p, c) for c in range(self._spec[p.modality].codebook_size)]

    def position_tokens(self, position: int) -> list[str]:
        """All token strings allowed at ``position``, indexed by code."""
        return list(self._tokens[position])

    def all_tokens(self) -> list[str]:
        """Every music token of this vocabulary in a stable order (positions, then codes)."""
        return [tok for toks in self._tokens for tok in toks]

    def special_tokens(self) -> list[str]:
        """Boundary tokens plus all music tokens: what a language model's vocabulary must add."""
        return [START_OF_MUSIC, END_OF_MUSIC, *self.all_tokens()]

    def tokens_for(self, codes: Sequence[int]) -> list[str]:
        """Token strings of a track's code tuple (one code per position)."""
        if len(codes) != len(self.positions):
            raise ValueError(f"expected {len(self.positions)} codes, got {len(codes)}")
        out = []
        for i, c in enumerate(codes):
            if not 0 <= int(c) < self.size(i):
                raise ValueError(f"code {c} out of range for position {self.positions[i].label} (size {self.size(i)})")
            out.append(self._tokens[i][int(c)])
        return out

    def parse(self, token: str) -> TokenRef:
        """Parse one music token of this vocabulary; ValueError if it is not one."""
        hit = self._lookup.get(token)
        if hit is None:
            raise ValueError(f"{token!r} is not a music token of this vocabulary")
        return TokenRef(self.positions[hit[0]], hit[1])

    def codes_for(self, tokens: Sequence[str]) -> tuple[int, ...]:
        """Inverse of :meth:`tokens_for`: tokens must come in position order."""
        if len(tokens) != len(self.positions):
            raise ValueError(f"expected {len(self.positions)} tokens, got {len(tokens)}")
        codes = []
        for i, tok in enumerate(tokens):
            hit = self._lookup.get(tok)
            if hit is None or hit[0] != i:
                raise ValueError(f"token {tok!r} is not valid at position {self.positions[i].label}")
            codes.append(hit[1])
        return tuple(codes)

    def span(self, codes: Sequence[int]) -> str:
        """The text of a music span: <start_of_music> + tokens + <end_of_music>."""
        return START_OF_MUSIC + "".join(self.tokens_for(codes)) + END_OF_MUSIC

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> dict:
        return {"modalities": [asdict(m) for m in self.modalities]}

    @classmethod
    def from_json(cls, data: dict) -> "MusicVocab":
        return cls([ModalitySpec(**m) for m in data["modalities"]])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MusicVocab) and self.modalities == other.modalities

    def __repr__(self) -> str:
        parts = ", ".join(f"{m.name}{'×' + str(m.levels) if m.levels > 1 else ''}:{m.codebook_size}" for m in self.modalities)
        return f"MusicVocab({parts})"


def parse_token(token: str) -> tuple[str, int, int]:
    """Syntax-level parse of any music token string → (modality, level, code); level 0 = flat.

    Raises ValueError for anything else. Use :meth:`MusicVocab.parse` to also check the range.
    """
    m = _TOKEN.match(token)
    if not m:
        raise ValueError(f"{token!r} is not a music token")
    return m.group(1), int(m.group(2) or 0), int(m.group(3))


def contains_music_markup(text: str) -> bool:
    """True if ``text`` contains anything that looks like a music token or span boundary."""
    return bool(_ANY_TOKEN.search(text))


def neutralize_music_markup(text: str) -> str:
    """Make music-token look-alikes in untrusted text inert ('<|audio-5|>' → '< |audio-5| >').

    User messages pass through here before they reach a tokenizer, so typed token strings can never
    become music-token ids.
    """
    return _ANY_TOKEN.sub(lambda m: m.group(0).replace("<|", "< |").replace("|>", "| >").replace("<start", "< start")
                          .replace("<end", "< end"), text)


def iter_music_tokens(text: str) -> Iterable[str]:
    """Music tokens and span boundaries found in ``text``, in order."""
    return _ANY_TOKEN.findall(text)
