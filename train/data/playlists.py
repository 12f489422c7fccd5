"""Synthetic playlists: a listener simulation that writes a bundle's ``playlists.parquet`` (format: talkplay.bundle).

    python -m train.data.playlists --catalog catalog/demo                 # ~5,000 playlists, split, stats
    python -m train.data.playlists --catalog catalog/demo --n-playlists 8000 --seed 1 --cold-fraction 0.05

The demo recordings have no real playlists, so this module invents them, reproducibly, from a small
model of listeners (every row says so: ``synthetic=True``, ``origin="synthetic:listener-sim v1 seed=S"``):

* **Tracks** live in a similarity space: tag Jaccard + musicnn-embedding cosine + tempo closeness
  (octave errors forgiven) + mood closeness (energy, brightness); each track keeps its top-k neighbours.
* **Popularity**: a Zipf prior over tracks, ranked by a hash of (seed, track id) so it does not
  depend on catalog order; it is mixed (in log space) with each listener's taste.
* **Listeners** are seeded from an anchor track: a tag preference (the anchor's tags plus a few
  neighbours' and some random ones), a mood (energy: calm ↔ energetic, brightness: dark ↔ bright), a
  tempo range, 1–3 favourite sources (packages/albums), a drift rate and a popularity sensitivity.
* **A playlist** is either an album run (consecutive tracks of one album or source, ~12 %) or a
  walk: start from the listener's taste × popularity, then repeatedly pick among the current
  track's neighbours, weighted by similarity and taste, with an occasional drift (a jump to
  elsewhere in the listener's taste). Lengths are log-normal in [8, 40]; a track never repeats.
* **Names** are composed from the run's dominant tags, its mood and the listener's taste
  ("late night synth drive", "epic orchestral battles", "UFO: Alien Invasion soundtrack front to back").
* **Cold start**: the cold-start tracks of ``train.data.splits`` are simulated as late releases: only
  playlists of the late period (the test share) may use them, with a new-release boost.

:func:`talkplay.bundle.read_playlists` reads both this module's files and the importer's real ones (no ``split``
column) and checks them, naming file, row and field.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.data.playlists")

import argparse
import json
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from talkplay.bundle import SPLITS, Playlist, write_playlists, write_splits_json
from talkplay.catalog import PLAYLISTS_FILE, CatalogError, load_catalog
from train.data.splits import (
    SplitConfig,
    add_split_arguments,
    assign_splits,
    choose_cold_tracks,
    split_report,
)
from train.data.track_space import (
    SimConfig,
    TrackSpace,
    _features_by_id,
    build_track_space,
    neighbours,
    popularity,
    similarity,
)

SIM_NAME = "listener-sim v1"  # bump the version when the simulation's output changes for the same seed


def sim_origin(seed: int) -> str:
    """The ``origin`` value of every synthetic row."""
    return f"synthetic:{SIM_NAME} seed={seed}"


# ---------------------------------------------------------------- listeners


@dataclass(frozen=True, eq=False)
class Listener:
    """A simulated listener's taste."""

    listener_id: int  # 0-based
    anchor: int  # index of the track the taste was seeded from
    tag_weights: np.ndarray  # preference over the tag vocabulary (sums to 1)
    energy: float  # preferred energy, 0 calm … 1 energetic
    brightness: float  # preferred brightness, 0 dark … 1 bright
    tempo_range: tuple[float, float]  # preferred bpm range; NaNs when the anchor's tempo is unknown
    sources: dict[str, float]  # favourite source groups → weight
    drift_prob: float  # per-step chance of a jump within the taste
    popularity_bias: float  # weight of log-popularity in the listener's prior


