"""The licenses a catalog track may carry, and how free-form license names map onto them.

A catalog is only redistributable if every track's license is known, so the loader accepts a closed
set of SPDX identifiers (plus ``LicenseRef-`` ids that a catalog owner declares on purpose), and
importers translate the spellings found in the wild ("GPL-2+", "CC-BY-SA 3.0", a Creative Commons
URL) into those identifiers before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class License:
    spdx: str  # SPDX identifier stored in the catalog
    name: str  # human-readable name shown in cards and CREDITS.md
    url: str  # canonical text of the license
    attribution_required: bool  # whether the credit line is a legal condition, not just courtesy


_GNU = "https://www.gnu.org/licenses/"
_CC = "https://creativecommons.org/licenses/"

LICENSES: dict[str, License] = {
    lic.spdx: lic
    for lic in [
        License("CC0-1.0", "CC0 1.0 Universal (public domain dedication)", "https://creativecommons.org/publicdomain/zero/1.0/", False),
        License("LicenseRef-PublicDomain", "Public domain", "https://en.wikipedia.org/wiki/Public_domain", False),
        License("CC-BY-3.0", "Creative Commons Attribution 3.0", _CC + "by/3.0/", True),
        License("CC-BY-4.0", "Creative Commons Attribution 4.0", _CC + "by/4.0/", True),
        License("CC-BY-SA-3.0", "Creative Commons Attribution-ShareAlike 3.0", _CC + "by-sa/3.0/", True),
        License("CC-BY-SA-4.0", "Creative Commons Attribution-ShareAlike 4.0", _CC + "by-sa/4.0/", True),
        License("GPL-2.0-only", "GNU General Public License v2.0 only", _GNU + "old-licenses/gpl-2.0.html", True),
        License("GPL-2.0-or-later", "GNU General Public License v2.0 or later", _GNU + "old-licenses/gpl-2.0.html", True),
        License("GPL-3.0-only", "GNU General Public License v3.0 only", _GNU + "gpl-3.0.html", True),
        License("GPL-3.0-or-later", "GNU General Public License v3.0 or later", _GNU + "gpl-3.0.html", True),
        License("LGPL-2.0-or-later", "GNU Library General Public License v2 or later", _GNU + "old-licenses/lgpl-2.0.html", True),
        License("LGPL-2.1-only", "GNU Lesser General Public License v2.1 only", _GNU + "old-licenses/lgpl-2.1.html", True),
        License("LGPL-2.1-or-later", "GNU Lesser General Public License v2.1 or later", _GNU + "old-licenses/lgpl-2.1.html", True),
        License("LGPL-3.0-only", "GNU Lesser General Public License v3.0 only", _GNU + "lgpl-3.0.html", True),
        License("LGPL-3.0-or-later", "GNU Lesser General Public License v3.0 or later", _GNU + "lgpl-3.0.html", True),
        License("MIT", "MIT License", "https://opensource.org/license/mit", True),
        License("BSD-3-Clause", "BSD 3-Clause License", "https://opensource.org/license/bsd-3-clause", True),
        License("Artistic-2.0", "Artistic License 2.0", "https://opensource.org/license/artistic-2-0", True),
    ]
}

# Catalog owners with rights of their own (a label's private catalog) mark them LicenseRef-<Name>;
# the prefix is SPDX's own convention for licenses outside its list.
_LICENSE_REF = re.compile(r"^LicenseRef-[A-Za-z0-9.\-]+$")

# Spellings seen in Debian copyright files, Vorbis tags and user CSVs, lower-cased, spaces and
# underscores folded to '-'. Ambiguous spellings ("GPL" with no version) are deliberately absent:
# guessing a version would misstate the license.
_ALIASES = {
    "gpl-2+": "GPL-2.0-or-later",
    "gplv2+": "GPL-2.0-or-later",
    "gpl-2.0+": "GPL-2.0-or-later",
    "gpl2+": "GPL-2.0-or-later",
    "gpl-2": "GPL-2.0-only",
    "gplv2": "GPL-2.0-only",
    "gpl-3+": "GPL-3.0-or-later",
    "gplv3+": "GPL-3.0-or-later",
    "gpl-3.0+": "GPL-3.0-or-later",
    "gpl-3": "GPL-3.0-only",
    "gplv3": "GPL-3.0-only",
    "gpl-2.0": "GPL-2.0-only",  # deprecated SPDX spellings, which meant "only"
    "gpl-3.0": "GPL-3.0-only",
    "lgpl-2+": "LGPL-2.0-or-later",
    "lgpl-2.0+": "LGPL-2.0-or-later",
    "lgpl-2.1": "LGPL-2.1-only",
    "lgpl-2.1+": "LGPL-2.1-or-later",
    "lgpl-3": "LGPL-3.0-only",
    "lgpl-3.0": "LGPL-3.0-only",
    "lgpl-3+": "LGPL-3.0-or-later",
    "lgpl-3.0+": "LGPL-3.0-or-later",
    "cc-by-3.0": "CC-BY-3.0",
    "cc-by-3": "CC-BY-3.0",
    "cc-by-4.0": "CC-BY-4.0",
    "cc-by-4": "CC-BY-4.0",
    "cc-by-sa-3.0": "CC-BY-SA-3.0",
    "cc-by-sa-3": "CC-BY-SA-3.0",
    "cc-by-sa-4.0": "CC-BY-SA-4.0",
    "cc-by-sa-4": "CC-BY-SA-4.0",
    "cc0": "CC0-1.0",
    "cc0-1.0": "CC0-1.0",
    "public-domain": "LicenseRef-PublicDomain",
    "publicdomain": "LicenseRef-PublicDomain",
    "pd": "LicenseRef-PublicDomain",
    "expat": "MIT",
    "mit": "MIT",
    "bsd-3-clause": "BSD-3-Clause",
}

_CC_URL = re.compile(r"creativecommons\.org/(licenses|publicdomain)/([a-z\-]+)/(\d\.\d)", re.I)


def is_known_license(spdx: str) -> bool:
    """True if ``spdx`` may be stored in a catalog (listed above or a deliberate LicenseRef-)."""
    return spdx in LICENSES or bool(_LICENSE_REF.match(spdx))


def normalize_license(text: str) -> str | None:
    """Map a free-form license name or URL to a catalog license id, or None when unsure.

    Args:
        text: e.g. "GPL-2+", "CC-BY-SA 3.0", "http://creativecommons.org/licenses/by/3.0/".
    Returns:
        The SPDX id (or ``LicenseRef-…``) or None if the text does not name one license unambiguously.
    """
    raw = (text or "").strip()
    if not raw:
        return None
    if is_known_license(raw):
        return raw
    url = _CC_URL.search(raw)
    if url:
        kind, version = url.group(2).lower(), url.group(3)
        if kind == "zero":
            return "CC0-1.0"
        candidate = f"CC-{kind.upper()}-{version}"
        return candidate if candidate in LICENSES else None
    key = re.sub(r"[\s_]+", "-", raw.lower())
    key = key.replace("cc-by-sa-3.0-unported", "cc-by-sa-3.0").replace("cc-by-3.0-unported", "cc-by-3.0")
    if key in _ALIASES:
        return _ALIASES[key]
    for spdx in LICENSES:
        if spdx.lower() == key:
            return spdx
    return None


def license_info(spdx: str) -> License:
    """Details for a stored license id; LicenseRef- ids get a generic record."""
    if spdx in LICENSES:
        return LICENSES[spdx]
    if _LICENSE_REF.match(spdx):
        return License(spdx, spdx.removeprefix("LicenseRef-").replace("-", " "), "", True)
    raise KeyError(f"unknown license id {spdx!r}")
