"""Cold-start check: do tracks added to a shipped bundle rank near the top for a request made of their own tags?

    python -m train.checks.cold_start_check --work /tmp/cold_check            # 12 Drascula recordings (Debian drascula-music)
    python -m train.checks.cold_start_check --work /tmp/cold_check --tracks new.csv --audio-root DIR

What it does, every step a public function of this repository:

1. without ``--tracks``: fetches the Debian package ``drascula-music`` with ``apt-get download`` (real recordings
   that are not in the demo; Drascula license, BSD-like), unpacks its ``audio/trackN.ogg`` files and writes a table
   of the first ``--n`` tracks (by number) that are at least 30 s long;
2. copies the bundle (``--bundle``, default ``catalog/demo``; previews are not needed) to ``<work>/bundle`` and adds
   the tracks with ``train.catalog.cold_start.add_tracks`` — the shipped quantizers, no retraining;
3. loads the shipped engine (``talkplay.recommender.load_recommender``) and, for each new track, ranks the whole
   catalog for a first request written from the track's own tags (``" ".join(track.tags)``) with
   ``Recommender.rank`` — with the engine's text match (what the app plays from) and with the model's music-token
   likelihood alone (text match off).

It prints each track's rank and writes ``<work>/cold_start_check.json``. Reruns reuse the download, the unpacked
audio and the analysis cache; the bundle copy is made afresh each time.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.checks.cold_start_check")

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

PACKAGE = "drascula-music"
AUDIO_DIR = "usr/share/scummvm/drascula/audio"  # inside the package; de/ en/ … hold per-language duplicates
CREDIT = ("Music from Drascula: The Vampire Strikes Back © 1996-2008 Alcachofa Soft S.L., Drascula license "
          "(BSD-like), Debian package drascula-music")


def fetch_package(work: Path) -> Path:
    """The ``drascula-music`` .deb in ``work`` (``apt-get download`` once)."""
    found = sorted(work.glob(f"{PACKAGE}_*.deb"))
    if found:
        return found[-1]
    work.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["apt-get", "download", PACKAGE], cwd=work, capture_output=True, text=True)
    found = sorted(work.glob(f"{PACKAGE}_*.deb"))
    if done.returncode or not found:
        raise SystemExit(f"apt-get download {PACKAGE} failed ({done.stderr.strip() or done.returncode}); "
                         "run `apt-get update` first (as root), or pass --tracks")
    return found[-1]


def drascula_table(work: Path, n: int, min_seconds: float = 30.0) -> tuple[Path, Path]:
    """Unpack the package's tracks and write a ``n``-track importer table; returns (table, audio folder)."""
    import soundfile as sf

    from talkplay.debsource import extract_from_deb

    audio = work / "unpacked" / AUDIO_DIR
    if not any(audio.glob("track*.ogg")):
        extract_from_deb(fetch_package(work), lambda p: p.startswith(AUDIO_DIR + "/track") and p.endswith(".ogg"),
                         work / "unpacked")
    files = sorted(audio.glob("track*.ogg"), key=lambda p: int(re.search(r"\d+", p.name).group()))
    chosen = [p for p in files if sf.info(str(p)).duration >= min_seconds][:n]
    table = work / "drascula.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["track_id", "title", "artist", "album", "license", "attribution", "audio_path"])
        for p in chosen:
            number = re.search(r"\d+", p.name).group()
            w.writerow([f"drascula-{number}", f"Track {number}", "Alcachofa Soft", "Drascula: The Vampire Strikes Back",
                        "LicenseRef-Drascula-License", CREDIT, p.name])
    return table, audio


def request_for(track) -> str:
    """The first request a listener could write from the track's own tags."""
    return " ".join(track.tags)


def check(bundle: Path, new_ids: list[str], text_weights=(None, 0.0)) -> dict:
    """Rank of each new track for its own request, per text weight (None: the engine's default)."""
    from talkplay.catalog import load_catalog
    from talkplay.conversation import ConversationState
    from talkplay.recommender import load_recommender

    rec = load_recommender(bundle, "cpu", "bf16")
    catalog = load_catalog(bundle)
    out = {"catalog_tracks": len(catalog), "tracks": {}}
    for weight in text_weights:
        label = "engine" if weight is None else f"text_weight={weight}"
        kwargs = {} if weight is None else {"text_weight": weight}
        ranks = {}
        for tid in new_ids:
            request = request_for(catalog[tid])
            order = [r.track_id for r in rec.rank(ConversationState(), request, k=len(catalog), **kwargs)]
            ranks[tid] = order.index(tid) + 1
            out["tracks"].setdefault(tid, {"request": request})[label] = ranks[tid]
            print(f"[{label}] {tid}: rank {ranks[tid]} of {len(catalog)} for {request!r}", flush=True)
        out[label] = {"ranks": list(ranks.values()), "top10": sum(r <= 10 for r in ranks.values()), "of": len(ranks)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.checks.cold_start_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="scratch folder (download, audio, bundle copy, result)")
    p.add_argument("--bundle", type=Path, default=Path("catalog/demo"), help="bundle to copy and extend (not modified)")
    p.add_argument("--tracks", type=Path, default=None, help="your own table of new tracks (default: Drascula's)")
    p.add_argument("--audio-root", type=Path, default=None, help="folder of --tracks' relative audio paths")
    p.add_argument("--n", type=int, default=12, help="Drascula tracks to add (without --tracks)")
    p.add_argument("--cache", type=Path, default=None, help="analysis cache (default: <work>/cache)")
    args = p.parse_args(argv)
    from train.catalog.cold_start import add_tracks

    t0 = time.time()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    table, audio_root = (args.tracks, args.audio_root) if args.tracks else drascula_table(work, args.n)
    bundle = work / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    shutil.copytree(args.bundle, bundle, ignore=shutil.ignore_patterns("previews"))
    added = add_tracks(bundle, table, audio_root, args.cache or work / "cache")["added"]
    result = {"bundle": str(args.bundle), "table": str(table), "added": added, **check(bundle, added)}
    result["seconds"] = round(time.time() - t0, 1)
    (work / "cold_start_check.json").write_text(json.dumps(result, indent=1) + "\n")
    for label in ("engine", "text_weight=0.0"):
        r = result[label]
        print(f"{label}: ranks {r['ranks']}; top 10 of {result['catalog_tracks']}: {r['top10']}/{r['of']}")
    return 0 if result["engine"]["top10"] == result["engine"]["of"] else 1


if __name__ == "__main__":
    sys.exit(main())
