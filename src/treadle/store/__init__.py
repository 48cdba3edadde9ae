"""Durable runs: the RunStore journal (SQLite by default) and resuming from it."""

from .base import JournalEntry, RunRecord, RunStore
from .journal import InterruptPolicy, Journal, open_store, record_decision, restore
from .replay import Difference, ReplayReport, fork_run, replay_run
from .sqlite import SQLiteRunStore, default_store_path

__all__ = ["Difference", "InterruptPolicy", "Journal", "JournalEntry", "ReplayReport", "RunRecord", "RunStore",
           "SQLiteRunStore", "default_store_path", "fork_run", "open_store", "record_decision", "replay_run",
           "restore"]
