"""Splits by playlist: train / valid / test, with cold-start tracks that only ever appear in test.

    python -m train.data.splits --catalog catalog/mine            # split an imported (real) playlists.parquet
    python -m train.data.splits --catalog catalog/mine --seed 3 --test 0.15 --cold-fraction 0.05

This module owns how a bundle's playlists are divided for training and evaluation:

* whole playlists go to one split (~80/10/10 by default), so a held-out playlist is never partly seen;
* a seeded ~5–10 % of tracks, stratified by source (the Debian package, else the album, else the
  artist), are **cold-start tracks**: every playlist that contains one goes to test, so train and
  valid never see them and the tokenizer must place them from content alone;
* train must still cover every other track; a repair pass moves playlists into train where it can,
  and any track it cannot cover is listed (``train_uncovered_track_ids``) rather than hidden.

For real playlists the cold tracks are chosen among tracks that appear in few playlists (a new
release has few listens) and under a budget: the playlists they force into test may not exceed the
test fraction, and no other track may lose its last train-eligible playlist. Synthetic bundles choose
their cold tracks first and simulate them as late releases (see ``train.data.playlists``).

Output: the ``split`` column of ``playlists.parquet`` and ``splits.json`` (seed, fractions,
cold-start ids, counts per split, synthetic flag). Same inputs and seed → byte-identical files.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.data.splits")

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from talkplay.bundle import SPLITS, SPLITS_FILE, read_cold_ids, read_playlists, write_playlists, write_splits_json
from talkplay.catalog import CatalogError, Track, load_catalog
from talkplay.debsource import deb_package

SPLITS_VERSION = 1  # bump when splits.json changes meaning

# Separate random streams per decision, so changing one (e.g. the fractions) does not reshuffle another.
_STREAM_COLD, _STREAM_ASSIGN = 1, 2


@dataclass(frozen=True)
class SplitConfig:
    """How to split a bundle's playlists."""

    train: float = 0.8  # share of playlists for training
    valid: float = 0.1  # share for validation (model selection)
    test: float = 0.1  # share for the held-out test (includes every playlist with a cold-start track)
    cold_fraction: float = 0.07  # share of catalog tracks held out as cold-start (test-only) tracks
    seed: int = 0  # seeds cold-track choice and playlist assignment

    def __post_init__(self) -> None:
        for name in ("train", "valid", "test", "cold_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"SplitConfig.{name}={value!r} must be a number in [0, 1]")
        if abs(self.train + self.valid + self.test - 1.0) > 1e-6:
            raise ValueError(f"SplitConfig train+valid+test must sum to 1 (got {self.train}+{self.valid}+{self.test})")
        if self.train <= 0 or self.test <= 0:
            raise ValueError("SplitConfig.train and SplitConfig.test must be > 0")
        if self.cold_fraction >= 0.5:
            raise ValueError(f"SplitConfig.cold_fraction={self.cold_fraction} must be < 0.5")

    @property
    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "valid": self.valid, "test": self.test}


class PlaylistLike(Protocol):
    """What splitting needs from a playlist (``train.data.playlists.Playlist`` has it)."""

    playlist_id: str
    track_ids: tuple[str, ...]


def source_group(track: Track) -> str:
    """The stratum a track belongs to: its Debian package, else its album, else its artist."""
    package = deb_package(track.source)
    if package:
        return package
    if track.album.strip():
        return "album:" + track.album.strip().lower()
    return "artist:" + track.artist.strip().lower()


def _quotas(groups: Mapping[str, int], total: int) -> dict[str, int]:
    # Largest-remainder apportionment: each stratum gets its share of `total`, rounded fairly.
    n = sum(groups.values())
    exact = {g: total * size / n for g, size in groups.items()} if n else {}
    quota = {g: int(v) for g, v in exact.items()}
    rest = total - sum(quota.values())
    for g in sorted(exact, key=lambda g: (-(exact[g] - quota[g]), g))[:rest]:
        quota[g] += 1
    return quota


