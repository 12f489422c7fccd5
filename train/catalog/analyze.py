"""Audio analysis of a catalog's tracks: descriptors, musicnn tags and embedding → features.parquet.

    python -m train.catalog.analyze --catalog catalog/mine        # analyse tracks that have audio but no features

The demo build analyses its tracks itself; imported catalogs and cold-start additions come through here.
A track's audio is its ``source`` when that is a local file (``file://…``, as the importer records it),
else its preview. Tags are completed with auto-tags and descriptor words, and a caption is composed
when the track has none, exactly as for the demo catalog; ``features.parquet`` gets one row per track
(the audio modality of the tokenizer reads it). Results are cached by the audio file's checksum.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.catalog.analyze")

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlparse

from talkplay.bundle import read_features, write_features
from talkplay.catalog import Catalog, CatalogError, Track, load_catalog, save_catalog
from talkplay.debsource import sha256_file


def audio_file(catalog: Catalog, track: Track) -> Path | None:
    """The audio to analyse for ``track``: a local source file, else its preview."""
    if track.source.startswith("file://"):
        path = Path(unquote(urlparse(track.source).path))
        if path.is_file():
            return path
    return catalog.preview_file(track)


def analyse_tracks(tracks: list[Track], audio: dict[str, Path], table_path: Path, cache_dir: Path,
                   analyzer=None, progress: bool = False) -> tuple[list[Track], list[dict]]:
    """Analyse each track's audio; return tracks completed with tags/caption/preview section and features rows.

    Raises:
        CatalogError: naming ``table_path``, the row (from 1) and ``audio_path`` of every track whose audio is
            missing or unreadable (all of them, after trying each).
    """
    from train.catalog.demo_catalog import Analyzer
    from train.catalog.descriptors import Descriptors
    from train.catalog.musicnn import MSD_TAGS, MTT_TAGS
    from train.catalog.tagging import (
        compose_caption,
        descriptor_tags,
        merge_tags,
        select_auto_tags,
    )

    analyzer = analyzer or Analyzer(cache_dir)
    done, features, errors = [], [], []
    items = enumerate(tracks, 1)
    if progress and len(tracks) > 1:
        from tqdm import tqdm

        items = tqdm(items, total=len(tracks), desc="analysing audio", unit="track")
    for row, t in items:
        src = audio.get(t.track_id)
        if src is None:
            errors.append(CatalogError(table_path, "no audio to analyse for this track", row=row, field="audio_path"))
            continue
        try:
            a = analyzer.analyze(src, sha256_file(src))  # cached by checksum: a rerun resumes
        except (RuntimeError, OSError, ValueError) as err:
            errors.append(CatalogError(table_path, f"cannot read {src} as audio ({err})", row=row, field="audio_path"))
            continue
        desc = Descriptors(**a["descriptors"])
        auto = select_auto_tags(dict(zip(MSD_TAGS, a["msd"])), dict(zip(MTT_TAGS, a["mtt"])))
        dtags = descriptor_tags(desc)
        tags = merge_tags(t.tags, auto, dtags)
        done.append(replace(
            t, tags=tuple(tags), caption=t.caption or compose_caption(tags, desc), duration_s=t.duration_s or a["duration_s"],
            preview_start_s=a["preview_start_s"] if t.preview_start_s is None else t.preview_start_s,
            preview_duration_s=a["preview_duration_s"] if t.preview_duration_s is None else t.preview_duration_s))
        features.append({"track_id": t.track_id, "package": "", "license_origin": "",
                         "curated_tags": list(t.tags), "auto_tags": auto, "descriptor_tags": dtags,
                         **a["descriptors"], "msd_tags": a["msd"], "mtt_tags": a["mtt"],
                         "musicnn_embedding": a["embedding"]})
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise CatalogError(table_path, f"{len(errors)} rows have unusable audio (nothing was written):\n"
                           + "\n".join(f"  {e}" for e in errors[:50]), row=errors[0].row, field="audio_path")
    return done, features


def analyse_catalog(bundle: str | Path, cache_dir: Path | None = None, log=print) -> dict:
    """Analyse every track of ``bundle`` that has audio but no features row; update the bundle."""
    from talkplay.previews import default_cache_dir

    bundle = Path(bundle)
    catalog = load_catalog(bundle)
    existing = list(read_features(bundle, known_track_ids={t.track_id for t in catalog}).values())
    have = {r["track_id"] for r in existing}
    todo = [t for t in catalog if t.track_id not in have]
    audio = {t.track_id: f for t in todo if (f := audio_file(catalog, t)) is not None}
    without = [t.track_id for t in todo if t.track_id not in audio]
    todo = [t for t in todo if t.track_id in audio]
    if todo:
        done, rows = analyse_tracks(todo, audio, bundle / "tracks.parquet", cache_dir or default_cache_dir())
        updated = {t.track_id: t for t in done}
        write_features(bundle, existing + rows)
        save_catalog(bundle, [updated.get(t.track_id, t) for t in catalog],
                     **{k: v for k, v in catalog.manifest.items() if k != "tracks"})
    result = {"analysed": len(todo), "already": len(have), "without_audio": without}
    log(f"analysed {len(todo)} tracks; {len(have)} already had features; {len(without)} have no audio"
        + (" (tokenize them with --modalities excluding audio)" if without else ""))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.catalog.analyze", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, required=True, help="bundle directory")
    parser.add_argument("--cache", type=Path, default=None, help="analysis cache (default: ~/.cache/talkplay)")
    args = parser.parse_args(argv)
    try:
        analyse_catalog(args.catalog, args.cache)
    except CatalogError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
