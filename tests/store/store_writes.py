"""One-thing-at-a-time writes for the store tests, as unfenced commits (``store.commit``):
refused while a live process holds the run's lease; a refusal is raised."""

from __future__ import annotations

from treadle.store.base import Commit, JournalEntry, RunRecord, RunStore


def _raise(results: list[BaseException | None]) -> None:
    for r in results:
        if r is not None:
            raise r


def create_run(store: RunStore, record: RunRecord) -> None:
    _raise(store.commit([Commit(record.run_id, None, create=record)]))


def append(store: RunStore, entries: list[JournalEntry]) -> None:
    """The entries, a commit per run (in one transaction)."""
    by_run: dict[str, Commit] = {}
    for e in entries:
        by_run.setdefault(e.run_id, Commit(e.run_id, None)).entries.append(e)
    _raise(store.commit(list(by_run.values())))


def update_run(store: RunStore, run_id: str, **fields: object) -> None:
    """Set the run row's fields (those given as None are left as they are)."""
    _raise(store.commit([Commit(run_id, None, fields={k: v for k, v in fields.items() if v is not None})]))
