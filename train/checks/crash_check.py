"""Crash check: ``kill -9`` the real app while listeners are sending feedback; nothing acknowledged is lost.

    python -m train.checks.crash_check --catalog catalog/demo     # → reports/crash.json; exit 0 when nothing acknowledged was lost

Starts ``python app.py`` (demo checkpoint, CPU, its own fresh feedback database), lets ``--sessions``
``gradio_client`` sessions play one track each, then has them send numbered comments as fast as the app
answers. A comment counts as *acknowledged* when the app replied "feedback saved" (the row was committed).
After ``--acks`` acknowledgements the app process gets SIGKILL — no shutdown, writer thread mid-batch.
Then the database is opened again as the next start would: ``PRAGMA integrity_check`` must say ok, and
every acknowledged comment must be a row. (``tests/talkplay/test_feedback.py::test_kill_9…`` does the same
against the store alone, in CI.)
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.checks.crash_check")

import argparse
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path

from train.checks.load_test import REPO, one_turn, start_app, wait_for_page


def run(catalog: Path, sessions: int, acks_wanted: int) -> dict:
    from gradio_client import Client

    from talkplay.feedback import FeedbackStore

    work = Path(tempfile.mkdtemp(prefix="talkplay-crash-"))
    db = work / "feedback.sqlite3"
    app, url, log = start_app(catalog, work, TALKPLAY_FEEDBACK_PER_MINUTE="100000")
    acked: list[str] = []
    sent = [0]
    lock, enough, stop = threading.Lock(), threading.Event(), threading.Event()
    try:
        wait_for_page(app, url, work)
        clients = [Client(url, verbose=False, download_files=False) for _ in range(sessions)]
        for c in clients:
            one_turn(c, "something calm")

        def spam(k: int, client) -> None:
            i = 0
            while not stop.is_set():
                text = f"crash-check s{k} #{i}"
                with lock:
                    sent[0] += 1
                try:
                    said = str(client.predict(text, api_name="/comment"))
                except Exception:  # the app was killed under us
                    return
                if "feedback saved" in said:
                    with lock:
                        acked.append(text)
                        if len(acked) >= acks_wanted:
                            enough.set()
                i += 1

        threads = [threading.Thread(target=spam, args=(k, c), daemon=True) for k, c in enumerate(clients)]
        for t in threads:
            t.start()
        enough.wait(300)
        with lock:  # freeze the acknowledged list at the moment of the kill
            app.send_signal(signal.SIGKILL)
            acked_at_kill = list(acked)
            sent_at_kill = sent[0]
        app.wait()
        stop.set()
    finally:
        if app.poll() is None:
            app.kill()
        log.close()
    import sqlite3

    con = sqlite3.connect(db)
    integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    con.close()
    store = FeedbackStore(db)  # what the next start does (pending import included)
    stored = {r["value"] for r in store.rows() if r["kind"] == "comment"}
    store.close()
    missing = [a for a in acked_at_kill if a not in stored]
    return {"command": "python -m train.checks.crash_check " + " ".join(sys.argv[1:]), "sessions": sessions,
            "sent_before_kill": sent_at_kill, "acknowledged_before_kill": len(acked_at_kill),
            "comment_rows_after_restart": len(stored), "missing_acknowledged": len(missing),
            "missing_examples": missing[:5], "integrity_check": integrity,
            "ok": integrity == "ok" and not missing and len(acked_at_kill) >= acks_wanted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.checks.crash_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=Path("catalog/demo"))
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--acks", type=int, default=200, help="acknowledged comments before the kill")
    parser.add_argument("--out", type=Path, default=REPO / "reports", help="where crash.json goes")
    args = parser.parse_args(argv)
    r = run(args.catalog, args.sessions, args.acks)
    text = json.dumps(r, indent=2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "crash.json").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
