"""SQLite RunStore: one file, WAL, safe for many threads and processes."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..errors import JournalConflictError, UserError
from ._commit import ENDED, OlderWrites, check_commit, dumps, leased, payload_text, run_update
from ._migrate import upgrade
from .base import SCHEMA_VERSION, Commit, JournalEntry, RunRecord, boundary, lease_is_free

__all__ = ["SQLiteRunStore", "default_store_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS treadle_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    agent_name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    prompt_kwargs TEXT NOT NULL,
    model_kwargs TEXT NOT NULL,
    config TEXT NOT NULL,
    result TEXT,
    usage TEXT,
    steps INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, updated_at);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""  # the version-1 tables; MIGRATIONS bring them to SCHEMA_VERSION

# schema version -> statements that bring the previous version to it
MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE runs ADD COLUMN owner TEXT",
        "ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN lease_until REAL NOT NULL DEFAULT 0",
        "ALTER TABLE events ADD COLUMN key TEXT",
        "CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events (run_id, key) WHERE key IS NOT NULL"],
    3: [],  # a commit's entries could share one row
    4: [],  # a shared row's entries carried their time in microseconds
    5: [],  # one JSON event a row again: the rows of 3 and 4 are rewritten (store._migrate)
}


def default_store_path() -> str:
    """``<user data dir>/treadle/runs.db`` (``TREADLE_HOME`` overrides the folder)."""
    home = os.environ.get("TREADLE_HOME")
    if not home:
        try:
            import platformdirs

            home = os.path.join(platformdirs.user_data_dir(), "treadle")
        except ImportError:
            home = os.path.join(os.path.expanduser("~"), ".local", "share", "treadle")
    return os.path.join(home, "runs.db")


@functools.lru_cache(maxsize=64)
def _insert_sql(n: int) -> str:
    rows = ", ".join(["(?, ?, ?, ?, ?, ?)"] * n)
    return f"INSERT INTO events (run_id, seq, name, payload, created_at, key) VALUES {rows}"


_MAX_ROWS = 5000  # 6 parameters a row; SQLite takes 32 766 in one statement
_CREATE = ("INSERT INTO runs (run_id, agent_name, status, created_at, updated_at, prompt_kwargs, model_kwargs, config,"
           " steps, owner, epoch, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)")


def _run_values(r: RunRecord, now: float) -> tuple[Any, ...]:
    """A new run row's parameters (for ``_CREATE``)."""
    return (r.run_id, r.agent_name, r.status, r.created_at or now, now, dumps(r.prompt_kwargs), dumps(r.model_kwargs),
            dumps(r.config), r.owner, r.epoch, r.lease_until)


