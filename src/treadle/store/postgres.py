"""PostgreSQL RunStore (psycopg 3, extra ``[postgres]``; imported only when the store is created)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .._pg import PgConnectionOwner
from ._sql import Cursor, Dialect, SQLRunStore, Tx
from .base import SCHEMA_VERSION, boundary

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import TupleRow

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresRunStore"]

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
)  # the version-1 tables; MIGRATIONS bring them to SCHEMA_VERSION

# schema version -> statements that bring the previous version to it (`{p}`: the table prefix)
MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE {p}runs ADD COLUMN IF NOT EXISTS owner TEXT",
        "ALTER TABLE {p}runs ADD COLUMN IF NOT EXISTS epoch BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE {p}runs ADD COLUMN IF NOT EXISTS lease_until DOUBLE PRECISION NOT NULL DEFAULT 0",
        "ALTER TABLE {p}events ADD COLUMN IF NOT EXISTS key TEXT",
        "CREATE UNIQUE INDEX IF NOT EXISTS {p}events_key ON {p}events (run_id, key) WHERE key IS NOT NULL"],
    # 3, 4, 5: as in store.sqlite
}
# leases are judged by the database server's clock, one clock for every host
_DIALECT = Dialect("postgres", "%s", "::json", "::text", "FOR UPDATE",
                   "extract(epoch from clock_timestamp())::double precision")
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")


class _Tx:
    """A psycopg connection as the shared statements use it."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection[TupleRow]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[object] = (), /) -> Cursor:
        return self.conn.execute(sql.encode(), params)


class PostgresRunStore(SQLRunStore, PgConnectionOwner):
    """The journal in PostgreSQL: tables ``<prefix>runs``, ``<prefix>events`` and ``<prefix>meta``.

    One connection per store (opened at once, reopened after a fork or when the server
    dropped it), in autocommit mode and used under a lock, so a store is safe to share
    between threads; any number of processes and machines may write the same tables.
    ``commit`` is one transaction (the run rows locked with ``FOR UPDATE`` while their
    epochs are checked), durable as the server's ``synchronous_commit``
    makes it when it returns. Leases are judged by the database server's clock. Reads and
    renewals that fail because the connection died are sent again once on a new connection;
    writes are not (their COMMIT may have landed): the error reaches the run, which stops.

    Args:
        dsn: a libpq connection string or URI, e.g. ``postgresql://user:pw@host:5432/db``;
            empty: libpq's defaults and ``PG*`` environment variables.
        table_prefix: prepended to the table names (a plain identifier).
        connect_timeout: seconds to wait for the server when connecting.
        **connect_kwargs: more arguments for ``psycopg.connect`` (e.g. ``prepare_threshold=None``
            behind a transaction-pooling PgBouncer).

    A Runner's writes go through the store's writer thread (group commit), off the event loop.
    """

    dialect = _DIALECT

    def __init__(self, dsn: str = "", *, table_prefix: str = "treadle_", connect_timeout: float = 10,
                 **connect_kwargs: Any) -> None:
        if not _PREFIX.fullmatch(str(table_prefix)):
            raise ValueError(f"table prefix must be a plain identifier (letters, digits, _), got {table_prefix!r}")
        super().__init__()
        self.prefix = self.table_prefix = table_prefix
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

    def _prepare(self, conn: Connection[TupleRow]) -> None:
        with conn.transaction():
            # CREATE TABLE IF NOT EXISTS can still collide when two processes run it at once
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"treadle-runs:{self.prefix}",))
            self._migrate(_Tx(conn), _SCHEMA, SCHEMA_VERSION, MIGRATIONS)

    def _write(self, fn: Callable[[Tx], R], label: str | None) -> R:
        """``fn`` in a write transaction. When the connection turns out dead (the server restarted,
        a proxy dropped it), it runs again once on a new one — unless its COMMIT was sent: it may
        have landed, so it is not sent twice; the caller sees the error and the run stops (resume
        continues it from what landed). ``label``: the boundaries' prefix (None: none)."""
        with self._lock:
            for attempt in (0, 1):
                conn: Connection[TupleRow] = self._connection()
                sent = False
                try:
                    if label is not None:
                        boundary(f"postgres:{label}begin")
                    with conn.transaction():
                        out = fn(_Tx(conn))
                        if label is not None:
                            boundary(f"postgres:{label}commit")
                        sent = True
                    return out
                except self._pg.OperationalError:
                    if attempt or not conn.broken or sent:
                        raise
        raise AssertionError("unreachable")

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            for attempt in (0, 1):  # a read is sent again on a new connection when the old one died
                conn: Connection[TupleRow] = self._connection()
                try:
                    return conn.execute(sql.encode(), params).fetchall()
                except self._pg.OperationalError:
                    if attempt or not conn.broken:
                        raise
        raise AssertionError("unreachable")

    def __repr__(self) -> str:  # never the password
        return f"PostgresRunStore({self._where()}, table_prefix={self.table_prefix!r})"
