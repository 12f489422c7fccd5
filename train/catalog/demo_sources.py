"""The demo catalog's sources: pinned Debian packages of freely licensed game soundtracks.

Everything here is a maintainer-curated fact, recorded as such in the bundle (``curated_tags`` in
features.parquet, the "curated" notes in CREDITS.md):

* which package versions are used (pinned with the SHA-256 from Debian bookworm's Packages index);
* which files inside each package are music (globs over installed paths; ``archive.pk3!/glob`` for
  files inside a game's zip archive);
* how installed paths map to the upstream paths that the package's DEP-5 copyright file uses;
* the style of each source (e.g. Widelands → folk, medieval), from the games' own descriptions;
* for the few packages whose copyright file is free-form rather than DEP-5, the license it states,
  with the sentence that states it.

Packages were chosen to span orchestral, electronic/ambient, chiptune/pop, folk and metal within a
1.5 GB download; naev-data (350 MB, mostly non-music) and supertuxkart-data (630 MB) were left out
for size, drascula-music because its files are per-language duplicates of one short score.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.catalog.demo_sources is a module of the train package: import it, or use python -m")

from dataclasses import dataclass, field

from talkplay.debsource import DebPackage

MIN_TRACK_SECONDS = 30.0  # shorter files are jingles and stingers, not tracks


@dataclass(frozen=True)
class PackageSpec:
    deb: DebPackage  # the pinned package
    short: str  # prefix of track ids from this package
    game: str  # the game whose soundtrack this is
    audio: tuple[str, ...]  # globs of music files ('*' spans '/'); 'a.pk3!/glob' for archive members
    upstream: tuple[tuple[str, str], ...] = ()  # (installed prefix, upstream prefix) for DEP-5 lookup
    style_tags: tuple[str, ...] = ()  # curated: the source's musical style
    folder_tags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # glob → extra curated tags
    license: str | None = None  # curated SPDX id, only for packages with a free-form copyright file
    license_statement: str = ""  # the copyright file's words that establish ``license``
    exclude: tuple[str, ...] = ()  # globs of files that are not music tracks

    @property
    def copyright_path(self) -> str:
        return f"usr/share/doc/{self.deb.name}/copyright"


PACKAGES: tuple[PackageSpec, ...] = (
    PackageSpec(
        DebPackage("wesnoth-1.16-music", "1:1.16.9-1", "pool/main/w/wesnoth-1.16/wesnoth-1.16-music_1.16.9-1_all.deb",
                   "f9bc3cde92b4ab30db5d7b85f89b4bcc3d788dd92602956d0347250850bf59bb", 153244368),
        short="wesnoth", game="The Battle for Wesnoth",
        audio=("usr/share/games/wesnoth/1.16/data/core/music/*.ogg",),
        style_tags=("orchestral", "fantasy", "cinematic"),
        license="GPL-2.0-or-later",
        license_statement="This program is free software; you can redistribute it and/or modify it under the "
                          "terms of the GNU General Public License version 2 or at your option any later version.",
    ),
    PackageSpec(
        DebPackage("warzone2100-music", "4.3.3-3", "pool/main/w/warzone2100/warzone2100-music_4.3.3-3_all.deb",
                   "d3b2c9f90ea5438d45d4aff18339a03ec808e1affa9dac91f7dad61cb15ee64e", 85730052),
        short="warzone", game="Warzone 2100",
        audio=("usr/share/games/warzone2100/music/*.opus",),
        upstream=(("usr/share/games/warzone2100/", "data/"),),
        style_tags=("sci-fi", "soundtrack"),
        folder_tags={"*/original_soundtrack/*": ("electronic", "techno")},
    ),
    PackageSpec(
        DebPackage("ufoai-music", "2.5-2", "pool/main/u/ufoai-music/ufoai-music_2.5-2_all.deb",
                   "2465d55e9dce75a3a2a1ad1c8ca67da84e251c04e0965d63a8562b2d9f76f9e6", 210239176),
        short="ufoai", game="UFO: Alien Invasion",
        audio=("usr/share/games/ufoai/base/0music.pk3!/music/*.ogg",),
        upstream=(("music/", "base/music/"),),
        style_tags=("orchestral", "sci-fi", "cinematic"),
    ),
    PackageSpec(
        DebPackage("supertux-data", "0.6.3-2", "pool/main/s/supertux/supertux-data_0.6.3-2_all.deb",
                   "a6ad8865972f1dbb5e7b49f4e1b381dd16a68f3028a3502cfeaca2400285d27f", 161647984),
        short="supertux", game="SuperTux",
        audio=("usr/share/games/supertux2/music/*.ogg",),
        upstream=(("usr/share/games/supertux2/", "data/"),),
        style_tags=("chiptune", "pop", "playful"),
        folder_tags={"*/music/retro/*": ("retro", "8-bit")},
    ),
    PackageSpec(
        DebPackage("widelands-data", "2:1.1-3", "pool/main/w/widelands/widelands-data_1.1-3_all.deb",
                   "0e23d645b15bcfb9e3bcae0de9bc1bdfa75a6ecb36b2e449759d6eb0b4bbd8fb", 381353540),
        short="widelands", game="Widelands",
        audio=("usr/share/games/widelands/data/music/*.ogg",),
        upstream=(("usr/share/games/widelands/", ""),),
        style_tags=("folk", "medieval", "acoustic"),
    ),
    PackageSpec(
        DebPackage("colobot-common-sounds", "0.2.0-2", "pool/main/c/colobot/colobot-common-sounds_0.2.0-2_all.deb",
                   "819e799542eac69c95b072567b5584eb3e0b2bb900de13efa3684915747b1644", 60668912),
        short="colobot", game="Colobot: Gold Edition",
        audio=("usr/share/games/colobot/music/*.ogg",),
        upstream=(("usr/share/games/colobot/", "data/"),),
        style_tags=("electronic", "sci-fi"),
    ),
    PackageSpec(
        DebPackage("nexuiz-music", "2.5.2-12", "pool/main/n/nexuiz-data/nexuiz-music_2.5.2-12_all.deb",
                   "d1a7d6e2c0a5bbe6670dbf73354e38f742597310d425e373250fc71a636f8dda", 84012080),
        short="nexuiz", game="Nexuiz",
        audio=("usr/share/games/nexuiz/data/music.pk3!/sound/cdtracks/*.ogg",),
        style_tags=("electronic", "techno", "action"),
        license="GPL-2.0-or-later",
        license_statement="This program is free software; you can redistribute it and/or modify it under the "
                          "terms of the GNU General Public License as published by the Free Software Foundation; "
                          "either version 2 of the License, or (at your option) any later version.",
    ),
    PackageSpec(
        DebPackage("hyperrogue-music", "12.0q-1", "pool/main/h/hyperrogue/hyperrogue-music_12.0q-1_all.deb",
                   "61ab9f4c2169442d85f42c42d26e80c1a18b93c741f3d44f1b9d83015904e7f7", 63836788),
        short="hyperrogue", game="HyperRogue",
        audio=("usr/share/hyperrogue/music/*.ogg",),
        upstream=(("usr/share/hyperrogue/", ""),),
        style_tags=("atmospheric", "exploration"),
    ),
    PackageSpec(
        DebPackage("singularity-music", "007-2", "pool/main/s/singularity-music/singularity-music_007-2_all.deb",
                   "139ba1e408eeb0a72f1fff3760ca46558b9f81bed97dc8c0efa108c4007f4845", 51636048),
        short="singularity", game="Endgame: Singularity",
        audio=("usr/share/games/singularity/music/*.ogg",),
        style_tags=("electronic", "ambient"),
        license="CC-BY-SA-3.0",
        license_statement="Copyright (C) 2007-2008,2012 Max McCracken … THE WORK IS PROVIDED UNDER THE TERMS OF "
                          "THIS CREATIVE COMMONS PUBLIC LICENSE (Attribution-ShareAlike 3.0; the files' LICENSE "
                          "tags name creativecommons.org/licenses/by-sa/3.0/).",
    ),
    PackageSpec(
        DebPackage("marsshooter-data", "0.7.6-7", "pool/main/m/marsshooter/marsshooter-data_0.7.6-7_all.deb",
                   "b8d040a9739434f2be96bbf9b38f0743d56d59b853647b2242f9357e38394951", 68377444),
        short="mars", game="M.A.R.S.",
        audio=("usr/share/games/marsshooter/audio/music/*.ogg", "usr/share/games/marsshooter/audio/menu.ogg",
               "usr/share/games/marsshooter/audio/tutorial.ogg"),
        upstream=(("usr/share/games/marsshooter/", "data/"),),
        style_tags=("metal", "rock"),
    ),
)


def spec_for(package: str) -> PackageSpec:
    for spec in PACKAGES:
        if spec.deb.name == package:
            return spec
    raise KeyError(f"no demo source named {package!r}")


def total_download_bytes(specs=PACKAGES) -> int:
    return sum(s.deb.size for s in specs)
