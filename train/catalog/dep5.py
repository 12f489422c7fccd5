"""Reader for Debian machine-readable copyright files (DEP-5), to credit each file of a package.

A DEP-5 file is a list of stanzas; ``Files:`` stanzas map glob patterns to a ``Copyright:`` holder and a
``License:`` short name. Per the spec, the *last* stanza whose pattern matches a file wins.
Patterns are relative to the upstream source tree, not to the installed paths, so callers map an
installed path (``usr/share/games/supertux2/music/x.ogg``) to its upstream path (``data/music/x.ogg``)
before asking.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.catalog.dep5 is a module of the train package: import it, or use python -m")

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Dep5Stanza:
    patterns: tuple[str, ...]  # upstream-relative glob patterns ('*' matches '/' too, as DEP-5 says)
    copyright: str  # holder lines joined with '; '
    license: str  # short license name as written (e.g. "CC-BY-SA-3.0", "GPL-2+")


@dataclass(frozen=True)
class Dep5:
    path: str  # the copyright file it was read from
    stanzas: tuple[Dep5Stanza, ...]

    def lookup(self, upstream_path: str) -> Dep5Stanza | None:
        """The stanza governing ``upstream_path`` (last match wins), or None."""
        hit = None
        for stanza in self.stanzas:
            if any(_glob_match(p, upstream_path) for p in stanza.patterns):
                hit = stanza
        return hit


def _glob_match(pattern: str, path: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, path) is not None


def _paragraphs(text: str) -> list[dict[str, str]]:
    paras, fields, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                paras.append(fields)
            fields, key = {}, None
        elif line[0] in " \t" and key is not None:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
    if fields:
        paras.append(fields)
    return paras


def is_dep5(text: str) -> bool:
    return text.lstrip().lower().startswith("format:") and "copyright-format" in text[:300].lower()


def parse_dep5(path: str | Path) -> Dep5 | None:
    """Parse a DEP-5 copyright file; None if the file is free-form (not DEP-5)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if not is_dep5(text):
        return None
    stanzas = []
    for para in _paragraphs(text):
        if "files" not in para:
            continue
        patterns = tuple(p for p in re.split(r"\s+", para["files"]) if p)
        holders = [h.strip() for h in para.get("copyright", "").split("\n") if h.strip()]
        license_name = para.get("license", "").split("\n", 1)[0].strip()
        stanzas.append(Dep5Stanza(patterns, "; ".join(holders), license_name))
    return Dep5(str(path), tuple(stanzas))


def holder_name(copyright_text: str) -> str:
    """A readable holder from a Copyright field: years, '(C)', e-mails and URLs removed."""
    first = copyright_text.split(";")[0]
    first = re.sub(r"<[^>]*>|\(https?://[^)]*\)|https?://\S+", "", first)
    first = re.sub(r"\(c\)|©|copyright", "", first, flags=re.I)
    first = re.sub(r"^[\s,\-–\d]+", "", first)
    first = re.sub(r"\b(19|20)\d\d\b(\s*[-–,]\s*(19|20)?\d\d)*", "", first)
    return re.sub(r"\s{2,}", " ", first).strip(" ,;-")
