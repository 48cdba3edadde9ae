"""Reading a run's journal: its steps, the approvals it waits on, whether it ended, and how
journaled runs link up: a child run (an agent called as a tool, or an agent used as a
guardrail) and the run whose call ran it. For ``treadle show``/``runs`` and the server.

A child's record names its parent (``config.parent_run_id``, ``parent_call_id``,
``depth``); the parent's journal names its children: the ``agent.tool_call_complete`` of
the call (``output.metadata.child_run_id``), or, while the call still runs, the id derived
from the step and the call (:func:`treadle.types.child_run_id`), looked up in the store.
"""

from __future__ import annotations

from typing import Any

from .. import events as ev
from ..types import StepOutput, child_run_id
from .base import ENDED, JournalEntry, RunRecord, RunStore
from .records import CallComplete, CallStart, Decision, End, Guardrail, PermissionRequest, Reply, Request, StepComplete

__all__ = ["child_links", "is_child", "is_ended", "journaled_steps", "open_requests", "parent_link", "step_of",
           "top_level_runs", "waiting_requests"]


def step_of(r: StepComplete) -> StepOutput:
    return r.item.data.step_output() if r.item.data is not None else StepOutput()


def journaled_steps(entries: list[JournalEntry]) -> list[StepOutput]:
    """The recorded steps of a run, from its journal."""
    return [step_of(r) for r in (e.record for e in entries) if isinstance(r, StepComplete)]


def open_requests(entries: list[JournalEntry]) -> list[dict[str, Any]]:
    """The approval requests of one run's journal that nothing answered yet: not started,
    not decided (a recorded decision), not ended (a denied call's step): as journaled,
    ``{"id", "tool_name", "tool": {"name", "kwargs", "thought", …}, …}``."""
    answered: set[str | None] = set()
    asked: dict[str | None, Request] = {}
    for r in (e.record for e in entries):
        if isinstance(r, PermissionRequest):
            if r.item.data is not None:
                asked.setdefault(r.item.data.id or r.item.id, r.item.data)
        elif isinstance(r, (CallStart, CallComplete)):
            answered.add(r.item.id)
        elif isinstance(r, StepComplete):
            fn = r.item.data.function if r.item.data is not None else None
            answered.add(fn.id if fn is not None else None)
        elif isinstance(r, Decision):
            answered.add(r.call_id)
    return [req.model_dump(by_alias=True) for cid, req in asked.items() if cid not in answered]


def is_ended(record: RunRecord | None, entries: list[JournalEntry]) -> bool:
    """A run whose status or journal says it ended (a terminal event is the last word)."""
    return (record is not None and record.status in ENDED) or any(
        e.name == ev.EXECUTION_COMPLETE and isinstance(r := e.record, End) and r.item.data is not None
        and r.item.data.status in ENDED for e in entries)


def parent_link(record: RunRecord | None) -> dict[str, Any]:
    """``{"parent_run_id", "parent_call_id", "depth"}`` of a run (None, None, 0 for a top-level one)."""
    config = (record.config if record is not None else None) or {}
    parent = config.get("parent_run_id")
    return {"parent_run_id": parent if isinstance(parent, str) else None,
            "parent_call_id": config.get("parent_call_id") if parent else None,
            "depth": int(config.get("depth") or (1 if parent else 0))}


def is_child(record: RunRecord) -> bool:
    return bool((record.config or {}).get("parent_run_id"))


def child_links(store: RunStore, run_id: str, entries: list[JournalEntry] | None = None) -> list[dict[str, Any]]:
    """The child runs of ``run_id``, in the order their calls started: ``{"run_id",
    "call_id", "parent_call_id", "step", "kind" ("tool" or "guardrail"), "agent", "status"}``
    (``agent``/``status`` from the child's record; a child whose record is not written yet
    is left out)."""
    if entries is None:
        entries = store.events(run_id)
    step_of: dict[str, int] = {}
    started: list[str] = []
    known: dict[str, str] = {}  # call id -> child id named by the call's completion
    plain: set[str] = set()  # calls that completed without a child: ordinary tools
    guards: list[tuple[str, str | None, int]] = []
    for e in entries:
        r = e.record
        if isinstance(r, Reply):
            for call in r.calls or ():
                if isinstance(call.id, str):
                    step_of.setdefault(call.id, r.step)
        elif isinstance(r, CallStart):
            cid = r.item.id
            if isinstance(cid, str) and cid not in started:
                started.append(cid)
        elif isinstance(r, CallComplete):
            data = r.item.data
            cid = r.item.id or (data.input.id if data is not None and data.input is not None else None)
            child = data.child_run_id if data is not None else None
            if isinstance(cid, str):
                if child is not None:
                    known[cid] = child
                else:
                    plain.add(cid)
        elif isinstance(r, Guardrail):
            d = r.item.data
            if d is not None and d.guardrail and d.kind:
                guards.append((f"guardrail:{d.kind}:{d.guardrail}:{d.step or 0}:{d.call_id or ''}", d.call_id,
                               int(d.step or 0)))
    out: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(child: str, call_id: str | None, key: str, step: int, kind: str) -> None:
        if child in seen:
            return
        record = store.get_run(child)
        if record is None:
            return
        seen.add(child)
        link = parent_link(record)
        out.append({"run_id": child, "call_id": call_id, "parent_call_id": link["parent_call_id"] or key,
                    "step": step, "kind": kind, "agent": record.agent_name or None, "status": record.status})

    for cid in started:
        if cid in plain:
            continue
        step = step_of.get(cid, 0)
        key = f"{step}:{cid}"
        add(known.get(cid) or child_run_id(run_id, key), cid, key, step, "tool")
    for key, call_id, step in guards:
        add(child_run_id(run_id, key), call_id, key, step, "guardrail")
    return out


def waiting_requests(store: RunStore, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every call a run suspended for approval waits on, read from the journal (after a
    restart too): ``(run id, request)`` for its own calls, then its child runs' at any depth."""
    record = store.get_run(run_id)
    if record is None or record.status != "waiting_for_approval":
        return []
    own = [(run_id, r) for r in open_requests(store.events(run_id))]
    return own + waiting_inside(store, run_id)


def waiting_inside(store: RunStore, run_id: str, depth: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """For a run suspended while an inner agent's call waits for approval: ``(child run id,
    request)`` of each call that waits in its child runs, at any depth (``request`` as
    journaled: ``{"id", "tool_name", "tool", …}``)."""
    if depth > 32:
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    for link in child_links(store, run_id):
        if link.get("status") != "waiting_for_approval":
            continue
        child = link["run_id"]
        out.extend((child, r) for r in open_requests(store.events(child)))
        out.extend(waiting_inside(store, child, depth + 1))
    return out


def root_of(store: RunStore, record: RunRecord) -> RunRecord:
    """The outermost run a child run belongs to (itself for a top-level run)."""
    seen: set[str] = set()
    while True:
        parent = parent_link(record)["parent_run_id"]
        if parent is None or parent in seen:
            return record
        seen.add(parent)
        up = store.get_run(parent)
        if up is None:
            return record
        record = up


def top_level_runs(store: RunStore, *, status: str | None = None, limit: int = 100) -> list[RunRecord]:
    """The newest ``limit`` runs that are not child runs (reads more rows while children
    take up the page)."""
    fetch = limit
    while True:
        records = store.list_runs(status=status, limit=fetch)
        top = [r for r in records if not is_child(r)]
        if len(top) >= limit or len(records) < fetch or fetch >= 1 << 20:
            return top[:limit]
        fetch *= 4
