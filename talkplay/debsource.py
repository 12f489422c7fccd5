"""Recordings that live inside Debian packages: pinned package records, download, unpacking.

The demo catalog's audio is not committed; each track's ``source`` names the exact file inside a
pinned Debian package, e.g. ``deb://wesnoth-1.16-music/1:1.16.9-1/usr/share/.../battle.ogg`` or, for a
file inside a zip archive of the package, ``deb://ufoai-music/2.5-2/usr/share/.../0music.pk3!/music/x.ogg``.
This module turns such a URI into a local file:

1. a copy already installed on the system (e.g. by Spaces' ``packages.txt``) whose checksum matches;
2. otherwise the ``.deb`` from the download cache, fetched once with ``apt-get download pkg=version``
   or, where apt does not know that version (Ubuntu, other distributions), over HTTP from the Debian
   pool — resumable, with a progress bar and the pinned SHA-256 verified;
3. the ``.deb`` is an ``ar`` archive holding ``data.tar.{xz,gz}``; it is unpacked in Python, no root.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from talkplay.download import DownloadError, http_download, sha256_file  # noqa: F401 (sha256_file: re-exported)

DEFAULT_MIRROR = "http://deb.debian.org/debian"


class SourceError(RuntimeError):
    """A source could not be fetched, verified or unpacked; the message names what and where."""


@dataclass(frozen=True)
class DebPackage:
    """A pinned Debian binary package."""

    name: str  # e.g. "wesnoth-1.16-music"
    version: str  # full Debian version, e.g. "1:1.16.9-1"
    pool_path: str  # path below the mirror root, e.g. "pool/main/w/wesnoth-1.16/…_all.deb"
    sha256: str  # checksum of the .deb as published in the archive's Packages index
    size: int  # bytes

    @property
    def filename(self) -> str:
        return self.pool_path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class DebSource:
    """A parsed ``deb://package/version/path[!/member]`` URI."""

    package: str  # Debian package name
    version: str  # pinned version
    path: str  # path of the file inside the package (no leading slash)
    member: str | None = None  # path inside an archive (zip/pk3) at ``path``, if any

    @classmethod
    def parse(cls, uri: str) -> "DebSource":
        if not uri.startswith("deb://"):
            raise SourceError(f"{uri!r} is not a deb:// source")
        rest = uri[len("deb://"):]
        member = None
        if "!/" in rest:
            rest, member = rest.split("!/", 1)
        parts = rest.split("/", 2)
        if len(parts) != 3 or not all(parts):
            raise SourceError(f"{uri!r}: expected deb://package/version/path")
        return cls(parts[0], parts[1], parts[2], member)

    @property
    def uri(self) -> str:
        base = f"deb://{self.package}/{self.version}/{self.path}"
        return f"{base}!/{self.member}" if self.member else base


def deb_package(source: str) -> str | None:
    """The Debian package of a ``deb://`` source; None for any other source, or a malformed one."""
    try:
        return DebSource.parse(source).package if source.startswith("deb://") else None
    except SourceError:
        return None


