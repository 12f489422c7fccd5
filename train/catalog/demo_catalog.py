"""Maintainer command: rebuild ``catalog/demo/`` from pinned Debian game-soundtrack packages.

    python -m train.catalog.demo_catalog                # full build (download, credits, analysis, previews)
    python -m train.catalog.demo_catalog --packages wesnoth-1.16-music --limit 5   # a quick partial build

Stages, each resumable (a rerun skips finished work):

1. download each pinned ``.deb`` (apt-get download, else the Debian pool over HTTP; SHA-256 verified)
   into the cache, and unpack its music files, copyright file and sidecars in Python;
2. credits per file (``train.catalog.credits``); files without an established license are left out and listed;
3. analysis per file, cached by the file's SHA-256: the preview section (energetic, not the intro),
   librosa descriptors and musicnn auto-tags + embedding on that section;
4. a 30-second MP3 preview per track, cut by the same code a user's setup uses (``talkplay.previews``);
5. the bundle: ``tracks.parquet``, ``features.parquet``, ``sources.json``, ``manifest.json``,
   ``CREDITS.md`` — deterministic for the same inputs.

Users never run this: their setup only fetches the packages and cuts the sections tracks.parquet names.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.catalog.demo_catalog")

import argparse
import json
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from talkplay.bundle import write_features
from talkplay.catalog import Track, atomic_write, preview_relpath, save_catalog, slugify, validate_tracks
from talkplay.debsource import extract_from_deb, extract_member, fetch_deb, sha256_file
from talkplay.licenses import license_info
from talkplay.previews import PREVIEW_SECONDS, SOURCES_FILE, cut_preview, default_cache_dir, mark_cut
from train.catalog.credits import (attribution_line, credit_for, is_placeholder_artist, load_album_sidecars,
                                   matches_any, read_tags, resolve_url_artists)
from train.catalog.demo_sources import MIN_TRACK_SECONDS, PACKAGES, PackageSpec
from train.catalog.dep5 import parse_dep5

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "catalog" / "demo"
ANALYSIS_VERSION = 1  # bump to invalidate cached analyses when the analysis code changes
ANALYSIS_SR = 22050


@dataclass(frozen=True)
class SourceFile:
    spec: PackageSpec
    installed: str  # package path, or "archive!/member"
    local: Path  # unpacked copy in the cache

    @property
    def uri(self) -> str:
        return f"deb://{self.spec.deb.name}/{self.spec.deb.version}/{self.installed}"


# ---------------------------------------------------------------- stage 1: download and unpack


def unpack_package(spec: PackageSpec, cache: Path) -> tuple[list[SourceFile], dict[str, Path]]:
    """Fetch and unpack one package's music files; returns (music files, other extracted files)."""
    deb = fetch_deb(spec.deb, cache / "debs")
    root = cache / "unpacked" / spec.deb.name / spec.deb.version
    done = root / ".complete"
    plain = [g for g in spec.audio if "!/" not in g]
    archives = {g.split("!/")[0]: [] for g in spec.audio if "!/" in g}
    for g in spec.audio:
        if "!/" in g:
            archives[g.split("!/")[0]].append(g.split("!/")[1])

    def wanted(path: str) -> bool:
        return (matches_any(path, plain) or path in archives or path == spec.copyright_path
                or path.endswith("/album.json"))

    if not done.exists():
        extract_from_deb(deb, wanted, root)
        done.write_text(spec.deb.sha256)
    files = {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file() and p.name != ".complete"}
    music: list[SourceFile] = []
    for rel, path in sorted(files.items()):
        if matches_any(rel, plain) and not matches_any(rel, spec.exclude):
            music.append(SourceFile(spec, rel, path))
    for archive, member_globs in archives.items():
        members_dir = root / (archive + ".members")
        with zipfile.ZipFile(files[archive]) as z:
            for member in sorted(z.namelist()):
                if matches_any(member, member_globs) and not matches_any(member, spec.exclude):
                    out = members_dir / member
                    if not out.exists():  # extract_member writes atomically: an existing file is whole
                        extract_member(files[archive], member, out)
                    music.append(SourceFile(spec, f"{archive}!/{member}", out))
    return music, files