def _appearances(playlists: Sequence[PlaylistLike]) -> dict[str, list[int]]:
    where: dict[str, list[int]] = {}
    for i, p in enumerate(playlists):
        for tid in dict.fromkeys(p.track_ids):  # a repeated track counts once per playlist
            where.setdefault(tid, []).append(i)
    return where


def choose_cold_tracks(tracks: Sequence[Track], config: SplitConfig,
                       playlists: Sequence[PlaylistLike] | None = None) -> tuple[str, ...]:
    """Pick ``round(cold_fraction × tracks)`` cold-start track ids, stratified by ``source_group``.

    Without ``playlists`` (synthetic bundles, chosen before simulation) the pick is uniform within
    each stratum. With ``playlists`` it prefers tracks in few playlists, skips tracks in none, and
    accepts a track only while the playlists forced into test stay within ``config.test`` and every
    other track keeps at least one playlist that can go to train. Returned in catalog order.
    """
    target = round(config.cold_fraction * len(tracks))
    if target == 0:
        return ()
    rng = np.random.default_rng([config.seed, _STREAM_COLD])
    by_group: dict[str, list[int]] = {}
    for i, t in enumerate(tracks):
        by_group.setdefault(source_group(t), []).append(i)
    quota = _quotas({g: len(ix) for g, ix in by_group.items()}, target)
    where = _appearances(playlists) if playlists is not None else {}
    order: dict[str, list[int]] = {}
    for g in sorted(by_group):
        ix = by_group[g]
        u = rng.random(len(ix))
        if playlists is None:
            keys = u
        else:
            # Efraimidis–Spirakis weighted order: weight 1/(1+appearances) favours rarely-played tracks.
            w = np.array([1.0 / (1 + len(where.get(tracks[i].track_id, []))) for i in ix])
            keys = np.log(u) / w
            keys[[not where.get(tracks[i].track_id) for i in ix]] = -np.inf  # never played: useless for eval
        order[g] = [ix[k] for k in np.argsort(-keys, kind="stable")]
    if playlists is None:
        chosen = {i for g in order for i in order[g][:quota[g]]}
        return tuple(t.track_id for i, t in enumerate(tracks) if i in chosen)

    budget = int(np.floor(config.test * len(playlists) + 1e-9))
    forced = np.zeros(len(playlists), dtype=bool)
    # Playlists per track that could still go to train (not forced into test by a cold track).
    eligible = {tid: len(ix) for tid, ix in where.items()}
    chosen_ids: set[str] = set()
    cursor = {g: 0 for g in order}
    progress = True
    while progress and len(chosen_ids) < target:
        progress = False
        for g in sorted(order):
            taken = sum(1 for i in by_group[g] if tracks[i].track_id in chosen_ids)
            if taken >= quota[g]:
                continue
            while cursor[g] < len(order[g]):
                tid = tracks[order[g][cursor[g]]].track_id
                cursor[g] += 1
                if not where.get(tid):
                    continue
                new = [p for p in where[tid] if not forced[p]]
                if forced.sum() + len(new) > budget:
                    continue
                loss: dict[str, int] = {}
                for p in new:
                    for other in dict.fromkeys(playlists[p].track_ids):
                        loss[other] = loss.get(other, 0) + 1
                if any(eligible[o] - n <= 0 for o, n in loss.items() if o != tid and o not in chosen_ids):
                    continue
                forced[new] = True
                for o, n in loss.items():
                    eligible[o] -= n
                chosen_ids.add(tid)
                progress = True
                break
    return tuple(t.track_id for t in tracks if t.track_id in chosen_ids)