def _apt_download(pkg: DebPackage, dest_dir: Path) -> Path | None:
    """Try ``apt-get download name=version``; None when apt is absent or does not know the version."""
    if shutil.which("apt-get") is None:
        return None
    try:
        subprocess.run(
            ["apt-get", "download", "-q", f"{pkg.name}={pkg.version}"],
            cwd=dest_dir, check=True, capture_output=True, timeout=1800,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        return None
    # apt names the file with the epoch's ':' escaped as %3a.
    for candidate in dest_dir.glob(f"{pkg.name}_*.deb"):
        if sha256_file(candidate) == pkg.sha256:
            return candidate
    return None


def _http_download(pkg: DebPackage, dest: Path, mirror: str) -> None:
    """Download ``pkg`` from ``mirror``'s pool (resumable, with progress); SourceError on network failure."""
    try:
        http_download(f"{mirror.rstrip('/')}/{pkg.pool_path}", dest, pkg.size, pkg.name, sha256=pkg.sha256)
    except DownloadError as err:
        raise SourceError(str(err)) from err


def fetch_deb(pkg: DebPackage, cache_dir: str | os.PathLike, mirror: str | None = None) -> Path:
    """Return a verified local copy of ``pkg``'s .deb, downloading it into ``cache_dir`` if needed.

    Raises:
        SourceError: if neither apt nor HTTP yields a file with the pinned SHA-256.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    dest = cache_dir / pkg.filename
    if dest.exists():
        if dest.stat().st_size == pkg.size and sha256_file(dest) == pkg.sha256:
            return dest
        dest.unlink()
    got = _apt_download(pkg, cache_dir)
    if got is not None:
        if got != dest:
            os.replace(got, dest)
        return dest
    _http_download(pkg, dest, mirror or os.environ.get("TALKPLAY_DEBIAN_MIRROR", DEFAULT_MIRROR))
    digest = sha256_file(dest)
    if digest != pkg.sha256:
        dest.unlink()
        raise SourceError(f"{pkg.filename}: SHA-256 {digest} does not match the pinned {pkg.sha256}")
    return dest


def _ar_members(deb: Path) -> dict[str, tuple[int, int]]:
    """Offsets and sizes of the members of an ``ar`` archive."""
    members: dict[str, tuple[int, int]] = {}
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise SourceError(f"{deb}: not a Debian package (missing ar magic)")
        while header := f.read(60):
            if len(header) < 60:
                raise SourceError(f"{deb}: truncated ar header")
            name = header[:16].decode("ascii").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            members[name] = (f.tell(), size)
            f.seek(size + (size & 1), io.SEEK_CUR)  # members are 2-byte aligned
    return members


def extract_from_deb(deb: str | os.PathLike, paths, dest_dir: str | os.PathLike) -> dict[str, Path]:
    """Unpack files from ``deb`` into ``dest_dir`` in one streaming pass over its data archive.

    Args:
        paths: a set of package-relative paths (no leading slash), all of which must be present,
            or a predicate ``path -> bool`` selecting any number of files.
    Returns:
        path → extracted file. Raises SourceError if a requested path (set form) is absent.
    """
    deb, dest_dir = Path(deb), Path(dest_dir)
    members = _ar_members(deb)
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise SourceError(f"{deb}: no data.tar member")
    if data_name.endswith(".zst"):
        raise SourceError(f"{deb}: zstd-compressed packages are not supported (no zstd in the standard library)")
    offset, size = members[data_name]
    if callable(paths):
        wanted, select = set(), paths
    else:
        wanted = {p.lstrip("/") for p in paths}
        select = wanted.__contains__
    found: dict[str, Path] = {}
    with open(deb, "rb") as f:
        f.seek(offset)
        payload = io.BufferedReader(_Window(f, size))
        with tarfile.open(fileobj=payload, mode="r|*") as tar:
            for info in tar:
                name = _member_name(info.name)
                if name is not None and info.isfile() and select(name):
                    out = dest_dir / name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(info)
                    tmp = out.with_suffix(out.suffix + ".part")
                    with open(tmp, "wb") as fh:
                        shutil.copyfileobj(src, fh, 1 << 20)
                    os.replace(tmp, out)
                    found[name] = out
    missing = wanted - set(found)
    if missing:
        raise SourceError(f"{deb}: missing file(s) {sorted(missing)[:3]}")
    return found


def _member_name(name: str) -> str | None:
    """Package-relative path of an archive member, or None if it could escape the target directory."""
    while name.startswith("./"):
        name = name[2:]
    parts = Path(name).parts
    if not parts or name.startswith("/") or ".." in parts:
        return None
    return name


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes of an open file, starting at its current position."""

    def __init__(self, f, size: int):
        self._f, self._left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._left)
        if n <= 0:
            return 0
        data = self._f.read(n)
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)


def extract_member(archive: str | os.PathLike, member: str, dest: str | os.PathLike) -> Path:
    """Copy ``member`` out of a zip archive (a game's ``.pk3``) to ``dest``, atomically."""
    dest = Path(dest)
    if _member_name(member) is None:
        raise SourceError(f"{archive}: refusing unsafe member name {member!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with zipfile.ZipFile(archive) as z, z.open(member) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except (KeyError, zipfile.BadZipFile, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"{archive}: cannot read member {member!r} ({err})") from err
    os.replace(tmp, dest)
    return dest


def installed_copy(source: DebSource, sha256: str) -> Path | None:
    """A system-installed file (``/usr/share/…``, e.g. from Spaces' packages.txt) matching ``sha256``.

    For a member of an installed archive, the member is extracted next to the cache by the caller;
    here only plain files are returned.
    """
    if source.member is not None:
        return None
    candidate = Path("/") / source.path
    if candidate.is_file() and sha256_file(candidate) == sha256:
        return candidate
    return None
