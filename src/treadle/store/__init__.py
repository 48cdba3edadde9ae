"""Durable runs: the RunStore journal (SQLite by default) and resuming from it."""

from typing import TYPE_CHECKING

from .base import JournalEntry, RunRecord, RunStore
from .journal import InterruptPolicy, Journal, open_store, record_decision, restore
from .replay import Difference, ReplayReport, fork_run, replay_run
from .sqlite import SQLiteRunStore, default_store_path

if TYPE_CHECKING:
    from .postgres import PostgresRunStore


def __getattr__(name: str) -> object:  # PostgresRunStore imports psycopg: only on demand
    if name == "PostgresRunStore":
        from .postgres import PostgresRunStore

        return PostgresRunStore
    raise AttributeError(name)

__all__ = ["Difference", "InterruptPolicy", "Journal", "JournalEntry", "PostgresRunStore", "ReplayReport",
           "RunRecord", "RunStore",
           "SQLiteRunStore", "default_store_path", "fork_run", "open_store", "record_decision", "replay_run",
           "restore"]
