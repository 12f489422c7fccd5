"""Load test: N concurrent listeners chat with the real app over HTTP and rate what they hear.

    python -m train.checks.load_test --catalog catalog/demo --sessions 16 --minutes 2   # → reports/load.{json,md}

Starts ``python app.py`` on a loopback port (its own fresh feedback database), waits until the model
answers a warm-up turn, then runs ``--sessions`` clients, each a separate ``gradio_client.Client`` (so a
separate browser session with its own conversation), for ``--minutes``: every client sends a request
through the ``/send`` endpoint (streamed), then rates the track (``/rate``) and likes it (``/like_track``);
every third turn is a skip (``/skip``) instead of a request, and every 6 turns a *New conversation*. Turns still
running at the deadline are finished and counted.

Measured per turn: time to first track (request sent → the streamed update that carries the track
card) and total reply time (→ last update). An error is an exception, a turn without a track, or an
error line in the chat. At the end the app is stopped (SIGTERM, so the writer thread finishes) and
the feedback rows in its SQLite file are counted: every feedback event sent must be a row. The app's
peak resident memory is sampled throughout. Not a test (minutes of CPU): the numbers go to the report.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.checks.load_test")

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REQUESTS = ("something epic and orchestral for a boss fight", "upbeat chiptune for a road trip",
            "I want something calm and ambient to study to", "dark electronic music for a night drive",
            "less dark, more upbeat please", "something with a driving beat", "a sad, slow piano piece",
            "music for exploring a mysterious cave", "happy bouncy music for a platformer", "more like that")
ERROR_MARKS = ("Sorry — something went wrong", "not available on this server", "faster than this demo")


@dataclass
class SessionLog:
    turns: list[dict] = field(default_factory=list)  # {ttft, total, track}
    errors: list[str] = field(default_factory=list)
    words_only: list[str] = field(default_factory=list)  # requests answered in words only (no track)
    feedback_sent: int = 0
    skips: int = 0
    feedback_saved: int = 0  # acknowledged "saved" by the app (committed row)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Resident (VmRSS) or peak resident (VmHWM) memory of a process, MB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _last_text(chat) -> str:
    if not chat:
        return ""
    content = chat[-1].get("content") if isinstance(chat[-1], dict) else chat[-1]
    if isinstance(content, list):  # Gradio may wrap text content as [{"type": "text", "text": ...}]
        content = " ".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    return str(content)


def one_turn(client, text: str | None) -> dict:
    """Send one request through /send (``text``) or press skip (None) and time it; raises RuntimeError on a
    failed turn. The track is identified by its card's title and artist lines."""
    t0 = time.perf_counter()
    ttft = None
    final = None
    job = client.submit(text, 1.0, 0.9, "constrained", api_name="/send") if text is not None else \
        client.submit(1.0, 0.9, "constrained", api_name="/skip")
    for out in job:
        final = out
        if ttft is None and "Why this track" in str(out[1]):
            ttft = time.perf_counter() - t0
    final = job.result() if final is None else final
    total = time.perf_counter() - t0
    reply = _last_text(final[0])
    if any(m in reply for m in ERROR_MARKS):
        raise RuntimeError(f"error in chat: {reply[:120]}")
    if "♪" not in reply:  # the model answered in words only (it judged the request not to ask for music)
        return {"ttft": None, "total": total, "words_only": True, "reply": reply[:120]}
    if ttft is None:
        raise RuntimeError(f"turn without a track card: {reply[:120]!r}")
    card = str(final[1]).splitlines()
    return {"ttft": ttft, "total": total, "track": reply.split("**")[1] if "**" in reply else "",
            "key": " / ".join(card[:2])}  # the card's title and credit line: one track, whatever its preview


def run_session(url: str, deadline: float, seed: int, log: SessionLog) -> None:
    """One listener: requests, a rating and a like after each track, a skip every third turn, a new
    conversation every 6 turns. Counts tracks heard twice in one conversation and skipped tracks coming back."""
    from gradio_client import Client

    rng = random.Random(seed)
    client = Client(url, verbose=False, download_files=False)
    heard: list[str] = []  # track keys of this conversation
    rejected: set[str] = set()
    while time.monotonic() < deadline:
        try:
            if len(heard) >= 6:  # a new conversation now and then, as people do
                client.predict(api_name="/new_conversation")
                heard, rejected = [], set()
            skip = len(heard) % 3 == 2
            turn = one_turn(client, None if skip else rng.choice(REQUESTS))
            if turn.get("words_only"):  # no track to rate; counted apart, not as an error
                log.words_only.append(turn["reply"])
                continue
            if skip:
                rejected.add(heard[-1])  # the skip rejected the track on screen (and stored a skip row)
                log.skips += 1
                log.feedback_sent += 1
                log.feedback_saved += 1  # acknowledged by the next turn arriving; counted in SQLite below
            turn["repeat"] = turn["key"] in heard
            turn["rejected_returned"] = turn["key"] in rejected
            heard.append(turn["key"])
            log.turns.append(turn)
            for endpoint, args in (("/rate", (str(rng.randint(1, 5)),)), ("/like_track", ())):
                log.feedback_sent += 1
                said = str(client.predict(*args, api_name=endpoint))
                if "feedback saved" in said:
                    log.feedback_saved += 1
                elif "kept" not in said:
                    raise RuntimeError(f"feedback {endpoint}: {said[:120]}")
        except Exception as err:  # counted, and the listener goes on
            log.errors.append(f"{type(err).__name__}: {str(err)[:200]}")
            time.sleep(1.0)


