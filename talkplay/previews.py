"""Audio previews: cutting the 30-second section a catalog names, and preparing a bundle's previews.

The maintainer's build chooses each preview section once and records it in ``tracks.parquet``
(``preview_start_s``, ``preview_duration_s``, ``source_sha256``). A user's setup — and a Space on first
start — calls :func:`prepare_previews`, which fetches only the pinned sources, verifies their checksums and
cuts exactly those sections with the same code, so every machine serves the same previews.

Previews are MP3 (plays in Chromium, Firefox and Safari), loudness-normalized so that tracks from
different games sit at a similar level, with short fades so a cut never clicks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from talkplay.catalog import CatalogError, Track, atomic_write, load_catalog
from talkplay.debsource import (
    DebPackage,
    DebSource,
    SourceError,
    extract_from_deb,
    extract_member,
    fetch_deb,
    installed_copy,
    sha256_file,
)
from talkplay.space import cache_root

PREVIEW_SECONDS = 30.0
TARGET_LUFS = -16.0  # a common streaming loudness; game soundtracks vary by >15 LU without it
PEAK_DBFS = -1.0  # headroom so MP3 encoding does not clip
FADE_IN_S, FADE_OUT_S = 0.05, 1.5
SOURCES_FILE = "sources.json"  # pinned packages of a bundle built from Debian
INDEX_FILE = "previews/index.json"  # what each preview was cut from, to detect stale or failed cuts
MAX_MP3_RATE = 48000  # MPEG-1 Layer III stops at 48 kHz; hi-res sources are resampled


def default_cache_dir() -> Path:
    """Where downloads are kept: :func:`talkplay.space.cache_root` (``$TALKPLAY_CACHE``, a Space's persistent
    storage, ``$XDG_CACHE_HOME/talkplay`` or ``~/.cache/talkplay``)."""
    return cache_root()


def read_section(path: str | os.PathLike, start_s: float, duration_s: float) -> tuple[np.ndarray, int]:
    """Decode ``duration_s`` seconds from ``start_s`` as float32 (frames, channels ≤ 2)."""
    with sf.SoundFile(str(path)) as f:
        sr = f.samplerate
        start = min(int(round(start_s * sr)), max(f.frames - 1, 0))
        f.seek(start)
        y = f.read(int(round(duration_s * sr)), dtype="float32", always_2d=True)
    if y.shape[1] > 2:  # surround → stereo; previews are for headphones and laptop speakers
        y = np.stack([y[:, 0::2].mean(axis=1), y[:, 1::2].mean(axis=1)], axis=1)
    return y, sr


def normalize_loudness(y: np.ndarray, sr: int, target_lufs: float = TARGET_LUFS, peak_dbfs: float = PEAK_DBFS) -> np.ndarray:
    """Scale ``y`` to ``target_lufs`` integrated loudness, lowering it further if peaks would clip."""
    import pyloudnorm

    if len(y) < int(0.5 * sr) or not np.any(y):
        return y
    loudness = pyloudnorm.Meter(sr).integrated_loudness(y)
    gain = 1.0 if not np.isfinite(loudness) else 10 ** ((target_lufs - loudness) / 20)
    peak = float(np.max(np.abs(y))) * gain
    ceiling = 10 ** (peak_dbfs / 20)
    if peak > ceiling:
        gain *= ceiling / peak
    return (y * gain).astype(np.float32)


def apply_fades(y: np.ndarray, sr: int) -> np.ndarray:
    y = y.copy()
    n_in, n_out = min(len(y), int(FADE_IN_S * sr)), min(len(y), int(FADE_OUT_S * sr))
    if n_in:
        y[:n_in] *= np.linspace(0.0, 1.0, n_in, dtype=np.float32)[:, None]
    if n_out:
        y[-n_out:] *= np.linspace(1.0, 0.0, n_out, dtype=np.float32)[:, None]
    return y


def cut_preview(source: str | os.PathLike, start_s: float, duration_s: float, out: str | os.PathLike) -> Path:
    """Cut, normalize, fade and encode one preview as MP3 at ``out`` (written atomically)."""
    y, sr = read_section(source, start_s, duration_s)
    if sr > MAX_MP3_RATE:
        import librosa

        y = librosa.resample(y.T, orig_sr=sr, target_sr=MAX_MP3_RATE, res_type="soxr_hq").T.astype(np.float32)
        sr = MAX_MP3_RATE
    y = apply_fades(normalize_loudness(y, sr), sr)
    out = Path(out)
    atomic_write(out, lambda tmp: sf.write(str(tmp), y, sr, format="MP3", subtype="MPEG_LAYER_III"))
    return out


def read_sources(bundle: str | os.PathLike) -> list[dict]:
    """The package records of a bundle's ``sources.json`` ([] when the bundle has none).

    Raises:
        CatalogError: naming the file and the record/field that is malformed.
    """
    path = Path(bundle) / SOURCES_FILE
    if not path.exists():
        return []
    try:
        packages = json.loads(path.read_text(encoding="utf-8"))["packages"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CatalogError(path, f"expected {{'packages': [...]}} ({err})") from err
    for row, p in enumerate(packages, 1):
        for key, kind in (("name", str), ("version", str), ("pool_path", str), ("sha256", str), ("size", int)):
            if not isinstance(p, dict) or not isinstance(p.get(key), kind):
                raise CatalogError(path, f"missing or not a {kind.__name__}", row=row, field=key)
    return packages


def load_sources(bundle: str | os.PathLike) -> dict[str, DebPackage]:
    """The pinned packages recorded in a bundle's ``sources.json`` (name → DebPackage)."""
    return {p["name"]: DebPackage(p["name"], p["version"], p["pool_path"], p["sha256"], p["size"])
            for p in read_sources(bundle)}


