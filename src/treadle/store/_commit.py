"""What every RunStore decides the same way: whether a commit may be applied, and how a
run row changes. The SQL around it is each store's own."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pydantic_core import to_json

from ..errors import RunLeasedError, RunOwnershipLostError
from ..types import _flat
from .base import Commit, JournalEntry, RunRecord, lease_is_free

__all__ = ["ENDED", "OlderWrites", "check_commit", "commits_for", "dumps", "leased", "payload_text", "raise_first",
           "run_update"]

ENDED = frozenset({"success", "max_steps", "error", "cancelled"})
_JSON_FIELDS = frozenset({"usage", "result", "prompt_kwargs"})


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    """JSON text as the stores write it (compact, UTF-8 kept)."""
    if type(value) is dict and _flat(value):  # the usual run row's field: pydantic's encoder, a quarter of the time
        return to_json(value).decode()
    return _ENCODER.encode(value)


def payload_text(payload: Any) -> str:
    """A payload as JSON text (the journal hands bytes; other writers may hand str or data)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload).decode()
    if isinstance(payload, str):
        return payload
    return dumps(payload)


def check_commit(c: Commit, row: list[Any] | None, now: float) -> BaseException | None:
    """``row``: the run's [owner, epoch, lease_until] read in the commit's transaction."""
    if c.epoch is not None:
        if row is None or row[1] != c.epoch:
            return RunOwnershipLostError(
                f"run {c.run_id!r} was taken over by another process (epoch {row[1] if row else '-'}, this "
                f"writer's {c.epoch}): this process stops the run")
        return None
    if row is not None and not lease_is_free(row[0], row[2], now):
        return RunLeasedError(f"run {c.run_id!r} is being run by {row[0]} (lease until "
                              f"{time.strftime('%H:%M:%S', time.localtime(row[2]))}): decide or resume it there, "
                              "or wait for its lease to expire", owner=row[0], lease_until=row[2])
    return None


def leased(record: RunRecord, now: float) -> RunLeasedError:
    left = max(0.0, record.lease_until - now)
    return RunLeasedError(f"run {record.run_id!r} is being run by a live process ({record.owner}; its lease has "
                          f"{left:.1f} s left, renewed while it runs): resume it only after that process stopped",
                          owner=record.owner, lease_until=record.lease_until)


def run_update(c: Commit, now: float, dumps: Callable[[Any], str], mark: str) -> tuple[str, list[Any]]:
    """The SET clause (with ``mark`` placeholders) and its parameters for ``c``'s run-row change."""
    if not c.fields and not c.release:
        return "", []
    sets, params = [], []
    for k, v in c.fields.items():
        sets.append(f"{k}={mark}")
        params.append(dumps(v) if k in _JSON_FIELDS and v is not None else v)
    if c.release:
        sets.append("owner=NULL")
    sets.append(f"updated_at={mark}")
    params.append(now)
    return ", ".join(sets), params


def commits_for(entries: list[JournalEntry]) -> list[Commit]:
    """Unfenced commits appending ``entries`` (one per run, in order)."""
    by_run: dict[str, Commit] = {}
    for e in entries:
        c = by_run.get(e.run_id)
        if c is None:
            c = by_run[e.run_id] = Commit(e.run_id, None)
        c.entries.append(e)
    return list(by_run.values())


class OlderWrites:
    """The older, one-thing-at-a-time writes, as commits (unfenced: refused while a live process owns the run)."""

    def commit(self, commits: list[Commit]) -> list[BaseException | None]:
        raise NotImplementedError

    def create_run(self, record: RunRecord) -> None:
        raise_first(self.commit([Commit(record.run_id, None, create=record)]))

    def append(self, entries: list[JournalEntry], *, durable: bool = True) -> None:
        raise_first(self.commit(commits_for(entries)))

    def update_run(self, run_id: str, *, status: str, steps: int, usage: dict[str, Any] | None = None,
                   result: dict[str, Any] | None = None) -> None:
        fields = {"status": status, "steps": steps, "usage": usage, "result": result}
        raise_first(self.commit([Commit(run_id, None, fields={k: v for k, v in fields.items() if v is not None})]))


def raise_first(results: list[BaseException | None]) -> None:
    for r in results:
        if r is not None:
            raise r
