"""Listener feedback, kept: an SQLite (WAL) table written by one background thread, exportable.

Every like/dislike, rating, comment and skip becomes one :class:`FeedbackRecord` row. The UI calls
:meth:`FeedbackStore.record` (optionally waiting a few seconds for the write, so that "saved" is only said
of a committed row); one writer thread drains the queue in batches, each batch one transaction (WAL, so a
committed row survives ``kill -9``). If the database cannot be written, records are held in memory and
retried until it can; at shutdown, any still held go to ``<db>.pending.jsonl`` (fsynced; if the database's
folder is unwritable, to ``<cache root>/feedback-pending/``, :func:`talkplay.space.cache_root`) and are imported at the next start.
:meth:`flush` waits until everything queued so far has
been tried (tests, shutdown, export).

    python -m talkplay feedback export --db data/feedback.sqlite3 --out feedback.parquet   # or .csv

Optionally (``HF_TOKEN`` + a dataset repo id), :func:`start_hub_sync` pushes a Parquet export to a
Hugging Face dataset every few minutes with ``huggingface_hub.CommitScheduler``; off by default.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from talkplay.space import cache_root, on_space, persistent_dir

log = logging.getLogger(__name__)

KINDS = ("like_track", "dislike_track", "like_reply", "dislike_reply", "rating", "comment", "skip")
TABLE = "feedback"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_uid TEXT UNIQUE NOT NULL,
    session_id TEXT NOT NULL,
    turn_index INTEGER NOT NULL,
    created_utc TEXT NOT NULL,
    user_message TEXT NOT NULL,
    track_id TEXT NOT NULL,
    track_tokens TEXT NOT NULL,
    reply TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    model_version TEXT NOT NULL,
    catalog_version TEXT NOT NULL
)"""
COLUMNS = ("id", "record_uid", "session_id", "turn_index", "created_utc", "user_message", "track_id",
           "track_tokens", "reply", "kind", "value", "model_version", "catalog_version")
MAX_TEXT = 4000  # user messages, replies and comments are cut to this many characters


def default_db_path(environ=None) -> Path:
    """$TALKPLAY_FEEDBACK_DB; else, on a Space with persistent storage, ``/data/talkplay/feedback.sqlite3``
    (the app folder of a Space is wiped on every restart); else ``data/feedback.sqlite3`` in the working
    directory (git-ignored)."""
    env = os.environ if environ is None else environ
    if env.get("TALKPLAY_FEEDBACK_DB"):
        return Path(env["TALKPLAY_FEEDBACK_DB"])
    persistent = persistent_dir(env)
    if persistent is not None:
        return persistent / "talkplay" / "feedback.sqlite3"
    return Path("data") / "feedback.sqlite3"


def storage_note(db: Path, environ=None) -> str:
    """A line for the page when ratings would not survive a restart: a Space whose database is not on its
    persistent storage and that pushes no Hub export (empty otherwise)."""
    env = os.environ if environ is None else environ
    if not on_space(env) or env.get("TALKPLAY_FEEDBACK_REPO"):
        return ""
    persistent = persistent_dir(env)
    if persistent is not None and Path(db).resolve().is_relative_to(persistent.resolve()):
        return ""
    return ("ℹ️ This Space has no persistent storage: ratings are kept until it restarts. Its owner can add "
            "persistent storage (/data) or set TALKPLAY_FEEDBACK_REPO to keep them.")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class FeedbackRecord:
    """One piece of feedback on one turn."""

    session_id: str
    turn_index: int  # 1-based turn of the conversation
    user_message: str
    track_id: str
    track_tokens: str  # the generated music tokens, space-separated
    reply: str
    kind: str  # one of KINDS
    value: str  # "1"/"0" for likes, "1".."5" for ratings, the text of a comment, "" for skip
    model_version: str
    catalog_version: str
    created_utc: str = field(default_factory=_now)
    record_uid: str = field(default_factory=lambda: os.urandom(12).hex())  # makes re-imports idempotent

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feedback kind {self.kind!r}: expected one of {KINDS}")
        if self.kind == "rating" and self.value not in {"1", "2", "3", "4", "5"}:
            raise ValueError(f"rating value {self.value!r}: expected 1–5")
        for name in ("user_message", "reply", "value"):
            text = getattr(self, name)
            if len(text) > MAX_TEXT:
                object.__setattr__(self, name, text[:MAX_TEXT])


_STOP = object()


