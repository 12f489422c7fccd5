"""Bring your own catalog: import tracks (CSV, JSONL, Parquet) and playlists (MPD-style JSON) into a bundle.

    python -m train.catalog.import_catalog tracks my_tracks.csv --out catalog/mine [--audio-root DIR]
    python -m train.catalog.import_catalog playlists mpd.slice.0-999.json [more.json …] --catalog catalog/mine

Track columns (only ``title``, ``artist`` and ``license`` are required):

    track_id     stable id; default: a slug of "artist-title" (made unique)
    title, artist, album, year, duration_s, caption, lyrics
    tags         CSV: separated by ';' or '|'; JSONL/Parquet: a list of strings
    license      SPDX id or a common spelling ("GPL-2+", "CC-BY-SA 3.0", a Creative Commons URL)
    attribution  credit line; default: '“title” by artist, licensed LICENSE.'
    source       where the recording comes from; default: the audio file URI, else "user"
    audio_path   optional audio file (absolute or relative to --audio-root / the input file); a
                 30-second preview is cut from it into the bundle's previews/
    preview_start_s  optional start of that preview (default: an energetic section is chosen)

Every row is checked before anything is written: an error names the file, the row and the field,
and the bundle is left untouched. Playlists map ``track_uri`` to a track whose ``track_id`` equals it,
else to the track with the same (title, artist) — case- and punctuation-insensitive; unmatched
entries are counted and reported, never invented.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.catalog.import_catalog")

import argparse
import csv
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from talkplay.catalog import (
    PLAYLISTS_FILE,
    CatalogError,
    Track,
    atomic_write,
    load_catalog,
    preview_relpath,
    read_parquet,
    save_catalog,
    slugify,
    validate_track,
    validate_tracks,
)
from talkplay.licenses import normalize_license

KNOWN_COLUMNS = {"track_id", "title", "artist", "album", "year", "duration_s", "tags", "caption", "lyrics",
                 "license", "attribution", "source", "audio_path", "preview_start_s"}
REQUIRED = ("title", "artist", "license")
MAX_REPORTED_ERRORS = 50  # a table with more bad rows than this reports the first 50 and the count


def read_rows(path: Path) -> list[dict]:
    """Rows of a CSV, JSONL or Parquet file as dicts (format from the extension)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise CatalogError(path, "file not found")
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            if reader.fieldnames is None:
                raise CatalogError(path, "empty file: expected a header row")
            return [dict(r) for r in reader]
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise CatalogError(path, f"line {n} is not valid JSON ({err.msg})", row=len(rows) + 1) from err
            if not isinstance(obj, dict):
                raise CatalogError(path, f"line {n} must be a JSON object", row=len(rows) + 1)
            rows.append(obj)
        return rows
    if suffix == ".parquet":
        return read_parquet(path).to_pylist()
    raise CatalogError(path, f"unsupported format {suffix!r}: use .csv, .tsv, .jsonl or .parquet")


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _number(path, row, name, value, kind):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise CatalogError(path, f"{value!r} is not a number", row=row, field=name) from None
    if kind is int and float(value) != int(float(value)):
        raise CatalogError(path, f"{value!r} is not a whole number", row=row, field=name)
    return number


def _tags(path, row, value) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise CatalogError(path, "looks like a JSON list but does not parse", row=row, field="tags") from None
        else:
            value = re.split(r"[;|]", text)
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise CatalogError(path, "must be a list of texts (CSV: separated by ';')", row=row, field="tags")
    return tuple(t.strip().lower() for t in value if t.strip())


def rows_to_tracks(path: Path, rows: list[dict], audio_root: Path | None = None) -> tuple[list[Track], dict[str, Path]]:
    """Convert and validate every row; returns the tracks and track_id → audio file for those with audio.

    Rows are numbered from 1 in errors (the CSV header is not a row).
    """
    if not rows:
        raise CatalogError(path, "no rows")
    columns = set().union(*(r.keys() for r in rows))
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise CatalogError(path, f"missing required column(s) {', '.join(missing)}; columns are {sorted(columns)}",
                           field=missing[0])
    unknown = sorted(columns - KNOWN_COLUMNS)
    if unknown:
        raise CatalogError(path, f"unknown column(s) {unknown}; known: {sorted(KNOWN_COLUMNS)}", field=unknown[0])
    tracks, audio, used_ids, errors = [], {}, {}, []
    base = audio_root or path.parent
    for row, r in enumerate(rows, 1):
        try:
            track, audio_file = _row_to_track(path, row, r, base, used_ids)
        except CatalogError as err:
            errors.append(err)
            continue
        tracks.append(track)
        if audio_file is not None:
            audio[track.track_id] = audio_file
    if len(errors) == 1:
        raise errors[0]
    if errors:
        shown = "\n".join(f"  {e}" for e in errors[:MAX_REPORTED_ERRORS])
        more = f"\n  … and {len(errors) - MAX_REPORTED_ERRORS} more" if len(errors) > MAX_REPORTED_ERRORS else ""
        raise CatalogError(path, f"{len(errors)} rows have errors (nothing was written):\n{shown}{more}",
                           row=errors[0].row, field=errors[0].field)
    return tracks, audio


