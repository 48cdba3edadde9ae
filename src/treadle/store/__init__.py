"""Durable runs: the RunStore journal (SQLite by default) and resuming from it."""

from typing import TYPE_CHECKING

from .._plugs import check_plug
from ..errors import UserError
from .base import JournalEntry, RunRecord, RunStore
from .replay import Difference, ReplayReport, fork_run, replay_run
from .sqlite import SQLiteRunStore, default_store_path

if TYPE_CHECKING:
    from .postgres import PostgresRunStore


def __getattr__(name: str) -> object:  # PostgresRunStore imports psycopg: only on demand
    if name == "PostgresRunStore":
        from .postgres import PostgresRunStore

        return PostgresRunStore
    raise AttributeError(name)

__all__ = ["Difference", "JournalEntry", "PostgresRunStore", "ReplayReport", "RunRecord", "RunStore",
           "SQLiteRunStore", "default_store_path", "fork_run", "open_store", "replay_run"]


def open_store(spec: RunStore | str) -> RunStore:
    """A RunStore from an object or a URL: ``sqlite:///path.db``, or
    ``postgresql://user:pw@host/db[?table_prefix=name_]`` (psycopg 3, extra ``[postgres]``).
    An object must fit the ``RunStore`` protocol (``UserError`` naming what it lacks)."""
    if not isinstance(spec, str):
        check_plug(spec, RunStore, "run store")
        return spec
    if spec.startswith("sqlite://"):
        from .sqlite import SQLiteRunStore

        path = spec[len("sqlite://"):]
        return SQLiteRunStore(path[1:] if path.startswith("/") and not path.startswith("//") else path)
    if spec.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresRunStore

        return PostgresRunStore.from_url(spec)
    raise UserError(f"unknown store {spec!r}; use sqlite:///path/to/runs.db or postgresql://…")

