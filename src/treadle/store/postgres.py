"""PostgreSQL RunStore (psycopg 3, extra ``[postgres]``; imported only when the store is created)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .._pg import PgConnectionOwner
from ..errors import JournalConflictError, UserError
from ._commit import ENDED, OlderWrites, check_commit, dumps, leased, payload_text, run_update
from ._migrate import upgrade
from .base import SCHEMA_VERSION, Commit, JournalEntry, RunRecord, boundary, lease_is_free

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
)  # the version-1 tables; MIGRATIONS bring them to SCHEMA_VERSION

# schema version -> statements that bring the previous version to it (`{p}`: the table prefix)
MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE {p}runs ADD COLUMN IF NOT EXISTS owner TEXT",
        "ALTER TABLE {p}runs ADD COLUMN IF NOT EXISTS epoch BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE {p}runs ADD COLUMN IF NOT EXISTS lease_until DOUBLE PRECISION NOT NULL DEFAULT 0",
        "ALTER TABLE {p}events ADD COLUMN IF NOT EXISTS key TEXT",
        "CREATE UNIQUE INDEX IF NOT EXISTS {p}events_key ON {p}events (run_id, key) WHERE key IS NOT NULL"],
    3: [],  # a commit's entries could share one row
    4: [],  # a shared row's entries carried their time in microseconds
    5: [],  # one JSON event a row again: the rows of 3 and 4 are rewritten (store._migrate)
}
# the database server's clock, in seconds: leases are judged by one clock for every host
_NOW = "extract(epoch from clock_timestamp())::double precision"

_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
_ROWS_PER_STATEMENT = 10_000  # 6 parameters a row; PostgreSQL takes at most 65535 in one statement
_COLS = ("run_id, agent_name, status, created_at, updated_at, prompt_kwargs, model_kwargs, config, result, usage, "
         "steps, owner, epoch, lease_until")


@functools.lru_cache(maxsize=128)
def _insert_sql(prefix: str, n: int) -> str:
    rows = ", ".join(["(%s, %s, %s, %s::json, %s, %s)"] * n)
    return f"INSERT INTO {prefix}events (run_id, seq, name, payload, created_at, key) VALUES {rows}"


def _record(row: tuple[Any, ...]) -> RunRecord:
    # the json columns arrive parsed (psycopg loads `json` with json.loads)
    return RunRecord(run_id=row[0], agent_name=row[1], status=row[2], created_at=row[3], updated_at=row[4],
                     prompt_kwargs=row[5], model_kwargs=row[6], config=row[7], result=row[8],
                     usage=row[9], steps=row[10], owner=row[11], epoch=row[12], lease_until=row[13])


_RUN_ROW = "(%s, %s, %s, %s, %s, %s::json, %s::json, %s::json, NULL, NULL, 0, %s, %s, %s)"  # a new run's row


def _run_values(r: RunRecord, now: float) -> tuple[Any, ...]:
    """A new run row's parameters (for ``_RUN_ROW``)."""
    return (r.run_id, r.agent_name, r.status, r.created_at or now, now, dumps(r.prompt_kwargs), dumps(r.model_kwargs),
            dumps(r.config), r.owner, r.epoch, r.lease_until)


