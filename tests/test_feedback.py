"""Feedback store: non-blocking writes from many threads all land, exports match the table, a locked
database spills to the pending file which the next start imports, bad values are refused."""

import sqlite3
import threading

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


def test_locked_database_spills_to_pending_and_is_imported(tmp_path):
    path = tmp_path / "fb.sqlite3"
    store = FeedbackStore(path, retries=2)
    blocker = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    store._connect = lambda: _quick(path)  # don't wait 5 s per attempt in the test
    store.record(rec(1))
    store.record(rec(2))
    store.flush()
    blocker.execute("ROLLBACK")
    blocker.close()
    assert store.pending_path.exists() and len(store.pending_path.read_text().splitlines()) == 2
    store.close()
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


def test_unwritable_location_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="feedback database"):
        FeedbackStore(blocker / "sub" / "fb.sqlite3")


def test_export_command(tmp_path):
    from talkplay.__main__ import main

    store = FeedbackStore(tmp_path / "fb.sqlite3")
    store.record(rec(1, "like_reply", "0"))
    store.close()
    assert main(["feedback", "export", "--db", str(tmp_path / "fb.sqlite3"), "--out", str(tmp_path / "x.csv")]) == 0
    assert pcsv.read_csv(tmp_path / "x.csv").num_rows == 1
    assert main(["feedback", "export", "--db", str(tmp_path / "none.sqlite3"), "--out", str(tmp_path / "y.csv")]) == 2
    assert main(["feedback", "export", "--db", str(tmp_path / "fb.sqlite3"), "--out", str(tmp_path / "y.txt")]) == 2