def _row_to_track(path: Path, row: int, r: dict, base: Path, used_ids: dict) -> tuple[Track, Path | None]:
    """One row as a Track (and its audio file); CatalogError naming the row and field of its first problem."""
    title, artist = _text(r.get("title")), _text(r.get("artist"))
    for name, value in (("title", title), ("artist", artist)):
        if not value:
            raise CatalogError(path, "must not be empty", row=row, field=name)
    raw_license = _text(r.get("license"))
    license_id = normalize_license(raw_license)
    if license_id is None:
        raise CatalogError(path, f"unknown license {raw_license!r}: use an SPDX id (e.g. CC-BY-4.0, "
                           "GPL-3.0-or-later) or LicenseRef-<Name>", row=row, field="license")
    track_id = _text(r.get("track_id")) or slugify(f"{artist}-{title}")
    if track_id in used_ids:
        if _text(r.get("track_id")):
            raise CatalogError(path, f"duplicate track_id {track_id!r} (first in row {used_ids[track_id]})",
                               row=row, field="track_id")
        n = 2
        while f"{track_id}-{n}" in used_ids:
            n += 1
        track_id = f"{track_id}-{n}"
    used_ids[track_id] = row
    audio_path = _text(r.get("audio_path"))
    audio_file = None
    if audio_path:
        audio_file = Path(audio_path) if Path(audio_path).is_absolute() else base / audio_path
        if not audio_file.is_file():
            raise CatalogError(path, f"audio file {audio_file} not found", row=row, field="audio_path")
    track = Track(
        track_id=track_id, title=title, artist=artist, license=license_id,
        attribution=_text(r.get("attribution")) or f"“{title}” by {artist}, licensed {license_id}.",
        source=_text(r.get("source")) or (audio_file.resolve().as_uri() if audio_file else "user"),
        album=_text(r.get("album")), year=_number(path, row, "year", r.get("year"), int),
        duration_s=_number(path, row, "duration_s", r.get("duration_s"), float),
        tags=_tags(path, row, r.get("tags")), caption=_text(r.get("caption")),
        lyrics=_text(r.get("lyrics")) or None,
        preview_start_s=_number(path, row, "preview_start_s", r.get("preview_start_s"), float),
    )
    validate_track(track, path, row)
    return track, audio_file


def import_tracks(path: str | Path, out: str | Path, audio_root: str | Path | None = None, name: str | None = None,
                  progress: bool = True):
    """Import a track table into the bundle directory ``out`` (created or replaced atomically per file).

    Returns:
        The saved Catalog.
    """
    path, out = Path(path), Path(out)
    tracks, audio = rows_to_tracks(path, read_rows(path), Path(audio_root) if audio_root else None)
    if not audio:
        return save_catalog(out, tracks, name=name or out.name, imported_from=path.name)
    # Previews are cut into a scratch folder and moved in only after every row succeeded, so a bad
    # audio file leaves an existing bundle exactly as it was.
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".import-", dir=out) as scratch:
            tracks = _add_previews(path, tracks, audio, Path(scratch), progress)
            validate_tracks(tracks, out / "tracks.parquet")
            (out / "previews").mkdir(exist_ok=True)
            for t in tracks:
                if t.preview_path:
                    os.replace(Path(scratch) / t.preview_path, out / t.preview_path)
    except BaseException:
        if created:  # a failed import leaves no trace: not even the empty folder it made
            shutil.rmtree(out, ignore_errors=True)
        raise
    return save_catalog(out, tracks, name=name or out.name, imported_from=path.name)


def _add_previews(path: Path, tracks: list[Track], audio: dict[str, Path], out: Path, progress: bool) -> list[Track]:
    import soundfile as sf

    from talkplay.previews import PREVIEW_SECONDS, cut_preview

    result = []
    items = list(enumerate(tracks, 1))
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="previews", unit="track")
    for row, t in items:
        src = audio.get(t.track_id)
        if src is None:
            result.append(t)
            continue
        try:
            duration = t.duration_s or round(sf.info(str(src)).duration, 3)
            start = t.preview_start_s if t.preview_start_s is not None else _energetic_start(src, duration)
            length = round(min(PREVIEW_SECONDS, max(duration - start, 0.1)), 3)
            rel = preview_relpath(t.track_id)
            cut_preview(src, start, length, out / rel)
        except (RuntimeError, OSError, ValueError) as err:
            raise CatalogError(path, f"cannot cut a preview from {src} ({err})", row=row, field="audio_path") from err
        result.append(replace(t, duration_s=duration, preview_path=rel, preview_start_s=start, preview_duration_s=length))
    return result


