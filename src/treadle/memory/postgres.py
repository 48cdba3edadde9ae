"""PostgreSQL store (psycopg 3, extra ``[postgres]``; imported only when the store is created)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .._pg import PgConnectionOwner
from ._core import DialogTurn, SessionInfo, check_table_prefix, turn_from_row
from ._summary import SessionSummary

__all__ = ["PostgresMemoryStore"]

R = TypeVar("R")


def _no_nul(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold U+0000: replace it with U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {_no_nul(k): _no_nul(v) for k, v in cast("dict[Any, Any]", value).items()}
    if isinstance(value, list):
        return [_no_nul(v) for v in cast("list[Any]", value)]
    return value


def _jsonb(metadata: Any) -> str | None:
    return None if metadata is None else json.dumps(_no_nul(metadata), ensure_ascii=False)


class PostgresMemoryStore(PgConnectionOwner):
    """Turns kept in PostgreSQL, shared by every process and machine that reaches the server.

    One connection per store (opened at once, reopened after a fork or when the server
    dropped it), used under a lock, so a store is safe to share between threads; each write
    is one transaction, and concurrent appends to one session each get their own order
    (the session's row is the counter). The schema is created on first use.

    Args:
        dsn: a libpq connection string or URI, e.g. ``postgresql://user:pw@host:5432/db``;
            empty: libpq's defaults and ``PG*`` environment variables.
        table_prefix: tables are ``<prefix>_sessions`` and ``<prefix>_turns``.
        connect_timeout: seconds to wait for the server when connecting.
        **connect_kwargs: more arguments for ``psycopg.connect`` (e.g. ``prepare_threshold=None``
            behind a transaction-pooling PgBouncer).

    Calls block the calling thread for a round trip or two to the server (in the Runner, the
    event loop's thread); keep the server close, as you would a cache.
    """

    def __init__(self, dsn: str = "", *, table_prefix: str = "treadle_memory", connect_timeout: float = 10,
                 **connect_kwargs: Any) -> None:
        self._prefix = check_table_prefix(table_prefix)
        self._sessions, self._turns = f"{self._prefix}_sessions", f"{self._prefix}_turns"
        self._summaries = f"{self._prefix}_summaries"
        self._pg_setup(dsn, label="PostgresMemoryStore", app_name="treadle-memory", connect_timeout=connect_timeout,
                       connect_kwargs=connect_kwargs)
        with self._lock:
            self._connection()  # connect now: a wrong DSN fails here, not in the middle of a run

    # ------------------------------------------------------------------ connection
    def _prepare(self, conn: Any) -> None:
        with conn.transaction():
            # CREATE TABLE IF NOT EXISTS can still collide when two processes run it at once
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"treadle-memory:{self._prefix}",))
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self._sessions} ("
                         "session_id TEXT PRIMARY KEY, next_order BIGINT NOT NULL, "
                         "created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self._turns} ("
                         "session_id TEXT NOT NULL, turn_order BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL, "
                         "query_str TEXT, query_meta JSONB, response_str TEXT NOT NULL, response_meta JSONB, "
                         "PRIMARY KEY (session_id, turn_order))")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self._summaries} ("
                         "session_id TEXT PRIMARY KEY, upto BIGINT NOT NULL, summary TEXT NOT NULL, model TEXT, "
                         "created_at TIMESTAMPTZ NOT NULL)")

    def _run(self, fn: Callable[[Any], R], *, write: bool) -> R:
        """Run ``fn(connection)`` (in a transaction when ``write``). A connection found dead
        before anything was sent (the server restarted) is replaced once and ``fn`` retried."""
        with self._lock:
            for attempt in (0, 1):
                conn = self._connection()
                sent = False
                try:
                    if not write:
                        return fn(conn)
                    with conn.transaction():
                        sent = True
                        return fn(conn)
                except self._pg.OperationalError:
                    if attempt or not conn.broken or sent:
                        raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ MemoryStore
    def append_turn(self, session_id: str, turn: DialogTurn) -> int:
        q, r = turn.user_query, turn.assistant_response
        sid = _no_nul(session_id)
        row = (sid, turn.created_at, _no_nul(q.query_str), _jsonb(q.metadata), _no_nul(r.response_str),
               _jsonb(r.metadata))

        def write(conn: Any) -> int:
            now = time.time()
            # the upsert locks the session's row until commit: concurrent appends take turns
            (order,) = conn.execute(
                f"INSERT INTO {self._sessions} AS s (session_id, next_order, created_at, updated_at) "
                "VALUES (%s, 1, to_timestamp(%s), to_timestamp(%s)) ON CONFLICT (session_id) DO UPDATE SET "
                "next_order = s.next_order + 1, updated_at = EXCLUDED.updated_at RETURNING s.next_order - 1",
                (sid, now, now)).fetchone()
            conn.execute(f"INSERT INTO {self._turns} (session_id, turn_order, created_at, query_str, query_meta, "
                         "response_str, response_meta) "
                         "VALUES (%s, %s, to_timestamp(%s), %s, %s::jsonb, %s, %s::jsonb)", (row[0], order, *row[1:]))
            return int(order)

        order = self._run(write, write=True)
        turn.order = order
        return order

    def load_turns(self, session_id: str, last: int | None = None) -> list[DialogTurn]:
        if last is not None and last <= 0:
            return []

        def read(conn: Any) -> list[Any]:
            return conn.execute(
                "SELECT turn_order, extract(epoch FROM created_at), query_str, query_meta, response_str, "
                f"response_meta FROM {self._turns} WHERE session_id = %s ORDER BY turn_order DESC LIMIT %s",
                (_no_nul(session_id), last)).fetchall()

        return [turn_from_row(*row) for row in reversed(self._run(read, write=False))]

    def list_sessions(self) -> list[SessionInfo]:
        def read(conn: Any) -> list[Any]:
            return conn.execute(
                f"SELECT s.session_id, (SELECT count(*) FROM {self._turns} t WHERE t.session_id = s.session_id), "
                "extract(epoch FROM s.created_at), extract(epoch FROM s.updated_at) "
                f"FROM {self._sessions} s ORDER BY s.updated_at DESC, s.session_id").fetchall()

        return [SessionInfo(sid, int(n), float(c), float(u)) for sid, n, c, u in self._run(read, write=False)]

    def delete_session(self, session_id: str) -> bool:
        sid = _no_nul(session_id)

        def delete(conn: Any) -> bool:
            # the session's row first: it waits for appends in flight, whose turns the next delete then sees
            found = conn.execute(f"DELETE FROM {self._sessions} WHERE session_id = %s", (sid,)).rowcount
            conn.execute(f"DELETE FROM {self._turns} WHERE session_id = %s", (sid,))
            conn.execute(f"DELETE FROM {self._summaries} WHERE session_id = %s", (sid,))
            return found > 0

        return self._run(delete, write=True)

    # ------------------------------------------------------------------ SummaryStore
    def save_summary(self, session_id: str, summary: SessionSummary) -> bool:
        row = (_no_nul(session_id), summary.upto, _no_nul(summary.text), _no_nul(summary.model), summary.created_at)

        def write(conn: Any) -> bool:  # kept only over a summary of fewer turns (a stale writer changes nothing)
            return conn.execute(
                f"INSERT INTO {self._summaries} AS s (session_id, upto, summary, model, created_at) "
                "VALUES (%s, %s, %s, %s, to_timestamp(%s)) ON CONFLICT (session_id) DO UPDATE SET "
                "upto = EXCLUDED.upto, summary = EXCLUDED.summary, model = EXCLUDED.model, "
                "created_at = EXCLUDED.created_at WHERE EXCLUDED.upto > s.upto", row).rowcount > 0

        return self._run(write, write=True)

    def load_summary(self, session_id: str) -> SessionSummary | None:
        def read(conn: Any) -> Any:
            return conn.execute(f"SELECT upto, summary, model, extract(epoch FROM created_at) FROM {self._summaries} "
                                "WHERE session_id = %s", (_no_nul(session_id),)).fetchone()

        row = self._run(read, write=False)
        return None if row is None else SessionSummary(int(row[0]), str(row[1]), row[2], float(row[3]))

    def __repr__(self) -> str:  # never the password
        return f"PostgresMemoryStore({self._where()}, table_prefix={self._prefix!r})"