def make_listener(listener_id: int, space: TrackSpace, nbr: np.ndarray, rng: np.random.Generator,
                  config: SimConfig) -> Listener:
    """Seed a taste from a random anchor track, its neighbourhood and a little randomness."""
    n, v = space.tag_matrix.shape
    anchor = int(rng.integers(n))
    near = nbr[anchor, : min(10, nbr.shape[1])]
    picks = rng.choice(near, size=min(2, len(near)), replace=False)
    w = space.tag_matrix[anchor].astype(np.float64) + 0.5 * space.tag_matrix[picks].sum(0)
    w += 0.4 * (rng.random(v) < 3.0 / max(v, 1))  # a few unrelated likes: tastes are not pure clusters
    w = w / w.sum() if w.sum() > 0 else np.full(v, 1.0 / max(v, 1))
    t = space.tempo[anchor]
    if np.isnan(t):
        tempo_range = (math.nan, math.nan)
    else:
        centre, width = t * math.exp(rng.normal(0, 0.08)), rng.uniform(1.15, 1.45)
        tempo_range = (centre / width, centre * width)
    sources = {space.groups[anchor]: 1.0}
    others = sorted(set(space.groups) - set(sources))
    if others and rng.random() < 0.6:
        near_groups = [space.groups[j] for j in near if space.groups[j] in others]
        g = near_groups[0] if near_groups and rng.random() < 0.5 else others[int(rng.integers(len(others)))]
        sources[g] = float(rng.uniform(0.3, 0.7))
    others = sorted(set(space.groups) - set(sources))
    if others and rng.random() < 0.3:
        sources[others[int(rng.integers(len(others)))]] = float(rng.uniform(0.1, 0.4))
    return Listener(
        listener_id=listener_id, anchor=anchor, tag_weights=w,
        energy=float(np.clip(space.energy[anchor] + rng.normal(0, 0.07), 0, 1)),
        brightness=float(np.clip(space.brightness[anchor] + rng.normal(0, 0.1), 0, 1)),
        tempo_range=tempo_range, sources=sources,
        drift_prob=float(config.drift_prob * rng.uniform(0.5, 1.5)),
        popularity_bias=float(config.popularity_weight * rng.uniform(0.5, 1.5)),
    )


def taste_logits(listener: Listener, space: TrackSpace, log_pop: np.ndarray, config: SimConfig) -> np.ndarray:
    """Log-weights of the listener's prior over tracks: taste / temperature + bias × log popularity."""
    m = space.tag_matrix
    tag_fit = (m @ listener.tag_weights) / (np.sqrt(m.sum(1)) * np.linalg.norm(listener.tag_weights) + 1e-9)
    energy_fit = np.exp(-(((space.energy - listener.energy) / 0.15) ** 2))
    bright_fit = np.exp(-(((space.brightness - listener.brightness) / 0.2) ** 2))
    lo, hi = listener.tempo_range
    if math.isnan(lo):
        tempo_fit = np.full(len(space), 0.5)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.maximum(np.log2(lo / space.tempo), np.log2(space.tempo / hi)).clip(min=0)
        tempo_fit = np.where(np.isnan(out), 0.5, np.exp(-((out / 0.15) ** 2)))
    source_fit = np.array([listener.sources.get(g, 0.0) for g in space.groups])
    affinity = 2.0 * tag_fit + 0.8 * energy_fit + 0.5 * bright_fit + 0.6 * tempo_fit + 1.0 * source_fit
    return affinity / config.taste_temperature + listener.popularity_bias * log_pop


# ---------------------------------------------------------------- names

