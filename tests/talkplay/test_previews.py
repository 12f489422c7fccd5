"""The user's setup path end to end: a pinned .deb from a (file://) mirror → verified → unpacked → previews.

A tiny Debian package is built in the fixture (ar archive holding data.tar.xz with an Ogg file and a
zip archive), so the real download, checksum, unpacking and cutting code runs without a network.
"""

import hashlib
import io
import json
import tarfile
import zipfile

import numpy as np
import pytest
import soundfile as sf

from talkplay.catalog import Track, load_catalog, save_catalog
from talkplay.debsource import DebPackage, DebSource, SourceError, extract_from_deb, fetch_deb, sha256_file
from talkplay.previews import cut_preview, prepare_previews


def ogg_bytes(seconds: float, freq: float, sr: int = 22050) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="OGG", subtype="VORBIS")
    return buf.getvalue()


def ar_archive(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out.write(header + data + (b"\n" if len(data) % 2 else b""))
    return out.getvalue()


def tar_xz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def fake_package(tmp_path):
    song = ogg_bytes(45.0, 330.0)
    pk3 = io.BytesIO()
    with zipfile.ZipFile(pk3, "w") as z:
        z.writestr("music/inner.ogg", ogg_bytes(35.0, 440.0))
    data = tar_xz({"usr/share/games/fake/music/song.ogg": song, "usr/share/games/fake/music.pk3": pk3.getvalue(),
                   "usr/share/doc/fake-music/copyright": b"Files: *\nLicense: CC0-1.0\n"})
    deb = ar_archive({"debian-binary": b"2.0\n", "control.tar.xz": tar_xz({"control": b"Package: fake\n"}),
                      "data.tar.xz": data})
    mirror = tmp_path / "mirror"
    (mirror / "pool/main/f").mkdir(parents=True)
    (mirror / "pool/main/f/fake-music_1.0-1_all.deb").write_bytes(deb)
    pkg = DebPackage("talkplay-test-fake-music", "1.0-1", "pool/main/f/fake-music_1.0-1_all.deb",
                     hashlib.sha256(deb).hexdigest(), len(deb))
    inner_sha = hashlib.sha256(zipfile.ZipFile(io.BytesIO(pk3.getvalue())).read("music/inner.ogg")).hexdigest()
    return pkg, mirror, hashlib.sha256(song).hexdigest(), inner_sha


def test_source_uri_round_trip():
    uri = "deb://ufoai-music/2.5-2/usr/share/games/ufoai/base/0music.pk3!/music/a.ogg"
    src = DebSource.parse(uri)
    assert (src.package, src.version, src.member) == ("ufoai-music", "2.5-2", "music/a.ogg") and src.uri == uri
    with pytest.raises(SourceError):
        DebSource.parse("deb://only-name")


def test_fetch_verifies_checksum_and_unpacks(fake_package, tmp_path):
    pkg, mirror, song_sha, _ = fake_package
    deb = fetch_deb(pkg, tmp_path / "cache", mirror=mirror.as_uri())
    assert sha256_file(deb) == pkg.sha256
    got = extract_from_deb(deb, {"usr/share/games/fake/music/song.ogg"}, tmp_path / "x")
    assert sha256_file(got["usr/share/games/fake/music/song.ogg"]) == song_sha
    with pytest.raises(SourceError, match="missing file"):
        extract_from_deb(deb, {"usr/share/nothing.ogg"}, tmp_path / "x")
    bad = DebPackage(pkg.name, pkg.version, pkg.pool_path, "0" * 64, pkg.size)
    with pytest.raises(SourceError, match="does not match the pinned"):
        fetch_deb(bad, tmp_path / "cache2", mirror=mirror.as_uri())
    assert not list((tmp_path / "cache2").glob("*.deb"))  # a bad download is not kept


def test_cut_preview_length_and_loudness(tmp_path):
    src = tmp_path / "a.ogg"
    src.write_bytes(ogg_bytes(60.0, 220.0))
    out = cut_preview(src, 12.0, 30.0, tmp_path / "p.mp3")
    y, sr = sf.read(out)
    assert abs(len(y) / sr - 30.0) < 0.1
    assert np.max(np.abs(y)) <= 10 ** (-1.0 / 20) + 0.02  # peak ceiling with MP3 overshoot margin


def test_prepare_previews_end_to_end(fake_package, tmp_path, monkeypatch):
    pkg, mirror, song_sha, inner_sha = fake_package
    monkeypatch.setenv("TALKPLAY_DEBIAN_MIRROR", mirror.as_uri())
    bundle = tmp_path / "bundle"
    common = dict(artist="Tester", license="CC0-1.0", attribution="test", preview_duration_s=30.0)
    tracks = [
        Track(track_id="fake-song", title="Song", source=f"deb://{pkg.name}/{pkg.version}/usr/share/games/fake/music/song.ogg",
              preview_path="previews/fake-song.mp3", source_sha256=song_sha, preview_start_s=10.0, **common),
        Track(track_id="fake-inner", title="Inner",
              source=f"deb://{pkg.name}/{pkg.version}/usr/share/games/fake/music.pk3!/music/inner.ogg",
              preview_path="previews/fake-inner.mp3", source_sha256=inner_sha, preview_start_s=0.0, **common),
    ]
    save_catalog(bundle, tracks)
    (bundle / "sources.json").write_text(json.dumps({"packages": [
        {"name": pkg.name, "version": pkg.version, "pool_path": pkg.pool_path, "sha256": pkg.sha256, "size": pkg.size}]}))
    from talkplay.previews import PreviewProgress

    seen = []
    watch = PreviewProgress()
    watch.update = lambda report, total, _up=watch.update: (seen.append((report.ready + report.cut, total)),
                                                            _up(report, total))
    assert watch.line() == "⏳ Preparing previews …"
    report = prepare_previews(bundle, cache_dir=tmp_path / "cache", progress=watch)
    assert report.ok and report.cut == 2 and report.downloaded_bytes == pkg.size
    assert seen == [(0, 2), (1, 2), (2, 2)]  # the page's line counts up, track by track
    assert watch.line().startswith("⏳ Preparing previews 2/2")
    watch.finish()
    assert watch.line() == "✅ All 2 previews ready."
    cat = load_catalog(bundle)
    assert all(cat.preview_file(t) is not None for t in cat)
    assert not list((tmp_path / "cache" / "debs").glob("*.deb"))  # downloads are removed by default
    again = prepare_previews(bundle, cache_dir=tmp_path / "cache", progress=False)
    assert (again.ready, again.cut, again.downloaded_bytes) == (2, 0, 0)  # idempotent: nothing re-fetched


def test_prepare_previews_reports_checksum_mismatch(fake_package, tmp_path, monkeypatch):
    pkg, mirror, _, _ = fake_package
    monkeypatch.setenv("TALKPLAY_DEBIAN_MIRROR", mirror.as_uri())
    bundle = tmp_path / "bundle"
    save_catalog(bundle, [Track(track_id="x", title="X", artist="A", license="CC0-1.0", attribution="t",
                                source=f"deb://{pkg.name}/{pkg.version}/usr/share/games/fake/music/song.ogg",
                                preview_path="previews/x.mp3", source_sha256="f" * 64, preview_start_s=0.0)])
    (bundle / "sources.json").write_text(json.dumps({"packages": [
        {"name": pkg.name, "version": pkg.version, "pool_path": pkg.pool_path, "sha256": pkg.sha256, "size": pkg.size}]}))
    from talkplay.previews import PreviewProgress

    watch = PreviewProgress()
    report = prepare_previews(bundle, cache_dir=tmp_path / "cache", progress=watch)
    assert not report.ok and "checksum" in report.failed["x"]
    watch.finish()
    assert watch.line().startswith("⚠️ 0/1 previews ready; 1 could not be prepared")
    assert not (bundle / "previews" / "x.mp3").exists()


def _bundle_with(pkg, tmp_path, start=10.0, sha=None, song_sha=None):
    bundle = tmp_path / "bundle"
    save_catalog(bundle, [Track(track_id="fake-song", title="Song", artist="T", license="CC0-1.0", attribution="t",
                                source=f"deb://{pkg.name}/{pkg.version}/usr/share/games/fake/music/song.ogg",
                                preview_path="previews/fake-song.mp3", source_sha256=sha or song_sha,
                                preview_start_s=start, preview_duration_s=30.0)])
    (bundle / "sources.json").write_text(json.dumps({"packages": [
        {"name": pkg.name, "version": pkg.version, "pool_path": pkg.pool_path, "sha256": pkg.sha256, "size": pkg.size}]}))
    return bundle


def test_changed_section_is_recut(fake_package, tmp_path, monkeypatch):
    pkg, mirror, song_sha, _ = fake_package
    monkeypatch.setenv("TALKPLAY_DEBIAN_MIRROR", mirror.as_uri())
    bundle = _bundle_with(pkg, tmp_path, start=10.0, song_sha=song_sha)
    assert prepare_previews(bundle, cache_dir=tmp_path / "c", progress=False).cut == 1
    _bundle_with(pkg, tmp_path, start=5.0, song_sha=song_sha)  # the catalog now names another section
    again = prepare_previews(bundle, cache_dir=tmp_path / "c", progress=False)
    assert (again.ready, again.cut) == (0, 1)


def test_failed_checksum_is_remembered_not_refetched(fake_package, tmp_path, monkeypatch):
    pkg, mirror, _, _ = fake_package
    monkeypatch.setenv("TALKPLAY_DEBIAN_MIRROR", mirror.as_uri())
    bundle = _bundle_with(pkg, tmp_path, sha="e" * 64)
    first = prepare_previews(bundle, cache_dir=tmp_path / "c", progress=False)
    assert "checksum" in first.failed["fake-song"]
    second = prepare_previews(bundle, cache_dir=tmp_path / "c", progress=False)
    assert second.downloaded_bytes == 0 and "fake-song" in second.skipped and not second.failed


def test_complete_part_file_is_used_and_corrupt_one_replaced(fake_package, tmp_path):
    pkg, mirror, _, _ = fake_package
    cache = tmp_path / "cache"
    cache.mkdir()
    deb_bytes = (mirror / pkg.pool_path).read_bytes()
    (cache / (pkg.filename + ".part")).write_bytes(deb_bytes)
    # an unreachable mirror proves nothing is downloaded: the complete .part is verified and renamed
    assert sha256_file(fetch_deb(pkg, cache, mirror="http://127.0.0.1:9")) == pkg.sha256
    (cache / pkg.filename).unlink()
    (cache / (pkg.filename + ".part")).write_bytes(b"x" * pkg.size)  # same size, wrong bytes
    assert sha256_file(fetch_deb(pkg, cache, mirror=mirror.as_uri())) == pkg.sha256


def test_network_error_is_a_source_error(fake_package, tmp_path):
    pkg, _, _, _ = fake_package
    with pytest.raises(SourceError, match="run again to resume"):
        fetch_deb(pkg, tmp_path / "cache", mirror="http://127.0.0.1:9")


def test_unsafe_member_names_are_refused(tmp_path):
    from talkplay.debsource import extract_member

    data = tar_xz({"../evil.ogg": b"x", "usr/share/ok.ogg": b"y"})
    deb = tmp_path / "p.deb"
    deb.write_bytes(ar_archive({"debian-binary": b"2.0\n", "data.tar.xz": data}))
    got = extract_from_deb(deb, lambda p: True, tmp_path / "out")
    assert list(got) == ["usr/share/ok.ogg"] and not (tmp_path / "evil.ogg").exists()
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../x.ogg", b"x")
    with pytest.raises(SourceError, match="unsafe member"):
        extract_member(z, "../../x.ogg", tmp_path / "m" / "x.ogg")
