"""SQLite store: one file, shared safely by threads and processes (WAL journal)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._core import DialogTurn, SessionInfo, check_table_prefix, turn_from_row
from ._summary import SessionSummary

if TYPE_CHECKING:
    import sqlite3

__all__ = ["SQLiteMemoryStore", "default_memory_path", "MEMORY_DB_ENV"]

MEMORY_DB_ENV = "TREADLE_MEMORY_DB"


def default_memory_path() -> Path:
    """Where ``treadle chat`` keeps its conversations: ``$TREADLE_MEMORY_DB`` when set, else
    ``memory.db`` in the user data dir (``~/.local/share/treadle`` on Linux,
    ``~/Library/Application Support/treadle`` on macOS, ``%LOCALAPPDATA%\\treadle`` on Windows)."""
    env = os.environ.get(MEMORY_DB_ENV)
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_data_dir
    except ImportError:  # the XDG default, which is platformdirs' answer on Linux
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "treadle"
    else:
        base = Path(user_data_dir("treadle", appauthor=False))
    return base / "memory.db"


def _dumps(metadata: Any) -> str | None:
    return None if metadata is None else json.dumps(metadata, ensure_ascii=False)


class SQLiteMemoryStore:
    """Turns kept in an SQLite file.

    Safe for several threads (one connection, used under a lock) and several processes
    (SQLite's file locks; writes are ``BEGIN IMMEDIATE`` transactions, waiting up to
    ``timeout`` seconds for another writer). The file uses the WAL journal, so readers
    never wait for a writer. The schema is created on first use.

    Args:
        path: the database file (created with its folder); default ``default_memory_path()``.
            ``":memory:"`` gives a private in-memory database.
        table_prefix: tables are ``<prefix>_sessions`` and ``<prefix>_turns``.
        timeout: seconds to wait for a lock held by another connection.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, table_prefix: str = "treadle_memory",
                 timeout: float = 30.0) -> None:
        self.path: str = os.fspath(default_memory_path() if path is None else path)
        prefix = check_table_prefix(table_prefix)
        self._sessions, self._turns, self._summaries = f"{prefix}_sessions", f"{prefix}_turns", f"{prefix}_summaries"
        self.timeout = timeout
        self.journal_mode = ""
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._closed = False
        with self._lock:
            self._connection()  # open now: a bad path fails here, not in the middle of a run

    # ------------------------------------------------------------------ connection
    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._conn is None or self._pid != os.getpid():  # a forked child opens its own
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        import sqlite3

        if self.path != ":memory:" and not self.path.startswith("file:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False,
                               uri=self.path.startswith("file:"))
        try:
            self.journal_mode = self._retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across crashes of the process
            with self._transaction(conn):
                conn.execute(f"CREATE TABLE IF NOT EXISTS {self._sessions} ("
                             "session_id TEXT PRIMARY KEY, next_order INTEGER NOT NULL, "
                             "created_at REAL NOT NULL, updated_at REAL NOT NULL)")
                conn.execute(f"CREATE TABLE IF NOT EXISTS {self._turns} ("
                             "session_id TEXT NOT NULL, turn_order INTEGER NOT NULL, created_at REAL NOT NULL, "
                             "query_str TEXT, query_meta TEXT, response_str TEXT NOT NULL, response_meta TEXT, "
                             "PRIMARY KEY (session_id, turn_order))")
                conn.execute(f"CREATE TABLE IF NOT EXISTS {self._summaries} ("
                             "session_id TEXT PRIMARY KEY, upto INTEGER NOT NULL, summary TEXT NOT NULL, "
                             "model TEXT, created_at REAL NOT NULL)")
        except BaseException:
            conn.close()
            raise
        return conn

    def _retry_locked(self, fn: Any) -> Any:
        """Switching to WAL needs a moment alone with the file; SQLite may refuse at once
        instead of waiting when several processes open a new file together."""
        import sqlite3

        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection) -> Generator[sqlite3.Connection, None, None]:
        conn.execute("BEGIN IMMEDIATE")  # take the write lock now: no deadlock upgrading a read lock later
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _write(self) -> Generator[sqlite3.Connection, None, None]:
        with self._lock, self._transaction(self._connection()) as conn:
            yield conn

    # ------------------------------------------------------------------ MemoryStore
    def append_turn(self, session_id: str, turn: DialogTurn) -> int:
        q, r = turn.user_query, turn.assistant_response
        now = time.time()
        with self._write() as c:
            c.execute(f"INSERT INTO {self._sessions} (session_id, next_order, created_at, updated_at) "
                      "VALUES (?, 1, ?, ?) ON CONFLICT (session_id) DO UPDATE SET "
                      "next_order = next_order + 1, updated_at = excluded.updated_at", (session_id, now, now))
            (order,) = c.execute(f"SELECT next_order - 1 FROM {self._sessions} WHERE session_id = ?",
                                 (session_id,)).fetchone()
            c.execute(f"INSERT INTO {self._turns} (session_id, turn_order, created_at, query_str, query_meta, "
                      "response_str, response_meta) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (session_id, order, turn.created_at, q.query_str, _dumps(q.metadata), r.response_str,
                       _dumps(r.metadata)))
        turn.order = order
        return int(order)

    def load_turns(self, session_id: str, last: int | None = None) -> list[DialogTurn]:
        if last is not None and last <= 0:
            return []
        with self._lock:
            rows = self._connection().execute(
                "SELECT turn_order, created_at, query_str, query_meta, response_str, response_meta "
                f"FROM {self._turns} WHERE session_id = ? ORDER BY turn_order DESC LIMIT ?",
                (session_id, -1 if last is None else last)).fetchall()
        return [turn_from_row(*row) for row in reversed(rows)]

    def list_sessions(self) -> list[SessionInfo]:
        with self._lock:
            rows = self._connection().execute(
                f"SELECT s.session_id, (SELECT COUNT(*) FROM {self._turns} t WHERE t.session_id = s.session_id), "
                f"s.created_at, s.updated_at FROM {self._sessions} s "
                "ORDER BY s.updated_at DESC, s.session_id").fetchall()
        return [SessionInfo(sid, int(n), float(created), float(updated)) for sid, n, created, updated in rows]

    def delete_session(self, session_id: str) -> bool:
        with self._write() as c:
            found = c.execute(f"DELETE FROM {self._sessions} WHERE session_id = ?", (session_id,)).rowcount
            c.execute(f"DELETE FROM {self._turns} WHERE session_id = ?", (session_id,))
            c.execute(f"DELETE FROM {self._summaries} WHERE session_id = ?", (session_id,))
        return found > 0

    # ------------------------------------------------------------------ SummaryStore
    def save_summary(self, session_id: str, summary: SessionSummary) -> bool:
        with self._write() as c:  # kept only over a summary of fewer turns (a stale writer changes nothing)
            return c.execute(f"INSERT INTO {self._summaries} (session_id, upto, summary, model, created_at) "
                             "VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET upto = excluded.upto, "
                             "summary = excluded.summary, model = excluded.model, created_at = excluded.created_at "
                             f"WHERE excluded.upto > {self._summaries}.upto",
                             (session_id, summary.upto, summary.text, summary.model, summary.created_at)
                             ).rowcount > 0

    def load_summary(self, session_id: str) -> SessionSummary | None:
        with self._lock:
            row = self._connection().execute(f"SELECT upto, summary, model, created_at FROM {self._summaries} "
                                             "WHERE session_id = ?", (session_id,)).fetchone()
        return None if row is None else SessionSummary(int(row[0]), str(row[1]), row[2], float(row[3]))

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._closed = True
            if conn is not None and self._pid == os.getpid():
                conn.close()

    def __enter__(self) -> SQLiteMemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteMemoryStore({self.path!r})"
