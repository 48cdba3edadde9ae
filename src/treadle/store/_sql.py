"""What the SQLite and PostgreSQL stores share: one commit path, the lease writes and the reads.

A store subclass gives its dialect as data (``Dialect``: placeholder, casts, how rows are
locked, how a conflicting insert is told) and two ways in: ``_write`` (a function run in one
write transaction, with the crash tests' boundaries) and ``_read`` (one query).

``commit`` applies a group of commits in one transaction, one after another, each fenced by
its epoch: a refused commit's rows are deleted again (the statements that refuse never fail
the transaction), and a run's commits after a refused one are refused too. The outcome is
that of committing them one by one.
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
    # what an events INSERT ends with: "" (a conflict fails the statement alone, nothing of it lands: one
    # statement a commit) or " ON CONFLICT DO NOTHING RETURNING run_id, seq" (a failed statement would abort
    # the whole transaction: the rows of all the commits in one, a colliding row skipped and told by its absence)
    on_conflict: str
    max_rows: int  # rows per INSERT (6 parameters a row)
    now: str | None  # the database's clock, or None: this host's


class SQLRunStore:
    """The shared body of the SQL stores (see the module's docstring)."""

    dialect: Dialect
    prefix = ""
    meta = "{p}meta"  # the name of the table of the schema's version
    conflict: type[Exception] = Exception  # what a unique-key violation raises

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
                        tx.execute(self._insert(1), (run_id, *r))
        tx.execute(self.sql("DELETE FROM {m} WHERE key = 'schema_version'"))
        tx.execute(self.sql("INSERT INTO {m} (key, value) VALUES ('schema_version', ?)"), (str(version),))

    @property
    def schema_version(self) -> int:
        return int(self._read(self.sql("SELECT value FROM {m} WHERE key = 'schema_version'"))[0][0])

    # ------------------------------------------------------------------ writes
    def commit(self, commits: list[Commit]) -> list[BaseException | None]:
        """All ``commits`` in one transaction, applied as if one after another, each whole or
        refused; a run's commits after a refused one are refused too (with its error). See RunStore.

        First each commit is admitted in order (its run row made if asked, its epoch checked, its
        rows unique within the group); then the admitted commits' rows are inserted (PostgreSQL:
        all in one statement, a row that collides skipped; SQLite: a statement a commit, which
        fails alone); a commit whose rows did not all land is refused, its writes deleted again;
        last, the run-row changes of the commits that stand."""
        if not commits:
            return []

        def write(tx: Tx) -> list[BaseException | None]:
            leases, now = self._leases(tx, list(dict.fromkeys(c.run_id for c in commits)))
            out: list[BaseException | None] = [None] * len(commits)
            failed: dict[str, BaseException] = {}
            made: set[int] = set()  # commits that made their run's row
            seen: set[tuple[str, object]] = set()
            todo: list[int] = []
            for i, c in enumerate(commits):
                err = failed.get(c.run_id) or self._admit(tx, c, leases, now)
                if err is None and c.create is not None:
                    made.add(i)
                if err is None and self.dialect.on_conflict:  # (one INSERT for all: a collision in it is told here)
                    keys = [(e.run_id, e.seq) for e in c.entries] + [(e.run_id, f"key:{e.key}") for e in c.entries
                                                                     if e.key is not None]
                    if seen.intersection(keys) or len(set(keys)) < len(keys):
                        err = _conflict(c, "")
                    seen.update(keys)
                if err is None:
                    todo.append(i)
                else:
                    out[i] = failed.setdefault(c.run_id, err)
            landed: dict[int, list[int]] = {}
            broken: set[str] = set()  # runs a commit of which was refused at its insert (SQLite: its later ones wait)
            for group in [todo] if self.dialect.on_conflict else [[i] for i in todo]:
                self._append(tx, commits, [i for i in group if commits[i].run_id not in broken], landed, out)
                broken.update(commits[i].run_id for i in group if out[i] is not None)
            dead: dict[str, BaseException] = {}
            for i, c in enumerate(commits):  # in order: what stands, what is undone
                err = out[i] or dead.get(c.run_id)
                if err is not None:
                    out[i] = dead.setdefault(c.run_id, err)
                    for seq in landed.get(i, ()):
                        tx.execute(self.sql("DELETE FROM {p}events WHERE run_id = ? AND seq = ?"), (c.run_id, seq))
                    if i in made:
                        tx.execute(self.sql("DELETE FROM {p}runs WHERE run_id = ?"), (c.run_id,))
                elif c.fields or c.release:
                    self._update(tx, c, now)
            return out

        out = self._write(write, "")
        boundary(f"{self.dialect.name}:committed")
        return out

    def _leases(self, tx: Tx, ids: list[str]) -> tuple[dict[str, Lease], float]:
        """The runs' leases, read (and locked) in the open transaction, and the time."""
        leases: dict[str, Lease] = {}
        ids.sort()  # (rows locked in one order: no deadlock between two writers)
        now = None
        clock = self.dialect.now
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            sql = self._sqls.get(f"leases {len(chunk)}")
            if sql is None:
                sql = self._sqls[f"leases {len(chunk)}"] = self.sql(
                    f"SELECT run_id, owner, epoch, lease_until{f', {clock}' if clock else ''} FROM {{p}}runs WHERE "
                    f"run_id IN ({', '.join('?' * len(chunk))}) ORDER BY run_id {self.dialect.lock}")
            for r in tx.execute(sql, chunk).fetchall():
                leases[r[0]] = (r[1], r[2], r[3])
                now = r[4] if clock else None
        return leases, self._now(tx) if now is None else now

    def _admit(self, tx: Tx, c: Commit, leases: dict[str, Lease], now: float) -> BaseException | None:
        """Make the commit's run row (if asked), then check its right to write (its epoch)."""
        if c.create is not None:
            r = c.create
            if tx.execute(self.sql("INSERT INTO {p}runs (run_id, agent_name, status, created_at, updated_at, "
                                   "prompt_kwargs, model_kwargs, config, steps, owner, epoch, lease_until) VALUES "
                                   "(?, ?, ?, ?, ?, ?{j}, ?{j}, ?{j}, 0, ?, ?, ?) ON CONFLICT DO NOTHING"),
                          (r.run_id, r.agent_name, r.status, r.created_at or now, now, dumps(r.prompt_kwargs),
                           dumps(r.model_kwargs), dumps(r.config), r.owner, r.epoch, r.lease_until)).rowcount == 0:
                return JournalConflictError(f"run {c.run_id!r} is already in the store")
            leases[c.run_id] = (r.owner, r.epoch, r.lease_until)
            if c.epoch is None:  # an unfenced writer's new run: nobody held it (its lease is the record's)
                return None
        err = _check(c, leases.get(c.run_id), now)
        lease = leases.get(c.run_id)
        if err is None and c.release and lease is not None:
            leases[c.run_id] = (None, lease[1], lease[2])
        return err

    def _update(self, tx: Tx, c: Commit, now: float) -> None:
        sets = [f"{k} = ?{'{j}' if k in _JSON_FIELDS else ''}" for k in c.fields]
        params: list[object] = [dumps(v) if k in _JSON_FIELDS and v is not None else v for k, v in c.fields.items()]
        if c.release:
            sets.append("owner = NULL")
        tx.execute(self.sql(f"UPDATE {{p}}runs SET {', '.join(sets)}, updated_at = ? WHERE run_id = ?"),
                   (*params, now, c.run_id))

    def _insert(self, n: int) -> str:
        s = self._sqls.get(str(n))
        if s is None:
            s = self._sqls[str(n)] = self.sql("INSERT INTO {p}events (run_id, seq, name, payload, created_at, key) "
                                              "VALUES " + ", ".join(["(?, ?, ?, ?{j}, ?, ?)"] * n))
        return s

    def _append(self, tx: Tx, commits: list[Commit], group: list[int], landed: dict[int, list[int]],
                out: list[BaseException | None]) -> None:
        """The rows of the commits ``group`` (indexes in ``commits``); ``landed``: the seqs each wrote
        (deleted again when it is refused); a commit whose rows did not all land is refused."""
        rows = [(i, e) for i in group for e in commits[i].entries]
        got: set[tuple[str, int]] = set()
        for k in range(0, len(rows), self.dialect.max_rows):
            chunk = rows[k:k + self.dialect.max_rows]
            params: list[object] = []
            for _, e in chunk:
                params += (e.run_id, e.seq, e.name, _text(e.payload), e.created_at, e.key)
            boundary(f"{self.dialect.name}:insert")
            try:
                cur = tx.execute(self._insert(len(chunk)) + self.dialect.on_conflict, params)
            except self.conflict as e:  # (a statement a commit: nothing of this one landed)
                i = chunk[0][0]
                out[i] = _conflict(commits[i], str(e))
                return
            now = {(r[0], r[1]) for r in cur.fetchall()} if self.dialect.on_conflict else \
                {(e.run_id, e.seq) for _, e in chunk}
            got |= now
            for i, e in chunk:
                if (e.run_id, e.seq) in now:
                    landed.setdefault(i, []).append(e.seq)
        for i in group:
            c = commits[i]
            if out[i] is None and not all((e.run_id, e.seq) in got for e in c.entries):
                out[i] = _conflict(c, "")

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

    # the older one-thing-at-a-time writes, as unfenced commits (refused while a live process owns the run)
    def create_run(self, record: RunRecord) -> None:
        _raise(self.commit([Commit(record.run_id, None, create=record)]))

    def append(self, entries: list[JournalEntry], *, durable: bool = True) -> None:
        by_run: dict[str, Commit] = {}
        for e in entries:
            by_run.setdefault(e.run_id, Commit(e.run_id, None)).entries.append(e)
        _raise(self.commit(list(by_run.values())))

    def update_run(self, run_id: str, *, status: str, steps: int, usage: dict[str, JsonValue] | None = None,
                   result: dict[str, JsonValue] | None = None) -> None:
        fields = {"status": status, "steps": steps, "usage": usage, "result": result}
        _raise(self.commit([Commit(run_id, None, fields={k: v for k, v in fields.items() if v is not None})]))

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


def _raise(results: list[BaseException | None]) -> None:
    for r in results:
        if r is not None:
            raise r


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


def _conflict(c: Commit, detail: str) -> JournalConflictError:
    detail = detail.splitlines()[0] if detail else ""
    return JournalConflictError(f"run {c.run_id!r}: an entry with the same seq or key is already journaled"
                                + (f" ({detail})" if detail else ""))


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