@dataclass
class _Ticket:
    """One queued record and, for a caller that waits, whether it reached the database."""

    record: FeedbackRecord
    done: threading.Event = field(default_factory=threading.Event)
    saved: bool = False


class FeedbackStore:
    """SQLite-backed feedback table with one writer thread; records survive an unwritable database.

    If the database cannot be opened or written (read-only disk, missing directory, a lock held too
    long), records are *held in memory* and retried every ``retry_seconds``; :attr:`error` says why and
    :attr:`held` how many wait. They are written, in order, as soon as the database works again; if the
    process stops first, they are appended to ``<db>.pending.jsonl`` (imported on the next start).
    """

    def __init__(self, path: str | os.PathLike | None = None, batch: int = 64, retries: int = 3,
                 retry_seconds: float = 5.0, strict: bool = False):
        """``strict``: raise ``OSError`` naming the file when the database cannot be opened now, instead
        of starting degraded (holding records in memory)."""
        self.path = Path(path) if path else default_db_path()
        self.pending_path = self.path.with_name(self.path.name + ".pending.jsonl")
        self.batch, self.retries, self.retry_seconds = batch, retries, retry_seconds
        self.error: str | None = None
        self._ready = False  # the schema exists (set on the first successful connection)
        self._held: list[FeedbackRecord] = []
        try:
            self._connect().close()
            self._import_pending()
        except (OSError, sqlite3.Error) as exc:
            self.error = f"feedback database {self.path}: cannot open ({exc})"
            if strict:
                raise OSError(self.error) from exc
            log.warning("%s — feedback is kept in memory until it can be written", self.error)
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._writer = threading.Thread(target=self._run, name="feedback-writer", daemon=True)
        self._closed = False
        self._writer.start()
        atexit.register(self.close)

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=5000")
            con.execute("PRAGMA synchronous=NORMAL")  # with WAL: survives a killed process, never corrupt
            if not self._ready:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(_SCHEMA)
                self._ready = True
        except BaseException:
            con.close()
            raise
        return con

    @property
    def held(self) -> int:
        """Records waiting in memory for the database to become writable."""
        return len(self._held)

    # ------------------------------------------------------------------ writing

    def record(self, rec: FeedbackRecord, wait: float | None = None) -> bool:
        """Queue ``rec``; with ``wait`` (seconds), block until the writer has tried it.

        Returns True when the record is in the database (only known with ``wait``); False when it is
        queued or held in memory (see :attr:`error`) — it is still kept and written later.
        """
        if self._closed:
            raise RuntimeError(f"feedback store {self.path} is closed")
        ticket = _Ticket(rec)
        self._queue.put(ticket)
        if wait is None:
            return False
        ticket.done.wait(wait)
        return ticket.saved

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every record queued before this call has been tried; True when none is held."""
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            raise TimeoutError(f"feedback store {self.path}: records not written within {timeout} s")
        return not self._held

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join(timeout=30)

    def _run(self) -> None:
        con = None
        while True:
            try:  # while records are held, wake up every retry_seconds to try again
                items = [self._queue.get(timeout=self.retry_seconds if self._held else None)]
            except queue.Empty:
                items = []
            while items and len(items) < self.batch:  # gather what is already waiting into one transaction
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            tickets = [i for i in items if isinstance(i, _Ticket)]
            todo = self._held + [t.record for t in tickets]
            saved = True
            if todo:
                con, saved = self._write(con, todo)
                self._held = [] if saved else todo
            for i in items:
                if isinstance(i, _Ticket):
                    i.saved = saved
                    i.done.set()
                elif isinstance(i, threading.Event):
                    i.set()
            if any(i is _STOP for i in items):
                if self._held:
                    self._save_pending(self._held)
                if con is not None:
                    con.close()
                return

    def _write(self, con, records: list[FeedbackRecord]) -> tuple[sqlite3.Connection | None, bool]:
        for attempt in range(self.retries):
            try:
                con = con or self._connect()
                if any(p.exists() for p in self._pending_paths()):
                    self._import_pending(con)  # records spilled by an earlier run come first
                _insert(con, records)
                if self.error:
                    log.warning("feedback database %s writable again: %d records written", self.path, len(records))
                self.error = None
                return con, True
            except (OSError, sqlite3.Error) as exc:
                self.error = f"feedback database {self.path}: cannot write ({exc})"
                log.warning("%s, attempt %d", self.error, attempt + 1)
                if con is not None:
                    con.close()
                con = None
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
        log.error("%s — %d records held in memory, retrying every %.0f s", self.error, len(records),
                  self.retry_seconds)
        return None, False

    def _pending_paths(self) -> list[Path]:
        """Where held records go at shutdown: beside the database, else (its folder unwritable) the user cache."""
        if not hasattr(self, "_pending"):  # worked out once: every write checks these for spilled records
            cache = cache_root()
            key = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
            self._pending = [self.pending_path, cache / "feedback-pending" / f"{key}.pending.jsonl"]
        return self._pending

    def _save_pending(self, records: list[FeedbackRecord]) -> None:
        """At shutdown with the database still unwritable: append held records to a pending file (fsynced)."""
        errors = []
        for path in self._pending_paths():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with self._lock, open(path, "a", encoding="utf-8") as f:
                    for r in records:
                        f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                log.error("feedback database %s unavailable: %d records kept in %s (imported at the next start)",
                          self.path, len(records), path)
                return
            except OSError as exc:
                errors.append(f"{path}: {exc}")
        log.critical("feedback database %s unwritable and no pending file could be written (%s): %d records lost",
                     self.path, "; ".join(errors), len(records))

    def _import_pending(self, con: sqlite3.Connection | None = None) -> None:
        for path in self._pending_paths():
            if path.exists():
                self._import_pending_file(path, con)

    def _import_pending_file(self, path: Path, con: sqlite3.Connection | None) -> None:
        names = {f.name for f in fields(FeedbackRecord)}
        records, bad = [], 0
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(FeedbackRecord(**{k: v for k, v in json.loads(line).items() if k in names}))
            except (ValueError, TypeError):
                bad += 1  # a torn last line from a crash mid-append
        if con is None:
            with closing(self._connect()) as own:
                _insert(own, records)
        else:
            _insert(con, records)  # record_uid is UNIQUE: importing twice adds nothing
        done = path.with_name(path.name + f".imported-{int(time.time())}")
        os.replace(path, done)
        log.info("imported %d pending feedback records (%d unreadable lines) from %s", len(records), bad, done)

    # ------------------------------------------------------------------ reading

    def rows(self) -> list[dict]:
        """Every row as a dict (oldest first)."""
        with closing(self._connect()) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY id")]

    def count(self) -> int:
        with closing(self._connect()) as con:
            return int(con.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])

    def export(self, out: str | os.PathLike) -> Path:
        """Write the whole table to ``out`` (.parquet or .csv), atomically; returns the path."""
        import pyarrow as pa

        from talkplay.catalog import atomic_write

        out = Path(out)
        rows = self.rows()
        table = pa.table({c: [r[c] for r in rows] for c in COLUMNS}) if rows else pa.table(
            {c: pa.array([], pa.int64() if c in ("id", "turn_index") else pa.string()) for c in COLUMNS})
        if out.suffix == ".parquet":
            import pyarrow.parquet as pq

            atomic_write(out, lambda tmp: pq.write_table(table, tmp))
        elif out.suffix == ".csv":
            import pyarrow.csv as pcsv

            atomic_write(out, lambda tmp: pcsv.write_csv(table, tmp))
        else:
            raise ValueError(f"{out}: export format must be .parquet or .csv")
        return out


def _insert(con: sqlite3.Connection, records: list[FeedbackRecord]) -> None:
    cols = [c for c in COLUMNS if c != "id"]
    con.execute("BEGIN IMMEDIATE")
    try:
        con.executemany(f"INSERT OR IGNORE INTO {TABLE} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [tuple(getattr(r, c) for c in cols) for r in records])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def start_hub_sync(store: FeedbackStore, repo_id: str, token: str | None = None, every_minutes: float = 10.0,
                   folder: str | os.PathLike | None = None):
    """Push a Parquet export of ``store`` to the Hugging Face dataset ``repo_id`` every ``every_minutes``.

    Uses ``huggingface_hub.CommitScheduler`` on a folder holding ``feedback.parquet``, re-exported just
    before each push. Returns the scheduler (``.stop()`` ends it).
    """
    from huggingface_hub import CommitScheduler

    folder = Path(folder or store.path.with_name("hub-export"))
    folder.mkdir(parents=True, exist_ok=True)

    class _ExportingScheduler(CommitScheduler):
        def push_to_hub(self):
            store.flush()
            store.export(folder / "feedback.parquet")
            return super().push_to_hub()

    return _ExportingScheduler(repo_id=repo_id, repo_type="dataset", folder_path=folder, every=every_minutes,
                               token=token, path_in_repo="data")
