"""Command line of the runtime: ``python -m talkplay <command>``.

    python -m talkplay previews [--catalog catalog/demo]   fetch pinned sources and cut missing previews
    python -m talkplay validate [--catalog DIR]            load a bundle through the validating loader
    python -m talkplay chat [--catalog DIR] [--mode paper]  chat in the terminal with the bundle's model
    python -m talkplay feedback export --out FILE          export the feedback table (.parquet or .csv)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from talkplay.catalog import CatalogError, load_catalog  # noqa: F401
from talkplay.preflight import StartupError
from talkplay.previews import default_cache_dir, prepare_previews


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m talkplay", description="TalkPlay runtime commands.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("previews", help="prepare a bundle's audio previews (idempotent)")
    p.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle directory (default: catalog/demo)")
    p.add_argument("--cache", type=Path, default=None,
                   help="download cache (default: $TALKPLAY_CACHE, else ~/.cache/talkplay; /data/talkplay/cache on a Space with storage)")
    p.add_argument("--keep-downloads", action="store_true", help="keep the .deb files after cutting the previews")
    p.add_argument("--retry-failed", action="store_true",
                   help="download again sources whose checksum did not match in an earlier run")
    v = sub.add_parser("validate", help="check a bundle exactly as the app does before serving it, and summarize it")
    v.add_argument("bundle", type=Path, nargs="?", default=None, help="bundle directory (default: catalog/demo)")
    v.add_argument("--catalog", type=Path, default=None, help=argparse.SUPPRESS)  # the older spelling
    c = sub.add_parser("chat", help="chat with the bundle's model in the terminal")
    c.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle directory (default: catalog/demo)")
    c.add_argument("--mode", choices=("constrained", "paper"), default="constrained",
                   help="constrained decoding (default) or the paper's free generation + partial matching")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda")
    c.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | 4bit")
    c.add_argument("--base-model", default=None, help="base model path or hub id (default: the checkpoint's)")
    c.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = greedy)")
    c.add_argument("--seed", type=int, default=None, help="make every turn reproducible")
    f = sub.add_parser("feedback", help="feedback database tools")
    fsub = f.add_subparsers(dest="action", required=True)
    fe = fsub.add_parser("export", help="export the feedback table to Parquet or CSV")
    fe.add_argument("--db", type=Path, default=None, help="SQLite file (default: $TALKPLAY_FEEDBACK_DB or data/feedback.sqlite3)")
    fe.add_argument("--out", type=Path, required=True, help="output file, .parquet or .csv")
    args = parser.parse_args(argv)
    if args.command == "feedback":
        from talkplay.feedback import FeedbackStore, default_db_path

        db = args.db or default_db_path()
        if not db.exists():
            print(f"error: no feedback database at {db}", file=sys.stderr)
            return 2
        store = FeedbackStore(db)
        try:
            out = store.export(args.out)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        finally:
            store.close()
        print(f"{out}: {store.count()} feedback rows")
        return 0
    if args.command == "chat":
        from talkplay.chat import run_chat
        from talkplay.checkpoint import CheckpointError
        from talkplay.recommender import GenerationConfig, load_recommender

        try:
            rec = load_recommender(args.catalog, args.device, args.precision,
                                   GenerationConfig(mode=args.mode, temperature=args.temperature, seed=args.seed),
                                   args.base_model)
        except (CatalogError, CheckpointError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        run_chat(rec)
        return 0
    try:
        if args.command == "previews":
            report = prepare_previews(args.catalog, args.cache or default_cache_dir(), args.keep_downloads,
                                      retry_failed=args.retry_failed)
            print(f"previews: {report.ready} already present, {report.cut} cut, "
                  f"{report.downloaded_bytes / 1e6:.0f} MB downloaded, {len(report.failed)} failed, "
                  f"{len(report.skipped)} skipped (failed verification before; --retry-failed to try again)")
            for track_id, why in sorted(report.failed.items()):
                print(f"  {track_id}: {why}", file=sys.stderr)
            # A few missing previews must not keep the demo from starting; the cards say so.
            return 0 if report.ready + report.cut > 0 or not report.failed else 1
        from talkplay.preflight import check_bundle
        from talkplay.token_store import default_variant

        bundle = args.bundle or args.catalog or Path("catalog/demo")
        catalog = check_bundle(bundle)  # what the app checks at start: catalog, default store, checkpoint
        licenses = sorted({t.license for t in catalog})
        with_preview = sum(catalog.preview_file(t) is not None for t in catalog)
        print(f"{bundle}: {len(catalog)} valid tracks ({with_preview} with a preview on disk); "
              f"token store {default_variant(bundle)!r} and model checkpoint match; ready to serve "
              f"(TALKPLAY_CATALOG={bundle} python app.py). Licenses: {', '.join(licenses)}")
        return 0
    except StartupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