_STYLE = {
    "electronic": ("electronic", "electro"), "synth": ("synth", "synthesizer"), "orchestral": ("orchestral", "symphonic"),
    "chiptune": ("chiptune", "8-bit"), "8-bit": ("8-bit", "chiptune"), "techno": ("techno",), "ambient": ("ambient",),
    "metal": ("metal",), "rock": ("rock",), "folk": ("folk",), "classical": ("classical",), "pop": ("pop",),
    "piano": ("piano",), "strings": ("strings",), "guitar": ("guitar",), "acoustic": ("acoustic",),
    "violin": ("violin",), "flute": ("flute",), "dance": ("dance",), "jazz": ("jazz",), "beats": ("beats",),
    "experimental": ("experimental",), "soundtrack": ("soundtrack", "score"),
}
_THEME_CONTEXT = {
    "sci-fi": ("space station", "starship", "deep space", "orbit"),
    "fantasy": ("fantasy quest", "dragon's lair", "enchanted forest"),
    "medieval": ("castle", "tavern", "siege"),
    "action": ("battles", "boss fights", "combat"),
    "exploration": ("exploration", "wandering", "open world"),
    "retro": ("arcade", "retro"), "8-bit": ("arcade",), "chiptune": ("arcade", "level select"),
}
_ENERGY_CONTEXT = {
    "high": ("drive", "workout", "battles", "sprint", "boss rush"),
    "mid": ("commute", "gaming", "afternoon", "road trip"),
    "low": ("late night", "study", "focus", "rainy day", "wind-down"),
}
_ACTIVITY = {
    "high": ("the gym", "a night drive", "boss fights", "running"),
    "mid": ("gaming", "the commute", "coding", "cleaning up"),
    "low": ("studying", "reading", "falling asleep", "deep work"),
}
_MOOD = {
    "high": ("epic", "high-energy", "intense", "pumped"), "low": ("calm", "mellow", "quiet", "dreamy"),
    "dark": ("dark", "brooding", "shadowy", "midnight"), "bright": ("bright", "sunny", "uplifting"),
    "playful": ("playful", "bouncy", "happy"), "romantic": ("romantic", "tender"),
    "atmospheric": ("atmospheric", "hazy"), "chill": ("chill", "laid-back"), "cinematic": ("cinematic", "epic"),
}
_TEMPLATES = (
    "{mood} {style} {context}", "{context} {style}", "{style} for {activity}", "{mood} {style}",
    "{mood} {context}", "{theme} {style} mix", "{style} & {style2}", "{mood} {style} {context} mix",
    "my {mood} {style}", "{context} vibes", "{style} {context}",
)
_ALBUM_TEMPLATES = ("{album}", "{album} (full run)", "all of {album}", "{album} front to back",
                    "{album} marathon", "best of {album}")


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def compose_name(rng: np.random.Generator, space: TrackSpace, run: Sequence[int], listener: Listener,
                 album: str | None = None) -> str:
    """A playlist name from the run's dominant tags, mood and the listener's taste."""
    if album and rng.random() < 0.75:
        name = _pick(rng, _ALBUM_TEMPLATES).format(album=album)
        return name
    share = space.tag_matrix[list(run)].mean(0) + 0.3 * listener.tag_weights / max(listener.tag_weights.max(), 1e-9)
    ranked = [space.vocab[j] for j in np.argsort(-share, kind="stable") if share[j] > 0]
    styles = [t for t in ranked if t in _STYLE][:3] or ["music"]
    themes = [t for t in ranked if t in _THEME_CONTEXT][:2]
    energy = float(space.energy[list(run)].mean())
    level = "high" if energy > 0.75 else "low" if energy < 0.6 else "mid"
    moods = [m for m in ("dark", "bright", "playful", "romantic", "atmospheric", "chill", "cinematic")
             if m in ranked[:8]]
    moods = ([level] if level != "mid" else []) + moods
    style_tag = styles[0] if len(styles) == 1 or rng.random() < 0.7 else styles[1]
    style = _pick(rng, _STYLE.get(style_tag, (style_tag,)))
    style2_tag = next((s for s in styles if s != style_tag), None)
    theme_tag = themes[0] if themes else None
    if theme_tag and rng.random() < 0.6:
        context = _pick(rng, _THEME_CONTEXT[theme_tag])
    else:
        context = _pick(rng, _ENERGY_CONTEXT[level])
    if level == "high" and theme_tag in (None, "action", "fantasy", "medieval") and rng.random() < 0.3:
        context = "battles"  # the classic game-music playlist
    fill = {
        "mood": _pick(rng, _MOOD[_pick(rng, moods)]) if moods else None,
        "style": style, "style2": _pick(rng, _STYLE[style2_tag]) if style2_tag in _STYLE else None,
        "context": context, "activity": _pick(rng, _ACTIVITY[level]), "theme": theme_tag,
    }
    usable = [t for t in _TEMPLATES if all(fill[k] for k in re.findall(r"{(\w+)}", t))]
    name = _pick(rng, usable).format(**fill)
    words = name.split()
    if len(set(words)) < len(words):  # "epic epic battles": fall back to a template without repeats
        name = f"{fill['style']} {context}"
    r = rng.random()
    if r < 0.2:
        name = " ".join(w[:1].upper() + w[1:] for w in name.split())
    elif r < 0.25:
        name = name.upper()
    return name