class SQLiteRunStore(OlderWrites):
    """The journal in one SQLite file.

    WAL mode with ``synchronous=NORMAL``: a committed step survives the process being
    killed (SIGKILL, a crash); for power loss too, pass ``synchronous="FULL"``.
    A busy timeout lets many processes write the same file.
    """

    def __init__(self, path: str | None = None, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 30_000
                 ) -> None:
        self.path = path or default_store_path()
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=busy_timeout_ms / 1000)
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if self.path != ":memory:":
            self._wal()  # (SQLite checkpoints the WAL itself, in the commit that fills it: on the writer thread)
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._migrate()

    def _wal(self) -> None:
        """Switch the file to WAL once. The switch takes an exclusive lock and SQLite may refuse
        it at once (no busy wait) while another process opens the same new file: retry."""
        deadline = time.monotonic() + 30
        while True:
            try:
                if str(self._db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                row = self._db.execute("SELECT value FROM treadle_meta WHERE key='schema_version'").fetchone()
                version = int(row[0]) if row else 1  # none: the tables were just made
                if version > SCHEMA_VERSION:
                    raise UserError(f"{self.path} has journal schema {version}, newer than this treadle "
                                    f"({SCHEMA_VERSION}): upgrade treadle")
                for v in range(version + 1, SCHEMA_VERSION + 1):
                    for stmt in MIGRATIONS.get(v, []):
                        self._db.execute(stmt)
                if 1 < version < 5 <= SCHEMA_VERSION:
                    self._upgrade_rows()
                self._db.execute("INSERT OR REPLACE INTO treadle_meta (key, value) VALUES ('schema_version', ?)",
                                 (str(SCHEMA_VERSION),))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _upgrade_rows(self) -> None:
        """Schemas 3 and 4: every run's rows as one JSON event a row (store._migrate)."""
        db = self._db
        for (run_id,) in db.execute("SELECT DISTINCT run_id FROM events").fetchall():
            rows = db.execute("SELECT seq, name, payload, created_at, key FROM events WHERE run_id=? ORDER BY seq",
                              (run_id,)).fetchall()
            new = upgrade(run_id, rows)
            if new is not None:
                db.execute("DELETE FROM events WHERE run_id=?", (run_id,))
                db.executemany(_insert_sql(1), [(run_id, *r) for r in new])

    @property
    def schema_version(self) -> int:
        row = self._db.execute("SELECT value FROM treadle_meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ writes
    def commit(self, commits: list[Commit]) -> list[BaseException | None]:
        """All ``commits`` in one transaction, applied one after another, each whole or refused;
        a run's commits after a refused one are refused too (with its error). See RunStore."""
        if not commits:
            return []
        with self._lock, self._transaction("") as db:
            out: list[BaseException | None] = [None] * len(commits)
            now = time.time()
            rows = self._run_rows(db, commits)
            failed: dict[str, BaseException] = {}
            for i, c in enumerate(commits):
                err = failed.get(c.run_id)
                if err is None:
                    # a commit that could fail after a first change (a new run's row, then its entries; rows in
                    # several statements) is undone to a savepoint when it does
                    guard = c.create is not None or len(c.entries) > _MAX_ROWS
                    had = c.run_id in rows
                    if guard:
                        db.execute("SAVEPOINT treadle_commit")
                    err = self._admit(db, c, rows, now)
                    if err is None and c.entries:
                        err = self._append(db, c)
                    if guard:
                        if err is not None:
                            db.execute("ROLLBACK TO treadle_commit")
                            if not had:
                                rows.pop(c.run_id, None)
                        db.execute("RELEASE treadle_commit")
                if err is not None:
                    out[i] = failed.setdefault(c.run_id, err)
                elif c.fields or c.release:  # its entries landed: its run-row change goes too
                    sets, params = run_update(c, now, dumps, "?")
                    db.execute(f"UPDATE runs SET {sets} WHERE run_id=?", (*params, c.run_id))
                    if c.release and c.run_id in rows:
                        rows[c.run_id][0] = None
        boundary("sqlite:committed")
        return out

    def _run_rows(self, db: sqlite3.Connection, commits: list[Commit]) -> dict[str, list[Any]]:
        """The runs' [owner, epoch, lease_until], read in the open transaction."""
        ids = list(dict.fromkeys(c.run_id for c in commits))
        rows: dict[str, list[Any]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for r in db.execute("SELECT run_id, owner, epoch, lease_until FROM runs WHERE run_id IN "
                                f"({','.join('?' * len(chunk))})", chunk):
                rows[r[0]] = [r[1], r[2], r[3]]
        return rows

    @contextlib.contextmanager
    def _transaction(self, label: str | None) -> Iterator[sqlite3.Connection]:
        """A write transaction (the caller holds the lock); ``label``: its boundaries' prefix
        (None: no boundaries — the lease renewals, whose timing the crash tests cannot count on)."""
        db = self._db
        if label is not None:
            boundary(f"sqlite:{label}begin")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            if label is not None:
                boundary(f"sqlite:{label}commit")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _admit(self, db: sqlite3.Connection, c: Commit, rows: dict[str, list[Any]], now: float
               ) -> BaseException | None:
        """Create the run row if asked, then check the commit's right to write (its epoch)."""
        if c.create is not None:
            r = c.create
            try:
                db.execute(_CREATE, _run_values(r, now))
            except sqlite3.IntegrityError:
                return JournalConflictError(f"run {c.run_id!r} is already in the store")
            rows[c.run_id] = [r.owner, r.epoch, r.lease_until]
            if c.epoch is None:  # an unfenced writer's new run: nobody held it (its lease is the record's)
                return None
        return check_commit(c, rows.get(c.run_id), now)

    def _append(self, db: sqlite3.Connection, c: Commit) -> BaseException | None:
        """The commit's entries, one row each (a failing statement changes nothing)."""
        entries = c.entries
        for k in range(0, len(entries), _MAX_ROWS):
            chunk = entries[k:k + _MAX_ROWS]
            params: list[Any] = []
            for e in chunk:
                params += (e.run_id, e.seq, e.name, payload_text(e.payload), e.created_at, e.key)
            try:
                boundary("sqlite:insert")
                db.execute(_insert_sql(len(chunk)), params)
            except sqlite3.IntegrityError as e:
                return JournalConflictError(f"run {c.run_id!r}: an entry with the same seq or key is already "
                                            f"journaled ({e})")
        return None

    def acquire(self, run_id: str, owner: str, ttl: float) -> RunRecord:
        """Take the run's lease for ``owner`` (a new epoch). Raises ``RunLeasedError`` while a
        live process holds it, ``UserError`` when there is no such run. A run that ended is
        returned as it is, not taken."""
        with self._lock, self._transaction("acquire-") as db:
            row = db.execute(f"SELECT {self._COLS} FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                raise UserError(f"no run {run_id!r} in the store")
            record = self._record(row)
            if record.status not in ENDED:
                now = time.time()
                if not lease_is_free(record.owner, record.lease_until, now):
                    raise leased(record, now)
                record.owner, record.epoch, record.lease_until = owner, record.epoch + 1, now + ttl
                db.execute("UPDATE runs SET owner=?, epoch=?, lease_until=?, updated_at=? WHERE run_id=?",
                           (owner, record.epoch, record.lease_until, now, run_id))
        boundary("sqlite:acquired")
        return record

    def renew(self, leases: list[tuple[str, int]], ttl: float) -> list[str]:
        """Extend the leases still held (run id, epoch); returns the run ids whose lease was lost
        (their epoch moved on: another process took them over). A run with no row yet (its
        creation is still queued in the writer) is not lost: its row will carry a fresh lease."""
        if not leases:
            return []
        lost = []
        with self._lock, self._transaction(None) as db:
            until = time.time() + ttl
            for run_id, epoch in leases:
                if db.execute("UPDATE runs SET lease_until=? WHERE run_id=? AND epoch=?",
                              (until, run_id, epoch)).rowcount == 0 \
                        and db.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None:
                    lost.append(run_id)
        return lost

    # ------------------------------------------------------------------ reads
    def _record(self, row: tuple[Any, ...]) -> RunRecord:
        return RunRecord(run_id=row[0], agent_name=row[1], status=row[2], created_at=row[3], updated_at=row[4],
                         prompt_kwargs=json.loads(row[5]), model_kwargs=json.loads(row[6]),
                         config=json.loads(row[7]), result=json.loads(row[8]) if row[8] else None,
                         usage=json.loads(row[9]) if row[9] else None, steps=row[10], owner=row[11],
                         epoch=row[12], lease_until=row[13])

    _COLS = ("run_id, agent_name, status, created_at, updated_at, prompt_kwargs, model_kwargs, config, result, usage,"
             " steps, owner, epoch, lease_until")

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._COLS} FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return self._record(row) if row else None

    def list_runs(self, *, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        with self._lock:
            if status is None:
                rows = self._db.execute(f"SELECT {self._COLS} FROM runs ORDER BY created_at DESC LIMIT ?",
                                        (limit,)).fetchall()
            else:
                rows = self._db.execute(f"SELECT {self._COLS} FROM runs WHERE status=? ORDER BY created_at DESC"
                                        " LIMIT ?", (status, limit)).fetchall()
        return [self._record(r) for r in rows]

    def events(self, run_id: str) -> list[JournalEntry]:
        with self._lock:
            rows = self._db.execute("SELECT seq, name, payload, created_at, key FROM events WHERE run_id=?"
                                    " ORDER BY seq", (run_id,)).fetchall()
        return [JournalEntry(run_id, seq, name, json.loads(payload), created_at, key)
                for seq, name, payload, created_at, key in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
