"""The catalog: typed ``Track`` records and the on-disk catalog bundle that holds them.

A bundle is a directory::

    <bundle>/
      manifest.json       name, schema version, track count, per-package/source summary
      tracks.parquet      one row per track (the columns of ``Track``), validated on load
      features.parquet    optional: audio descriptors, auto-tag probabilities, audio embedding
      playlists.parquet   optional: (playlist_id, name, position, track_id, synthetic, origin[, split])
      splits.json         optional: train/valid/test split of the playlists and the cold-start tracks
      CREDITS.md          human-readable credits and licenses
      previews/           optional audio previews (the demo's are cut locally, never committed)

``playlists.parquet`` and ``splits.json`` are read and written by :mod:`talkplay.bundle` only.

Loading checks every row and raises ``CatalogError`` naming the file, the row (counted from 1, the
first data row, as in the importers' messages) and the field that is wrong; it never drops or repairs rows silently. Writing goes through a temporary file and an atomic
rename so a crash cannot leave a half-written bundle behind.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from talkplay.licenses import is_known_license

SCHEMA_VERSION = 1
TRACKS_FILE = "tracks.parquet"
FEATURES_FILE = "features.parquet"
PLAYLISTS_FILE = "playlists.parquet"
MANIFEST_FILE = "manifest.json"

# Stable ids survive re-imports and appear in URLs, token stores and feedback rows, so they are
# restricted to a conservative alphabet.
TRACK_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


class CatalogError(ValueError):
    """A catalog file is malformed. The message names the file, row and field."""

    def __init__(self, path: str | os.PathLike, message: str, row: int | None = None, field: str | None = None):
        self.path, self.row, self.field = str(path), row, field
        where = [self.path]
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}")


@dataclass(frozen=True)
class Track:
    """One recording of the catalog."""

    track_id: str  # stable id, unique within the catalog (e.g. "wesnoth-battle-epic")
    title: str  # display title, never empty
    artist: str  # performer or composer as credited
    license: str  # SPDX id (or LicenseRef-…), see talkplay.licenses
    attribution: str  # full credit line to show next to the track
    source: str  # where the recording comes from (URI, e.g. "deb://pkg/version/path")
    album: str = ""  # album or soundtrack name, "" when unknown
    year: int | None = None  # release year when known
    duration_s: float | None = None  # length of the full recording in seconds
    tags: tuple[str, ...] = ()  # lower-case descriptive tags (genre, mood, instruments, …)
    caption: str = ""  # one-sentence description composed from tags and descriptors
    lyrics: str | None = None  # lyrics text; None for instrumentals or when unknown
    preview_path: str | None = None  # preview audio, relative to the bundle directory or absolute
    source_sha256: str | None = None  # checksum of the source audio file, to verify re-fetches
    preview_start_s: float | None = None  # where the preview section starts in the source audio
    preview_duration_s: float | None = None  # length of the preview section


# Column name → (arrow type, required, nullable). Required columns must exist in the file; nullable
# columns may hold nulls. The order matches Track so saved files read naturally.
_COLUMNS: dict[str, tuple[pa.DataType, bool, bool]] = {
    "track_id": (pa.string(), True, False),
    "title": (pa.string(), True, False),
    "artist": (pa.string(), True, False),
    "license": (pa.string(), True, False),
    "attribution": (pa.string(), True, False),
    "source": (pa.string(), True, False),
    "album": (pa.string(), False, True),
    "year": (pa.int64(), False, True),
    "duration_s": (pa.float64(), False, True),
    "tags": (pa.list_(pa.string()), False, True),
    "caption": (pa.string(), False, True),
    "lyrics": (pa.string(), False, True),
    "preview_path": (pa.string(), False, True),
    "source_sha256": (pa.string(), False, True),
    "preview_start_s": (pa.float64(), False, True),
    "preview_duration_s": (pa.float64(), False, True),
}
assert list(_COLUMNS) == [f.name for f in fields(Track)], "catalog columns must mirror Track"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def slugify(text: str, max_len: int = 100) -> str:
    """Lower-case ASCII slug for building track ids ('Hr3 — Caves!' → 'hr3-caves')."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")[:max_len] or "track"


def preview_relpath(track_id: str) -> str:
    """Where a track's preview lives inside its bundle."""
    return f"previews/{track_id}.mp3"


