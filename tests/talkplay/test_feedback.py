"""Feedback store: writes from many threads all land, exports match the table, a locked or unwritable
database holds records in memory until it works again (spilling to the pending file at shutdown), bad
values are refused, and ``kill -9`` in the middle of writing loses no acknowledged record."""

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from talkplay.feedback import FeedbackRecord, FeedbackStore


def rec(i: int, kind: str = "like_track", value: str = "1", session: str = "s") -> FeedbackRecord:
    return FeedbackRecord(session_id=session, turn_index=1 + i % 5, user_message=f"request {i}", track_id=f"t{i % 7}",
                          track_tokens="<|playlist-1|> <|audio1-2|>", reply=f"reply {i}", kind=kind, value=value,
                          model_version="m1", catalog_version="c1")


def test_concurrent_sessions_lose_nothing(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    assert store.path.exists()
    with sqlite3.connect(store.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def session(k):
        for i in range(150):
            store.record(rec(i, session=f"s{k}"))

    threads = [threading.Thread(target=session, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.flush()
    rows = store.rows()
    assert len(rows) == 1200 and len({r["record_uid"] for r in rows}) == 1200
    assert {r["session_id"] for r in rows} == {f"s{k}" for k in range(8)}
    assert rows[0]["created_utc"].endswith("+00:00") and rows[0]["model_version"] == "m1"
    store.close()


def test_export_parquet_and_csv(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    store.record(rec(1, "rating", "4"))
    store.record(rec(2, "comment", "lovely, but too short"))
    store.flush()
    table = pq.read_table(store.export(tmp_path / "out.parquet"))
    assert table.num_rows == 2 and table.column("value").to_pylist() == ["4", "lovely, but too short"]
    csv = pcsv.read_csv(store.export(tmp_path / "out.csv"))
    assert csv.num_rows == 2 and csv.column("kind").to_pylist() == ["rating", "comment"]
    with pytest.raises(ValueError, match="parquet or .csv"):
        store.export(tmp_path / "out.xlsx")
    empty = FeedbackStore(tmp_path / "empty.sqlite3")
    assert pq.read_table(empty.export(tmp_path / "empty.parquet")).num_rows == 0


def test_locked_database_holds_records_in_memory_then_writes_them(tmp_path):
    path = tmp_path / "fb.sqlite3"
    store = FeedbackStore(path, retries=1, retry_seconds=0.2)
    blocker = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    store._connect = lambda: _quick(path)  # don't wait 5 s per attempt in the test
    assert store.record(rec(1), wait=5) is False  # not in the database: held, and said so
    store.record(rec(2))
    assert store.flush() is False and store.held == 2 and "fb.sqlite3" in store.error
    blocker.execute("ROLLBACK")
    blocker.close()
    deadline = time.time() + 10
    while store.held and time.time() < deadline:  # the writer retries on its own every 0.2 s
        time.sleep(0.05)
    assert store.held == 0 and store.error is None
    assert [r["reply"] for r in store.rows()] == ["reply 1", "reply 2"]
    store.close()


def test_records_still_held_at_shutdown_are_spilled_and_imported_once(tmp_path):
    path = tmp_path / "fb.sqlite3"
    store = FeedbackStore(path, retries=1, retry_seconds=60)
    blocker = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    store._connect = lambda: _quick(path)
    store.record(rec(1))
    store.record(rec(2))
    assert store.flush() is False
    store.close()
    blocker.execute("ROLLBACK")
    blocker.close()
    assert len(store.pending_path.read_text().splitlines()) == 2
    again = FeedbackStore(path)
    assert [r["reply"] for r in again.rows()] == ["reply 1", "reply 2"]
    assert not again.pending_path.exists()
    again.close()
    assert len(FeedbackStore(path).rows()) == 2  # importing twice is impossible: the file was moved aside


def _quick(path):
    con = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    con.execute("PRAGMA busy_timeout=50")
    return con


def test_bad_records_are_refused(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        rec(1, kind="love")
    with pytest.raises(ValueError, match="rating"):
        rec(1, kind="rating", value="7")
    long = rec(1, kind="comment", value="x" * 10_000)
    assert len(long.value) == 4000
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.record(rec(1))


def test_unwritable_location_is_named_and_records_wait_until_it_is_writable(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database folder should be")  # unwritable even for root
    path = blocker / "fb.sqlite3"
    with pytest.raises(OSError, match="feedback database .*data"):
        FeedbackStore(path, strict=True)
    store = FeedbackStore(path, retry_seconds=0.2)  # the app's way: start degraded, keep everything
    assert store.error and "fb.sqlite3" in store.error
    assert store.record(rec(1), wait=5) is False and store.held == 1
    blocker.unlink()
    blocker.mkdir()  # the disk is writable again
    deadline = time.time() + 10
    while store.held and time.time() < deadline:
        time.sleep(0.05)
    assert store.error is None and [r["reply"] for r in store.rows()] == ["reply 1"]
    store.close()


def test_held_records_survive_shutdown_even_when_the_database_folder_is_unwritable(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKPLAY_CACHE", str(tmp_path / "cache"))
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    store = FeedbackStore(blocker / "fb.sqlite3", retry_seconds=60)
    store.record(rec(1))
    store.record(rec(2))
    assert store.flush() is False
    store.close()  # what SIGTERM/atexit does: the pending file beside the db is impossible → the user cache
    spilled = list((tmp_path / "cache" / "feedback-pending").glob("*.pending.jsonl"))
    assert len(spilled) == 1 and len(spilled[0].read_text().splitlines()) == 2
    blocker.unlink()
    blocker.mkdir()
    again = FeedbackStore(blocker / "fb.sqlite3")  # the next start imports them
    assert [r["reply"] for r in again.rows()] == ["reply 1", "reply 2"] and not spilled[0].exists()
    again.close()


def test_export_command(tmp_path):
    from talkplay.__main__ import main

    store = FeedbackStore(tmp_path / "fb.sqlite3")
    store.record(rec(1, "like_reply", "0"))
    store.close()
    assert main(["feedback", "export", "--db", str(tmp_path / "fb.sqlite3"), "--out", str(tmp_path / "x.csv")]) == 0
    assert pcsv.read_csv(tmp_path / "x.csv").num_rows == 1
    assert main(["feedback", "export", "--db", str(tmp_path / "none.sqlite3"), "--out", str(tmp_path / "y.csv")]) == 2
    assert main(["feedback", "export", "--db", str(tmp_path / "fb.sqlite3"), "--out", str(tmp_path / "y.txt")]) == 2


WRITER = """
import sys, threading
from talkplay.feedback import FeedbackRecord, FeedbackStore
store = FeedbackStore(sys.argv[1])
out = threading.Lock()

def session(k):
    for i in range(100000):
        r = FeedbackRecord(session_id=f"s{k}", turn_index=1, user_message="u" * 200, track_id="t1",
                           track_tokens="<|playlist-1|>", reply="r" * 500, kind="rating", value=str(1 + i % 5),
                           model_version="m", catalog_version="c")
        if store.record(r, wait=10):  # acknowledged = the app would now say "saved"
            with out:
                print(r.record_uid, flush=True)

for k in range(4):
    threading.Thread(target=session, args=(k,), daemon=True).start()
threading.Event().wait()
"""


def test_kill_9_while_writing_keeps_every_acknowledged_record(tmp_path):
    """The app process is killed (SIGKILL) while 4 sessions write feedback: on reopening, the database is
    intact and holds every record whose write was acknowledged before the kill."""
    import os

    path = tmp_path / "fb.sqlite3"
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=repo, env={**os.environ, "PYTHONPATH": repo})
    acked = []
    try:
        for line in child.stdout:
            acked.append(line.strip())
            if len(acked) >= 300:
                break
    finally:
        child.kill()  # SIGKILL: no atexit, no flush, mid-transaction
        child.wait()
    acked += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    assert len(acked) >= 300
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    store = FeedbackStore(path)
    stored = {r["record_uid"] for r in store.rows()}
    store.close()
    missing = [u for u in acked if u not in stored]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:3]}"


def test_space_storage_goes_to_the_persistent_volume_or_says_it_is_lost(tmp_path):
    """Hugging Face Spaces wipe the app folder on restart: /data when mounted, else a visible note."""
    from talkplay.feedback import default_db_path, storage_note

    volume = tmp_path / "data"
    at = {"TALKPLAY_PERSISTENT_DIR": str(volume)}  # where this test's "Space" mounts its storage
    assert default_db_path(at) == Path("data") / "feedback.sqlite3"  # not a Space: the app folder
    assert default_db_path({**at, "TALKPLAY_FEEDBACK_DB": "/x/f.db", "SPACE_ID": "u/s"}) == Path("/x/f.db")
    space = {**at, "SPACE_ID": "user/talkplay"}
    assert default_db_path(space) == Path("data") / "feedback.sqlite3"  # no volume mounted
    assert "no persistent storage" in storage_note(Path("data") / "feedback.sqlite3", space)
    assert storage_note(Path("data") / "feedback.sqlite3", {**space, "TALKPLAY_FEEDBACK_REPO": "u/d"}) == ""
    volume.mkdir()
    db = default_db_path(space)
    assert db == volume / "talkplay" / "feedback.sqlite3"
    assert storage_note(db, space) == ""
    assert storage_note(Path("data") / "feedback.sqlite3", at) == ""  # not a Space: nothing to say