# ---------------------------------------------------------------- stage 3: analysis


class Analyzer:
    """Preview-section choice, descriptors and musicnn tags for one file, cached by checksum."""

    def __init__(self, cache: Path):
        self.cache = cache / "analysis"
        self.cache.mkdir(parents=True, exist_ok=True)
        self._tagger = None

    @property
    def tagger(self):
        if self._tagger is None:
            from train.catalog.musicnn import MusicnnTagger

            self._tagger = MusicnnTagger()
        return self._tagger

    def analyze(self, path: Path, sha: str) -> dict:
        out = self.cache / f"{sha}.v{ANALYSIS_VERSION}.json"
        if out.exists():
            return json.loads(out.read_text())
        from train.catalog.descriptors import (
            compute_descriptors,
            find_preview_section,
            load_mono,
        )

        duration = sf.info(str(path)).duration
        mono = load_mono(path, ANALYSIS_SR)
        start = round(float(find_preview_section(mono, ANALYSIS_SR, PREVIEW_SECONDS)), 2)
        section = mono[int(start * ANALYSIS_SR): int((start + PREVIEW_SECONDS) * ANALYSIS_SR)]
        desc = compute_descriptors(section, ANALYSIS_SR)
        tags = self.tagger(section, ANALYSIS_SR)
        result = {
            "duration_s": round(duration, 3),
            "preview_start_s": start,
            "preview_duration_s": round(min(PREVIEW_SECONDS, duration - start), 3),
            "descriptors": {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in asdict(desc).items()},
            "msd": [round(float(x), 6) for x in tags.msd_probs],
            "mtt": [round(float(x), 6) for x in tags.mtt_probs],
            "embedding": [round(float(x), 6) for x in tags.embedding],
        }
        atomic_write(out, lambda tmp: tmp.write_text(json.dumps(result)))
        return result


# ---------------------------------------------------------------- helpers


def assign_ids(files: list[SourceFile]) -> dict[str, str]:
    """Stable track ids: '<short>-<file stem>', with the parent folder added where stems collide."""
    ids: dict[str, str] = {}
    stems: dict[str, list[SourceFile]] = {}
    for f in files:
        stem = Path(f.installed.split("!/")[-1]).stem
        stems.setdefault(f"{f.spec.short}-{slugify(stem)}", []).append(f)
    for base, group in stems.items():
        for f in group:
            if len(group) == 1:
                ids[f.uri] = base
            else:
                parent = Path(f.installed.split("!/")[-1]).parent.name
                ids[f.uri] = f"{f.spec.short}-{slugify(parent)}-{base.split('-', 1)[1]}"
    return ids


def genre_tag_words(genre: str) -> list[str]:
    """Curated reading of a GENRE tag into our tag words ('Female Fronted Metal' → metal, female vocals)."""
    g = genre.lower()
    words = []
    for key, tag in (("metal", "metal"), ("rock", "rock"), ("classical", "classical"), ("romantic", "romantic"),
                     ("ambient", "ambient"), ("electronic", "electronic"), ("techno", "techno"), ("folk", "folk"),
                     ("female", "female vocals"), ("orchestral", "orchestral")):
        if key in g:
            words.append(tag)
    return words


def dedupe(seq) -> list[str]:
    seen, out = set(), []
    for x in seq:
        x = x.strip().lower()
        if x and x not in seen:
            seen.add(x)
            out.append(x)
    return out


# ---------------------------------------------------------------- the build