def _energetic_start(path: Path, duration: float) -> float:
    if duration <= 30.0:
        return 0.0
    from train.catalog.descriptors import find_preview_section, load_mono

    return round(float(find_preview_section(load_mono(path, 22050), 22050, 30.0)), 2)


# ---------------------------------------------------------------- playlists


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", (text or "").lower()).strip()


def import_playlists(paths: list[str | Path], catalog_dir: str | Path) -> dict:
    """Map MPD-style playlists onto a bundle's tracks and write ``playlists.parquet``.

    Returns:
        Counts: playlists, entries, matched, unmatched, empty playlists skipped.
    """
    catalog = load_catalog(catalog_dir)
    by_key = {}
    for t in catalog:
        by_key.setdefault((_norm(t.title), _norm(t.artist)), t.track_id)
    rows, stats = [], {"playlists": 0, "entries": 0, "matched": 0, "unmatched": 0, "skipped_empty": 0}
    seen_pids: dict = {}
    for path in map(Path, paths):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise CatalogError(path, f"not a readable JSON file ({err})") from err
        playlists = data.get("playlists") if isinstance(data, dict) else None
        if not isinstance(playlists, list):
            raise CatalogError(path, "expected an object with a 'playlists' list", field="playlists")
        for i, p in enumerate(playlists, 1):
            if not isinstance(p, dict) or "pid" not in p or not isinstance(p.get("tracks"), list):
                raise CatalogError(path, "each playlist needs 'pid' and a 'tracks' list", row=i, field="playlists")
            pid = str(p["pid"])
            if pid in seen_pids:
                raise CatalogError(path, f"duplicate pid {pid!r} (also in {seen_pids[pid]})", row=i, field="pid")
            seen_pids[pid] = path.name
            matched = []
            for j, entry in enumerate(p["tracks"]):
                if not isinstance(entry, dict):
                    raise CatalogError(path, f"track {j} of playlist {pid} must be an object", row=i, field="tracks")
                stats["entries"] += 1
                uri = str(entry.get("track_uri", ""))
                tid = uri if uri in catalog else by_key.get((_norm(entry.get("track_name", "")),
                                                             _norm(entry.get("artist_name", ""))))
                if tid is None:
                    stats["unmatched"] += 1
                    continue
                stats["matched"] += 1
                matched.append(tid)
            if not matched:
                stats["skipped_empty"] += 1
                continue
            stats["playlists"] += 1
            for pos, tid in enumerate(matched):
                rows.append({"playlist_id": pid, "name": str(p.get("name", "")), "position": pos,
                             "track_id": tid, "synthetic": False, "origin": path.name})
    schema = pa.schema([("playlist_id", pa.string()), ("name", pa.string()), ("position", pa.int32()),
                        ("track_id", pa.string()), ("synthetic", pa.bool_()), ("origin", pa.string())])
    table = pa.Table.from_pylist(rows, schema=schema)
    atomic_write(Path(catalog_dir) / PLAYLISTS_FILE, lambda tmp: pq.write_table(table, tmp))
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.catalog.import_catalog",
                                     description="Import your own tracks and playlists into a TalkPlay catalog bundle.")
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("tracks", help="import a CSV / TSV / JSONL / Parquet track table")
    t.add_argument("file", type=Path, help="the track table (columns: see the module docstring or README)")
    t.add_argument("--out", type=Path, required=True, help="bundle directory to write, e.g. catalog/mine")
    t.add_argument("--audio-root", type=Path, default=None,
                   help="directory that relative audio_path values are resolved against (default: the file's folder)")
    t.add_argument("--name", default=None, help="catalog name stored in the manifest (default: the directory name)")
    p = sub.add_parser("playlists", help="map MPD-style playlist JSON files onto a bundle's tracks")
    p.add_argument("files", type=Path, nargs="+", help="MPD slice files ({'playlists': [{pid, name, tracks: [...]}]})")
    p.add_argument("--catalog", type=Path, required=True, help="bundle directory whose tracks are matched")
    args = parser.parse_args(argv)
    try:
        if args.what == "tracks":
            cat = import_tracks(args.file, args.out, args.audio_root, args.name)
            print(f"imported {len(cat)} tracks into {args.out}")
        else:
            print(json.dumps(import_playlists(args.files, args.catalog), indent=2))
    except CatalogError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
