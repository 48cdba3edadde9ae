"""The RunStore plug point: where runs are journaled so they survive a crash."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["JournalEntry", "RunRecord", "RunStore", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


@dataclass(slots=True)
class RunRecord:
    """One run's row: what it needs to continue (prompt, config) and how it ended."""

    run_id: str
    agent_name: str = ""
    status: str = "running"
    created_at: float = 0.0
    updated_at: float = 0.0
    prompt_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # max_steps, model name, session id, …
    result: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    steps: int = 0


@dataclass(slots=True)
class JournalEntry:
    """One journaled event of a run, in ``seq`` order, as JSON-ready data."""

    run_id: str
    seq: int
    name: str
    payload: Any  # the event as a dict when read back; when written, a dict or its JSON (bytes/str)
    created_at: float


@runtime_checkable
class RunStore(Protocol):
    """A journal of runs. Calls are synchronous and thread-safe; ``append`` with
    ``durable=True`` returns only once the entries are committed."""

    def create_run(self, record: RunRecord) -> None: ...

    def append(self, entries: list[JournalEntry], *, durable: bool) -> None: ...

    def update_run(self, run_id: str, *, status: str, steps: int, usage: dict[str, Any] | None = None,
                   result: dict[str, Any] | None = None) -> None: ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(self, *, status: str | None = None, limit: int = 100) -> list[RunRecord]: ...

    def events(self, run_id: str) -> list[JournalEntry]: ...

    def close(self) -> None: ...