def run_threads(target, n: int) -> float:
    """Run ``target(i)`` for i in 0..n-1, each in its own thread, all at once; seconds until the last ends."""
    t0 = time.perf_counter()
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def start_app(catalog: Path, work: Path, **settings: str) -> tuple[subprocess.Popen, str, object]:
    """Start ``python app.py`` for ``catalog`` on a free loopback port with its own feedback database in
    ``work`` (extra ``TALKPLAY_*`` settings as keyword arguments); returns (process, url, log file).
    The caller waits with :func:`wait_for_page` and stops the process."""
    port = _free_port()
    env = {**os.environ, "TALKPLAY_CATALOG": str(catalog.resolve()), "TALKPLAY_FEEDBACK_DB": str(work / "feedback.sqlite3"),
           "TALKPLAY_PORT": str(port), "TALKPLAY_HOST": "127.0.0.1", "TALKPLAY_DEVICE": "cpu",
           "GRADIO_ANALYTICS_ENABLED": "False", **settings}
    env.pop("TALKPLAY_NO_AUTOLOAD", None)
    log = open(work / "app.log", "w")
    app = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return app, f"http://127.0.0.1:{port}/", log


def wait_for_page(app: subprocess.Popen, url: str, work: Path, timeout: float = 300) -> float:
    """Seconds until the page answers; RuntimeError (pointing at app.log) if the app exits or times out."""
    t0 = time.perf_counter()
    while True:
        if app.poll() is not None:
            raise RuntimeError(f"the app exited with {app.returncode}; see {work / 'app.log'}")
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return time.perf_counter() - t0
        except OSError:
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"the app did not come up in {timeout:.0f} s; see {work / 'app.log'}") from None
            time.sleep(1)


