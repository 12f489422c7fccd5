"""The catalog browser behind the app's "Browse catalog" page: search, filter, and track cards.

UI-free (no Gradio here) so that it is testable and the app stays a thin layer: every widget maps to
one method. Catalog metadata is untrusted text (a user's CSV can hold anything), so everything put
into Markdown/HTML is escaped here, in one place.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from talkplay.catalog import Catalog, Track
from talkplay.debsource import deb_package
from talkplay.licenses import license_info
from talkplay.previews import read_sources

TABLE_COLUMNS = ["title", "artist", "album", "year", "tags", "track_id"]  # id last: needed, rarely read
ALL_SOURCES = "All sources"


_MARKDOWN_SPECIALS = "\\`*_[]()#|!~"


def escape(text: object) -> str:
    """Make untrusted text inert inside Markdown: no HTML tags, links, emphasis, headings or lists.

    HTML-escapes ``<``, ``>`` and ``&`` only (quotes stay readable: "Journey's End"), backslash-escapes
    Markdown syntax, and folds line breaks so a value cannot start a block of its own.
    """
    s = " ".join(str(text).split())
    s = html.escape(s, quote=False)
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIALS else ch for ch in s)


@dataclass(frozen=True)
class TrackCard:
    markdown: str  # the card text (escaped)
    audio: str | None  # absolute path of the preview, None when it is not on disk


class CatalogBrowser:
    """Search and display one catalog."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        games = _games(catalog.root)
        self._source_of = {t.track_id: _source_label(t, games) for t in catalog}

    def sources(self) -> list[str]:
        """Choices for the source filter: 'All sources' then each game/package present."""
        return [ALL_SOURCES, *sorted(set(self._source_of.values()))]

    def rows(self, query: str = "", source: str = ALL_SOURCES, limit: int = 1000) -> list[list]:
        """Table rows for tracks matching every word of ``query`` (title, artist, album, tags, caption)."""
        tracks = self.catalog.search(query or "", limit=len(self.catalog))
        if source and source != ALL_SOURCES:
            tracks = [t for t in tracks if self._source_of[t.track_id] == source]
        return [[t.title, t.artist, t.album, t.year or "", ", ".join(t.tags[:6]), t.track_id] for t in tracks[:limit]]

    def summary(self) -> str:
        n = len(self.catalog)
        with_preview = sum(1 for t in self.catalog if self.catalog.preview_file(t) is not None)
        sources = len(set(self._source_of.values()))
        return f"**{n} tracks** from {sources} sources · {with_preview} previews ready"

    def card(self, track_id: str | None) -> TrackCard:
        """The card of one track (empty prompt when ``track_id`` is None or unknown)."""
        if not track_id or track_id not in self.catalog:
            return TrackCard("*Select a track in the table to see its card and play its preview.*", None)
        t: Track = self.catalog[track_id]
        lic = license_info(t.license)
        audio = self.catalog.preview_file(t)
        meta = " · ".join(escape(x) for x in (t.album, t.year) if x)
        lines = [
            f"### {escape(t.title)}",
            f"**{escape(t.artist)}**" + (f" — {meta}" if meta else ""),
            "",
            escape(t.caption) if t.caption else "",
            "",
            "**Tags:** " + (", ".join(escape(tag) for tag in t.tags) or "—"),
            "",
            f"**Credit:** {escape(t.attribution)}",
            "",
            f"**License:** [{escape(lic.name)}]({lic.url})" if lic.url else f"**License:** {escape(lic.name)}",
        ]
        if t.duration_s:
            m, s = divmod(int(round(t.duration_s)), 60)
            start = f", preview from {t.preview_start_s:.0f} s" if t.preview_start_s else ""
            lines += ["", f"**Length:** {m}:{s:02d}{start}"]
        if audio is None:
            lines += ["", "*Preview unavailable on this machine.*"]
        return TrackCard("\n".join(lines), str(audio) if audio else None)

    def credits_markdown(self) -> str:
        """CREDITS.md of the bundle, or a generated list when the bundle has none."""
        path: Path = self.catalog.root / "CREDITS.md"
        if path.is_file():
            return path.read_text(encoding="utf-8")
        return "\n".join(f"- {escape(t.attribution)}" for t in self.catalog)


def _games(root: Path) -> dict[str, str]:
    """Debian package → game name, from the bundle's sources.json (empty for other catalogs)."""
    return {p["name"]: p.get("game", p["name"]) for p in read_sources(root)}


def _source_label(t: Track, games: dict[str, str]) -> str:
    package = deb_package(t.source)
    if package:
        return games.get(package, package)
    return t.album or "Other"