def build(out: Path, cache: Path, packages: list[str] | None = None, limit: int | None = None, log=print) -> dict:
    """Build the bundle at ``out``; returns build statistics (also stored in manifest.json)."""
    from train.catalog.descriptors import Descriptors
    from train.catalog.musicnn import MSD_TAGS, MTT_TAGS
    from train.catalog.tagging import (
        compose_caption,
        descriptor_tags,
        merge_tags,
        select_auto_tags,
    )

    t0 = time.time()
    specs = [s for s in PACKAGES if packages is None or s.deb.name in packages]
    analyzer = Analyzer(cache)
    tracks: list[Track] = []
    features: list[dict] = []
    left_out: list[tuple[str, str]] = []
    per_package: dict[str, int] = {}
    seen_sha: dict[str, str] = {}
    for spec in specs:
        log(f"[{spec.deb.name}] fetching and unpacking")
        music, files = unpack_package(spec, cache)
        dep5 = parse_dep5(files[spec.copyright_path]) if spec.copyright_path in files else None
        if dep5 is None and not spec.license:
            log(f"[{spec.deb.name}] no DEP-5 copyright and no curated license: every file will be left out")
        sidecars = load_album_sidecars(files)
        candidates = []
        for f in music:
            info = sf.info(str(f.local))
            if info.duration < MIN_TRACK_SECONDS:
                continue
            sha = sha256_file(f.local)
            if sha in seen_sha:
                left_out.append((f.uri, f"duplicate of {seen_sha[sha]}"))
                continue
            seen_sha[sha] = f.uri
            candidates.append((f, sha))
        if limit:
            candidates = candidates[:limit]
        ids = assign_ids([f for f, _ in candidates])
        from tqdm import tqdm

        credits = resolve_url_artists([credit_for(spec, f.installed, read_tags(f.local), dep5, sidecars.get(f.installed))
                                       for f, _ in candidates])
        for (f, sha), credit in tqdm(list(zip(candidates, credits)), desc=spec.deb.name, unit="track"):
            if credit.artist and is_placeholder_artist(credit.artist):  # an unresolved URL
                credit = replace(credit, artist=credit.copyright or f"{spec.game} contributors")
            if credit.problem:
                left_out.append((f.uri, credit.problem))
                continue
            track_id = ids[f.uri]
            a = analyzer.analyze(f.local, sha)
            desc = Descriptors(**a["descriptors"])
            curated = dedupe([*spec.style_tags,
                              *[t for g, ts in spec.folder_tags.items() if matches_any(f.installed, [g]) for t in ts],
                              *genre_tag_words(credit.genre)])
            auto = select_auto_tags(dict(zip(MSD_TAGS, a["msd"])), dict(zip(MTT_TAGS, a["mtt"])))
            dtags = descriptor_tags(desc)
            tags = merge_tags(curated, auto, dtags)
            preview_rel = preview_relpath(track_id)
            if not (out / preview_rel).exists():
                cut_preview(f.local, a["preview_start_s"], a["preview_duration_s"], out / preview_rel)
            tracks.append(Track(
                track_id=track_id, title=credit.title, artist=credit.artist, license=credit.license,
                attribution=attribution_line(credit, spec), source=f.uri, album=credit.album, year=credit.year,
                duration_s=a["duration_s"], tags=tuple(tags), caption=compose_caption(tags, desc), lyrics=None,
                preview_path=preview_rel, source_sha256=sha, preview_start_s=a["preview_start_s"],
                preview_duration_s=a["preview_duration_s"],
            ))
            features.append({
                "track_id": track_id, "package": spec.deb.name, "license_origin": credit.license_origin,
                "curated_tags": curated, "auto_tags": auto, "descriptor_tags": dtags,
                **{k: v for k, v in a["descriptors"].items()},
                "msd_tags": a["msd"], "mtt_tags": a["mtt"], "musicnn_embedding": a["embedding"],
            })
            per_package[spec.deb.name] = per_package.get(spec.deb.name, 0) + 1
    for uri, why in left_out:
        log(f"left out {uri}: {why}")
    stats = {
        "packages": {s.deb.name: {"version": s.deb.version, "tracks": per_package.get(s.deb.name, 0),
                                  "deb_bytes": s.deb.size} for s in specs},
        "download_bytes": sum(s.deb.size for s in specs),
        "left_out": [{"source": u, "reason": r} for u, r in left_out],
        "build_seconds": round(time.time() - t0, 1),
    }
    write_bundle(out, specs, tracks, features, stats)
    log(f"wrote {len(tracks)} tracks from {len(per_package)} packages to {out} in {stats['build_seconds']} s")
    return stats