def run(catalog: Path, sessions: int, minutes: float, out: Path, concurrency: int, seed: int, name: str = "load") -> dict:
    from gradio_client import Client

    work = Path(tempfile.mkdtemp(prefix="talkplay-load-"))
    db = work / "feedback.sqlite3"
    # the per-visitor rate limit is lifted: this measures capacity, and each session turns faster than people do
    app, url, app_log = start_app(catalog, work, TALKPLAY_CONCURRENCY=str(concurrency), TALKPLAY_TURNS_PER_MINUTE="1000")
    peak = {"rss_mb": 0.0}
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(0.5):
            peak["rss_mb"] = max(peak["rss_mb"], _rss_mb(app.pid))

    threading.Thread(target=sample, daemon=True).start()
    try:
        t0 = time.perf_counter()
        page_s = wait_for_page(app, url, work)
        warm = one_turn(Client(url, verbose=False, download_files=False), "warm-up: something calm")
        warm_s = time.perf_counter() - t0
        print(f"app up in {page_s:.1f} s, first answer after {warm_s:.1f} s; {sessions} sessions × {minutes} min …",
              file=sys.stderr, flush=True)
        logs = [SessionLog() for _ in range(sessions)]
        start = time.monotonic()
        deadline = start + minutes * 60
        threads = [threading.Thread(target=run_session, args=(url, deadline, seed + i, logs[i]))
                   for i in range(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
    finally:
        peak["hwm_mb"] = _rss_mb(app.pid, "VmHWM")
        app.send_signal(signal.SIGTERM)  # graceful: the feedback writer drains its queue (atexit)
        try:
            app.wait(60)
        except subprocess.TimeoutExpired:
            app.kill()
        stop_sampling.set()
        app_log.close()
    with sqlite3.connect(db) as con:
        stored = int(con.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    turns = [t for log in logs for t in log.turns]
    ttft = [t["ttft"] for t in turns]
    total = [t["total"] for t in turns]
    sent = sum(log.feedback_sent for log in logs)
    errors = [e for log in logs for e in log.errors]
    result = {
        "command": "python -m train.checks.load_test " + " ".join(sys.argv[1:]),
        "catalog": catalog.name, "sessions": sessions, "minutes": minutes, "concurrency_limit": concurrency,
        "wall_seconds": round(wall, 1), "app_page_seconds": round(page_s, 1),
        "warmup_turn": {k: round(v, 2) for k, v in warm.items() if k in ("ttft", "total") and v is not None},
        "requests": {"turns": len(turns), "feedback": sent, "new_conversation": "every 6 turns",
                     "total": len(turns) + sent},
        "errors": len(errors), "error_samples": errors[:10],
        "words_only": sum(len(log.words_only) for log in logs),
        "words_only_samples": [w for log in logs for w in log.words_only][:5],
        "turns_per_session": [len(log.turns) for log in logs],
        "time_to_first_track_s": {"p50": _pct(ttft, 0.5), "p95": _pct(ttft, 0.95), "max": max(ttft, default=None)},
        "total_reply_s": {"p50": _pct(total, 0.5), "p95": _pct(total, 0.95), "max": max(total, default=None),
                          "mean": statistics.fmean(total) if total else None},
        "distinct_tracks": len({t["key"] for t in turns}),
        "repeated_tracks": sum(t["repeat"] for t in turns),
        "rejected_tracks_returned": sum(t["rejected_returned"] for t in turns),
        "skips": sum(log.skips for log in logs),
        "feedback": {"sent": sent, "acknowledged_saved": sum(log.feedback_saved for log in logs),
                     "rows_in_sqlite": stored, "equal": sent == stored, "integrity_check": integrity},
        "app_peak_rss_mb": round(peak["rss_mb"], 1), "app_peak_hwm_mb": round(peak.get("hwm_mb", 0.0), 1),
        "machine": {"cpus": os.cpu_count(), "device": "cpu"},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / f"{name}.md").write_text(markdown(result), encoding="utf-8")
    return result


def markdown(r: dict) -> str:
    f = r["feedback"]

    def s(x):
        return "—" if x is None else f"{x:.2f}"

    return "\n".join([
        f"# Load test — {r['sessions']} sessions × {r['minutes']} min, `{r['catalog']}` catalog, CPU", "",
        f"`{r['command']}` — the real app (`python app.py`, demo checkpoint, CPU, {r['concurrency_limit']} turns at "
        "once, decoded together by the batching scheduler) on loopback; each session is its own `gradio_client.Client`"
        " sending a request (every third turn a skip), then a 1–5 rating and a like, with a new conversation every 6 "
        "turns. The per-visitor turn rate limit is lifted for the run (it measures capacity).", "",
        "| measure | value |", "|---|---|",
        f"| wall time of the run | {r['wall_seconds']} s |",
        f"| requests (turns + feedback) | {r['requests']['total']} ({r['requests']['turns']} turns, "
        f"{r['requests']['feedback']} feedback) |",
        f"| errors | {r['errors']} |",
        f"| requests answered in words only (no track) | {r.get('words_only', 0)} |",
        f"| turns per session | {min(r['turns_per_session'])}–{max(r['turns_per_session'])} |",
        f"| time to first track p50 / p95 / max | {s(r['time_to_first_track_s']['p50'])} / "
        f"{s(r['time_to_first_track_s']['p95'])} / {s(r['time_to_first_track_s']['max'])} s |",
        f"| total reply time p50 / p95 / max | {s(r['total_reply_s']['p50'])} / {s(r['total_reply_s']['p95'])} / "
        f"{s(r['total_reply_s']['max'])} s |",
        f"| distinct tracks played | {r['distinct_tracks']} |",
        f"| skips / tracks heard twice in a conversation / skipped tracks returned | {r.get('skips', '—')} / "
        f"{r.get('repeated_tracks', '—')} / {r.get('rejected_tracks_returned', '—')} |",
        f"| feedback events sent / rows in SQLite | {f['sent']} / {f['rows_in_sqlite']} "
        f"({'equal' if f['equal'] else 'NOT EQUAL'}; {f['acknowledged_saved']} acknowledged as saved; "
        f"integrity {f['integrity_check']}) |",
        f"| app peak resident memory | {r.get('app_peak_hwm_mb') or r['app_peak_rss_mb']} MB |",
        f"| app start → page / first answer (model load, warm-up) | {r['app_page_seconds']} s / "
        f"{r['warmup_turn']['total']} s turn |", "",
        "Times are seen by the clients, queueing included. The scheduler (`talkplay/scheduler.py`) runs turn starts "
        "(prompt, track, grounding; batch 1) on a start thread and the replies of all turns on a batch thread, one "
        "token per row per step; when turns queue up, the batch thread also runs a start between two steps.",
        *(["", "Errors seen: " + "; ".join(r["error_samples"])] if r["error_samples"] else []), ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.checks.load_test", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle directory")
    parser.add_argument("--sessions", type=int, default=16, help="concurrent listeners")
    parser.add_argument("--minutes", type=float, default=2.0, help="how long new turns are started")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="the app's cap on turns at once = rows the scheduler batches (TALKPLAY_CONCURRENCY)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where the report goes")
    parser.add_argument("--name", default="load", help="report file name (e.g. load_32 for a second session count)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    r = run(args.catalog, args.sessions, args.minutes, args.out, args.concurrency, args.seed, args.name)
    print(markdown(r))
    ok = r["errors"] == 0 and r["feedback"]["equal"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