# ---------------------------------------------------------------- the simulation


@dataclass(frozen=True)
class Simulation:
    """The output of ``simulate``."""

    playlists: tuple[Playlist, ...]  # in id order, split=None
    kinds: tuple[str, ...]  # "walk" or "album" per playlist
    late: tuple[bool, ...]  # whether each playlist belongs to the late period (cold tracks released)
    listeners: int  # number of simulated listeners


def _sample(rng: np.random.Generator, logits: np.ndarray) -> int:
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return int(rng.choice(len(p), p=p))


def _length(rng: np.random.Generator, config: SimConfig, available: int) -> int:
    n = round(math.exp(rng.normal(math.log(config.median_length), config.length_spread)))
    return max(2, min(available, max(config.min_length, min(config.max_length, n))))


def simulate(space: TrackSpace, config: SimConfig, cold_ids: Collection[str] = (), late_fraction: float = 0.1) -> Simulation:
    """Synthesize ``config.n_playlists`` playlists; cold tracks appear only in late-period playlists."""
    n = len(space)
    if n < 2:
        raise ValueError("the listener simulation needs at least 2 tracks")
    rng = np.random.default_rng(config.seed)
    nbr_idx, nbr_sim = neighbours(space, config)
    log_pop = np.log(popularity(space.ids, config.seed, config.zipf_exponent))
    cold_set = set(cold_ids)
    cold = np.array([tid in cold_set for tid in space.ids], dtype=bool)
    origin = sim_origin(config.seed)
    n_listeners = max(1, round(config.n_playlists / config.playlists_per_listener))
    # Listener activity is skewed too: a few listeners make many playlists.
    activity = rng.lognormal(0.0, 0.6, n_listeners)
    counts = rng.multinomial(config.n_playlists, activity / activity.sum())
    width = max(5, len(str(config.n_playlists - 1)))
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(space.groups):
        by_group.setdefault(g, []).append(i)

    playlists, kinds, lates = [], [], []
    for lid in range(n_listeners):
        if counts[lid] == 0:
            continue
        listener = make_listener(lid, space, nbr_idx, rng, config)
        base = taste_logits(listener, space, log_pop, config)
        early = np.where(cold, -np.inf, base)
        late = base + np.where(cold, math.log(config.new_release_boost), 0.0)
        for _ in range(counts[lid]):
            is_late = bool(cold.any() and rng.random() < late_fraction)
            prior = late if is_late else early
            available = ~cold if not is_late else np.ones(n, dtype=bool)
            run, album = None, None
            if rng.random() < config.album_run_prob:
                run, album = _album_run(rng, space, listener, by_group, available, config)
            kind = "album" if run else "walk"
            if not run:
                run = _walk(rng, listener, prior, nbr_idx, nbr_sim, available, config)
            pid = f"sim-{len(playlists):0{width}d}"
            name = compose_name(rng, space, run, listener, album)
            playlists.append(Playlist(pid, name, tuple(space.ids[i] for i in run), True, origin))
            kinds.append(kind)
            lates.append(is_late)
    return Simulation(tuple(playlists), tuple(kinds), tuple(lates), n_listeners)


def _walk(rng, listener: Listener, prior: np.ndarray, nbr_idx: np.ndarray, nbr_sim: np.ndarray,
          available: np.ndarray, config: SimConfig) -> list[int]:
    length = _length(rng, config, int(available.sum()))
    used = ~available.copy()
    current = _sample(rng, prior)
    run = [current]
    used[current] = True
    while len(run) < length:
        cand = nbr_idx[current]
        ok = ~used[cand]
        if ok.any() and rng.random() >= listener.drift_prob:
            logits = nbr_sim[current][ok] / config.similarity_temperature + config.walk_taste_weight * prior[cand[ok]]
            current = int(cand[ok][_sample(rng, logits)])
        else:  # drift, or a dead end: jump elsewhere in the listener's taste
            current = _sample(rng, np.where(used, -np.inf, prior))
        run.append(current)
        used[current] = True
    return run


