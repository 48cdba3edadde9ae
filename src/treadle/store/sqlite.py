"""SQLite RunStore: one file, WAL, safe for many threads and processes."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from typing import Any

from ..errors import UserError
from .base import SCHEMA_VERSION, JournalEntry, RunRecord

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
"""

# schema version -> statements that bring the previous version to it
MIGRATIONS: dict[int, list[str]] = {}


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
    rows = ", ".join(["(?, ?, ?, ?, ?)"] * n)
    return f"INSERT OR REPLACE INTO events (run_id, seq, name, payload, created_at) VALUES {rows}"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SQLiteRunStore:
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
            self._wal()
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
                version = int(row[0]) if row else SCHEMA_VERSION
                if version > SCHEMA_VERSION:
                    raise UserError(f"{self.path} has journal schema {version}, newer than this treadle "
                                    f"({SCHEMA_VERSION}): upgrade treadle")
                for v in range(version + 1, SCHEMA_VERSION + 1):
                    for stmt in MIGRATIONS.get(v, []):
                        self._db.execute(stmt)
                self._db.execute("INSERT OR REPLACE INTO treadle_meta (key, value) VALUES ('schema_version', ?)",
                                 (str(SCHEMA_VERSION),))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        row = self._db.execute("SELECT value FROM treadle_meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ writes
    def create_run(self, record: RunRecord) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (run_id, agent_name, status, created_at, updated_at, prompt_kwargs, model_kwargs,"
                " config, steps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)"
                " ON CONFLICT(run_id) DO UPDATE SET status=excluded.status, updated_at=excluded.updated_at,"
                " prompt_kwargs=excluded.prompt_kwargs",
                (record.run_id, record.agent_name, record.status, record.created_at or now, now,
                 _dumps(record.prompt_kwargs), _dumps(record.model_kwargs), _dumps(record.config)))

    def append(self, entries: list[JournalEntry], *, durable: bool = True) -> None:
        if not entries:
            return
        params: list[Any] = []
        for e in entries:
            payload = e.payload
            if isinstance(payload, bytes):
                payload = payload.decode()
            elif not isinstance(payload, str):
                payload = _dumps(payload)
            params += (e.run_id, e.seq, e.name, payload, e.created_at)
        # one statement, so one implicit transaction: atomic, and a single round of locking
        with self._lock:
            self._db.execute(_insert_sql(len(entries)), params)

    def update_run(self, run_id: str, *, status: str, steps: int, usage: dict[str, Any] | None = None,
                   result: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._db.execute("UPDATE runs SET status=?, steps=?, usage=COALESCE(?, usage), result=COALESCE(?, result),"
                             " updated_at=? WHERE run_id=?",
                             (status, steps, _dumps(usage) if usage is not None else None,
                              _dumps(result) if result is not None else None, time.time(), run_id))

    # ------------------------------------------------------------------ reads
    def _record(self, row: tuple[Any, ...]) -> RunRecord:
        return RunRecord(run_id=row[0], agent_name=row[1], status=row[2], created_at=row[3], updated_at=row[4],
                         prompt_kwargs=json.loads(row[5]), model_kwargs=json.loads(row[6]),
                         config=json.loads(row[7]), result=json.loads(row[8]) if row[8] else None,
                         usage=json.loads(row[9]) if row[9] else None, steps=row[10])

    _COLS = ("run_id, agent_name, status, created_at, updated_at, prompt_kwargs, model_kwargs, config, result, usage,"
             " steps")

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
            rows = self._db.execute("SELECT seq, name, payload, created_at FROM events WHERE run_id=? ORDER BY seq",
                                    (run_id,)).fetchall()
        return [JournalEntry(run_id, r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
