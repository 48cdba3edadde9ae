"""What the SQLite and PostgreSQL stores share: one commit path, the lease writes and the reads.

A store subclass gives its dialect as data (``Dialect``: placeholder, casts, how rows are
locked, whose clock) and two ways in: ``_write`` (a function run in one write transaction,
with the crash tests' boundaries) and ``_read`` (one query).

``commit`` applies a group of commits in one transaction, one after another, each fenced by
its epoch against the leases read (and locked) at the start: a commit's rows go in with
``ON CONFLICT DO NOTHING RETURNING seq`` (a statement that never fails the transaction), and a
commit that did not land whole is refused, what it wrote deleted again. A run's commits after
a refused one are refused too. The outcome is that of committing them one by one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import JsonValue

from ..errors import JournalConflictError, RunLeasedError, RunOwnershipLostError, UserError
from .base import ENDED, Commit, JournalEntry, RunRecord, boundary, lease_is_free

__all__ = ["Dialect", "SQLRunStore", "dumps"]

R = TypeVar("R")
_JSON_FIELDS = frozenset({"usage", "result", "prompt_kwargs"})
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_COLS = ("run_id, agent_name, status, created_at, updated_at, prompt_kwargs{t}, model_kwargs{t}, config{t}, "
         "result{t}, usage{t}, steps, owner, epoch, lease_until")
# a run row as read: run_id, agent_name, status, created_at, updated_at, 5 JSON texts, steps, owner, epoch, lease_until
RunRow = tuple[str, str, str, float, float, str, str, str, "str | None", "str | None", int, "str | None", int, float]
Lease = tuple["str | None", int, float]  # a run's owner, epoch, lease_until
_INSERT = "INSERT INTO {p}events (run_id, seq, name, payload, created_at, key) VALUES "
_SKIP = " ON CONFLICT DO NOTHING RETURNING seq"  # (any unique key: (run_id, seq) and the one on (run_id, key))
_ROWS = 5000  # rows per INSERT (30,000 parameters: SQLite takes 32,766, PostgreSQL 65,535), run ids per SELECT


class SchemaTooNewError(UserError, RuntimeError):
    """The store's tables were written by a newer treadle."""


def dumps(value: object) -> str:
    """JSON text as the stores write it (compact, UTF-8 kept)."""
    return _ENCODER.encode(value)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...  # rows of the query's columns (each store's driver types them)


