"""Bring your own catalog: from a track table and an audio folder to a bundle the app serves.

    python -m train.catalog.byo prepare --tracks my.csv --audio-root my_audio/ --out catalog/mine     # minutes, no training
    TALKPLAY_CATALOG=catalog/mine python app.py

``prepare`` serves a new catalog with the shipped model, untrained on it. The table has the importer's columns
(``train.catalog.import_catalog``: title, artist, license required; audio_path, tags, caption, … optional). For every
track with audio the recording is analysed as the demo build analyses its own (descriptors, musicnn auto-tags
and embedding; cached by checksum, so a rerun resumes), its tags are completed and a caption composed when the
row gives none, and a 30-second preview is cut. Then every track is coded with the *shipped* checkpoint's
token store — its saved quantizers, exactly as ``train.catalog.cold_start`` codes a new track: content modalities from
the track's text and audio, the playlist modality through the saved content → item2vec map (a new catalog's
tracks are in none of the model's playlists); a track without audio gets the "no audio" code. The model, the
quantizers and the vocabulary are copied unchanged, so the checkpoint's store fingerprint still matches.

Everything is built in a hidden sibling folder and renamed into place only after the bundle passes the
app's own start check (``python -m talkplay validate``); a failed run leaves nothing behind. Errors name the
file, row and field — every bad row of the table at once.

For the best fit, retrain on the new catalog — the demo bundle's build path as resumable stages (``train.training.retrain``)::

    python -m train.catalog.byo retrain --catalog catalog/mine [--steps 420]
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.catalog.byo")

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from talkplay.bundle import write_features
from talkplay.catalog import CatalogError, Track, atomic_write, preview_relpath, save_catalog
from talkplay.checkpoint import CHECKPOINT_DIR, CheckpointError, verify_checkpoint
from talkplay.download import sha256_file
from talkplay.licenses import license_info
from talkplay.preflight import check_bundle
from talkplay.previews import cut_preview
from talkplay.token_store import (CENTROIDS_FILE, QUANTIZERS_FILE, TokenStore, default_variant, load_default_store,
                                  load_store, save_store, set_default_variant, store_dir)
from train.catalog.analyze import analyse_tracks
from train.catalog.cold_start import Staged, codes_for
from train.catalog.import_catalog import import_playlists, read_rows, rows_to_tracks

MODEL_FROM = Path("catalog/demo")


def credits_markdown(name: str, tracks: list[Track]) -> str:
    """CREDITS.md of an imported catalog: one entry per track with its credit line and license."""
    lines = [f"# Credits — {name}", "",
             f"{len(tracks)} recordings, each under its own license (as given in the imported table).", ""]
    for t in sorted(tracks, key=lambda t: (t.artist.lower(), t.title.lower())):
        try:
            info = license_info(t.license)
            lic = f"[{info.name}]({info.url})" if info.url else info.name
        except KeyError:  # a LicenseRef-… the table defined itself
            lic = t.license
        album = f", *{t.album}*" if t.album else ""
        year = f" ({t.year})" if t.year else ""
        credit = t.attribution if t.attribution.rstrip().endswith((".", "!", "?")) else t.attribution.rstrip() + "."
        lines.append(f"- **{t.title}** — {t.artist}{album}{year}. {credit} License: {lic}.")
    return "\n".join(lines) + "\n"


def prepare(table: str | Path, out: str | Path, audio_root: str | Path | None = None,
            model_from: str | Path = MODEL_FROM, playlists: list[str | Path] = (), cache_dir: Path | None = None,
            text_embedder=None, analyzer=None, progress: bool = True, log=print) -> dict:
    """Build the bundle ``out`` from ``table`` and ``model_from``'s checkpoint; see the module docstring.

    Returns {"tracks", "with_audio", "variant", "seconds", "out"}. Raises CatalogError / CheckpointError naming
    the file, row and field; ``out`` is then untouched (or absent).
    """
    from talkplay.previews import default_cache_dir

    t0 = time.time()
    table, out, model_from = Path(table), Path(out), Path(model_from)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CatalogError(out, "already exists and is not empty: choose another --out, or remove it first")
    # The shipped model and the token store it was trained for (checked before any work is done).
    source_store = load_default_store(model_from)
    verify_checkpoint(model_from, source_store)
    variant = default_variant(model_from)
    tracks, audio = rows_to_tracks(table, read_rows(table), Path(audio_root) if audio_root else None)
    cache_dir = cache_dir or default_cache_dir()

    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # removed again if the run fails
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        heard = [t for t in tracks if t.track_id in audio]
        analysed, feature_rows = analyse_tracks(heard, audio, table, cache_dir, analyzer, progress=progress) \
            if heard else ([], [])
        done = {t.track_id: t for t in analysed}
        tracks = [done.get(t.track_id, t) for t in tracks]
        for i, t in enumerate(tracks):
            if t.track_id in audio:
                tracks[i] = replace(t, preview_path=preview_relpath(t.track_id),
                                    source_sha256=t.source_sha256 or sha256_file(audio[t.track_id]))
                cut_preview(audio[t.track_id], tracks[i].preview_start_s or 0.0, tracks[i].preview_duration_s or 30.0,
                            staging / tracks[i].preview_path)
        catalog = save_catalog(staging, tracks, name=out.name, imported_from=table.name, model_from=str(model_from))
        if feature_rows:
            write_features(staging, feature_rows)

        # The shipped store's quantizers and vocabulary, none of its tracks; then this catalog's codes.
        target = store_dir(staging, variant)
        target.mkdir(parents=True)
        for name in (QUANTIZERS_FILE, CENTROIDS_FILE):
            if (source_store.root / name).exists():
                shutil.copy2(source_store.root / name, target / name)
        manifest = {k: v for k, v in source_store.manifest.items() if k not in ("cold_start_added", "tracks", "stats")}
        manifest["coded_by"] = f"train.catalog.byo prepare: the quantizers of {model_from}/tokens/{variant} (not refitted)"
        save_store(TokenStore(source_store.vocab, [], np.zeros((0, len(source_store.vocab)), np.int64), manifest),
                   target)
        empty = load_store(target)
        codes = codes_for(empty, Staged(catalog, tracks, feature_rows), tracks, text_embedder, cache_dir)
        save_store(empty.with_tracks([t.track_id for t in tracks], codes), target)
        set_default_variant(staging, variant, why=f"the store the checkpoint copied from {model_from} was trained for")

        shutil.copytree(model_from / CHECKPOINT_DIR, staging / CHECKPOINT_DIR)
        atomic_write(staging / "CREDITS.md",
                     lambda tmp: tmp.write_text(credits_markdown(out.name, tracks), encoding="utf-8"))
        if playlists:
            import_playlists(list(playlists), staging)
        check_bundle(staging)  # exactly what the app checks before it serves a bundle
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    result = {"out": str(out), "tracks": len(tracks), "with_audio": len(audio), "variant": variant,
              "seconds": round(time.time() - t0, 1)}
    log(f"{out}: {len(tracks)} tracks ({len(audio)} with audio) coded with {model_from}'s model in "
        f"{result['seconds']} s. Serve it: TALKPLAY_CATALOG={out} python app.py")
    return result


def retrain_doc() -> str:
    from train.training import retrain

    return retrain.__doc__.split("\n\n")[0]


def _retrain(args, argv: list[str] | None) -> int:
    """``train.catalog.byo retrain``: every stage of :mod:`train.training.retrain` not done yet; exit 2 on a failed stage, 3 when
    training stopped before its last step (rerun to resume)."""
    from train.training.retrain import (
        Interrupted,
        RetrainError,
        describe,
        options_from_args,
        retrain,
    )

    command = "python -m train.catalog.byo " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        records = retrain(options_from_args(args), command, cache_dir=args.cache)
    except RetrainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:
        print(f"stopped: {err}", file=sys.stderr)
        return 3
    print(json.dumps(describe(records), indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.catalog.byo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="a servable bundle from a track table, with the shipped model (no training)")
    p.add_argument("--tracks", type=Path, required=True, help="CSV/TSV/JSONL/Parquet track table (importer columns)")
    p.add_argument("--audio-root", type=Path, default=None,
                   help="folder that relative audio_path values are resolved against (default: the table's)")
    p.add_argument("--out", type=Path, required=True, help="new bundle directory (must not exist, or be empty)")
    p.add_argument("--model-from", type=Path, default=MODEL_FROM,
                   help="bundle whose checkpoint and token store are used (default: catalog/demo)")
    p.add_argument("--playlists", type=Path, nargs="*", default=(), help="optional MPD-style playlist JSON files")
    p.add_argument("--cache", type=Path, default=None, help="analysis cache (default: the TalkPlay cache)")
    r = sub.add_parser("retrain", help="fit tokens and train a model for the bundle (the demo's build path, resumable)",
                       description=retrain_doc())
    from train.training.retrain import add_arguments

    add_arguments(r)
    args = parser.parse_args(argv)
    if args.command == "retrain":
        return _retrain(args, argv)
    try:
        result = prepare(args.tracks, args.out, args.audio_root, args.model_from, args.playlists, args.cache)
    except (CatalogError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
