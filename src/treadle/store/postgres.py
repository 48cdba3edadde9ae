"""PostgreSQL RunStore (psycopg 3, extra ``[postgres]``; imported only when the store is created)."""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .._pg import PgConnectionOwner
from .base import SCHEMA_VERSION, JournalEntry, RunRecord

__all__ = ["MIGRATIONS", "PostgresRunStore"]

R = TypeVar("R")

# JSON columns are `json`, not `jsonb`: the text is kept as written (key order, like the SQLite
# store), and `json` accepts the escape \u0000, which `jsonb` rejects. `{p}` is the table prefix.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {p}meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {p}runs ("
    "run_id TEXT PRIMARY KEY, agent_name TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, "
    "created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL, prompt_kwargs JSON NOT NULL, "
    "model_kwargs JSON NOT NULL, config JSON NOT NULL, result JSON, usage JSON, steps INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS {p}runs_created ON {p}runs (created_at)",
    "CREATE INDEX IF NOT EXISTS {p}runs_status ON {p}runs (status, created_at)",
    "CREATE TABLE IF NOT EXISTS {p}events ("
    "run_id TEXT NOT NULL, seq BIGINT NOT NULL, name TEXT NOT NULL, payload JSON NOT NULL, "
    "created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, seq))",
)

# schema version -> statements that bring the previous version to it (`{p}`: the table prefix)
MIGRATIONS: dict[int, list[str]] = {}

