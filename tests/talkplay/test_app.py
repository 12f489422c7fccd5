"""The app served on a loopback port with the tiny fixture engine: page and previews served, nothing else;
and a real browser (Debian's Chromium driven by Playwright) chatting, hearing a preview and liking it."""

import os
import shutil
import socket
import urllib.error
import urllib.request

import pytest

os.environ["TALKPLAY_NO_AUTOLOAD"] = "1"  # importing app must not load the demo catalog or model

import app  # noqa: E402
from talkplay.browse import CatalogBrowser  # noqa: E402
from talkplay.feedback import FeedbackStore  # noqa: E402
from tests.talkplay.test_chat_session import app_world  # noqa: E402,F401  (fixture)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
def served(app_world, tmp_path, monkeypatch):  # noqa: F811
    bundle = app_world["bundle"]
    (tmp_path / "secret.txt").write_text("do not serve")
    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    demo = app.build_demo(app_world["rec"], store, CatalogBrowser(app_world["catalog"]), "m1", "c1")
    port = free_port()
    monkeypatch.setenv("TALKPLAY_PORT", str(port))
    demo.queue(**app.queue_kwargs()).launch(**app.launch_kwargs(bundle), prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}", bundle, tmp_path, store
    demo.close()
    store.close()


def test_page_and_file_access(served):
    base, bundle, tmp_path, _ = served
    status, body = get(base + "/")
    assert status == 200 and b"TalkPlay" in body
    wav = (bundle / "previews" / "t0.wav").read_bytes()
    status, body = get(f"{base}/gradio_api/file={bundle / 'previews' / 't0.wav'}")
    assert status == 200 and body == wav
    status, _ = get(f"{base}/gradio_api/file={tmp_path / 'secret.txt'}")
    assert status in (403, 404)
    status, _ = get(f"{base}/gradio_api/file=/etc/passwd")
    assert status in (403, 404)
    # nothing else is readable: the bundle's other files, the app's source, the feedback database,
    # relative escapes out of the previews folder, encoded traversal
    for path in (bundle / "tracks.parquet", os.path.join(REPO, "app.py"), store_path(served),
                 f"{bundle / 'previews'}/../tracks.parquet", f"{bundle / 'previews'}/%2e%2e/tracks.parquet",
                 "previews/../../../../etc/passwd", "~/.bashrc", "/proc/self/environ"):
        status, _ = get(f"{base}/gradio_api/file={path}")
        assert status in (403, 404), (path, status)
        status, _ = get(f"{base}/file={path}")
        assert status in (403, 404), (path, status)


def test_uploads_are_capped(served):
    base = served[0]
    body = b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.bin\"\r\n\r\n" + \
        b"0" * 200_000 + b"\r\n--x--\r\n"
    request = urllib.request.Request(f"{base}/gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=x"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=20)
    assert err.value.code in (400, 413)


def store_path(served) -> str:
    return str(served[3].path)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Debian's chromium is not installed: `bash setup.sh test` installs it (apt-get install chromium)")
    return path