def assign_splits(playlists: Sequence[PlaylistLike], tracks: Sequence[Track], cold_ids: Iterable[str],
                  config: SplitConfig) -> dict[str, str]:
    """Map each playlist id to "train" / "valid" / "test".

    Playlists containing a cold track go to test; the rest are shuffled (seeded) to fill test and
    valid up to their shares, train takes the remainder. Then every non-cold track missing from
    train gets one of its valid/test playlists moved into train, swapped against a train playlist
    whose tracks are all covered twice, so the shares stay as they were.
    """
    cold = set(cold_ids)
    n = len(playlists)
    ids = [p.playlist_id for p in playlists]
    if len(set(ids)) != n:
        raise ValueError("playlist ids must be unique")
    forced = [i for i, p in enumerate(playlists) if any(t in cold for t in p.track_ids)]
    forced_set = set(forced)
    rest = [i for i in range(n) if i not in forced_set]
    rng = np.random.default_rng([config.seed, _STREAM_ASSIGN])
    rest = [rest[k] for k in rng.permutation(len(rest))]
    n_test = max(0, round(config.test * n) - len(forced))
    n_valid = round(config.valid * n)
    split = ["train"] * n
    for i in forced:
        split[i] = "test"
    for i in rest[:n_test]:
        split[i] = "test"
    for i in rest[n_test:n_test + n_valid]:
        split[i] = "valid"

    train_count: dict[str, int] = {}
    for i in range(n):
        if split[i] == "train":
            for t in dict.fromkeys(playlists[i].track_ids):
                train_count[t] = train_count.get(t, 0) + 1
    where = _appearances(playlists)
    movable = [i for i in rest]  # shuffled order, reused for deterministic swaps
    for t in tracks:
        tid = t.track_id
        if tid in cold or train_count.get(tid, 0) > 0:
            continue
        donors = [i for i in where.get(tid, []) if i not in forced_set and split[i] != "train"]
        if not donors:
            continue  # only in forced-test playlists (or none): reported by split_report
        give = donors[0]
        back = next((j for j in movable if split[j] == "train"
                     and all(train_count.get(x, 0) >= 2 for x in dict.fromkeys(playlists[j].track_ids))), None)
        vacated = split[give]
        split[give] = "train"
        for x in dict.fromkeys(playlists[give].track_ids):
            train_count[x] = train_count.get(x, 0) + 1
        if back is not None:
            split[back] = vacated
            for x in dict.fromkeys(playlists[back].track_ids):
                train_count[x] -= 1
    return dict(zip(ids, split))


def split_report(playlists: Sequence, tracks: Sequence[Track], assignment: Mapping[str, str],
                 cold_ids: Sequence[str], config: SplitConfig) -> dict:
    """The contents of ``splits.json``: settings, cold-start ids and per-split counts."""
    cold = set(cold_ids)
    counts = {s: {"playlists": 0, "entries": 0, "tracks": 0, "cold_start_entries": 0} for s in SPLITS}
    seen: dict[str, set[str]] = {s: set() for s in SPLITS}
    for p in playlists:
        s = assignment[p.playlist_id]
        counts[s]["playlists"] += 1
        counts[s]["entries"] += len(p.track_ids)
        counts[s]["cold_start_entries"] += sum(1 for t in p.track_ids if t in cold)
        seen[s].update(p.track_ids)
    for s in SPLITS:
        counts[s]["tracks"] = len(seen[s])
    used = set().union(*seen.values())
    flags = {bool(getattr(p, "synthetic", False)) for p in playlists}
    groups: dict[str, int] = {}
    for t in tracks:
        if t.track_id in cold:
            groups[source_group(t)] = groups.get(source_group(t), 0) + 1
    return {
        "version": SPLITS_VERSION,
        "seed": config.seed,
        "fractions": config.fractions,
        "cold_fraction": config.cold_fraction,
        "stratified_by": "source group (Debian package, else album, else artist)",
        "cold_start_track_ids": [t.track_id for t in tracks if t.track_id in cold],
        "cold_start_target": round(config.cold_fraction * len(tracks)),
        "cold_start_per_group": dict(sorted(groups.items())),
        "test_playlists_with_cold_start": sum(1 for p in playlists if any(t in cold for t in p.track_ids)),
        "counts": counts,
        "synthetic": flags.pop() if len(flags) == 1 else "mixed",
        "origins": sorted({getattr(p, "origin", "") for p in playlists}),
        "train_uncovered_track_ids": [t.track_id for t in tracks
                                      if t.track_id not in cold and t.track_id in used and t.track_id not in seen["train"]],
        "unused_track_ids": [t.track_id for t in tracks if t.track_id not in used],
    }