_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
_ROWS_PER_STATEMENT = 10_000  # 5 parameters a row; PostgreSQL takes at most 65535 in one statement
_COLS = "run_id, agent_name, status, created_at, updated_at, prompt_kwargs, model_kwargs, config, result, usage, steps"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _payload(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode()
    if isinstance(value, str):
        return value
    return _dumps(value)


@functools.lru_cache(maxsize=128)
def _insert_sql(prefix: str, n: int) -> str:
    rows = ", ".join(["(%s, %s, %s, %s::json, %s)"] * n)
    return (f"INSERT INTO {prefix}events (run_id, seq, name, payload, created_at) VALUES {rows} "
            "ON CONFLICT (run_id, seq) DO UPDATE SET name = EXCLUDED.name, payload = EXCLUDED.payload, "
            "created_at = EXCLUDED.created_at")


def _record(row: tuple[Any, ...]) -> RunRecord:
    # the json columns arrive parsed (psycopg loads `json` with json.loads)
    return RunRecord(run_id=row[0], agent_name=row[1], status=row[2], created_at=row[3], updated_at=row[4],
                     prompt_kwargs=row[5], model_kwargs=row[6], config=row[7], result=row[8],
                     usage=row[9], steps=row[10])


class PostgresRunStore(PgConnectionOwner):
    """The journal in PostgreSQL: tables ``<prefix>runs``, ``<prefix>events`` and ``<prefix>meta``.

    One connection per store (opened at once, reopened after a fork or when the server
    dropped it), in autocommit mode and used under a lock, so a store is safe to share
    between threads; any number of processes and machines may write the same tables.
    Each write is one statement, so one transaction: a batch of entries is appended whole
    or not at all, and is committed (durable as the server's ``synchronous_commit`` makes
    it) when ``append`` returns. Every write is idempotent, so one that fails because the
    connection died is sent again once on a new connection.

    Args:
        dsn: a libpq connection string or URI, e.g. ``postgresql://user:pw@host:5432/db``;
            empty: libpq's defaults and ``PG*`` environment variables.
        table_prefix: prepended to the table names (a plain identifier).
        connect_timeout: seconds to wait for the server when connecting.
        **connect_kwargs: more arguments for ``psycopg.connect`` (e.g. ``prepare_threshold=None``
            behind a transaction-pooling PgBouncer).

    Calls block the calling thread (in the Runner, the event loop's) for one round trip.
    """

    def __init__(self, dsn: str = "", *, table_prefix: str = "treadle_", connect_timeout: float = 10,
                 **connect_kwargs: Any) -> None:
        if not (isinstance(table_prefix, str) and _PREFIX.fullmatch(table_prefix)):
            raise ValueError(f"table prefix must be a plain identifier (letters, digits, _), got {table_prefix!r}")
        self.table_prefix = table_prefix
        self._pg_setup(dsn, label="PostgresRunStore", app_name="treadle-runs", connect_timeout=connect_timeout,
                       connect_kwargs=connect_kwargs)
        with self._lock:
            self._connection()  # connect now: a wrong DSN fails here, not in the middle of a run

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> PostgresRunStore:
        """A store from ``postgresql://…[?table_prefix=name_]`` (the rest of the URL goes to libpq)."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefixes = [v for k, v in query if k == "table_prefix"]
        if prefixes:
            kwargs.setdefault("table_prefix", prefixes[-1])
            rest = urlencode([(k, v) for k, v in query if k != "table_prefix"], quote_via=quote)
            url = urlunsplit(parts._replace(query=rest))
        return cls(url, **kwargs)

    # ------------------------------------------------------------------ schema
    def _prepare(self, conn: Any) -> None:
        p = self.table_prefix
        with conn.transaction():
            # CREATE TABLE IF NOT EXISTS can still collide when two processes run it at once
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"treadle-runs:{p}",))
            for stmt in _SCHEMA:
                conn.execute(stmt.format(p=p))
            row = conn.execute(f"SELECT value FROM {p}meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"the run store {self!r} has schema version {version}, newer than this "
                                   f"treadle's ({SCHEMA_VERSION}): upgrade treadle")
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS.get(v, []):
                    conn.execute(stmt.format(p=p))
            conn.execute(f"INSERT INTO {p}meta (key, value) VALUES ('schema_version', %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))

    def _run(self, fn: Callable[[Any], R]) -> R:
        """``fn(connection)`` under the lock. When the connection turns out dead (the server
        restarted, a proxy dropped it), ``fn`` runs again once on a new one: every call here
        is idempotent, so running it twice is harmless."""
        with self._lock:
            for attempt in (0, 1):
                conn = self._connection()
                try:
                    return fn(conn)
                except self._pg.OperationalError:
                    if attempt or not conn.broken:
                        raise
        raise AssertionError("unreachable")

    @property
    def schema_version(self) -> int:
        row = self._run(lambda c: c.execute(
            f"SELECT value FROM {self.table_prefix}meta WHERE key = 'schema_version'").fetchone())
        return int(row[0])

    # ------------------------------------------------------------------ writes
    def create_run(self, record: RunRecord) -> None:
        now = time.time()
        params = (record.run_id, record.agent_name, record.status, record.created_at or now, now,
                  _dumps(record.prompt_kwargs), _dumps(record.model_kwargs), _dumps(record.config))
        sql = (f"INSERT INTO {self.table_prefix}runs (run_id, agent_name, status, created_at, updated_at, "
               "prompt_kwargs, model_kwargs, config, steps) "
               "VALUES (%s, %s, %s, %s, %s, %s::json, %s::json, %s::json, 0) "
               "ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at, "
               "prompt_kwargs = EXCLUDED.prompt_kwargs")
        self._run(lambda c: c.execute(sql, params))

    def append(self, entries: list[JournalEntry], *, durable: bool = True) -> None:
        """Add (or replace, by ``seq``) a run's entries, all in one transaction."""
        if not entries:
            return
        # one row per (run, seq), the last one winning as in SQLite's INSERT OR REPLACE
        # (ON CONFLICT DO UPDATE refuses to touch a row twice in one statement)
        rows = {(e.run_id, e.seq): (e.run_id, e.seq, e.name, _payload(e.payload), e.created_at) for e in entries}
        batch = list(rows.values())
        prefix = self.table_prefix

        def write(conn: Any) -> None:
            if len(batch) <= _ROWS_PER_STATEMENT:
                conn.execute(_insert_sql(prefix, len(batch)), [x for row in batch for x in row])
                return
            with conn.transaction():
                for i in range(0, len(batch), _ROWS_PER_STATEMENT):
                    chunk = batch[i:i + _ROWS_PER_STATEMENT]
                    conn.execute(_insert_sql(prefix, len(chunk)), [x for row in chunk for x in row])

        self._run(write)

    def update_run(self, run_id: str, *, status: str, steps: int, usage: dict[str, Any] | None = None,
                   result: dict[str, Any] | None = None) -> None:
        params = (status, steps, None if usage is None else _dumps(usage), None if result is None else _dumps(result),
                  time.time(), run_id)
        sql = (f"UPDATE {self.table_prefix}runs SET status = %s, steps = %s, usage = COALESCE(%s::json, usage), "
               "result = COALESCE(%s::json, result), updated_at = %s WHERE run_id = %s")
        self._run(lambda c: c.execute(sql, params))

    # ------------------------------------------------------------------ reads
    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._run(lambda c: c.execute(f"SELECT {_COLS} FROM {self.table_prefix}runs WHERE run_id = %s",
                                            (run_id,)).fetchone())
        return _record(row) if row else None

    def list_runs(self, *, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Newest first; a negative ``limit`` means all of them."""
        where = "" if status is None else "WHERE status = %s "
        sql = f"SELECT {_COLS} FROM {self.table_prefix}runs {where}ORDER BY created_at DESC, run_id DESC LIMIT %s"
        params = (*(() if status is None else (status,)), None if limit < 0 else limit)
        return [_record(r) for r in self._run(lambda c: c.execute(sql, params).fetchall())]

    def events(self, run_id: str) -> list[JournalEntry]:
        rows = self._run(lambda c: c.execute(
            f"SELECT seq, name, payload, created_at FROM {self.table_prefix}events WHERE run_id = %s ORDER BY seq",
            (run_id,)).fetchall())
        return [JournalEntry(run_id, seq, name, payload, created_at) for seq, name, payload, created_at in rows]

    def __repr__(self) -> str:  # never the password
        return f"PostgresRunStore({self._where()}, table_prefix={self.table_prefix!r})"
