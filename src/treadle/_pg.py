"""The PostgreSQL connection handling the memory and run stores share (psycopg 3).

One autocommit connection per store, guarded by a lock, opened again after a fork or
when the server dropped it; psycopg is imported only when a store is created.
"""

from __future__ import annotations

import os
import threading
from typing import Any


class PgConnectionOwner:
    """Base of the PostgreSQL stores. A subclass calls ``_pg_setup`` and implements
    ``_prepare(conn)`` (create or migrate its tables on a fresh connection)."""

    dsn: str

    def _pg_setup(self, dsn: str, *, label: str, app_name: str, connect_timeout: float,
                  connect_kwargs: dict[str, Any]) -> None:
        try:
            import psycopg
            import psycopg.conninfo  # loaded by psycopg itself; named so the type checker knows it
        except ImportError as e:
            raise ImportError(f"{label} needs psycopg 3: pip install 'treadle[postgres]'") from e
        self._pg = psycopg
        self.dsn = dsn
        self._connect_kwargs = {"connect_timeout": max(1, round(connect_timeout)), "application_name": app_name,
                                **connect_kwargs}
        self._lock = threading.RLock()
        self._conn: Any = None
        self._pid = 0
        self._closed = False
        self._schema_ready = False

    def _prepare(self, conn: Any) -> None:
        raise NotImplementedError

    def _connection(self) -> Any:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        conn = self._conn
        if conn is None or conn.closed or conn.broken or self._pid != os.getpid():
            if conn is not None and self._pid == os.getpid():
                conn.close()  # a forked child leaves its parent's connection alone
            self._conn = None
            conn = self._pg.connect(self.dsn, autocommit=True, **self._connect_kwargs)
            try:
                if not self._schema_ready:
                    self._prepare(conn)
                    self._schema_ready = True
            except BaseException:
                conn.close()
                raise
            self._conn, self._pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._closed = True
            if conn is not None and self._pid == os.getpid():
                conn.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self) -> str:
        """host/port/dbname/user of the DSN, never the password."""
        try:
            info = self._pg.conninfo.conninfo_to_dict(self.dsn)
        except Exception:
            info = {}
        return " ".join(f"{k}={info[k]}" for k in ("host", "port", "dbname", "user") if info.get(k)) \
            or "libpq defaults"
