"""Durable runs: the RunStore journal (SQLite by default) and resuming from it."""

from .base import JournalEntry, RunRecord, RunStore
from .journal import InterruptPolicy, Journal, open_store, record_decision, restore
from .sqlite import SQLiteRunStore, default_store_path

__all__ = ["InterruptPolicy", "Journal", "JournalEntry", "RunRecord", "RunStore", "SQLiteRunStore",
           "default_store_path", "open_store", "record_decision", "restore"]