def _album_run(rng, space: TrackSpace, listener: Listener, by_group: dict[str, list[int]], available: np.ndarray,
               config: SimConfig) -> tuple[list[int] | None, str | None]:
    groups = [g for g in sorted(by_group) if int(available[by_group[g]].sum()) >= config.min_length]
    if not groups:
        return None, None
    weights = np.array([listener.sources.get(g, 0.0) + 0.05 for g in groups])
    g = groups[int(rng.choice(len(groups), p=weights / weights.sum()))]
    members = [i for i in by_group[g] if available[i]]
    albums: dict[str, list[int]] = {}
    for i in members:
        key = re.sub(r"[^a-z0-9]+", " ", space.albums[i].lower()).strip()
        if key:
            albums.setdefault(key, []).append(i)
    big = [k for k in sorted(albums) if len(albums[k]) >= config.min_length]
    if big and rng.random() < 0.7:
        sizes = np.array([len(albums[k]) for k in big], dtype=float)
        members = albums[big[int(rng.choice(len(big), p=sizes / sizes.sum()))]]
    spellings = Counter(space.albums[i] for i in members if space.albums[i])
    album = min(spellings, key=lambda a: (-spellings[a], a)) if spellings else None
    length = _length(rng, config, len(members))
    start = int(rng.integers(len(members) - length + 1))
    return members[start:start + length], album


# ---------------------------------------------------------------- statistics


def playlist_stats(playlists: Sequence[Playlist], space: TrackSpace, config: SimConfig, seed: int = 0) -> dict:
    """Lengths, track appearances, popularity skew and coherence (similarity of neighbours vs random pairs)."""
    col = {tid: i for i, tid in enumerate(space.ids)}
    lengths = np.array([len(p.track_ids) for p in playlists])
    appear = np.zeros(len(space), dtype=np.int64)
    for p in playlists:
        appear[[col[t] for t in set(p.track_ids)]] += 1
    rng = np.random.default_rng([seed, 99])
    seqs = [np.array([col[t] for t in p.track_ids]) for p in playlists]
    a = np.concatenate([s[:-1] for s in seqs])
    b = np.concatenate([s[1:] for s in seqs])
    entries = np.concatenate(seqs)
    pairs = rng.integers(len(entries), size=(2, min(50_000, len(entries))))
    keep = entries[pairs[0]] != entries[pairs[1]]
    within = []
    for s in seqs:
        if len(s) > 2:
            x, y = rng.choice(len(s), 2, replace=False)
            within.append((s[x], s[y]))
    wi = np.array(within) if within else np.zeros((0, 2), dtype=int)
    u = rng.integers(len(space), size=(2, 50_000))
    u = u[:, u[0] != u[1]]
    sorted_appear = np.sort(appear)[::-1]
    top = max(1, round(0.1 * len(space)))
    cum = np.cumsum(np.sort(appear))
    gini = float(1 - 2 * (cum / cum[-1]).sum() / len(space) + 1 / len(space)) if cum[-1] else 0.0

    def mean_sim(x, y):
        return round(float(similarity(space, x, y, config).mean()), 4) if len(x) else None

    return {
        "playlists": len(playlists),
        "entries": int(lengths.sum()),
        "length": {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 2), "max": int(lengths.max())},
        "track_appearances": {"min": int(appear.min()), "median": float(np.median(appear)), "max": int(appear.max()),
                              "tracks_unused": int((appear == 0).sum())},
        "popularity": {"top10pct_tracks_share_of_appearances": round(float(sorted_appear[:top].sum() / appear.sum()), 3),
                       "gini": round(gini, 3)},
        "coherence": {"consecutive": mean_sim(a, b), "same_playlist_random": mean_sim(wi[:, 0], wi[:, 1]),
                      "random_entries": mean_sim(entries[pairs[0]][keep], entries[pairs[1]][keep]),
                      "random_tracks": mean_sim(u[0], u[1])},
        "distinct_names": len({p.name for p in playlists}),
    }


# ---------------------------------------------------------------- one command: synthesize + split


