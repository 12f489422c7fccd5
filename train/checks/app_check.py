"""End-to-end check of the real app with the demo model, and the screenshot ``reports/app.png``.

    python -m train.checks.app_check [--port 7860] [--start]     # needs chromium and prepared previews

With ``--start`` it launches ``python app.py`` itself (a fresh feedback database under a temporary
directory); otherwise it talks to an app already running at ``--port``. In Chromium (Playwright) it asks
for "upbeat chiptune for a road trip", waits for the preview to load and the reply to finish, likes the
track and rates it 5, asks for a second recommendation, then saves a full-page screenshot. With
``--start`` it also checks the feedback rows in SQLite and in a Parquet export. Prints what it saw.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.checks.app_check")

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REQUESTS = ("upbeat chiptune for a road trip", "something calmer and more orchestral now")
_AUDIO = ("() => { const found = []; const walk = (root) => root.querySelectorAll('*').forEach(el => {"
          " if (el.tagName === 'AUDIO' && el.readyState >= 1 && el.duration > 1) found.push(el.duration);"
          " if (el.shadowRoot) walk(el.shadowRoot); }); walk(document.querySelector('#now-playing'));"
          " return found.length ? found[0] : null; }")


def wait_http(url: str, timeout: float) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def drive(base: str, screenshot: Path) -> list[dict]:
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    seen = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(base + "/")
        for n, text in enumerate(REQUESTS, 1):
            t0 = time.time()
            page.locator("#request textarea").fill(text)
            page.locator("#send").click()
            expect(page.locator("#played li")).to_have_count(n, timeout=300_000)
            page.wait_for_function(_AUDIO, timeout=60_000)
            page.wait_for_timeout(1500)  # let the streamed reply settle
            reply = page.locator("#chat [data-testid='bot']").last.inner_text()
            card = page.locator("#track-card").inner_text()
            seen.append({"request": text, "reply": reply, "card_title": card.splitlines()[0],
                         "preview_seconds": page.evaluate(_AUDIO), "turn_seconds": round(time.time() - t0, 1)})
            if n == 1:
                page.locator("#like-track").click()
                expect(page.locator("#feedback-status")).to_contain_text("feedback saved", timeout=30_000)
                page.locator("#stars label").filter(has_text="5").click()
                expect(page.locator("#feedback-status")).to_contain_text("rating 5/5", timeout=30_000)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return seen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.checks.app_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--start", action="store_true", help="start python app.py (fresh feedback database)")
    p.add_argument("--screenshot", type=Path, default=REPO / "reports" / "app.png")
    args = p.parse_args(argv)
    base = f"http://127.0.0.1:{args.port}"
    proc, tmp = None, Path(tempfile.mkdtemp(prefix="talkplay-app-check-"))
    db = tmp / "feedback.sqlite3"
    if args.start:
        env = dict(os.environ, TALKPLAY_PORT=str(args.port), TALKPLAY_FEEDBACK_DB=str(db))
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=open(tmp / "app.log", "w"),
                                stderr=subprocess.STDOUT)
    try:
        wait_http(base + "/", 300)
        seen = drive(base, args.screenshot)
        for s in seen:
            print(json.dumps(s, ensure_ascii=False))
        print(f"screenshot: {args.screenshot}")
        if args.start:
            from talkplay.feedback import FeedbackStore

            time.sleep(1)
            store = FeedbackStore(db)
            rows = store.rows()
            export = store.export(tmp / "feedback.parquet")
            import pyarrow.parquet as pq

            print(f"SQLite rows: {[(r['kind'], r['value'], r['track_id']) for r in rows]}")
            print(f"export {export}: {pq.read_table(export).num_rows} rows")
            store.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
