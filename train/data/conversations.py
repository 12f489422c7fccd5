"""Offline conversation generator: one synthetic music-discovery dialogue per playlist (the TalkPlay recipe).

For each playlist, a contiguous run of its tracks becomes the tracks the listener accepts, in playlist
order, one per turn (4–10 turns). Each user turn asks for the *next* track in terms that are true of
it, so a perfect recommender could satisfy every request:

* **open requests** name a style, mood, instrument, tempo, era or activity the track's tags support
  (slots of ``train.data.lexicon``); **specific requests** name its title, artist or game / album;
* **more like this** when it shares a style and a similar energy and tempo with the previous track;
  **direction changes** ("faster", "darker", "without drums") only when the measured attribute really
  moves that way from the previous track (``moves``: tempo, energy, brightness, percussiveness, with
  the tags agreeing);
* **rejections**: sometimes a track from the conversation's negative set (not in the playlist; never a
  cold-start track in train/valid) is recommended first, flagged ``rejected``; the listener turns it
  down with a reason that is true of it compared with the track they go on to accept ("too slow" only
  if it is slower), and the next turn recommends the playlist track;
* **acceptance** and **chit-chat** lines open some requests.

Assistant replies name the track's title and artist and state only facts of that track (album, year,
tags, caption, tempo, key). Train and valid conversations use only the training phrasings of the
lexicon; test conversations use held-out phrasings or slot words in ``test_held_out_share`` (rounded
up) of their user turns. Everything is drawn from per-playlist generators seeded by ``sha256(seed, playlist
id)``, so the output is identical for a seed whatever the order of the inputs. Playlists with fewer
than 4 distinct tracks cannot make a conversation and are skipped.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.data.conversations is a module of the train package: import it, or use python -m")

import hashlib
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from talkplay.bundle import Playlist
from talkplay.catalog import Catalog, Track, slugify
from talkplay.refine import (  # one definition of "slower", "darker", …
    TEMPO_RANK,
    moves,
    tag_rank,
)
from train.catalog.tagging import KEY_CAPTION_MIN_STRENGTH, MIN_TEMPO_CONFIDENCE
from train.data import lexicon as lx
from train.data import reply_frames as rf
from train.data.conversation_schema import (
    MAX_TURNS,
    MIN_TURNS,
    Conversation,
    ConversationError,
    Message,
)
from train.data.noise import add_noise

GENERATOR = "offline-templates v1"  # bump when the output for a seed changes

BPM_REQUEST_MIN_CONFIDENCE = 0.3  # "around 120 BPM" only for tracks with a clear pulse

DEFAULT_INTENT_WEIGHTS = (
    ("open_genre", 0.14), ("open_mood", 0.11), ("open_instrument", 0.09), ("open_tempo", 0.06),
    ("open_era", 0.05), ("open_activity", 0.12), ("specific_track", 0.05), ("specific_artist", 0.06),
    ("more_like_this", 0.14), ("direction_change", 0.18),
)
_INTENT_GROUPS = {
    "open_genre": ("genre",), "open_mood": ("mood",), "open_instrument": ("instrument",),
    "open_tempo": ("tempo", "bpm"), "open_era": ("era", "year"), "open_activity": ("activity",),
    "specific_track": ("track", "track_by"), "specific_artist": ("artist", "source", "game"),
    "more_like_this": ("more",),
}
_PRIMARY_SLOT = {"open_genre": ("style",), "open_mood": ("mood",), "open_instrument": ("instrument",),
                 "open_tempo": ("tempo", "bpm"), "open_era": ("era", "year"), "open_activity": ("activity",)}


@dataclass(frozen=True)
class ConversationConfig:
    """Knobs of the generator; the defaults made the demo data."""

    seed: int = 0  # every conversation draws from sha256(seed, playlist_id)
    min_turns: int = MIN_TURNS  # fewest user → music → assistant turns
    max_turns: int = MAX_TURNS  # most turns (a playlist shorter than this caps the conversation)
    reject_prob: float = 0.15  # per eligible turn: recommend a negative that the listener rejects next
    accept_prob: float = 0.2  # a request opens by approving the previous track
    chit_chat_prob: float = 0.08  # a request opens with small talk
    greeting_prob: float = 0.3  # the first request opens with a greeting
    n_negatives: int = 20  # size of each conversation's negative set
    test_held_out_share: float = 0.6  # share of each test conversation's user turns (rounded up) drawn held out
    cold_window_in_test: bool = True  # in test, grow the conversation around a cold-start track if any
    typo_rate: float = 0.03  # per-word chance of one adjacent-letter swap or deletion
    max_typos: int = 2  # at most this many typos per user message
    lowercase_prob: float = 0.25  # share of user messages typed all lower-case
    drop_punct_prob: float = 0.3  # share of user messages typed without punctuation
    lead_prob: float = 0.6  # an assistant reply opens with a short lead ("Picking up the pace.")
    intent_weights: tuple[tuple[str, float], ...] = DEFAULT_INTENT_WEIGHTS  # request intents, when possible
    id_prefix: str | None = None  # conversation ids "<prefix>-<split>-NNNNNN"; default: the catalog's name

    def __post_init__(self) -> None:
        if not MIN_TURNS <= self.min_turns <= self.max_turns <= MAX_TURNS:
            raise ValueError(f"ConversationConfig: turns {self.min_turns}–{self.max_turns} must lie within "
                             f"{MIN_TURNS}–{MAX_TURNS}")
        unknown = [i for i, _ in self.intent_weights if i not in _INTENT_GROUPS and i != "direction_change"]
        if unknown:
            raise ValueError(f"ConversationConfig.intent_weights: {unknown} are not request intents")


# ---------------------------------------------------------------- what the generator knows of a track


@dataclass(frozen=True)
class Profile:
    """A track as the generator sees it: tags, satisfied slots, reliable measurements, speakable names."""

    track: Track  # the catalog record
    measured: bool  # the track has a features row (else directions are read from its tags)
    tags: frozenset[str]  # the track's tags
    keys: dict  # slot kind → slot keys of train.data.lexicon the track satisfies
    bpm: float | None  # tempo when the pulse is reliable (confidence ≥ tagging.MIN_TEMPO_CONFIDENCE)
    bpm_request: int | None  # tempo a listener may ask for ("around 120 BPM"), rounded to 5
    energy: float | None  # 0..1
    brightness: float | None  # 0..1
    percussiveness: float | None  # 0..1
    key: str | None  # "E minor" when the key estimate is strong enough for the caption
    album: str | None  # the album as credited, when it reads as a name
    source: str | None  # what people call the album / game ("The Battle for Wesnoth")
    game: bool  # the album is a soundtrack ("the SuperTux soundtrack")
    artist_ok: bool  # the artist credit reads as a name one can ask for
    title_unique: bool  # no other track has this title (else ask with the artist)
    tempo_rank: int | None  # tags: slow 0, mid-tempo 1, fast 2, None without a tempo word
    energy_rank: int  # tags: calm/chill/quiet 0, energetic/loud 2, else 1
    brightness_rank: int  # tags: dark 0, bright 2, else 1
    drum_rank: int  # tags: drumless 0, drums/beats/percussive 2, else 1


_SOUNDTRACK_SUFFIX = re.compile(r"[\s\-–:]*(original\s+)?(soundtrack|ost)$", re.IGNORECASE)


def _num(row: Mapping | None, name: str) -> float | None:
    v = row.get(name) if row else None
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _name_ok(text: str) -> bool:
    t = text.strip()
    return (len(t) >= 2 and sum(c.isalpha() for c in t) >= 2 and "?" not in t and "<" not in t
            and not t.lower().startswith(("http", "www.", "(c)", "©", "by ")))


def build_profiles(catalog: Catalog, features: Mapping[str, Mapping]) -> dict[str, Profile]:
    """Profiles of every catalog track; tracks without a features row get tag-only profiles."""
    titles: dict[str, int] = {}
    for t in catalog:
        titles[t.title.lower()] = titles.get(t.title.lower(), 0) + 1
    out = {}
    for t in catalog:
        row = features.get(t.track_id)
        bpm, conf = _num(row, "tempo_bpm"), _num(row, "tempo_confidence") or 0.0
        reliable = bpm is not None and bpm > 0 and conf >= MIN_TEMPO_CONFIDENCE
        strength = _num(row, "key_strength") or 0.0
        key = f"{row['key']} {row['mode']}" if row and row.get("key") and row.get("mode") and \
            strength >= KEY_CAPTION_MIN_STRENGTH else None
        album = t.album.strip() if t.album and _name_ok(t.album) else None
        source = _SOUNDTRACK_SUFFIX.sub("", album).strip() if album else None
        source = source if source and _name_ok(source) else None
        tags = frozenset(t.tags)
        out[t.track_id] = Profile(
            track=t, measured=row is not None, tags=tags, keys=lx.slot_keys(t.tags, t.year),
            bpm=bpm if reliable else None,
            bpm_request=int(5 * round(bpm / 5)) if reliable and conf >= BPM_REQUEST_MIN_CONFIDENCE else None,
            energy=_num(row, "energy"), brightness=_num(row, "brightness"),
            percussiveness=_num(row, "percussiveness"), key=key, album=album, source=source,
            game=bool(album and source and source != album), artist_ok=_name_ok(t.artist),
            title_unique=titles[t.title.lower()] == 1,
            tempo_rank=next((TEMPO_RANK[x] for x in t.tags if x in TEMPO_RANK), None),
            energy_rank=tag_rank(tags, {"calm", "chill", "quiet"}, {"energetic", "loud"}),
            brightness_rank=tag_rank(tags, {"dark"}, {"bright"}),
            drum_rank=tag_rank(tags, {"drumless"}, {"drums", "beats", "percussive"}),
        )
    return out


# ---------------------------------------------------------------- attribute differences




def reason_holds(rejected: Profile, wanted: Profile, reason: str) -> bool:
    """Whether a rejection reason (train.data.lexicon.REASONS) is true of ``rejected`` next to ``wanted``."""
    n = rejected
    if reason in lx.REASON_DIRECTION and not moves(n, wanted, lx.REASON_DIRECTION[reason]):
        return False
    if reason == "too_slow":
        return n.tempo_rank != 2
    if reason == "too_fast":
        return n.tempo_rank != 0
    if reason == "too_intense":
        return n.energy_rank != 0 and (n.energy is None or n.energy >= 0.6)
    if reason == "too_sleepy":
        return n.energy_rank != 2
    if reason == "too_dark":
        return n.brightness_rank != 2
    if reason == "too_bright":
        return n.brightness_rank != 0
    if reason in ("too_drummy", "too_flat"):
        return True
    if reason == "wrong_style":
        return bool(_style_only_in(n, wanted))
    if reason == "vocals":
        return "female vocals" in n.tags and "female vocals" not in wanted.tags
    raise ValueError(f"unknown rejection reason {reason!r} (see train.data.lexicon.REASONS)")


def _style_only_in(a: Profile, b: Profile) -> tuple[str, ...]:
    return tuple(k for k in a.keys["style"] if k not in b.keys["style"])


def _similar(a: Profile, b: Profile) -> bool:
    """Close enough for "more like this": a shared style, no big jump in energy or tempo."""
    if not set(a.keys["style"]) & set(b.keys["style"]):
        return False
    if a.energy is not None and b.energy is not None and abs(a.energy - b.energy) > 0.15:
        return False
    if a.bpm is not None and b.bpm is not None and abs(a.bpm - b.bpm) > 20:
        return False
    ta, tb = a.tempo_rank, b.tempo_rank
    return ta is None or tb is None or abs(ta - tb) <= 1


# ---------------------------------------------------------------- one user message, one reply


@dataclass(frozen=True)
class _Part:
    text: str  # filled phrasing
    template: str  # template id
    held: bool  # used a held-out template or slot word
    protect: tuple[str, ...] = ()  # names quoted in the text that noise must not touch


class _Relations:
    """Memoised directions and rejection reasons between pairs of tracks (pure functions of the pair)."""

    def __init__(self) -> None:
        self._dirs: dict[tuple[str, str], tuple[str, ...]] = {}
        self._reasons: dict[tuple[str, str], tuple[str, ...]] = {}

    def directions(self, a: Profile, b: Profile) -> tuple[str, ...]:
        k = (a.track.track_id, b.track.track_id)
        if k not in self._dirs:
            self._dirs[k] = tuple(d for d in lx.DIRECTIONS if moves(a, b, d))
        return self._dirs[k]

    def reasons(self, rejected: Profile, wanted: Profile) -> tuple[str, ...]:
        k = (rejected.track.track_id, wanted.track.track_id)
        if k not in self._reasons:
            self._reasons[k] = tuple(r for r in lx.REASONS if reason_holds(rejected, wanted, r))
        return self._reasons[k]


_FRAME_SLOTS = tuple((f, lx.placeholders(f)) for f in rf.REPLY_FRAMES)


class _Turns:
    """Builds the messages of one conversation from its own random generator."""

    def __init__(self, rel: _Relations, config: ConversationConfig, rng: random.Random):
        self.rel, self.cfg, self.rng = rel, config, rng

    # -- slots and templates

    def _fill(self, group_ids: Sequence[str], values: dict[str, tuple], held_mode: bool,
              ok=lambda tmpl: True) -> _Part | None:
        rng = self.rng

        def fitting(held: bool) -> list[lx.Template]:
            return [t for g in group_ids for t in lx.templates(g, held) if set(t.slots) <= values.keys() and ok(t)]

        cands = (fitting(True) if held_mode else []) or fitting(False)
        if not cands:
            return None
        tmpl = rng.choice(cands)
        filled, held, protect = {}, tmpl.held_out, []
        for slot in tmpl.slots:
            value = rng.choice(values[slot])
            if slot in lx.SLOT_KINDS:
                key = value
                pool = lx.words(key, True) if held_mode and rng.random() < 0.7 else ()
                value = rng.choice(pool or lx.words(key, False))
                held = held or value in lx.HELD_WORDS[key]
            else:
                value = str(value)
                if slot in ("title", "artist", "source"):
                    protect.append(value)
            filled[slot] = value
        text = tmpl.text.format(**filled)
        if tmpl.text.startswith("{") and tmpl.slots[0] in lx.SLOT_KINDS:
            text = text[0].upper() + text[1:]
        return _Part(text, tmpl.id, held, tuple(protect))

    def _open_values(self, t: Profile, neg: Profile | None) -> dict[str, tuple]:
        values: dict[str, tuple] = {}
        for kind in lx.SLOT_KINDS:
            keys = tuple(k for k in t.keys[kind] if neg is None or k in neg.keys[kind])
            if keys:
                values[kind] = keys
        if t.bpm_request is not None and neg is None:
            values["bpm"] = (t.bpm_request,)
        if t.track.year is not None and (neg is None or neg.track.year == t.track.year):
            values["year"] = (t.track.year,)
        return values

    def request(self, t: Profile, prev: Profile | None, held_mode: bool, neg: Profile | None = None
                ) -> tuple[str, _Part, str]:
        """A request for ``t`` → (intent, part, reply lead key). With ``neg`` (the track about to be
        recommended instead and rejected), open requests name what both share when they share anything."""
        values = self._open_values(t, neg)
        if neg is not None and not any(values.get(k) for s in _PRIMARY_SLOT.values() for k in s):
            values = self._open_values(t, None)
        options: list[tuple[str, float]] = []
        for intent, weight in self.cfg.intent_weights:
            if intent in _PRIMARY_SLOT:
                ok = any(k in values for k in _PRIMARY_SLOT[intent])
            elif neg is not None:
                ok = False  # the wrong track answers an open request, not a named one
            elif intent == "specific_track":
                ok = True
            elif intent == "specific_artist":
                ok = t.artist_ok or t.source is not None
            elif intent == "more_like_this":
                ok = prev is not None and _similar(prev, t)
            else:  # direction_change
                ok = prev is not None and bool(self.rel.directions(prev, t))
            if ok and weight > 0:
                options.append((intent, weight))
        if not options:  # a bare track without tags or year: the listener names it
            options = [("specific_track", 1.0)]
        intent = self.rng.choices([i for i, _ in options], [w for _, w in options])[0]
        if intent == "direction_change":
            d = self.rng.choice(self.rel.directions(prev, t))
            return intent, self._fill((d,), {}, held_mode), d
        if intent == "specific_track":
            values = {"title": (t.track.title,)}
            if t.artist_ok:
                values["artist"] = (t.track.artist,)
            ok = lambda tmpl: t.title_unique or "artist" in tmpl.slots
            part = self._fill(_INTENT_GROUPS[intent], values, held_mode, ok)
            if part is None:  # a shared title by an unnamed artist: ask by title anyway
                part = self._fill(("track",), values, held_mode)
            return intent, part, "track"
        if intent == "specific_artist":
            values = {}
            if t.artist_ok:
                values["artist"] = (t.track.artist,)
            if t.source:
                values["source"] = (t.source,)
            ok = lambda tmpl: tmpl.group != "game" or t.game
            return intent, self._fill(_INTENT_GROUPS[intent], values, held_mode, ok), "artist"
        lead = "activity" if intent == "open_activity" else "more" if intent == "more_like_this" else "open"
        return intent, self._fill(_INTENT_GROUPS[intent], values, held_mode), lead

    def rejection(self, n: Profile, t: Profile, reasons: Sequence[str], held_mode: bool) -> tuple[_Part, str]:
        """The listener turns ``n`` down with a reason true of it; → (part, reply lead key)."""
        rng = self.rng
        # A style the listener did not want is true of most negatives; measured reasons say more.
        reason = rng.choices(reasons, [0.4 if r == "wrong_style" else 1.0 for r in reasons])[0]
        parts = [self._fill(("reject",), {}, held_mode and rng.random() < 0.5)]
        values = {"style": _style_only_in(n, t)} if reason == "wrong_style" else {}
        parts.append(self._fill((reason,), values, held_mode))
        direction = lx.REASON_DIRECTION.get(reason)
        lead = direction or "reject"
        roll = rng.random()
        wanted_styles = _style_only_in(t, n)
        if direction and roll < 0.5:
            parts.append(self._fill((direction,), {}, held_mode and rng.random() < 0.5))
        elif reason == "wrong_style" and wanted_styles and roll < 0.6:
            parts.append(self._fill(("genre",), {"style": wanted_styles}, held_mode and rng.random() < 0.5,
                                    lambda tmpl: tmpl.slots == ("style",)))
            lead = "reject"
        elif roll < 0.8:
            parts.append(self._fill(("retry",), {}, held_mode and rng.random() < 0.5))
        return _join(parts), lead

    def reply(self, t: Profile, lead: str | None, ack: str | None) -> str:
        """Assistant text naming ``t``'s title and artist, stating only facts of ``t``."""
        rng, tr = self.rng, t.track
        tags = list(tr.tags)
        facts = {
            "title": tr.title, "artist": tr.artist, "album": t.album,
            "year": str(tr.year) if tr.year is not None else None,
            "descr": rf.describe(tags, rng), "caption": tr.caption.strip() or None,
            "tags": ", ".join(tags[: rng.randint(2, 4)]) if len(tags) >= 2 else None,
            "bpm": str(round(t.bpm)) if t.bpm is not None else None, "key": t.key,
        }
        frames = [f for f, slots in _FRAME_SLOTS if all(facts[s] for s in slots)]
        text = rng.choice(frames).format(**facts)
        if tr.artist.lower().startswith("by "):
            text = text.replace(f"by {tr.artist}", tr.artist)
        pre = [rng.choice(rf.REPLY_LEADS[ack])] if ack else []
        if lead and rng.random() < self.cfg.lead_prob * (0.5 if ack else 1.0):  # two openers read as filler
            pre.append(rng.choice(rf.REPLY_LEADS[lead]))
        return " ".join([p for p in pre if p] + [text])