class _Refused(Exception):
    """A commit refused inside its savepoint (which is rolled back)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class PostgresRunStore(OlderWrites, PgConnectionOwner):
    """The journal in PostgreSQL: tables ``<prefix>runs``, ``<prefix>events`` and ``<prefix>meta``.

    One connection per store (opened at once, reopened after a fork or when the server
    dropped it), in autocommit mode and used under a lock, so a store is safe to share
    between threads; any number of processes and machines may write the same tables.
    ``commit`` is one transaction (a savepoint per commit; the run rows locked with ``FOR
    UPDATE`` while their epochs are checked), durable as the server's ``synchronous_commit``
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
            version = int(row[0]) if row else 1  # none: the tables were just made
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"the run store {self!r} has schema version {version}, newer than this "
                                   f"treadle's ({SCHEMA_VERSION}): upgrade treadle")
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS.get(v, []):
                    conn.execute(stmt.format(p=p))
            if 1 < version < 5 <= SCHEMA_VERSION:  # schemas 3 and 4: one JSON event a row (store._migrate)
                for (run_id,) in conn.execute(f"SELECT DISTINCT run_id FROM {p}events").fetchall():
                    new = upgrade(run_id, conn.execute(f"SELECT seq, name, payload, created_at, key FROM {p}events "
                                                       "WHERE run_id = %s ORDER BY seq", (run_id,)).fetchall())
                    if new is not None:
                        conn.execute(f"DELETE FROM {p}events WHERE run_id = %s", (run_id,))
                        with conn.cursor() as cur:
                            cur.executemany(f"INSERT INTO {p}events (run_id, seq, name, payload, created_at, key) "
                                            "VALUES (%s, %s, %s, %s::json, %s, %s)", [(run_id, *r) for r in new])
            conn.execute(f"INSERT INTO {p}meta (key, value) VALUES ('schema_version', %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))

    def _run(self, fn: Callable[[Any], R], *, retry: Callable[[], bool] | None = None) -> R:
        """``fn(connection)`` under the lock. When the connection turns out dead (the server
        restarted, a proxy dropped it), ``fn`` runs again once on a new one — unless ``retry()``
        says no: a write whose COMMIT was sent may have landed, so it is not sent twice; the
        caller sees the error and the run stops (resume continues it from what landed)."""
        with self._lock:
            for attempt in (0, 1):
                conn = self._connection()
                try:
                    return fn(conn)
                except self._pg.OperationalError:
                    if attempt or not conn.broken:
                        raise
                    if retry is not None and not retry():
                        raise
        raise AssertionError("unreachable")

    @property
    def schema_version(self) -> int:
        row = self._run(lambda c: c.execute(
            f"SELECT value FROM {self.table_prefix}meta WHERE key = 'schema_version'").fetchone())
        return int(row[0])

    # ------------------------------------------------------------------ writes
    def commit(self, commits: list[Commit]) -> list[BaseException | None]:
        """All ``commits`` in one transaction, applied one after another, each in a savepoint of
        its own: applied whole or refused (see RunStore). The run rows are locked (``FOR
        UPDATE``) while they are checked."""
        if not commits:
            return []
        p = self.table_prefix

        sent = [False]  # the COMMIT went out: the outcome is unknown if the connection dies now

        def write(conn: Any) -> list[BaseException | None]:
            sent[0] = False
            out: list[BaseException | None] = [None] * len(commits)
            with conn.transaction():
                boundary("postgres:select")
                ids = list(dict.fromkeys(c.run_id for c in commits))
                rows: dict[str, list[Any]] = {}
                now = conn.execute(f"SELECT {_NOW}").fetchone()[0]
                for r in conn.execute(f"SELECT run_id, owner, epoch, lease_until FROM {p}runs WHERE run_id = ANY(%s) "
                                      "ORDER BY run_id FOR UPDATE", (ids,)):
                    rows[r[0]] = [r[1], r[2], r[3]]
                failed: dict[str, BaseException] = {}
                for i, c in enumerate(commits):
                    err = failed.get(c.run_id) or self._apply(conn, c, rows, now)
                    if err is not None:
                        out[i] = failed.setdefault(c.run_id, err)
                boundary("postgres:commit")
                sent[0] = True
            boundary("postgres:committed")
            return out

        return self._run(write, retry=lambda: not sent[0])

    def _update(self, conn: Any, c: Commit, rows: dict[str, list[Any]], now: float) -> None:
        sets, params = run_update(c, now, dumps, "%s")
        if sets:
            conn.execute(f"UPDATE {self.table_prefix}runs SET {sets} WHERE run_id = %s", (*params, c.run_id))
            if c.release and c.run_id in rows:
                rows[c.run_id][0] = None

    def _apply(self, conn: Any, c: Commit, rows: dict[str, list[Any]], now: float) -> BaseException | None:
        p = self.table_prefix
        had = c.run_id in rows
        try:
            with conn.transaction():  # a savepoint: a refused commit leaves the others intact
                if c.create is not None:
                    r = c.create
                    conn.execute(f"INSERT INTO {p}runs ({_COLS}) VALUES {_RUN_ROW}", _run_values(r, now))
                    rows[c.run_id] = [r.owner, r.epoch, r.lease_until]
                # (an unfenced writer's new run: nobody held it, its lease is the record's)
                err = None if c.create is not None and c.epoch is None else \
                    check_commit(c, rows.get(c.run_id), now)
                if err is not None:
                    raise _Refused(err)  # the savepoint is rolled back: a run row made above goes too
                batch = [(e.run_id, e.seq, e.name, payload_text(e.payload), e.created_at, e.key)
                         for e in c.entries]
                for i in range(0, len(batch), _ROWS_PER_STATEMENT):
                    chunk = batch[i:i + _ROWS_PER_STATEMENT]
                    boundary("postgres:insert")
                    conn.execute(_insert_sql(p, len(chunk)), [x for row in chunk for x in row])
                self._update(conn, c, rows, now)
        except _Refused as e:
            if not had:  # the run row made above was rolled back with the savepoint
                rows.pop(c.run_id, None)
            return e.error
        except self._pg.errors.UniqueViolation as e:
            if not had:
                rows.pop(c.run_id, None)
            if c.create is not None and "runs_pkey" in str(e):
                return JournalConflictError(f"run {c.run_id!r} is already in the store")
            return JournalConflictError(f"run {c.run_id!r}: an entry with the same seq or key is already journaled "
                                        f"({str(e).splitlines()[0]})")
        except self._pg.errors.IntegrityError as e:
            return JournalConflictError(f"run {c.run_id!r}: refused by the database: {str(e).splitlines()[0]}")
        return None

    def acquire(self, run_id: str, owner: str, ttl: float) -> RunRecord:
        """Take the run's lease for ``owner`` (a new epoch); see SQLiteRunStore.acquire."""
        p = self.table_prefix

        sent = [False]

        def take(conn: Any) -> RunRecord:
            sent[0] = False
            boundary("postgres:acquire-select")
            with conn.transaction():
                row = conn.execute(f"SELECT {_COLS}, {_NOW} FROM {p}runs WHERE run_id = %s FOR UPDATE",
                                   (run_id,)).fetchone()
                if row is None:
                    raise UserError(f"no run {run_id!r} in the store")
                record, now = _record(row), row[-1]
                if record.status in ENDED:
                    return record
                if not lease_is_free(record.owner, record.lease_until, now):
                    raise leased(record, now)
                record.owner, record.epoch, record.lease_until = owner, record.epoch + 1, now + ttl
                conn.execute(f"UPDATE {p}runs SET owner = %s, epoch = %s, lease_until = %s, updated_at = %s "
                             "WHERE run_id = %s", (owner, record.epoch, record.lease_until, now, run_id))
                boundary("postgres:acquire-commit")
                sent[0] = True
                return record

        record = self._run(take, retry=lambda: not sent[0])
        boundary("postgres:acquired")
        return record

    def renew(self, leases: list[tuple[str, int]], ttl: float) -> list[str]:
        """Extend the leases still held (run id, epoch); returns the run ids whose lease was lost."""
        if not leases:
            return []
        p = self.table_prefix
        ids, epochs = [r for r, _ in leases], [e for _, e in leases]
        sql = (f"UPDATE {p}runs AS r SET lease_until = {_NOW} + %s FROM unnest(%s::text[], %s::bigint[]) AS l(id, ep) "
               "WHERE r.run_id = l.id AND r.epoch = l.ep RETURNING r.run_id")
        # a run with no row yet (its creation still queued in the writer) is not lost
        sql = (f"WITH kept AS ({sql}) SELECT l.id FROM unnest(%s::text[]) AS l(id) JOIN {p}runs AS r "
               "ON r.run_id = l.id WHERE l.id NOT IN (SELECT run_id FROM kept)")
        return [row[0] for row in self._run(lambda c: c.execute(sql, (ttl, ids, epochs, ids)).fetchall())]

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
            f"SELECT seq, name, payload, created_at, key FROM {self.table_prefix}events WHERE run_id = %s ORDER BY seq",
            (run_id,)).fetchall())
        return [JournalEntry(run_id, *row) for row in rows]

    def __repr__(self) -> str:  # never the password
        return f"PostgresRunStore({self._where()}, table_prefix={self.table_prefix!r})"