def _safe_relative(path: str) -> bool:
    # Previews are written by setup and served by the app: a path must stay inside the bundle.
    p = Path(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts and "\\" not in path


def _type_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual == expected or pa.types.is_null(actual):
        return True
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_floating(expected):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_list(expected):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and (
            pa.types.is_string(actual.value_type) or pa.types.is_large_string(actual.value_type)
            or pa.types.is_null(actual.value_type)
        )
    return False


def _type_name(t: pa.DataType) -> str:
    return {"string": "text", "int64": "integer", "double": "number", "list<item: string>": "list of text"}.get(str(t), str(t))


def validate_track(track: Track, path: str | os.PathLike, row: int) -> None:
    """Check one record's values; raise CatalogError naming ``path``, ``row`` and the field."""

    def fail(name: str, msg: str) -> None:
        raise CatalogError(path, msg, row=row, field=name)

    if not TRACK_ID_PATTERN.match(track.track_id or ""):
        fail("track_id", f"{track.track_id!r} is not a valid id (letters, digits, '.', '_', ':', '-'; max 128)")
    for name in ("title", "artist", "attribution", "source"):
        value = getattr(track, name)
        if not isinstance(value, str) or not value.strip():
            fail(name, "must be a non-empty text")
    if not is_known_license(track.license or ""):
        fail("license", f"unknown license {track.license!r}: use an SPDX id from talkplay/licenses.py or 'LicenseRef-<Name>'")
    if track.year is not None and not (1000 <= track.year <= 2100):
        fail("year", f"{track.year} is not a plausible year")
    for name in ("duration_s", "preview_start_s", "preview_duration_s"):
        value = getattr(track, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            fail(name, f"{value} must be a finite number ≥ 0")
    if track.duration_s is not None and track.duration_s <= 0:
        fail("duration_s", f"{track.duration_s} must be > 0")
    for tag in track.tags:
        if not isinstance(tag, str) or not tag.strip():
            fail("tags", "tags must be non-empty texts")
    if track.source_sha256 is not None and not _SHA256.match(track.source_sha256):
        fail("source_sha256", "must be 64 lower-case hex digits")
    if track.source.startswith("deb://") and track.source_sha256 is None:
        fail("source_sha256", "is required for deb:// sources (setup verifies every fetched file)")
    if track.preview_path is not None and not _safe_relative(track.preview_path):
        fail("preview_path", f"{track.preview_path!r} must be a relative path inside the bundle (no '..')")


def _rows(table: pa.Table) -> Iterator[dict]:
    for batch in table.to_batches(max_chunksize=4096):
        yield from batch.to_pylist()


def read_parquet(path: str | os.PathLike) -> pa.Table:
    """Read a Parquet file; a missing or unreadable file raises CatalogError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(path, "file not found")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise CatalogError(path, f"not a readable Parquet file ({err})") from err


def read_tracks(path: str | os.PathLike) -> list[Track]:
    """Read and validate a ``tracks.parquet`` file.

    Raises:
        CatalogError: naming the file, row (1 = first data row) and field of the first problem found.
    """
    path = Path(path)
    table = read_parquet(path)
    schema = table.schema
    missing = [name for name, (_, required, _) in _COLUMNS.items() if required and name not in schema.names]
    if missing:
        raise CatalogError(path, f"missing required column(s) {', '.join(missing)}", field=missing[0])
    for name, (expected, _, _) in _COLUMNS.items():
        if name in schema.names and not _type_ok(schema.field(name).type, expected):
            raise CatalogError(
                path, f"column has type {schema.field(name).type}, expected {_type_name(expected)}", field=name
            )
    tracks: list[Track] = []
    seen: dict[str, int] = {}
    for row, record in enumerate(_rows(table), 1):
        values = {}
        for name, (_, _, nullable) in _COLUMNS.items():
            value = record.get(name)
            if value is None and not nullable:
                raise CatalogError(path, "is empty (null) but required", row=row, field=name)
            values[name] = value
        values["tags"] = tuple(values["tags"] or ())
        values["album"] = values["album"] or ""
        values["caption"] = values["caption"] or ""
        track = Track(**values)
        validate_track(track, path, row)
        if track.track_id in seen:
            raise CatalogError(
                path, f"duplicate track_id {track.track_id!r} (first seen in row {seen[track.track_id]})",
                row=row, field="track_id",
            )
        seen[track.track_id] = row
        tracks.append(track)
    return tracks


def tracks_table(tracks: Iterable[Track]) -> pa.Table:
    """The Arrow table for ``tracks`` in the canonical column order and types."""
    rows = [asdict(t) for t in tracks]
    for r in rows:
        r["tags"] = list(r["tags"])
    schema = pa.schema([(name, typ) for name, (typ, _, _) in _COLUMNS.items()])
    return pa.Table.from_pylist(rows, schema=schema)


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; bundles are shared, read-only data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_dir(path: Path, write: Callable[[Path], None],
                     keep_existing: Callable[[Path], bool] | None = None, single_writer: bool = False) -> Path:
    """Call ``write(tmp_dir)`` on a temporary sibling folder, then swap it in for ``path``: readers see the old
    folder or the new one, never a half-written one, and a failed or interrupted write leaves the old one.

    Args:
        keep_existing: when given and true for the folder found at ``path`` once ``write`` is done (another
            process finished the same work first), that folder is kept and ours discarded.
        single_writer: only one process ever writes ``path`` (a training run's checkpoints): the temporary folder
            has a fixed name, so one left by a killed write is removed by the next, never piling up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if single_writer:
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    old = Path(f"{tmp}.old")  # per write: concurrent writers never share it
    moved = False
    try:
        write(tmp)
        if path.exists() and keep_existing is not None and keep_existing(path):
            return path
        if path.exists():
            os.replace(path, old)
            moved = True
        os.replace(tmp, path)
        moved = False
    finally:
        if moved and not path.exists():
            os.replace(old, path)  # the new folder could not take its place: the old one comes back
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def validate_tracks(tracks: list[Track], path: str | os.PathLike) -> None:
    """Validate records about to be written to ``path`` (rows counted from 1)."""
    seen: set[str] = set()
    for row, t in enumerate(tracks, 1):
        validate_track(t, path, row)
        if t.track_id in seen:
            raise CatalogError(path, f"duplicate track_id {t.track_id!r}", row=row, field="track_id")
        seen.add(t.track_id)


def write_tracks(path: str | os.PathLike, tracks: Iterable[Track]) -> None:
    """Validate then atomically write ``tracks`` to a Parquet file."""
    tracks = list(tracks)
    validate_tracks(tracks, path)
    table = tracks_table(tracks)
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp, compression="zstd"))


@dataclass
class Catalog:
    """A loaded catalog bundle: its tracks by id, plus the directory it came from."""

    root: Path  # bundle directory
    tracks: list[Track]  # in file order
    manifest: dict = field(default_factory=dict)  # contents of manifest.json ({} if absent)
    _by_id: dict[str, Track] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {t.track_id: t for t in self.tracks}

    def __len__(self) -> int:
        return len(self.tracks)

    def __iter__(self) -> Iterator[Track]:
        return iter(self.tracks)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._by_id

    def __getitem__(self, track_id: str) -> Track:
        try:
            return self._by_id[track_id]
        except KeyError:
            raise KeyError(f"track {track_id!r} is not in catalog {self.root}") from None

    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.root.name

    def preview_file(self, track: Track) -> Path | None:
        """Absolute path of ``track``'s preview if it exists on disk, else None."""
        if not track.preview_path:
            return None
        p = Path(track.preview_path)
        p = p if p.is_absolute() else self.root / p
        return p if p.is_file() else None

    def search(self, query: str, limit: int = 50) -> list[Track]:
        """Tracks whose title, artist, album, tags or caption contain every word of ``query``."""
        words = [w for w in query.lower().split() if w]
        hits = []
        for t in self.tracks:
            hay = " ".join([t.title, t.artist, t.album, " ".join(t.tags), t.caption, str(t.year or "")]).lower()
            if all(w in hay for w in words):
                hits.append(t)
                if len(hits) >= limit:
                    break
        return hits


def load_catalog(root: str | os.PathLike) -> Catalog:
    """Load and validate the bundle at ``root`` (a directory holding tracks.parquet).

    Raises:
        CatalogError: if the directory, manifest or tracks file is missing or malformed.
    """
    root = Path(root)
    if not root.is_dir():
        raise CatalogError(root, "catalog bundle directory not found")
    manifest: dict = {}
    mpath = root / MANIFEST_FILE
    if mpath.exists():
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CatalogError(mpath, f"not valid JSON ({err})") from err
        if not isinstance(manifest, dict):
            raise CatalogError(mpath, "must hold a JSON object")
        version = manifest.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise CatalogError(mpath, f"schema_version {version} is not supported (expected {SCHEMA_VERSION})",
                               field="schema_version")
    tracks = read_tracks(root / TRACKS_FILE)
    return Catalog(root=root, tracks=tracks, manifest=manifest)


def save_catalog(root: str | os.PathLike, tracks: Iterable[Track], name: str | None = None, **manifest_extra) -> Catalog:
    """Write ``tracks`` (validated) and a manifest into the bundle directory ``root``."""
    root = Path(root)
    tracks = list(tracks)
    write_tracks(root / TRACKS_FILE, tracks)
    manifest = {"name": name or root.name, "schema_version": SCHEMA_VERSION, "tracks": len(tracks), **manifest_extra}
    text = json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    atomic_write(root / MANIFEST_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return Catalog(root=root, tracks=tracks, manifest=manifest)
