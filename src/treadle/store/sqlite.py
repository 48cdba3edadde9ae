"""SQLite RunStore: one file, WAL, safe for many threads and processes."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ._sql import Dialect, SQLRunStore, Tx
from .base import SCHEMA_VERSION, boundary

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteRunStore", "default_store_path"]

R = TypeVar("R")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS treadle_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, agent_name TEXT NOT NULL DEFAULT '', "
    "status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, prompt_kwargs TEXT NOT NULL, "
    "model_kwargs TEXT NOT NULL, config TEXT NOT NULL, result TEXT, usage TEXT, steps INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS runs_status ON runs (status, updated_at)",
    "CREATE TABLE IF NOT EXISTS events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL, "
    "payload TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (run_id, seq))",
)  # the version-1 tables; MIGRATIONS bring them to SCHEMA_VERSION

# schema version -> statements that bring the previous version to it
MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE runs ADD COLUMN owner TEXT",
        "ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN lease_until REAL NOT NULL DEFAULT 0",
        "ALTER TABLE events ADD COLUMN key TEXT",
        "CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events (run_id, key) WHERE key IS NOT NULL"],
    # 3: a commit's entries could share one row; 4: a shared row's entries carried their time in
    # microseconds; 5: one JSON event a row again (the rows of 3 and 4 are rewritten: store._migrate)
}
_DIALECT = Dialect("sqlite", "?", "", "", "", None)


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


class SQLiteRunStore(SQLRunStore):
    """The journal in one SQLite file.

    WAL mode with ``synchronous=NORMAL``: a committed step survives the process being
    killed (SIGKILL, a crash); for power loss too, pass ``synchronous="FULL"``.
    A busy timeout lets many processes write the same file. SQLite checkpoints the WAL
    itself, in the commit that fills it (on the writer thread).
    """

    dialect = _DIALECT
    meta = "treadle_meta"

    def __init__(self, path: str | None = None, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 30_000
                 ) -> None:
        super().__init__()
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
        self._write(lambda tx: self._migrate(tx, _SCHEMA, SCHEMA_VERSION, MIGRATIONS), None)

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

    def _write(self, fn: Callable[[Tx], R], label: str | None) -> R:
        """``fn`` in a write transaction; ``label``: its boundaries' prefix (None: no boundaries —
        the schema and the lease renewals, whose timing the crash tests cannot count on)."""
        with self._lock:
            db = self._db
            if label is not None:
                boundary(f"sqlite:{label}begin")
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db)
                if label is not None:
                    boundary(f"sqlite:{label}commit")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return out

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
