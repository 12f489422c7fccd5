"""Where this process runs and where it may keep files: a laptop, a Hugging Face Space, a ZeroGPU Space.

A Space runs ``pip install -r requirements.txt`` and ``python app.py`` — never ``setup.sh`` — in an app folder
that is wiped at every restart. What must survive a restart (the feedback database, the converted base model,
downloads) goes to the Space's persistent storage when the owner has added some; Spaces mount it at ``/data``.
This module answers those questions once, for every other module; it imports nothing heavy.

Environment (read on every call, so tests and the app see changes):
- ``SPACE_ID`` — set by Hugging Face on every Space.
- ``SPACES_ZERO_GPU`` — set (``true``) on ZeroGPU hardware, where CUDA exists only inside ``spaces.GPU`` calls.
- ``TALKPLAY_PERSISTENT_DIR`` — where the persistent storage is mounted (default ``/data``; only consulted on a Space).
- ``TALKPLAY_CACHE`` — the cache root (downloads, converted and merged models); default below.
- ``XDG_CACHE_HOME`` — the user cache folder of a laptop (default ``~/.cache``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SPACE_VOLUME = Path("/data")  # where Hugging Face mounts a Space's persistent storage
PERSISTENT_ENV = "TALKPLAY_PERSISTENT_DIR"


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def on_space(environ: Mapping[str, str] | None = None) -> bool:
    """True when running as a Hugging Face Space (the platform sets SPACE_ID)."""
    return bool(_env(environ).get("SPACE_ID"))


def zero_gpu(environ: Mapping[str, str] | None = None) -> bool:
    """True on ZeroGPU hardware: a GPU is attached only for the duration of a ``spaces.GPU`` call."""
    return _env(environ).get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def persistent_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The Space's persistent storage when this is a Space and it is a writable folder, else None."""
    env = _env(environ)
    if not on_space(env):
        return None
    volume = Path(env.get(PERSISTENT_ENV) or SPACE_VOLUME)
    if volume.is_dir() and os.access(volume, os.W_OK):
        return volume
    return None


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Root of every TalkPlay cache: ``$TALKPLAY_CACHE``; else, on a Space with persistent storage,
    ``/data/talkplay/cache`` (so the base model is downloaded and converted once, not at every restart);
    else ``$XDG_CACHE_HOME/talkplay``, else ``~/.cache/talkplay``."""
    env = _env(environ)
    if env.get("TALKPLAY_CACHE"):
        return Path(env["TALKPLAY_CACHE"])
    volume = persistent_dir(env)
    if volume is not None:
        return volume / "talkplay" / "cache"
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "talkplay"
