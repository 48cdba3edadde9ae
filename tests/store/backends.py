"""The run stores under test (SQLite, PostgreSQL), made by ``make_backend`` (fixtures: conftest.py).

PostgreSQL: the tests connect to $TREADLE_TEST_POSTGRES_DSN (``eval "$(bash .ci/postgres.sh)"``
starts a local server and sets it). Without it they fail under CI and are skipped elsewhere.
Each test gets its own tables (a random prefix), dropped afterwards.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import postgres_dsn as _postgres_dsn
from treadle.store import SQLiteRunStore

DSN_ENV = "TREADLE_TEST_POSTGRES_DSN"


def postgres_dsn() -> str:
    return _postgres_dsn("PostgreSQL run store")


@dataclass
class Backend:
    """A store under test, how to reach the same data again, and raw SQL on its tables."""

    kind: str
    make: Callable[[], Any]
    url: str  # for open_store / Runner(store=…) / another process
    tables: dict[str, str]  # {runs}, {events}, {meta} -> the real names
    execute: Callable[[str, tuple[Any, ...]], None]
    opened: list[Any] = field(default_factory=list)

    def open(self) -> Any:
        store = self.make()
        self.opened.append(store)
        return store

    @property
    def store(self) -> Any:
        return self.opened[0] if self.opened else self.open()

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        """``statement`` with ``{runs}``-style table names and ``?`` placeholders, outside any store."""
        self.execute(statement.format(**self.tables), params)


def make_backend(kind: str, tmp_path: Path) -> Iterator[Backend]:
    if kind == "sqlite":
        path = tmp_path / "sub" / "runs.db"

        def execute(statement: str, params: tuple[Any, ...]) -> None:
            db = sqlite3.connect(path, isolation_level=None, timeout=30)
            try:
                db.execute(statement, params)
            finally:
                db.close()

        b = Backend(kind, lambda: SQLiteRunStore(str(path)), f"sqlite:///{path}",
                    {"runs": "runs", "events": "events", "meta": "treadle_meta"}, execute)
        yield b
        for s in b.opened:
            s.close()
        return
    dsn = postgres_dsn()
    import psycopg

    from treadle.store.postgres import PostgresRunStore

    prefix = f"t{uuid.uuid4().hex[:12]}_"
    tables = {name: prefix + name for name in ("runs", "events", "meta")}

    def execute(statement: str, params: tuple[Any, ...]) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement.replace("?", "%s"), params)

    url = f"{dsn}{'&' if '?' in dsn else '?'}table_prefix={prefix}"
    b = Backend(kind, lambda: PostgresRunStore(dsn, table_prefix=prefix), url, tables, execute)
    yield b
    for s in b.opened:
        s.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS {runs}, {events}, {meta}".format(**tables))