def _join(parts: Sequence[_Part | None]) -> _Part:
    parts = [p for p in parts if p is not None]
    return _Part(" ".join(p.text for p in parts), "+".join(p.template for p in parts),
                 any(p.held for p in parts), tuple(x for p in parts for x in p.protect))


# ---------------------------------------------------------------- conversations


def _rng(seed: int, *names: str) -> random.Random:
    digest = hashlib.sha256("|".join([str(seed), *names]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class _Planned:
    track: str  # track id
    rejected: bool = False  # a negative the listener turns down in the next turn
    reasons: tuple[str, ...] = ()  # true reasons to reject it, compared with the next track


def _plan(pl: Playlist, tracks: list[str], negatives: list[str], profiles: dict[str, Profile], rel: _Relations,
          cold: set[str], cfg: ConversationConfig, rng: random.Random) -> list[_Planned]:
    n_turns = rng.randint(cfg.min_turns, cfg.max_turns)
    need = min(n_turns, len(tracks))
    starts = list(range(len(tracks) - need + 1))
    if pl.split == "test" and cfg.cold_window_in_test:
        starts = [s for s in starts if cold.intersection(tracks[s:s + need])] or starts
    start = rng.choice(starts)
    window = tracks[start:start + need]
    # A rejection costs a turn; in test it must not push the window's last cold-start track out.
    last_cold = max((i for i, t in enumerate(window) if t in cold), default=-1) if pl.split == "test" else -1
    plan: list[_Planned] = []
    used: set[str] = set()
    for i, tid in enumerate(window):
        if len(plan) >= n_turns:
            break
        can_reject = len(plan) <= n_turns - 2 and not (plan and plan[-1].rejected)
        can_reject = can_reject and len(plan) + 1 + (last_cold - i + 1) <= n_turns
        if can_reject and rng.random() < cfg.reject_prob:
            target = profiles[tid]
            cands = []
            for nid in negatives:
                if nid in used:
                    continue
                reasons = rel.reasons(profiles[nid], target)
                if reasons:
                    shared = len(set(profiles[nid].keys["style"]) & set(target.keys["style"]))
                    cands.append((nid, reasons, 1 + 2 * shared))
            if cands:
                nid, reasons, _ = rng.choices(cands, [w for *_, w in cands])[0]
                plan.append(_Planned(nid, True, reasons))
                used.add(nid)
        plan.append(_Planned(tid))
    return plan


def _conversation(pl: Playlist, conv_id: str, profiles: dict[str, Profile], rel: _Relations,
                  pools: dict[bool, list[str]], cold: set[str], cfg: ConversationConfig) -> Conversation | None:
    tracks = list(dict.fromkeys(pl.track_ids))
    if len(tracks) < cfg.min_turns:
        return None
    rng = _rng(cfg.seed, "conversation", pl.playlist_id)
    noise_rng = _rng(cfg.seed, "noise", pl.playlist_id)  # separate, so noise never changes the content
    in_playlist = set(tracks)
    pool = [t for t in pools[pl.split == "test"] if t not in in_playlist]
    negatives = rng.sample(pool, min(cfg.n_negatives, len(pool)))
    plan = _plan(pl, tracks, negatives, profiles, rel, cold, cfg, rng)
    turns = _Turns(rel, cfg, rng)
    messages: list[Message] = []
    prev: Profile | None = None  # the last accepted track, if the last turn was accepted
    # Test: a fixed quota of turns per conversation (not a coin per turn) keeps every test file's
    # held-out share at test_held_out_share or above, however few conversations it has.
    n_held = math.ceil(cfg.test_held_out_share * len(plan)) if pl.split == "test" else 0
    held_turns = set(rng.sample(range(len(plan)), n_held))
    for i, step in enumerate(plan):
        held_mode = i in held_turns
        music = profiles[step.track]
        ack = None
        if i > 0 and plan[i - 1].rejected:
            part, lead = turns.rejection(profiles[plan[i - 1].track], music, plan[i - 1].reasons, held_mode)
            intent = "rejection"
        else:
            target = profiles[plan[i + 1].track] if step.rejected else music
            neg = music if step.rejected else None
            intent, part, lead = turns.request(target, prev, held_mode, neg)
            if i == 0 and rng.random() < cfg.greeting_prob:
                part = _join([turns._fill(("hello",), {}, held_mode and rng.random() < 0.5), part])
            elif prev is not None and rng.random() < cfg.accept_prob:
                part, intent, ack = _join([turns._fill(("accept",), {}, held_mode), part]), "acceptance", "accept"
            elif rng.random() < cfg.chit_chat_prob:
                part, intent, ack = _join([turns._fill(("chitchat",), {}, held_mode), part]), "chit_chat", "chat"
        text = add_noise(part.text, noise_rng, cfg.typo_rate, cfg.max_typos, cfg.lowercase_prob,
                            cfg.drop_punct_prob, part.protect)
        messages.append(Message("user", text, intent=intent, template=part.template, held_out=part.held))
        messages.append(Message("music", step.track, rejected=step.rejected))
        messages.append(Message("assistant", turns.reply(music, lead, ack)))
        prev = None if step.rejected else music
    return Conversation(conv_id, tuple(messages), pl.split, pl.playlist_id, tuple(negatives),
                        f"{GENERATOR} seed={cfg.seed}", True)


def generate_conversations(catalog: Catalog, playlists: Sequence[Playlist], features: Mapping[str, Mapping],
                           cold_ids: set[str] | frozenset[str],
                           config: ConversationConfig = ConversationConfig()) -> list[Conversation]:
    """One conversation per playlist (playlists with < ``min_turns`` distinct tracks are skipped).

    Args:
        features: track_id → features row (tempo_bpm, tempo_confidence, energy, brightness,
            percussiveness, key, mode, key_strength); tracks without a row are described by tags only.
        cold_ids: cold-start tracks; never drawn as negatives of train/valid conversations.
    Returns:
        Conversations sorted by playlist id, numbered per split: "<prefix>-<split>-000000".
    Raises:
        ConversationError: a playlist has no split or names a track that is not in the catalog.
    """
    problems = lx.lexicon_problems()
    if problems:
        raise ValueError(f"train.data.lexicon is inconsistent: {problems[0]} ({len(problems)} problem(s))")
    profiles = build_profiles(catalog, features)
    cold = set(cold_ids)
    ordered = sorted(playlists, key=lambda p: p.playlist_id)
    for pl in ordered:
        where = f"playlist {pl.playlist_id!r}"
        if pl.split not in ("train", "valid", "test"):
            raise ConversationError(where, f"split {pl.split!r} is not train/valid/test (run train.data.splits)",
                                    field="split")
        missing = [t for t in pl.track_ids if t not in profiles]
        if missing:
            raise ConversationError(where, f"track {missing[0]!r} is not in the catalog", field="track_ids")
    all_ids = sorted(profiles)
    pools = {False: [t for t in all_ids if t not in cold], True: all_ids}  # key: is the split test?
    prefix = config.id_prefix or slugify(catalog.name)
    rel = _Relations()
    counters = {"train": 0, "valid": 0, "test": 0}
    out = []
    for pl in ordered:
        conv = _conversation(pl, f"{prefix}-{pl.split}-{counters[pl.split]:06d}", profiles, rel, pools, cold,
                             config)
        if conv is not None:
            counters[pl.split] += 1
            out.append(conv)
    return out