def _cut_key(track: Track) -> dict:
    return {"source_sha256": track.source_sha256, "start": track.preview_start_s,
            "duration": track.preview_duration_s or PREVIEW_SECONDS}


def _read_index(bundle: Path) -> dict:
    try:
        return json.loads((bundle / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}  # a lost index only costs re-checking; previews are re-cut where unknown


@dataclass
class PreviewReport:
    """What :func:`prepare_previews` did."""

    ready: int = 0  # previews that already existed
    cut: int = 0  # previews cut in this run
    downloaded_bytes: int = 0  # size of .deb files fetched in this run
    failed: dict[str, str] = field(default_factory=dict)  # track_id → reason
    skipped: dict[str, str] = field(default_factory=dict)  # track_id → reason it failed before (not retried)

    @property
    def ok(self) -> bool:
        return not self.failed


class PreviewProgress:
    """Progress of a :func:`prepare_previews` run, for a page to show while it runs in the background
    (thread-safe: the run updates it, the page reads :meth:`line`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = self.ready = self.failed = 0
        self.finished = False
        self.error = ""

    def update(self, report: PreviewReport, total: int) -> None:
        with self._lock:
            self.total, self.ready = total, report.ready + report.cut
            self.failed = len(report.failed) + len(report.skipped)

    def finish(self, error: str = "") -> None:
        with self._lock:
            self.finished, self.error = True, error

    def line(self) -> str:
        """One line for the page: "Preparing previews 120/286 …", then what came of it."""
        with self._lock:
            if self.error:
                return f"⚠️ Previews could not be prepared ({self.error}); cards say \"preview unavailable\"."
            if not self.finished:
                return (f"⏳ Preparing previews {self.ready}/{self.total} (first start: downloading and cutting the "
                        "recordings) — cards say \"preview unavailable\" until theirs is ready." if self.total
                        else "⏳ Preparing previews …")
            if self.failed:
                return (f"⚠️ {self.ready}/{self.total} previews ready; {self.failed} could not be prepared "
                        "(see the server log; they are tried again at the next start).")
            return f"✅ All {self.total} previews ready."


def prepare_previews(
    bundle: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    keep_downloads: bool = False,
    progress: bool | PreviewProgress = True,
    retry_failed: bool = False,
) -> PreviewReport:
    """Make sure every ``deb://`` track of the bundle has its preview on disk; idempotent.

    A preview counts as done when its file exists and ``previews/index.json`` says it was cut from the
    same source checksum and section that tracks.parquet names now (a changed catalog re-cuts it).
    Sources that failed their checksum are remembered and not downloaded again unless ``retry_failed``.

    Args:
        bundle: catalog bundle directory (with tracks.parquet and sources.json).
        cache_dir: where .deb files are downloaded (default: :func:`default_cache_dir`).
        keep_downloads: keep the .deb files after cutting (the maintainer build keeps them).
        progress: show progress bars; or a PreviewProgress to update instead (a page's progress line).
        retry_failed: try again sources that failed verification before.
    Returns:
        A PreviewReport; tracks that failed are listed with the reason, the others are done.
    """
    bundle = Path(bundle)
    catalog = load_catalog(bundle)
    index = _read_index(bundle)
    report = PreviewReport()
    todo: list[Track] = []
    for t in catalog:
        if not t.source.startswith("deb://") or not t.preview_path:
            continue
        entry = index.get(t.track_id, {})
        same = {k: entry.get(k) for k in ("source_sha256", "start", "duration")} == _cut_key(t)
        if same and entry.get("status") == "ok" and catalog.preview_file(t) is not None:
            report.ready += 1
        elif same and entry.get("status") == "failed" and not retry_failed:
            report.skipped[t.track_id] = entry.get("reason", "failed before")
        else:
            todo.append(t)
    watcher = progress if isinstance(progress, PreviewProgress) else None
    total = report.ready + len(report.skipped) + len(todo)

    def tell() -> None:
        if watcher is not None:
            watcher.update(report, total)

    tell()
    if not todo:
        return report
    packages = load_sources(bundle)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    by_package: dict[str, list[tuple[Track, DebSource]]] = defaultdict(list)
    for t in todo:
        src = DebSource.parse(t.source)
        by_package[src.package].append((t, src))

    def record(track: Track, status: str, reason: str = "") -> None:
        index[track.track_id] = {**_cut_key(track), "status": status, **({"reason": reason} if reason else {})}

    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="previews", unit="track")
    try:
        for name, items in sorted(by_package.items()):
            work = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=_mkdir(cache / "unpack")))
            try:
                files = _resolve_files(packages.get(name), name, items, cache, work, report, keep_downloads)
            except SourceError as err:
                # Download/unpack problems are transient (network, disk): report, do not remember.
                for track, _ in items:
                    report.failed[track.track_id] = str(err)
                if bar is not None:
                    bar.update(len(items))
                tell()
                shutil.rmtree(work, ignore_errors=True)
                continue
            for track, src in items:
                try:
                    path = files.get(src.uri)
                    if path is None:
                        raise SourceError(f"{src.uri} not found in {name}")
                    if sha256_file(path) != track.source_sha256:
                        raise SourceError(f"{src.uri}: checksum differs from the catalog's source_sha256")
                    cut_preview(path, track.preview_start_s or 0.0, track.preview_duration_s or PREVIEW_SECONDS,
                                bundle / track.preview_path)
                    report.cut += 1
                    record(track, "ok")
                except (SourceError, RuntimeError, OSError, ValueError) as err:
                    report.failed[track.track_id] = str(err)
                    record(track, "failed", str(err))
                if bar is not None:
                    bar.update(1)
                tell()
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if bar is not None:
            bar.close()
        text = json.dumps(index, indent=1, sort_keys=True)
        atomic_write(bundle / INDEX_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return report


def mark_cut(bundle: str | os.PathLike, tracks: list[Track]) -> None:
    """Record in the preview index that ``tracks``' previews were cut from their current sections
    (used by the maintainer build, which cuts previews itself)."""
    bundle = Path(bundle)
    index = _read_index(bundle)
    for t in tracks:
        if t.preview_path and (bundle / t.preview_path).is_file():
            index[t.track_id] = {**_cut_key(t), "status": "ok"}
    text = json.dumps(index, indent=1, sort_keys=True)
    atomic_write(bundle / INDEX_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _resolve_files(pkg: DebPackage | None, name: str, items, cache: Path, work: Path,
                   report: PreviewReport, keep_downloads: bool) -> dict[str, Path]:
    """Local files for the sources of one package: installed copies first, else the unpacked .deb."""
    files: dict[str, Path] = {}
    missing = []
    for track, src in items:
        path = installed_copy(src, track.source_sha256)
        if path is not None:
            files[src.uri] = path
        else:
            missing.append(src)
    if not missing:
        return files
    if pkg is None:
        raise SourceError(f"package {name} is not pinned in {SOURCES_FILE}")
    if any(s.version != pkg.version for s in missing):
        raise SourceError(f"{name}: tracks name another version than the pinned {pkg.version}")
    debs = cache / "debs"
    fresh = not (debs / pkg.filename).exists()
    deb = fetch_deb(pkg, debs)
    if fresh:
        report.downloaded_bytes += deb.stat().st_size
    extracted = extract_from_deb(deb, {s.path for s in missing}, work)
    for src in missing:
        path = extracted[src.path]
        if src.member is not None:
            safe = src.member.replace("/", "_")
            path = extract_member(path, src.member, work / "members" / safe)
        files[src.uri] = path
    if not keep_downloads:
        deb.unlink(missing_ok=True)
    return files