def synthesize_bundle(catalog_dir: str | Path, config: SimConfig = SimConfig(),
                      split: SplitConfig | None = None) -> dict:
    """Simulate playlists for a bundle, split them, write playlists.parquet and splits.json.

    The split uses the simulation's seed. Returns statistics (simulation, splits, seconds).
    """
    started = time.perf_counter()
    bundle = Path(catalog_dir)
    split = replace(split or SplitConfig(), seed=config.seed)
    catalog = load_catalog(bundle)
    space = build_track_space(catalog, _features_by_id(bundle, catalog))
    cold = choose_cold_tracks(catalog.tracks, split)  # chosen first: the simulation releases them late
    sim = simulate(space, config, cold_ids=cold, late_fraction=split.test)
    assignment = assign_splits(sim.playlists, catalog.tracks, cold, split)
    playlists = [replace(p, split=assignment[p.playlist_id]) for p in sim.playlists]
    write_playlists(bundle, playlists)
    report = split_report(playlists, catalog.tracks, assignment, cold, split)
    report["simulation"] = {"name": SIM_NAME, "config": {k: v for k, v in vars(config).items()},
                            "listeners": sim.listeners, "album_runs": sim.kinds.count("album")}
    write_splits_json(bundle, report)
    stats = playlist_stats(playlists, space, config, config.seed)
    return {
        "catalog": str(bundle), "origin": sim_origin(config.seed), "listeners": sim.listeners,
        "album_runs": sim.kinds.count("album"), **stats,
        "splits": {s: report["counts"][s] for s in SPLITS},
        "cold_start_tracks": len(report["cold_start_track_ids"]),
        "test_playlists_with_cold_start": report["test_playlists_with_cold_start"],
        "train_uncovered_track_ids": report["train_uncovered_track_ids"],
        "parquet_bytes": (bundle / PLAYLISTS_FILE).stat().st_size,
        "seconds": round(time.perf_counter() - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    d = SimConfig()
    parser = argparse.ArgumentParser(
        prog="python -m train.data.playlists",
        description="Synthesize playlists for a catalog bundle with a seeded listener simulation, split them "
                    "(train/valid/test + cold-start tracks) and write playlists.parquet and splits.json. "
                    "Every row is marked synthetic.")
    parser.add_argument("--catalog", type=Path, required=True, help="bundle directory (tracks.parquet; features.parquet if present)")
    parser.add_argument("--n-playlists", type=int, default=d.n_playlists, help=f"playlists to synthesize (default {d.n_playlists})")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help=f"random seed for simulation and split; same seed → byte-identical files (default {d.seed})")
    parser.add_argument("--min-length", type=int, default=d.min_length, help=f"shortest playlist (default {d.min_length})")
    parser.add_argument("--max-length", type=int, default=d.max_length, help=f"longest playlist (default {d.max_length})")
    parser.add_argument("--album-run-prob", type=float, default=d.album_run_prob,
                        help=f"share of playlists that are runs through one album/source (default {d.album_run_prob})")
    parser.add_argument("--drift-prob", type=float, default=d.drift_prob,
                        help=f"mean per-step chance of jumping elsewhere in the listener's taste (default {d.drift_prob})")
    parser.add_argument("--zipf-exponent", type=float, default=d.zipf_exponent,
                        help=f"popularity skew: popularity ∝ rank^-exponent (default {d.zipf_exponent}; 0 = uniform)")
    parser.add_argument("--playlists-per-listener", type=float, default=d.playlists_per_listener,
                        help=f"average playlists per simulated listener; sets the listener count (default {d.playlists_per_listener})")
    add_split_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = SimConfig(n_playlists=args.n_playlists, seed=args.seed, min_length=args.min_length,
                           max_length=args.max_length, album_run_prob=args.album_run_prob, drift_prob=args.drift_prob,
                           zipf_exponent=args.zipf_exponent, playlists_per_listener=args.playlists_per_listener)
        split = SplitConfig(train=args.train, valid=args.valid, test=args.test, cold_fraction=args.cold_fraction,
                            seed=args.seed)
        stats = synthesize_bundle(args.catalog, config, split)
    except (CatalogError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(stats, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
