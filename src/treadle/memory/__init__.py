"""Conversation memory: sessions of whole (user, assistant) turns, kept in a store.

The runner, at the start of a run, renders ``memory()`` into ``chat_history_str``; at the
end it calls ``reset_pending_query()``, ``add_user_query()`` and ``add_assistant_response()``
back to back, in every ending (a failed or cancelled run is recorded as such, so the user's
turn never vanishes). Methods may be sync or return awaitables.

Stores: ``InMemoryStore`` (this process), ``SQLiteMemoryStore`` (a file; ``treadle chat``'s
default at ``default_memory_path()``), ``PostgresMemoryStore`` (psycopg 3, extra ``[postgres]``).
"""

from __future__ import annotations

from ._core import (
    Conversation,
    ConversationMemory,
    DialogTurn,
    InMemoryStore,
    MemoryProtocol,
    MemoryStore,
    SessionInfo,
    TurnDB,
    approx_tokens,
)
from ._summary import SessionSummary, SummaryStore
from .postgres import PostgresMemoryStore
from .sqlite import MEMORY_DB_ENV, SQLiteMemoryStore, default_memory_path

__all__ = [
    "MEMORY_DB_ENV",
    "Conversation",
    "ConversationMemory",
    "DialogTurn",
    "InMemoryStore",
    "MemoryProtocol",
    "MemoryStore",
    "PostgresMemoryStore",
    "SQLiteMemoryStore",
    "SessionInfo",
    "SessionSummary",
    "SummaryStore",
    "TurnDB",
    "approx_tokens",
    "default_memory_path",
]
