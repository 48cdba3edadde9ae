"""A session's summary: its older turns folded into text by a model when the conversation
outgrows the context window (``treadle._context`` makes it; the store keeps it).

A store that keeps summaries (``SummaryStore``: the three shipped ones) stores the newest one per
session, durably, before the run that made it goes on. Reopened, the session's history is that
summary plus the turns after it, so no summary is asked for twice.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["HISTORY_SUMMARY_CLOSE", "HISTORY_SUMMARY_OPEN", "SessionSummary", "SummaryStore", "render_summary"]

HISTORY_SUMMARY_OPEN = "<SUMMARY_OF_EARLIER_TURNS>"
HISTORY_SUMMARY_CLOSE = "</SUMMARY_OF_EARLIER_TURNS>"


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """The summary of a session's turns of order below ``upto`` (it folds every earlier summary in)."""

    upto: int
    text: str
    model: str | None = None
    created_at: float = field(default_factory=time.time)


@runtime_checkable
class SummaryStore(Protocol):
    """A memory store that keeps each session's newest summary (methods may return awaitables)."""

    def save_summary(self, session_id: str, summary: SessionSummary) -> bool | Awaitable[bool]:
        """Keep ``summary`` unless the session's stored one covers as many turns or more; True when kept."""
        ...

    def load_summary(self, session_id: str) -> SessionSummary | Awaitable[SessionSummary | None] | None:
        """The session's summary (None: never summarised)."""
        ...


def render_summary(summary: SessionSummary | None, turns_text: str) -> str:
    """The history in the prompt: the summary (when there is one), then the turns after it."""
    if summary is None:
        return turns_text
    head = f"{HISTORY_SUMMARY_OPEN}\n{summary.text.strip()}\n{HISTORY_SUMMARY_CLOSE}"
    return f"{head}\n{turns_text}".strip()


def after(summary: SessionSummary | None, orders: Iterable[int]) -> int:
    """How many of the leading ``orders`` the summary already covers."""
    if summary is None:
        return 0
    n = 0
    for o in orders:
        if o >= summary.upto:
            break
        n += 1
    return n
