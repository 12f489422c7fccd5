"""Credits for recordings found in Debian packages: tags, sidecar files and the copyright file.

For each music file the build gathers, in order of trust:

* the package's DEP-5 copyright stanza for the file (license, copyright holder) — or, for the few
  packages whose copyright file is free-form, the curated license recorded in ``demo_sources``;
* embedded tags (Vorbis comments: TITLE, ARTIST, COMPOSER, ALBUM, DATE, GENRE, LICENSE);
* sidecar files: Warzone 2100's ``album.json`` (album and track titles, authors, dates);
* the file name, as a last resort for the title only.

A file whose license cannot be established is reported and left out; nothing is guessed.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.catalog.credits is a module of the train package: import it, or use python -m")

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path

from talkplay.licenses import license_info, normalize_license
from train.catalog.dep5 import Dep5, holder_name
from train.catalog.demo_sources import PackageSpec


@dataclass(frozen=True)
class Credit:
    title: str
    artist: str
    album: str
    year: int | None
    license: str | None  # SPDX id, None when it could not be established
    license_origin: str  # where the license came from (for CREDITS.md)
    copyright: str  # holder as stated by the copyright file ("" if not stated per file)
    genre: str  # GENRE tag as written, "" if none
    problem: str = ""  # why the track must be left out, "" if fine


def read_tags(path: str | Path) -> dict[str, str]:
    """Embedded tags, lower-case keys, first value of each; {} if the file has none."""
    import mutagen

    try:
        audio = mutagen.File(str(path))
    except Exception:  # a tagless or odd file is not an error for credits: other sources remain
        return {}
    if audio is None or audio.tags is None:
        return {}
    out: dict[str, str] = {}
    for key, value in audio.tags.items():
        text = value[0] if isinstance(value, list) and value else value
        text = str(text).strip()
        if text:
            out.setdefault(key.lower(), text)
    return out


def load_album_sidecars(files: dict[str, Path]) -> dict[str, dict]:
    """Warzone-style ``album.json`` files → {installed audio path: {title, author, album, date}}."""
    out: dict[str, dict] = {}
    for rel, path in files.items():
        if not rel.endswith("album.json"):
            continue
        album = json.loads(path.read_text(encoding="utf-8"))
        folder = rel.rsplit("/", 1)[0]
        for track in album.get("tracks", []):
            out[f"{folder}/{track['filename']}"] = {
                "title": track.get("title", ""),
                "author": track.get("author") or album.get("author", ""),
                "album": album.get("title", ""),
                "date": album.get("date", ""),
            }
    return out


def upstream_path(spec: PackageSpec, installed: str) -> str:
    for prefix, upstream in spec.upstream:
        if installed.startswith(prefix):
            return upstream + installed[len(prefix):]
    return installed


def title_from_filename(stem: str, artist: str = "") -> str:
    """'hr3-caves' → 'Caves', '01_-_Ezer_Ev' → 'Ezer Ev', 'ingame_05' → 'Ingame 05'."""
    tokens = [t for t in re.split(r"[-_\s]+", stem) if t]
    artist_words = {w.lower() for w in re.split(r"\W+", artist) if len(w) > 2}
    while len(tokens) > 1 and (re.fullmatch(r"\d+|[a-z]{1,3}\d*", tokens[0].lower()) or tokens[0].lower() in artist_words):
        tokens.pop(0)
    words = [t for t in tokens if t.lower() not in artist_words] or tokens
    return " ".join(w if w.isupper() else w.capitalize() for w in words)


def _year(text: str) -> int | None:
    m = re.search(r"\b(19[5-9]\d|20[0-4]\d)\b", text or "")
    return int(m.group(1)) if m else None


def _looks_like_url(text: str) -> bool:
    return bool(re.match(r"^\w+://|^www\.|\.\w{2,3}$", text.strip()))


def is_placeholder_artist(text: str) -> bool:
    """True for credits that name no one: URLs, '<Unknown>', 'unknown artist', empty."""
    t = (text or "").strip()
    return not t or _looks_like_url(t) or bool(re.fullmatch(r"<?\s*(unknown|none|n/a)(\s+artist)?\s*>?", t, re.I))


def url_tokens(text: str) -> list[str]:
    """Identifying words of a URL credit ('www.indiedb.com/members/crystan' → ['crystan', 'indiedb'])."""
    parts = re.split(r"[/.:?=&_\-]+", text.lower())
    generic = {"http", "https", "www", "com", "org", "net", "de", "uk", "members", "users", "music", "html", ""}
    return [p for p in reversed(parts) if p not in generic and len(p) > 2]


def resolve_url_artists(credits: list[Credit]) -> list[Credit]:
    """Replace URL artists by a credited name from the same package containing the URL's identifying word.

    Example: 'www.indiedb.com/members/crystan' → 'Christian "Crystan" Hoffmann' when another file of the
    package credits that name. Unresolved URLs are left to the caller's fallback.
    """
    from dataclasses import replace

    names = [c.artist for c in credits if c.artist and not is_placeholder_artist(c.artist)]
    out = []
    for c in credits:
        if c.artist and _looks_like_url(c.artist):
            match = next((n for tok in url_tokens(c.artist) for n in names if tok in n.lower()), None)
            if match:
                c = replace(c, artist=match)
        out.append(c)
    return out


def credit_for(spec: PackageSpec, installed: str, tags: dict[str, str], dep5: Dep5 | None,
               sidecar: dict | None = None) -> Credit:
    """Assemble the credit of one music file (``installed`` is its package path or archive member)."""
    sidecar = sidecar or {}
    stanza = dep5.lookup(upstream_path(spec, installed)) if dep5 else None
    license_id, origin, holder = None, "", ""
    if stanza is not None:
        license_id = normalize_license(stanza.license)
        origin = f"debian/copyright: Files stanza {' '.join(stanza.patterns[:2])}{' …' if len(stanza.patterns) > 2 else ''}"
        holder = holder_name(stanza.copyright)
        if license_id is None:
            return Credit("", "", "", None, None, origin, holder, "",
                          problem=f"copyright file license {stanza.license!r} is not a known free license")
    elif spec.license:
        license_id, origin = spec.license, "debian/copyright (free-form): curated reading"
    tag_license = normalize_license(tags.get("license", "")) if tags.get("license") else None
    if license_id is None and tag_license:
        license_id, origin = tag_license, "embedded LICENSE tag"
    if license_id is None:
        return Credit("", "", "", None, None, "", holder, "", problem="no license statement covers this file")

    candidates = [tags.get("artist", ""), tags.get("composer", ""), sidecar.get("author", "")]
    # A URL credit is kept for now: resolve_url_artists may map it to a name credited elsewhere in the
    # package; any other placeholder falls through to the copyright holder or the game's contributors.
    artist = next((a for a in candidates if a and not is_placeholder_artist(a)), "") or \
        next((a for a in candidates if a and _looks_like_url(a)), "") or holder or spec.game + " contributors"
    stem = Path(installed.split("!/")[-1]).stem
    title = tags.get("title") or sidecar.get("title") or title_from_filename(stem, artist)
    album = tags.get("album", "")
    if not album or _looks_like_url(album) or album.lower().startswith(("unreleased", "downloaded")):
        album = sidecar.get("album") or f"{spec.game} soundtrack"
    year = _year(tags.get("date", "")) or _year(sidecar.get("date", ""))
    return Credit(title.strip(), artist.strip(), album.strip(), year, license_id, origin, holder, tags.get("genre", ""))


def attribution_line(credit: Credit, spec: PackageSpec) -> str:
    """The one credit line shown with a track (title, author, source, license)."""
    lic = license_info(credit.license)
    parts = [f"“{credit.title}” by {credit.artist}"]
    if credit.copyright and credit.copyright.lower() not in credit.artist.lower():
        parts.append(f"© {credit.copyright}")
    parts.append(f"from {spec.game} (Debian package {spec.deb.name} {spec.deb.version})")
    parts.append(f"licensed {lic.spdx}")
    return ", ".join(parts) + "."


def matches_any(path: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)
