"""The app: builds from a fixture catalog, serves the page and previews, and nothing outside them."""

import os
import socket
import urllib.error
import urllib.request

import pytest

os.environ["TALKPLAY_NO_AUTOLOAD"] = "1"  # importing app must not load the demo catalog

import app  # noqa: E402
from talkplay.browse import CatalogBrowser  # noqa: E402
from talkplay.catalog import Track, save_catalog  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


@pytest.fixture
def served(tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    (bundle / "previews").mkdir(parents=True)
    (bundle / "previews" / "a.mp3").write_bytes(b"ID3fake")
    (tmp_path / "secret.txt").write_text("do not serve")
    save_catalog(bundle, [Track(track_id="a", title="Alpha", artist="Ann", license="CC0-1.0", attribution="c",
                                source="user", preview_path="previews/a.mp3")])
    from talkplay.catalog import load_catalog

    demo = app.build_demo(CatalogBrowser(load_catalog(bundle)))
    port = free_port()
    monkeypatch.setenv("TALKPLAY_PORT", str(port))
    demo.launch(**app.launch_kwargs(bundle), prevent_thread_lock=True, quiet=True)  # the app's own settings
    yield f"http://127.0.0.1:{port}", bundle, tmp_path
    demo.close()


def test_page_and_file_access(served):
    base, bundle, tmp_path = served
    status, body = get(base + "/")
    assert status == 200 and b"TalkPlay" in body
    status, body = get(f"{base}/gradio_api/file={bundle / 'previews' / 'a.mp3'}")
    assert status == 200 and body == b"ID3fake"
    status, _ = get(f"{base}/gradio_api/file={tmp_path / 'secret.txt'}")
    assert status in (403, 404)
    status, _ = get(f"{base}/gradio_api/file=/etc/passwd")
    assert status in (403, 404)