def test_browser_chat_preview_and_like(served):
    from playwright.sync_api import expect, sync_playwright

    base, _, tmp_path, store = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        responses = []
        page.on("response", lambda r: responses.append((r.url, r.status)))
        page.goto(base + "/")
        page.locator("#request textarea").fill("play me some calm jazz please")
        page.locator("#send").click()
        bot = page.locator("#chat .message.bot, #chat [data-testid='bot']").last
        expect(bot).to_contain_text("♪ Song", timeout=120_000)
        expect(page.locator("#track-card")).to_contain_text("Why this track", timeout=90_000)
        # Gradio's waveform player fetches the file and plays it from a blob in an <audio> inside a
        # shadow root: find that element and require that its source loaded (metadata, duration).
        loaded = ("() => { const found = []; const walk = (root) => root.querySelectorAll('*').forEach(el => {"
                  " if (el.tagName === 'AUDIO' && el.readyState >= 1 && el.duration > 0.5) found.push(el.duration);"
                  " if (el.shadowRoot) walk(el.shadowRoot); }); walk(document.querySelector('#now-playing'));"
                  " return found.length ? found[0] : null; }")
        page.wait_for_function(loaded, timeout=90_000)
        assert abs(page.evaluate(loaded) - 4.0) < 0.05  # the 4-s fixture preview
        assert any("/gradio_api/file=" in u and u.endswith(".wav") for u, status in responses if status == 200)
        page.locator("#like-track").click()
        expect(page.locator("#feedback-status")).to_contain_text("feedback saved", timeout=90_000)
        page.locator("#stars label").filter(has_text="5").click()
        expect(page.locator("#feedback-status")).to_contain_text("rating 5/5", timeout=90_000)
        page.locator("#chat button[aria-label='Like']").last.click()  # the reply's own thumbs-up
        expect(page.locator("#feedback-status")).to_contain_text("like of reply 1", timeout=90_000)
        # hostile markup in the listener's text and in catalog metadata (the fixture albums) stays text
        page.locator("#request textarea").fill('<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>')
        page.locator("#send").click()
        expect(page.locator("#chat")).to_contain_text("window.__pwned=2", timeout=90_000)
        expect(page.locator("#chat [data-testid='bot']")).to_have_count(2, timeout=120_000)  # one per reply
        expect(page.locator("#chat [data-testid='bot']").last).to_contain_text("♪ Song", timeout=120_000)
        page.get_by_role("tab", name="Browse catalog").click()
        expect(page.get_by_text("Album 1").first).to_be_visible(timeout=30_000)
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator("img[src='x']").count() == 0
        page.get_by_role("tab", name="Chat").click()
        if not os.environ.get("CI"):  # for a human look; git-ignored
            page.screenshot(path=os.path.join(REPO, "reports", "app_test.png"), full_page=True)
        browser.close()
    store.flush()
    rows = store.rows()
    kinds = [(r["kind"], r["value"]) for r in rows]
    assert ("like_track", "1") in kinds and ("rating", "5") in kinds and ("like_reply", "1") in kinds
    assert all(r["user_message"] == "play me some calm jazz please" and r["track_id"].startswith("t") for r in rows)


AUDIO_STATE = ("() => { const found = []; const walk = (root) => root.querySelectorAll('*').forEach(el => {"
               " if (el.tagName === 'AUDIO' && el.readyState >= 1) found.push({src: el.currentSrc, t: el.currentTime,"
               " paused: el.paused, played: el.played.length}); if (el.shadowRoot) walk(el.shadowRoot); });"
               " walk(document.querySelector('#now-playing')); return found; }")


