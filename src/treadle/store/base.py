"""The RunStore plug point: where runs are journaled so they survive a crash.

A store keeps two tables: ``runs`` (one row a run: its prompt, configuration, status and
*lease*) and ``events`` (the run's events in ``seq`` order). Every change goes through
``commit``: event rows and the run row change in one transaction, and each commit is
fenced by the writer's lease epoch.

Ownership. A run is owned by one process at a time through a lease: ``owner`` (host, pid
and a random token), ``epoch`` (raised at every take-over) and ``lease_until`` (renewed by a
heartbeat while the run lives). ``acquire`` takes a run whose lease is free, expired, or
held by a process of this host that no longer exists; a write carrying an older epoch is
refused with ``RunOwnershipLostError``, so a stale owner cannot add to a run another
process took over.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .._factories import new_dict, new_list
from ..types import new_id

__all__ = ["ENDED", "Commit", "JournalEntry", "RunRecord", "RunStore", "SCHEMA_VERSION", "lease_is_free", "new_owner",
]

ENDED = frozenset({"success", "max_steps", "error", "cancelled"})  # a run's status once it ended
SCHEMA_VERSION = 5  # one JSON event a row (3 and 4: shared rows, store._migrate)


@dataclass(slots=True)
class RunRecord:
    """One run's row: what it needs to continue (prompt, config), how it ended, who owns it."""

    run_id: str
    agent_name: str = ""
    status: str = "running"
    created_at: float = 0.0
    updated_at: float = 0.0
    prompt_kwargs: dict[str, Any] = field(default_factory=new_dict)
    model_kwargs: dict[str, Any] = field(default_factory=new_dict)
    config: dict[str, Any] = field(default_factory=new_dict)  # max_steps, model name, session id, …
    result: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    steps: int = 0
    owner: str | None = None  # the lease: who runs it now (None: nobody)
    epoch: int = 0  # raised by every acquire; writes carry it (fencing)
    lease_until: float = 0.0  # wall-clock seconds; past it the lease may be taken over


@dataclass(slots=True)
class JournalEntry:
    """One journaled event of a run, in ``seq`` order, as JSON-ready data.

    ``key``, when set, is unique within the run (e.g. ``decision:<call_id>``): a second
    entry with the same key is refused, which makes "first decision wins" atomic."""

    run_id: str
    seq: int
    name: str
    payload: Any  # the event as a dict when read back; when written, a dict or its JSON (bytes/str)
    created_at: float
    key: str | None = None
    _record: Any = field(default=None, repr=False, compare=False)

    @property
    def record(self) -> Any:
        """The entry as a typed record (``store.records``: ``CallStart``, ``StepComplete``, ``Reply``, …)."""
        rec = self._record
        if rec is None:
            from .records import decode

            rec = self._record = decode(self.payload)
        return rec


@dataclass(slots=True)
class Commit:
    """One atomic change to one run: entries appended and run-row fields set together.

    ``epoch``: the writer's lease epoch; the commit is refused unless the run's epoch is
    still this one. ``None``: a writer that owns no lease (a decision on a suspended run, a
    fork): refused while a live process holds the run's lease.
    ``create``: insert the run row first (with the lease ``owner``/``epoch``/``lease_until``
    it carries); refused if the run id exists. ``release``: clear the lease (the run ended).
    """

    run_id: str
    epoch: int | None
    entries: list[JournalEntry] = field(default_factory=new_list)
    fields: dict[str, Any] = field(default_factory=new_dict)
    create: RunRecord | None = None
    release: bool = False


# ---------------------------------------------------------------------------- owners
_HOST = socket.gethostname()
_live_lock = threading.Lock()
_live_tokens: set[str] = set()  # leases held by runs of this process


def new_owner() -> str:
    """A fresh owner id ``host/pid/token`` for one run attempt, registered as live here."""
    token = new_id()[:12]  # the per-process generator: no system call a run
    with _live_lock:
        _live_tokens.add(token)
    return f"{_HOST}/{os.getpid()}/{token}"


def drop_owner(owner: str) -> None:
    """The run attempt ended (or crashed inside this process): its lease is no longer live."""
    with _live_lock:
        _live_tokens.discard(owner.rsplit("/", 1)[-1])


def _owner_alive(owner: str) -> bool:
    """False only when ``owner`` is certainly gone: a process of this host that no longer
    exists, or a run of this process that ended. Other hosts: assumed alive (their lease
    expires)."""
    try:
        host, pid_text, token = owner.rsplit("/", 2)
        pid = int(pid_text)
    except ValueError:
        return True
    if host != _HOST:
        return True
    if pid == os.getpid():
        with _live_lock:
            return token in _live_tokens
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is gone too
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return True


def lease_is_free(owner: str | None, lease_until: float, now: float) -> bool:
    """Whether a run's lease may be taken: nobody holds it, it expired, or its holder is gone."""
    return owner is None or lease_until < now or not _owner_alive(owner)


# a test hook: called with a label where a write can be cut (the crash tests kill the process there):
# before a transaction begins, before each INSERT of entries, before its COMMIT (every statement
# made, none durable) and after it (a cut anywhere inside a transaction rolls all of it back).
# None in normal use
boundary_hook: Callable[[str], None] | None = None


def boundary(label: str) -> None:
    hook = boundary_hook
    if hook is not None:
        hook(label)


@runtime_checkable
class RunStore(Protocol):
    """A journal of runs. Calls are synchronous and thread-safe.

    ``commit`` applies each ``Commit`` atomically (all of a batch in one transaction where
    the database allows), in order: the outcome is that of applying them one by one, and a
    run's commits after a refused one are refused too. It returns, per commit, ``None`` or
    the exception that refused it (``RunOwnershipLostError``, ``JournalConflictError``,
    ``RunLeasedError``), once the accepted commits are durable."""

    def commit(self, commits: list[Commit]) -> list[BaseException | None]: ...

    def acquire(self, run_id: str, owner: str, ttl: float) -> RunRecord: ...

    def renew(self, leases: list[tuple[str, int]], ttl: float) -> list[str]: ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(self, *, status: str | None = None, limit: int = 100) -> list[RunRecord]: ...

    def events(self, run_id: str) -> list[JournalEntry]: ...

    def close(self) -> None: ...
