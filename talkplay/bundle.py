"""A bundle's data files, each read and written here only: ``playlists.parquet``, ``splits.json`` and
``features.parquet``.

(``tracks.parquet`` and ``manifest.json`` are :mod:`talkplay.catalog`'s; the layout of the whole bundle is in its
docstring.) Playlists are real (imported) or synthetic (``train.data.playlists`` simulates them); either way every
row says which, and where it came from. Reading checks every row and raises ``CatalogError`` naming the file,
row and field; writing is atomic.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from talkplay.catalog import FEATURES_FILE, PLAYLISTS_FILE, CatalogError, atomic_write, load_catalog, read_parquet

SPLITS = ("train", "valid", "test")
SPLITS_FILE = "splits.json"


# ---------------------------------------------------------------- playlists.parquet

# Column → (arrow type written, required when reading). The first six are the importer's schema.
_COLUMNS: dict[str, tuple[pa.DataType, bool]] = {
    "playlist_id": (pa.string(), True),
    "name": (pa.string(), True),
    "position": (pa.int32(), True),
    "track_id": (pa.string(), True),
    "synthetic": (pa.bool_(), True),
    "origin": (pa.string(), False),
    "split": (pa.string(), False),
}


@dataclass(frozen=True)
class Playlist:
    """One playlist of a bundle."""

    playlist_id: str  # unique within the bundle
    name: str  # display name, "" when unknown
    track_ids: tuple[str, ...]  # tracks in play order
    synthetic: bool  # True for simulated playlists, False for real ones
    origin: str  # importer source file, or "synthetic:listener-sim v1 seed=S"
    split: str | None = None  # "train" / "valid" / "test" once split, else None


def _kind_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    if pa.types.is_null(actual):
        return True
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    return actual == expected


def read_playlists(bundle: str | Path, known_track_ids: Collection[str] | None = None) -> list[Playlist]:
    """Read and check ``<bundle>/playlists.parquet`` (real or synthetic), grouped into playlists.

    Rows of a playlist need not be contiguous; tracks are ordered by ``position``. Track ids are
    checked against ``known_track_ids`` (default: the bundle's tracks.parquet).

    Raises:
        CatalogError: naming the file, row (1 = first data row) and field of the first problem.
    """
    path = Path(bundle) / PLAYLISTS_FILE
    table = read_parquet(path)
    names = table.schema.names
    missing = [c for c, (_, required) in _COLUMNS.items() if required and c not in names]
    if missing:
        raise CatalogError(path, f"missing required column(s) {', '.join(missing)}; columns are {names}",
                           field=missing[0])
    for c, (expected, _) in _COLUMNS.items():
        if c in names and not _kind_ok(table.schema.field(c).type, expected):
            raise CatalogError(path, f"column has type {table.schema.field(c).type}, expected {expected}", field=c)
    if known_track_ids is None:
        known_track_ids = [t.track_id for t in load_catalog(bundle)]
    known = set(known_track_ids)
    cols = {c: (table.column(c).to_pylist() if c in names else [None] * table.num_rows) for c in _COLUMNS}
    has_split = "split" in names and any(v is not None for v in cols["split"])

    groups: dict[str, dict] = {}
    for k in range(table.num_rows):
        row = k + 1
        pid, pos, tid = cols["playlist_id"][k], cols["position"][k], cols["track_id"][k]
        for field, value in (("playlist_id", pid), ("position", pos), ("track_id", tid),
                             ("synthetic", cols["synthetic"][k])):
            if value is None or (isinstance(value, str) and not value.strip()):
                raise CatalogError(path, "is empty but required", row=row, field=field)
        if pos < 0:
            raise CatalogError(path, f"{pos} must be ≥ 0", row=row, field="position")
        if tid not in known:
            raise CatalogError(path, f"unknown track id {tid!r} (not in the bundle's tracks)", row=row, field="track_id")
        split = cols["split"][k]
        if has_split and split not in SPLITS:
            raise CatalogError(path, f"{split!r} is not one of {', '.join(SPLITS)}", row=row, field="split")
        meta = {"name": cols["name"][k] or "", "synthetic": bool(cols["synthetic"][k]),
                "origin": cols["origin"][k] or "", "split": split if has_split else None}
        g = groups.get(pid)
        if g is None:
            groups[pid] = g = {"row": row, "meta": meta, "entries": {}}
        for field, value in meta.items():
            if value != g["meta"][field]:
                raise CatalogError(path, f"{value!r} differs from {g['meta'][field]!r} in row {g['row']} of the same "
                                   f"playlist {pid!r}", row=row, field=field)
        if pos in g["entries"]:
            raise CatalogError(path, f"duplicate position {pos} in playlist {pid!r} (first in row {g['entries'][pos][0]})",
                               row=row, field="position")
        g["entries"][pos] = (row, tid)
    return [Playlist(playlist_id=pid, track_ids=tuple(g["entries"][p][1] for p in sorted(g["entries"])), **g["meta"])
            for pid, g in groups.items()]


def playlists_table(playlists: Sequence[Playlist]) -> pa.Table:
    """One row per (playlist, position), in playlist order: the importer's columns plus ``split``."""
    cols: dict[str, list] = {c: [] for c in _COLUMNS}
    for p in playlists:
        n = len(p.track_ids)
        cols["playlist_id"] += [p.playlist_id] * n
        cols["name"] += [p.name] * n
        cols["position"] += list(range(n))
        cols["track_id"] += list(p.track_ids)
        cols["synthetic"] += [p.synthetic] * n
        cols["origin"] += [p.origin] * n
        cols["split"] += [p.split] * n
    schema = pa.schema([(c, t) for c, (t, _) in _COLUMNS.items()])
    return pa.Table.from_pydict(cols, schema=schema)


def write_playlists(bundle: str | Path, playlists: Sequence[Playlist]) -> Path:
    """Check then atomically write ``<bundle>/playlists.parquet`` (same input → same bytes)."""
    path = Path(bundle) / PLAYLISTS_FILE
    seen: set[str] = set()
    for k, p in enumerate(playlists, 1):
        if not p.playlist_id or p.playlist_id in seen:
            raise CatalogError(path, f"playlist {k}: empty or duplicate playlist_id {p.playlist_id!r}", field="playlist_id")
        if not p.track_ids:
            raise CatalogError(path, f"playlist {p.playlist_id!r} has no tracks", field="track_id")
        if p.split is not None and p.split not in SPLITS:
            raise CatalogError(path, f"playlist {p.playlist_id!r}: split {p.split!r} is not one of {SPLITS}", field="split")
        seen.add(p.playlist_id)
    table = playlists_table(playlists)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return path


# ---------------------------------------------------------------- splits.json


def read_splits_json(bundle: str | Path) -> dict:
    """``<bundle>/splits.json`` as a dict ({} when the bundle has none)."""
    path = Path(bundle) / SPLITS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CatalogError(path, f"not a readable JSON file ({err})") from err
    if not isinstance(data, dict):
        raise CatalogError(path, "must hold a JSON object")
    return data


def write_splits_json(bundle: str | Path, report: dict) -> Path:
    """Atomically write ``report`` as ``<bundle>/splits.json`` (sorted keys, stable bytes)."""
    path = Path(bundle) / SPLITS_FILE
    text = json.dumps(report, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def read_cold_ids(bundle: str | Path) -> tuple[str, ...]:
    """The cold-start ids recorded in ``<bundle>/splits.json``."""
    path = Path(bundle) / SPLITS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CatalogError(path, f"not a readable JSON file ({err})") from err
    ids = data.get("cold_start_track_ids") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
        raise CatalogError(path, "must hold a list of track ids", field="cold_start_track_ids")
    return tuple(ids)


# ---------------------------------------------------------------- features.parquet


def read_features(bundle: str | Path, columns: Sequence[str] | None = None,
                  known_track_ids: Collection[str] | None = None) -> dict[str, dict]:
    """``<bundle>/features.parquet`` — what was measured from each track's audio (tempo, key, loudness, energy,
    brightness, percussiveness, the musicnn embedding and auto-tags; written by ``train.catalog.analyze``) — as
    {track_id: row} in file order; {} when the bundle has none. ``columns``: only these (the ones the file has;
    ``track_id`` always). Errors name the file, row (1 = first data row) and field: an unreadable file, a row
    without a track id or with one not in ``known_track_ids``, a repeated id, a non-finite embedding."""
    path = Path(bundle) / FEATURES_FILE
    if not path.is_file():
        return {}
    try:
        names = pq.read_schema(path).names
        wanted = None if columns is None else ["track_id", *(c for c in columns if c in names and c != "track_id")]
        rows = pq.read_table(path, columns=wanted).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise CatalogError(path, f"not a readable Parquet file ({err})") from err
    out: dict[str, dict] = {}
    for row, r in enumerate(rows, 1):
        tid = r.get("track_id")
        if not isinstance(tid, str) or not tid:
            raise CatalogError(path, "missing track id", row=row, field="track_id")
        if known_track_ids is not None and tid not in known_track_ids:
            raise CatalogError(path, f"track id {tid!r} is not in the bundle's tracks", row=row, field="track_id")
        if tid in out:
            raise CatalogError(path, f"track id {tid!r} appears twice", row=row, field="track_id")
        emb = r.get("musicnn_embedding")
        if emb is not None and (not emb or any(v is None or not math.isfinite(v) for v in emb)):
            raise CatalogError(path, "must be a non-empty list of finite numbers", row=row, field="musicnn_embedding")
        out[tid] = r
    return out


def write_features(bundle: str | Path, rows: Sequence[dict] | pa.Table) -> Path:
    """Atomically write ``<bundle>/features.parquet`` (zstd) from rows or a table."""
    path = Path(bundle) / FEATURES_FILE
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return path