def test_browser_player_and_widgets_follow_each_track(served):
    """Autoplay off by default and working when ticked; each new preview starts at 0:00; the rating, comment
    and status of the previous track are cleared by a new track and by a new conversation."""
    from playwright.sync_api import expect, sync_playwright

    base = served[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(),
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(base + "/")
        expect(page.locator("#autoplay")).to_contain_text("off by default")
        assert not page.locator("#autoplay input").is_checked()

        def ask(text: str, n_bot: int) -> None:
            page.locator("#request textarea").fill(text)
            page.locator("#send").click()
            expect(page.locator("#chat [data-testid='bot']")).to_have_count(n_bot, timeout=120_000)
            expect(page.locator("#chat [data-testid='bot']").last).to_contain_text("♪ Song", timeout=120_000)

        ask("play me some calm jazz please", 1)
        page.wait_for_function(f"() => ({AUDIO_STATE})().length > 0", timeout=90_000)
        first = page.evaluate(AUDIO_STATE)[-1]
        assert first["paused"] and first["t"] < 0.05  # autoplay off: waits at 0:00
        page.evaluate("() => { const walk = (root) => root.querySelectorAll('*').forEach(el => {"
                      " if (el.tagName === 'AUDIO') el.currentTime = 2.5; if (el.shadowRoot) walk(el.shadowRoot); });"
                      " walk(document.querySelector('#now-playing')); }")  # the listener heard part of it
        page.locator("#stars label").filter(has_text="4").click()
        expect(page.locator("#feedback-status")).to_contain_text("rating 4/5", timeout=60_000)
        page.locator("#comment textarea").fill("nice but too slow")

        page.locator("#autoplay input").check()
        ask("something upbeat for running", 2)
        # the new preview plays, from the start (not from 2.5 s where the last one was left)
        page.wait_for_function(f"() => ({AUDIO_STATE})().some(a => a.src !== {first['src']!r} && a.played > 0)",
                               timeout=30_000)
        now = [a for a in page.evaluate(AUDIO_STATE) if a["src"] != first["src"]][-1]
        assert now["t"] < 2.0, now
        expect(page.locator("#feedback-status")).to_have_text("", timeout=10_000)
        assert page.locator("#comment textarea").input_value() == ""
        assert page.locator("#stars input:checked").count() == 0, page.locator("#stars").inner_html()[:1500]

        page.locator("#stars label").filter(has_text="5").click()
        expect(page.locator("#feedback-status")).to_contain_text("rating 5/5", timeout=60_000)
        page.locator("#new-conversation").click()
        expect(page.locator("#feedback-status")).to_have_text("", timeout=10_000)
        assert page.locator("#stars input:checked").count() == 0
        browser.close()


def test_launch_address_follows_the_space(monkeypatch, tmp_path):
    """A Space's proxy reaches the app on 0.0.0.0:$GRADIO_SERVER_PORT; a laptop serves loopback only."""
    for name in ("TALKPLAY_HOST", "TALKPLAY_PORT", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    assert (app.launch_kwargs(tmp_path)["server_name"], app.launch_kwargs(tmp_path)["server_port"]) == ("127.0.0.1", 7860)
    monkeypatch.setenv("SPACE_ID", "user/talkplay")
    assert app.launch_kwargs(tmp_path)["server_name"] == "0.0.0.0"
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    assert app.launch_kwargs(tmp_path)["server_port"] == 7861
    monkeypatch.setenv("TALKPLAY_HOST", "127.0.0.1")
    monkeypatch.setenv("TALKPLAY_PORT", "7999")
    assert (app.launch_kwargs(tmp_path)["server_name"], app.launch_kwargs(tmp_path)["server_port"]) == ("127.0.0.1", 7999)


def test_page_says_when_the_base_check_is_overridden_and_shows_preview_progress(app_world, monkeypatch):  # noqa: F811
    from talkplay.previews import PreviewProgress

    def shown(demo, elem_id):
        return [b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id]

    monkeypatch.delenv("TALKPLAY_ALLOW_OTHER_BASE", raising=False)
    plain = app.build_demo(app_world["rec"], None, CatalogBrowser(app_world["catalog"]))
    assert shown(plain, "other-base-warning") == [] and shown(plain, "previews-status") == []
    monkeypatch.setenv("TALKPLAY_ALLOW_OTHER_BASE", "1")
    demo = app.build_demo(app_world["rec"], None, CatalogBrowser(app_world["catalog"]), previews=PreviewProgress())
    assert "TALKPLAY_ALLOW_OTHER_BASE=1" in shown(demo, "other-base-warning")[0]
    assert shown(demo, "previews-status") == ["⏳ Preparing previews …"]


def test_one_cap_on_turns_whatever_the_event(app_world, tmp_path, monkeypatch):  # noqa: F811
    """TALKPLAY_CONCURRENCY=2 with sends and skips from six API sessions at once: never more than two turns
    generate at the same time (and two do: the cap is shared, not one per event)."""
    import threading
    import time

    from gradio_client import Client

    class Counting:  # the fixture engine, holding each turn long enough to overlap
        def __init__(self, rec):
            self.rec, self.generation, self.running, self.peak = rec, rec.generation, 0, 0
            self.lock = threading.Lock()

        def respond(self, *args, **kwargs):
            with self.lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
            try:
                for event in self.rec.respond(*args, **kwargs):
                    time.sleep(0.15)
                    yield event
            finally:
                with self.lock:
                    self.running -= 1

    engine = Counting(app_world["rec"])
    monkeypatch.setenv("TALKPLAY_CONCURRENCY", "2")
    monkeypatch.setenv("TALKPLAY_TURNS_PER_MINUTE", "100")
    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    demo = app.build_demo(engine, store, CatalogBrowser(app_world["catalog"]), "m1", "c1")
    port = free_port()
    monkeypatch.setenv("TALKPLAY_PORT", str(port))
    demo.queue(**app.queue_kwargs()).launch(**app.launch_kwargs(app_world["bundle"]), prevent_thread_lock=True,
                                            quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        errors = []

        def session(i):
            try:
                client = Client(url, verbose=False, download_files=False)
                if i % 2:
                    client.predict(1.0, 0.9, "constrained", api_name="/skip")
                else:
                    client.predict(f"calm piano {i}", 1.0, 0.9, "constrained", api_name="/send")
            except Exception as err:  # noqa: BLE001
                errors.append(err)

        threads = [threading.Thread(target=session, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors
        assert engine.peak == 2
    finally:
        demo.close()
        store.close()