class Tx(Protocol):
    """A connection inside a write transaction (sqlite3's, or psycopg's behind ``postgres._Tx``)."""

    def execute(self, sql: str, params: Sequence[object] = (), /) -> Cursor: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells the shared statements (``{p}``, ``{m}``, ``{j}``, ``{t}``, ``?``)."""

    name: str  # the crash tests' boundary labels: "<name>:insert", …
    mark: str  # the placeholder: "?" or "%s"
    json: str  # the cast a JSON parameter needs ("::json")
    text: str  # the cast that reads a JSON column as text ("::text")
    lock: str  # what locks the run rows read in a write transaction ("FOR UPDATE")
    now: str | None  # the database's clock, or None: this host's


class SQLRunStore:
    """The shared body of the SQL stores (see the module's docstring)."""

    dialect: Dialect
    prefix = ""
    meta = "{p}meta"  # the name of the table of the schema's version

    def __init__(self) -> None:
        self._sqls: dict[str, str] = {}

    def _write(self, fn: Callable[[Tx], R], label: str | None) -> R:
        """``fn`` in one write transaction (``label``: the crash tests' boundaries' prefix; None: none)."""
        raise NotImplementedError

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        raise NotImplementedError

    def sql(self, template: str) -> str:
        """``template`` in this store's dialect and tables."""
        s = self._sqls.get(template)
        if s is None:
            if len(self._sqls) > 200:  # (an INSERT's text depends on its number of rows: keep a few)
                self._sqls.clear()
            d = self.dialect
            s = template.format(p=self.prefix, m=self.meta.format(p=self.prefix), j=d.json, t=d.text)
            s = self._sqls[template] = s.replace("?", d.mark)
        return s

    def _now(self, tx: Tx) -> float:
        if self.dialect.now is None:
            return time.time()
        now: float = tx.execute(f"SELECT {self.dialect.now}").fetchall()[0][0]
        return now

    # ------------------------------------------------------------------ schema
    def _migrate(self, tx: Tx, schema: Sequence[str], version: int, migrations: dict[int, list[str]]) -> None:
        """Create the tables (``schema``), then bring them from their version to ``version``."""
        from ._migrate import upgrade

        for stmt in schema:
            tx.execute(self.sql(stmt))
        row = tx.execute(self.sql("SELECT value FROM {m} WHERE key = 'schema_version'")).fetchall()
        found = int(row[0][0]) if row else 1  # none: the tables were just made
        if found > version:
            raise SchemaTooNewError(f"the run store {self!r} has journal schema {found}, newer than this "
                                    f"treadle's ({version}): upgrade treadle")
        for v in range(found + 1, version + 1):
            for stmt in migrations.get(v, []):
                tx.execute(stmt.format(p=self.prefix))
        if 1 < found < 5:  # schemas 3 and 4: one JSON event a row (store._migrate)
            for (run_id,) in tx.execute(self.sql("SELECT DISTINCT run_id FROM {p}events")).fetchall():
                rows = tx.execute(self.sql("SELECT seq, name, payload{t}, created_at, key FROM {p}events "
                                           "WHERE run_id = ? ORDER BY seq"), (run_id,)).fetchall()
                new = upgrade(run_id, rows)
                if new is not None:
                    tx.execute(self.sql("DELETE FROM {p}events WHERE run_id = ?"), (run_id,))
                    for r in new:
                        tx.execute(self.sql(_INSERT + "(?, ?, ?, ?{j}, ?, ?)"), (run_id, *r))
        tx.execute(self.sql("DELETE FROM {m} WHERE key = 'schema_version'"))
        tx.execute(self.sql("INSERT INTO {m} (key, value) VALUES ('schema_version', ?)"), (str(version),))

    @property
    def schema_version(self) -> int:
        return int(self._read(self.sql("SELECT value FROM {m} WHERE key = 'schema_version'"))[0][0])

    # ------------------------------------------------------------------ writes
    def commit(self, commits: list[Commit]) -> list[BaseException | None]:
        """All ``commits`` in one transaction, applied one after another as ``_apply`` does (see
        RunStore); a run's commits after a refused one are refused with its error."""
        if not commits:
            return []

        def write(tx: Tx) -> list[BaseException | None]:
            leases, now = self._leases(tx, sorted({c.run_id for c in commits}))
            refused: dict[str, BaseException] = {}
            out: list[BaseException | None] = []
            for c in commits:
                err = refused.get(c.run_id) or self._apply(tx, c, leases, now)
                if err is not None:
                    refused[c.run_id] = err
                out.append(err)
            return out

        out = self._write(write, "")
        boundary(f"{self.dialect.name}:committed")
        return out

    def _leases(self, tx: Tx, ids: list[str]) -> tuple[dict[str, Lease], float]:
        """The runs' leases (``ids`` sorted: the rows are locked in one order, so two writers
        cannot deadlock), read in the open transaction, and the time."""
        leases: dict[str, Lease] = {}
        now = None
        clock = self.dialect.now
        for k in range(0, len(ids), _ROWS):
            chunk = ids[k:k + _ROWS]
            for r in tx.execute(self.sql(
                    f"SELECT run_id, owner, epoch, lease_until{f', {clock}' if clock else ''} FROM {{p}}runs "
                    f"WHERE run_id IN ({', '.join('?' * len(chunk))}) ORDER BY run_id {self.dialect.lock}"),
                    chunk).fetchall():
                leases[r[0]] = (r[1], r[2], r[3])
                now = r[4] if clock else None
        return leases, self._now(tx) if now is None else now

    def _apply(self, tx: Tx, c: Commit, leases: dict[str, Lease], now: float) -> BaseException | None:
        """One commit in the open transaction: its run row made (if asked), its epoch checked
        against the run's lease, its rows inserted (a row that collides is skipped), its run row
        changed. Refused (its error returned) with what it wrote deleted again."""
        r = c.create
        if r is not None:
            if tx.execute(self.sql("INSERT INTO {p}runs (run_id, agent_name, status, created_at, updated_at, "
                                   "prompt_kwargs, model_kwargs, config, steps, owner, epoch, lease_until) VALUES "
                                   "(?, ?, ?, ?, ?, ?{j}, ?{j}, ?{j}, 0, ?, ?, ?) ON CONFLICT DO NOTHING"),
                          (r.run_id, r.agent_name, r.status, r.created_at or now, now, dumps(r.prompt_kwargs),
                           dumps(r.model_kwargs), dumps(r.config), r.owner, r.epoch, r.lease_until)).rowcount == 0:
                return JournalConflictError(f"run {c.run_id!r} is already in the store")
            leases[c.run_id] = (r.owner, r.epoch, r.lease_until)
        # (an unfenced writer's new run: nobody held it; its lease is the record's)
        err = None if r is not None and c.epoch is None else _check(c, leases.get(c.run_id), now)
        landed: list[int] = []
        for k in range(0, len(c.entries) if err is None else 0, _ROWS):
            chunk = c.entries[k:k + _ROWS]
            params: list[object] = []
            for e in chunk:
                params += (e.run_id, e.seq, e.name, _text(e.payload), e.created_at, e.key)
            boundary(f"{self.dialect.name}:insert")
            got = tx.execute(self.sql(_INSERT + ", ".join(["(?, ?, ?, ?{j}, ?, ?)"] * len(chunk)) + _SKIP),
                             params).fetchall()
            landed += (row[0] for row in got)
            if len(got) < len(chunk):
                err = JournalConflictError(f"run {c.run_id!r}: an entry with the same seq or key is already "
                                           "journaled")
                break
        if err is not None:
            for seq in landed:
                tx.execute(self.sql("DELETE FROM {p}events WHERE run_id = ? AND seq = ?"), (c.run_id, seq))
            if r is not None:
                tx.execute(self.sql("DELETE FROM {p}runs WHERE run_id = ?"), (c.run_id,))
            return err
        if c.fields or c.release:
            sets = [f"{k} = ?{'{j}' if k in _JSON_FIELDS else ''}" for k in c.fields]
            params = [dumps(v) if k in _JSON_FIELDS and v is not None else v for k, v in c.fields.items()]
            if c.release:
                sets.append("owner = NULL")
                lease = leases.get(c.run_id)
                if lease is not None:
                    leases[c.run_id] = (None, lease[1], lease[2])
            tx.execute(self.sql(f"UPDATE {{p}}runs SET {', '.join(sets)}, updated_at = ? WHERE run_id = ?"),
                       (*params, now, c.run_id))
        return None

    def acquire(self, run_id: str, owner: str, ttl: float) -> RunRecord:
        """Take the run's lease for ``owner`` (a new epoch). Raises ``RunLeasedError`` while a
        live process holds it, ``UserError`` when there is no such run. A run that ended is
        returned as it is, not taken."""

        def take(tx: Tx) -> RunRecord:
            rows = tx.execute(self.sql(f"SELECT {_COLS} FROM {{p}}runs WHERE run_id = ? {self.dialect.lock}"),
                              (run_id,)).fetchall()
            if not rows:
                raise UserError(f"no run {run_id!r} in the store")
            record = _record(rows[0])
            if record.status not in ENDED:
                now = self._now(tx)
                if not lease_is_free(record.owner, record.lease_until, now):
                    raise _leased(record, now)
                record.owner, record.epoch, record.lease_until = owner, record.epoch + 1, now + ttl
                tx.execute(self.sql("UPDATE {p}runs SET owner = ?, epoch = ?, lease_until = ?, updated_at = ? "
                                    "WHERE run_id = ?"), (owner, record.epoch, record.lease_until, now, run_id))
            return record

        record = self._write(take, "acquire-")
        boundary(f"{self.dialect.name}:acquired")
        return record

    def renew(self, leases: list[tuple[str, int]], ttl: float) -> list[str]:
        """Extend the leases still held (run id, epoch); returns the run ids whose lease was lost
        (their epoch moved on: another process took them over). A run with no row yet (its
        creation is still queued in the writer) is not lost: its row will carry a fresh lease."""

        def extend(tx: Tx) -> list[str]:
            until = self._now(tx) + ttl
            lost: list[str] = []
            for run_id, epoch in leases:
                if tx.execute(self.sql("UPDATE {p}runs SET lease_until = ? WHERE run_id = ? AND epoch = ?"),
                              (until, run_id, epoch)).rowcount == 0 and \
                        tx.execute(self.sql("SELECT 1 FROM {p}runs WHERE run_id = ?"), (run_id,)).fetchall():
                    lost.append(run_id)
            return lost

        return self._write(extend, None) if leases else []

    # ------------------------------------------------------------------ reads
    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._read(self.sql(f"SELECT {_COLS} FROM {{p}}runs WHERE run_id = ?"), (run_id,))
        return _record(rows[0]) if rows else None

    def list_runs(self, *, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Newest first; a negative ``limit`` means all of them."""
        where, params = ("", []) if status is None else ("WHERE status = ? ", [status])
        rows = self._read(self.sql(f"SELECT {_COLS} FROM {{p}}runs {where}ORDER BY created_at DESC, run_id DESC "
                                   "LIMIT ?"), (*params, limit if limit >= 0 else 1 << 62))
        return [_record(r) for r in rows]

    def events(self, run_id: str) -> list[JournalEntry]:
        rows = self._read(self.sql("SELECT seq, name, payload{t}, created_at, key FROM {p}events WHERE run_id = ? "
                                   "ORDER BY seq"), (run_id,))
        return [JournalEntry(run_id, seq, name, json.loads(payload), created, key)
                for seq, name, payload, created, key in rows]


def _record(row: RunRow) -> RunRecord:
    def opt(text: str | None) -> dict[str, JsonValue] | None:
        return json.loads(text) if text else None

    return RunRecord(run_id=row[0], agent_name=row[1], status=row[2], created_at=row[3], updated_at=row[4],
                     prompt_kwargs=json.loads(row[5]), model_kwargs=json.loads(row[6]), config=json.loads(row[7]),
                     result=opt(row[8]), usage=opt(row[9]), steps=row[10], owner=row[11], epoch=row[12],
                     lease_until=row[13])


def _text(payload: object) -> str:
    """A payload as JSON text (the journal hands bytes; other writers may hand str or data)."""
    if isinstance(payload, bytes):
        return payload.decode()
    return payload if isinstance(payload, str) else dumps(payload)


def _check(c: Commit, lease: Lease | None, now: float) -> BaseException | None:
    """Whether ``c`` may write, given the run's lease read in its transaction."""
    if c.epoch is not None:
        if lease is None or lease[1] != c.epoch:
            return RunOwnershipLostError(
                f"run {c.run_id!r} was taken over by another process (epoch {lease[1] if lease else '-'}, this "
                f"writer's {c.epoch}): this process stops the run")
        return None
    if lease is not None and not lease_is_free(lease[0], lease[2], now):
        return RunLeasedError(f"run {c.run_id!r} is being run by {lease[0]} (lease until "
                              f"{time.strftime('%H:%M:%S', time.localtime(lease[2]))}): decide or resume it there, "
                              "or wait for its lease to expire", owner=lease[0], lease_until=lease[2])
    return None


def _leased(record: RunRecord, now: float) -> RunLeasedError:
    left = max(0.0, record.lease_until - now)
    return RunLeasedError(f"run {record.run_id!r} is being run by a live process ({record.owner}; its lease has "
                          f"{left:.1f} s left, renewed while it runs): resume it only after that process stopped",
                          owner=record.owner, lease_until=record.lease_until)
