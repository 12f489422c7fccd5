"""Cold start: add new tracks (audio + metadata) to an existing bundle and its token stores, no retraining.

    python -m train.catalog.cold_start --catalog catalog/demo --tracks new_tracks.csv [--audio-root DIR]

The table uses the importer's columns (see ``train.catalog.import_catalog``); every row needs ``audio_path``.
For each new track the audio is analysed like the demo build's (preview section, descriptors, musicnn
tags and embedding), tags and a caption are composed when the row gives none, a preview is cut, and
the track is coded with each token store's *saved* quantizers — the playlist modality through the saved
content→item2vec map, since a new track is in no playlist yet. Codebooks, centroids and quantizer files
are never rewritten, so the language model's vocabulary stays valid; the new tracks are recommendable
as soon as the command returns.

Everything is computed before the first file is written; a bad row stops the command with an error
naming the file, row and field and leaves the bundle untouched.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.catalog.cold_start")

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from talkplay.bundle import read_features, write_features
from talkplay.catalog import CatalogError, Track, load_catalog, preview_relpath, save_catalog, validate_tracks
from talkplay.debsource import sha256_file
from talkplay.previews import cut_preview
from talkplay.token_store import QUANTIZERS_FILE, load_store, save_store, store_dir, variants
from train.catalog.analyze import analyse_tracks
from train.catalog.import_catalog import read_rows, rows_to_tracks
from train.tokens.embeddings import BundleAudioFeatures, EmbeddingConfig, RidgeMap, TextEmbedder, embed_catalog


def add_tracks(bundle: str | Path, table: str | Path, audio_root: str | Path | None = None,
               cache_dir: Path | None = None, text_embedder: Callable[[Sequence[str]], np.ndarray] | None = None,
               analyzer=None, log=print) -> dict:
    """Add the tracks of ``table`` to ``bundle`` and code them in every token store.

    Returns:
        {"added": [...track ids], "stores": {variant: n_tracks}, "seconds": …}
    """
    from talkplay.previews import default_cache_dir

    t0 = time.time()
    bundle, table = Path(bundle), Path(table)
    cache_dir = cache_dir or default_cache_dir()
    catalog = load_catalog(bundle)
    new, audio = rows_to_tracks(table, read_rows(table), Path(audio_root) if audio_root else None)
    clash = [t.track_id for t in new if t.track_id in catalog]
    if clash:
        row = [t.track_id for t in new].index(clash[0]) + 1
        raise CatalogError(table, f"track_id {clash[0]!r} is already in {bundle}", row=row, field="track_id")
    new, feature_rows = analyse_tracks(new, audio, table, cache_dir, analyzer)
    new = [replace(t, preview_path=preview_relpath(t.track_id),
                   source_sha256=t.source_sha256 or sha256_file(audio[t.track_id])) for t in new]
    all_tracks = [*catalog.tracks, *new]
    validate_tracks(all_tracks, bundle / "tracks.parquet")

    # Code the new tracks in every store, in memory, before writing anything.
    old_features = list(read_features(bundle).values())
    staged_catalog = Staged(catalog, new, old_features + feature_rows)
    grown = {}
    for variant in variants(bundle):
        store = load_store(store_dir(bundle, variant), catalog)
        grown[variant] = store.with_tracks([t.track_id for t in new],
                                           codes_for(store, staged_catalog, new, text_embedder, cache_dir))

    # Write: previews, features, tracks, then stores (each file atomically).
    for t in new:
        cut_preview(audio[t.track_id], t.preview_start_s, t.preview_duration_s, bundle / t.preview_path)
    write_features(bundle, old_features + feature_rows)
    save_catalog(bundle, all_tracks, **{k: v for k, v in catalog.manifest.items() if k not in ("tracks",)})
    for variant, store in grown.items():
        store.manifest.setdefault("cold_start_added", []).extend(t.track_id for t in new)
        save_store(store, store_dir(bundle, variant))  # centroids and quantizers are not rewritten
    result = {"added": [t.track_id for t in new], "stores": {v: len(s) for v, s in grown.items()},
              "seconds": round(time.time() - t0, 1)}
    log(f"added {len(new)} tracks to {bundle} and {len(grown)} token stores in {result['seconds']} s")
    return result


class Staged:
    """The catalog as it will be after the import: features include the new rows (read by the embedders)."""

    def __init__(self, catalog, new, feature_rows):
        self.root = catalog.root
        self._features = {r["track_id"]: r for r in feature_rows}

    def feature(self, track_id: str) -> dict:
        return self._features[track_id]


class _StagedAudio(BundleAudioFeatures):
    """Reads features from the staged rows instead of the bundle file."""

    def __init__(self, staged: Staged, with_descriptors: bool, state: dict | None):
        super().__init__(with_descriptors, state)
        self.staged = staged

    def has_data(self, catalog, tracks):
        return np.array([t.track_id in self.staged._features for t in tracks], bool)

    def __call__(self, catalog, tracks):
        rows = {t.track_id: self.staged.feature(t.track_id) for t in tracks}
        return self.vectors(rows, tracks)


def codes_for(store, staged: Staged, new: list[Track], text_embedder, cache_dir: Path) -> np.ndarray:
    """Codes of ``new`` tracks from ``store``'s saved quantizers (features from ``staged``); nothing is refitted."""
    from safetensors.numpy import load_file

    from train.tokens.build import encode_new

    emb_meta = store.manifest["embeddings"]
    cfg = EmbeddingConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in emb_meta["config"].items()})
    states = load_file(str(store.root / QUANTIZERS_FILE))
    prefix = "playlist_fallback."
    fallback = RidgeMap.from_state({k[len(prefix):]: v for k, v in states.items() if k.startswith(prefix)}) \
        if any(k.startswith(prefix) for k in states) else None
    text = text_embedder
    if text is None and any(m in ("semantic", "metadata", "lyrics") for m in cfg.modalities):
        text = TextEmbedder(cfg.text_model)
    audio = _StagedAudio(staged, cfg.audio_with_descriptors, emb_meta.get("audio_state"))
    emb = embed_catalog(staged, (), cfg, cache_dir / "embeddings", text, audio, tracks=new, fallback_map=fallback)
    return encode_new(store.root, emb)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.catalog.cold_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle to extend")
    parser.add_argument("--tracks", type=Path, required=True,
                        help="CSV/TSV/JSONL/Parquet table of new tracks (importer columns; audio_path required)")
    parser.add_argument("--audio-root", type=Path, default=None,
                        help="folder that relative audio_path values are resolved against (default: the table's)")
    parser.add_argument("--cache", type=Path, default=None, help="analysis/embedding cache (default: ~/.cache/talkplay)")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(add_tracks(args.catalog, args.tracks, args.audio_root, args.cache), indent=2))
    except CatalogError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