def split_bundle(catalog_dir: str | Path, config: SplitConfig = SplitConfig(), reuse_cold: bool = False) -> dict:
    """Split the playlists of a bundle in place: rewrite playlists.parquet with ``split`` and write splits.json.

    Returns:
        The splits.json report.
    """
    catalog = load_catalog(catalog_dir)
    playlists = read_playlists(catalog_dir, known_track_ids=[t.track_id for t in catalog])
    if not playlists:
        raise CatalogError(Path(catalog_dir) / "playlists.parquet", "holds no playlists to split")
    if reuse_cold:
        cold = read_cold_ids(catalog_dir)
        unknown = [t for t in cold if t not in catalog]
        if unknown:
            raise CatalogError(Path(catalog_dir) / SPLITS_FILE, f"unknown track id {unknown[0]!r}",
                               field="cold_start_track_ids")
    else:
        cold = choose_cold_tracks(catalog.tracks, config, playlists)
    assignment = assign_splits(playlists, catalog.tracks, cold, config)
    write_playlists(catalog_dir, [replace(p, split=assignment[p.playlist_id]) for p in playlists])
    report = split_report(playlists, catalog.tracks, assignment, cold, config)
    write_splits_json(catalog_dir, report)
    return report


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """The split flags, shared with ``python -m train.data.playlists``."""
    d = SplitConfig()
    parser.add_argument("--train", type=float, default=d.train, help=f"share of playlists for training (default {d.train})")
    parser.add_argument("--valid", type=float, default=d.valid, help=f"share of playlists for validation (default {d.valid})")
    parser.add_argument("--test", type=float, default=d.test,
                        help=f"share of playlists held out for test, including every playlist with a cold-start "
                             f"track (default {d.test}); train+valid+test must sum to 1")
    parser.add_argument("--cold-fraction", type=float, default=d.cold_fraction,
                        help=f"share of tracks held out as cold-start tracks that appear only in test playlists, "
                             f"stratified by source package/album (default {d.cold_fraction}; 0 disables)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.data.splits",
        description="Split a bundle's playlists.parquet by playlist into train/valid/test with cold-start tracks "
                    "(writes the 'split' column and splits.json).")
    parser.add_argument("--catalog", type=Path, required=True, help="bundle directory holding playlists.parquet")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives byte-identical output (default 0)")
    add_split_arguments(parser)
    parser.add_argument("--reuse-cold", action="store_true",
                        help="keep the cold-start tracks listed in the bundle's existing splits.json instead of choosing anew")
    args = parser.parse_args(argv)
    try:
        config = SplitConfig(train=args.train, valid=args.valid, test=args.test,
                             cold_fraction=args.cold_fraction, seed=args.seed)
        report = split_bundle(args.catalog, config, reuse_cold=args.reuse_cold)
    except (CatalogError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {k: report[k] for k in ("counts", "test_playlists_with_cold_start", "train_uncovered_track_ids")}
    summary["cold_start_tracks"] = len(report["cold_start_track_ids"])
    if summary["cold_start_tracks"] < report["cold_start_target"]:
        print(f"note: only {summary['cold_start_tracks']} of {report['cold_start_target']} cold-start tracks fit: "
              "more would force more playlists into test than --test allows, or leave a track without train "
              "playlists", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