def write_bundle(out: Path, specs, tracks: list[Track], features: list[dict], stats: dict) -> None:
    from train.catalog.musicnn import MSD_TAGS, MTT_TAGS

    order = sorted(range(len(tracks)), key=lambda i: tracks[i].track_id)
    tracks = [tracks[i] for i in order]
    features = [features[i] for i in order]
    validate_tracks(tracks, out / "tracks.parquet")  # before any file is written: all or nothing
    sources = {"packages": [{"name": s.deb.name, "version": s.deb.version, "pool_path": s.deb.pool_path,
                             "sha256": s.deb.sha256, "size": s.deb.size, "game": s.game} for s in specs]}
    atomic_write(out / SOURCES_FILE, lambda tmp: tmp.write_text(json.dumps(sources, indent=2) + "\n"))
    write_features(out, features)
    save_catalog(out, tracks, name="demo",
                 description="Freely licensed game soundtracks from Debian packages (real recordings).",
                 features={"msd_tags": MSD_TAGS, "mtt_tags": MTT_TAGS, "musicnn_embedding_dim": 200,
                           "analysis_version": ANALYSIS_VERSION},
                 build={k: v for k, v in stats.items() if k != "build_seconds"})
    atomic_write(out / "CREDITS.md", lambda tmp: tmp.write_text(credits_markdown(tracks, features, specs, stats)))
    mark_cut(out, tracks)


def credits_markdown(tracks: list[Track], features: list[dict], specs, stats: dict) -> str:
    lines = ["# Credits — TalkPlay demo catalog", "",
             "Every recording below is a real track from a freely licensed game soundtrack packaged by Debian",
             "(bookworm). Titles, artists and licenses come from the packages' copyright files, embedded tags and",
             "sidecar files; style tags marked *curated* are the maintainers' description of each source.",
             "Previews are 30-second excerpts, loudness-normalized; the full recordings are in the packages.", "",
             "## Sources", "", "| package | version | game | tracks | curated style |", "|---|---|---|---|---|"]
    for s in specs:
        n = stats["packages"][s.deb.name]["tracks"]
        lines.append(f"| {s.deb.name} | {s.deb.version} | {s.game} | {n} | {', '.join(s.style_tags)} |")
    lines += ["", "## Tracks", ""]
    by_pkg: dict[str, list[tuple[Track, dict]]] = {}
    for t, f in zip(tracks, features):
        by_pkg.setdefault(f["package"], []).append((t, f))
    for s in specs:
        items = by_pkg.get(s.deb.name, [])
        if not items:
            continue
        lines += [f"### {s.game} — `{s.deb.name}`", ""]
        if s.license:
            lines += [f"License established from the free-form copyright file (curated reading): "
                      f"*{s.license_statement}*", ""]
        for t, f in items:
            lic = license_info(t.license)
            lines.append(f"- **{t.title}** — {t.artist}"
                         f"{f' ({t.album}, {t.year})' if t.year else f' ({t.album})'} · "
                         f"[{lic.spdx}]({lic.url}) · `{t.track_id}` · license from {f['license_origin']}")
        lines.append("")
    if stats["left_out"]:
        lines += ["## Left out", ""] + [f"- `{x['source']}`: {x['reason']}" for x in stats["left_out"]] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.catalog.demo_catalog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="bundle directory to write (default: catalog/demo; required with --packages/--limit "
                             "so a trial build never overwrites the committed bundle)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="download/unpack/analysis cache (default: $TALKPLAY_CACHE or ~/.cache/talkplay)")
    parser.add_argument("--packages", nargs="*", default=None, help="only these Debian packages (default: all pinned)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many tracks per package (for trials)")
    args = parser.parse_args(argv)
    if args.out is None:
        if args.packages is not None or args.limit is not None:
            parser.error("--out is required for partial builds (--packages/--limit)")
        args.out = DEFAULT_OUT
    stats = build(args.out, args.cache or default_cache_dir(), args.packages, args.limit)
    print(json.dumps({k: v for k, v in stats.items() if k != "left_out"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
