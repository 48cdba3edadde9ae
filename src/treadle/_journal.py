"""Journaling a run's events (resuming from them: ``resume.py``).

Write-ahead: the model's reply and a tool call's start are committed before the tool
runs (the run awaits that commit); its completion is handed to the writer as soon as it
finishes and committed within ``max_delay`` or with the next write, whichever is first;
the run's end is committed, with its status, before the run returns. So after a crash the
journal tells, for every call, whether it finished (its result is reused), started
without finishing (re-run only if the tool is idempotent, else the model is told it was
interrupted), or never started (it runs). See docs/durability.md for the guarantee.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

from pydantic import JsonValue

from . import events as ev
from ._resume import answer_type_of, recorded_result, restore
from .errors import AlreadyDecidedError, JournalConflictError, UserError
from .events import RawResponsesStreamEvent, RunItemStreamEvent, StreamEvent
from .models.base import ModelDelta
from .store._sql import dumps
from .store.base import Commit, JournalEntry, RunRecord, RunStore, drop_owner, new_owner
from .store.links import is_ended, open_requests
from .store.records import DECISION, RAW, Decision, PermissionRequest, event_json
from .store.writer import Ticket, committer_for
from .types import RunnerResult, to_jsonable

if TYPE_CHECKING:
    from ._run import RunState

__all__ = ["Journal", "record_decision", "redact_secrets", "restore_secrets"]

# events after which the run's buffered entries are handed to the writer; the run awaits
# the commit of the URGENT ones (a tool starts only once its start is durable)
URGENT = frozenset({ev.TOOL_CALL_START, ev.EXECUTION_COMPLETE, ev.CANCELLED, ev.COMPACTION})
STEP_COMPLETE, EXECUTION_COMPLETE = ev.STEP_COMPLETE, ev.EXECUTION_COMPLETE
TOOL_CALL_START, TOOL_PERMISSION_REQUEST = ev.TOOL_CALL_START, ev.TOOL_PERMISSION_REQUEST
FLUSH = URGENT | {ev.TOOL_CALL_COMPLETE, ev.TOOL_PERMISSION_REQUEST}
REDACTED = "[REDACTED]"
# model_kwargs keys whose values are credentials (Authorization, x-api-key, api_key, auth_token, client_secret…):
# they are not journaled; a resumed run takes them from its agent again
SECRET_KEY = re.compile(r"^(?:.*[-_])?(?:authorization|api[-_]?key|token|secret|password|passwd|cookie|credentials?)$",
                        re.IGNORECASE)
logger = logging.getLogger("treadle")


class _RunLog:
    """What the journal keeps for one live run."""

    __slots__ = ("buf", "ended", "epoch", "error", "fields", "fresh", "late", "owner", "prompt", "run", "run_id",
                 "ticket", "waiting")

    def __init__(self, run: RunState, owner: str, epoch: int) -> None:
        self.run = run
        self.run_id: str = run.run_id
        self.owner = owner
        self.epoch = epoch
        self.buf: list[JournalEntry] = []  # entries not handed to the writer yet
        self.fields: dict[str, object] = {}
        self.ticket: Ticket | None = None
        self.error: BaseException | None = None  # set when a write was refused: the run stops
        self.fresh = False  # its first model reply has not come yet (the prompt may still change)
        self.prompt: object = None  # the prompt_kwargs its run row was created with
        self.waiting = False  # status is waiting_for_approval
        self.ended = False
        self.late = False  # entries nobody awaits are buffered: the loop's flush timer hands them over


class Journal:
    """The event sink that writes one Runner's runs to a RunStore.

    Each run owns its journal through a lease (see ``store.base``); its writes go through
    the store's group-commit writer, fenced by the lease's epoch. The loop awaits
    ``barrier(run)`` where a write must be durable before the run goes on.
    """

    def __init__(self, store: RunStore, metadata: Mapping[str, object] | None = None, *, lease_ttl: float = 30.0,
                 max_delay: float = 0.002) -> None:
        self.store = store
        self.metadata = metadata or {}
        self.lease_ttl = lease_ttl
        self.max_delay = max_delay
        self.writer = committer_for(store)
        self._logs: dict[str, _RunLog] = {}
        self._late: dict[asyncio.AbstractEventLoop, list[_RunLog]] = {}  # per event loop: runs with buffered entries
        self._timers: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}  # per loop: the timer flushing them

    def on_run_start(self, run: RunState) -> None:
        lease = run.durability.lease
        if lease is not None:  # resumed: the lease was acquired by Runner.resume
            log = self._logs[run.run_id] = _RunLog(run, *lease)
            log.fields = {"status": "running", "steps": run.step}
            self._submit(log, wake=False)  # committed at the run's first barrier
        else:
            owner = new_owner()
            log = self._logs[run.run_id] = _RunLog(run, owner, 1)
            record = _record(run, "running", self.metadata)
            record.owner, record.epoch, record.lease_until = owner, 1, time.time() + self.lease_ttl
            log.fresh = True
            log.prompt = record.prompt_kwargs
            log.ticket = self.writer.submit(Commit(run.run_id, 1, create=record), wake=False)
        self.writer.hold(run.run_id, log.epoch, self.lease_ttl, lambda e: _fence(log, e))
        run.durability.attach(self.barrier, self)

    def __call__(self, event: StreamEvent) -> None:
        log = self._logs.get(event.run_id or "")
        if log is None or log.error is not None:  # not ours, or fenced: nothing more is written
            return
        if isinstance(event, RawResponsesStreamEvent):
            if type(event.data) is ModelDelta:
                return  # streamed pieces are not kept: the parsed reply follows them
            name = RAW
        else:
            name = event.name
        log.buf.append(JournalEntry(log.run_id, event.seq, name, event_json(event), time.time()))
        if name == RAW:
            if log.fresh:  # its first reply: the prompt is final now (memory was read)
                log.fresh = False
                prompt = to_jsonable(log.run.prompt_kwargs)
                # the run row has it already unless it changed since (as text: 1, 1.0 and True differ there)
                if dumps(prompt) != dumps(log.prompt):
                    log.fields["prompt_kwargs"] = prompt
            return
        if name not in FLUSH:
            return
        run = log.run
        if name == TOOL_CALL_START and log.waiting:
            log.waiting = False
            log.fields.update(status="running", steps=run.step)
        elif name == TOOL_PERMISSION_REQUEST:
            log.waiting = True
            log.fields.update(status="waiting_for_approval", steps=run.step)
        elif name == EXECUTION_COMPLETE and isinstance(event, RunItemStreamEvent) and _is_result(event.item.data):
            result = event.item.data
            log.fields.update(status=result.status, steps=len(result.step_history), usage=to_jsonable(result.usage),
                              result=_result_summary(result))
            log.ended = True
        if name in URGENT:  # the run awaits it next (barrier): no need to wake the writer yet
            self._submit(log, wake=False)
        elif not log.late:  # a completion: committed with the next write, or within max_delay s
            log.late = True
            loop = run.cancellation.loop or asyncio.get_running_loop()
            self._late.setdefault(loop, []).append(log)
            if loop not in self._timers:  # one timer per loop, however many runs wait on it
                self._timers[loop] = loop.call_later(self.max_delay, self._flush_late, loop)

    def _flush_late(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timers.pop(loop, None)
        for log in self._late.pop(loop, ()):
            if log.late:
                self._submit(log, wake=False)
        self.writer.kick()

    def _submit(self, log: _RunLog, wake: bool = True) -> None:
        log.late = False
        if log.error is not None or not (log.buf or log.fields or log.ended):
            return
        commit = Commit(log.run_id, log.epoch, log.buf, log.fields, None, log.ended)
        log.buf = []
        log.fields = {}
        log.ticket = self.writer.submit(commit, wake=wake)
        if log.ended:
            self.writer.release(log.run_id)

    async def barrier(self, run: RunState) -> None:
        """Until the run's writes so far are durable. Raises the error that refused one
        (``RunOwnershipLostError``: another process took the run over; stop it)."""
        log = self._logs.get(run.run_id)
        if log is None:
            return
        ticket = log.ticket
        if ticket is not None:
            if not ticket.done:  # the writer thread commits it, with the writes of the runs ready in this turn
                self.writer.kick_soon(asyncio.get_running_loop())
                await ticket.wait()
            if ticket.error is not None and log.error is None:
                _fence(log, ticket.error)
        error = log.error
        if log.ended or error is not None:
            self.end(run)
            if error is not None:
                raise error

    def resume_child(self, run: RunState) -> RunnerResult[Any] | None:
        """A child run (an agent called as a tool) journaled before: its recorded result when
        it ended, else None with ``run`` ready to continue it (its lease taken, its progress
        restored). None too for a child not journaled yet (it starts)."""
        store = self.store
        record = store.get_run(run.run_id)
        if record is None:
            return None
        entries = store.events(run.run_id)
        if is_ended(record, entries):
            return recorded_result(record, entries, answer_type_of(run.driven(), entries))
        owner = new_owner()
        record = store.acquire(run.run_id, owner, self.lease_ttl)  # RunLeasedError while a live process runs it
        if record.owner != owner:
            drop_owner(owner)
            entries = store.events(run.run_id)
            return recorded_result(record, entries, answer_type_of(run.driven(), entries))
        run.durability.hold(owner, record.epoch)
        restore(run, store.events(run.run_id), "interrupt-observation")
        return None

    def end(self, run: RunState) -> None:
        """The run is over in this process (ended, or abandoned after an error)."""
        log = self._logs.pop(run.run_id, None)
        if log is not None:
            self.writer.release(run.run_id)
            drop_owner(log.owner)


def _fence(log: _RunLog, error: BaseException) -> None:
    if log.error is None:
        log.error = error
        logger.error("run %s: %s", log.run_id, error)


def _record(run: RunState, status: str, metadata: Mapping[str, object]) -> RunRecord:
    from .agent import Agent
    from .memory import ConversationMemory

    agent = run.driven()
    # an Agent's model as given: a model string stays one (resolving it is the first step's business)
    model: object = agent.model_spec if isinstance(agent, Agent) else agent.model
    config = {**metadata, "max_steps": run.max_steps,
              "model": model if isinstance(model, str) else getattr(model, "name", type(model).__name__),
              "memory_session_id": run.memory.session_id if isinstance(run.memory, ConversationMemory) else None}
    parent = run.parent
    if parent is not None:  # a child run: an agent called as a tool (treadle.nesting)
        config.update(parent_run_id=parent.run_id, parent_call_id=run.nesting.call_id, depth=run.nesting.depth)
    return RunRecord(run_id=run.run_id, agent_name=agent.name, status=status, created_at=run.started_at,
                     prompt_kwargs=to_jsonable(run.prompt_kwargs),
                     model_kwargs=_json_object(redact_secrets(to_jsonable(run.model_kwargs))),
                     config=to_jsonable(config))


def _is_result(value: object) -> TypeGuard[RunnerResult[object]]:
    return isinstance(value, RunnerResult)


def _is_mapping(value: object) -> TypeGuard[Mapping[str, object]]:
    return isinstance(value, Mapping)


def _json_object(value: JsonValue) -> dict[str, JsonValue]:
    return value if isinstance(value, dict) else {}


def redact_secrets(value: JsonValue) -> JsonValue:
    """``value`` (JSON) with every credential-named key's value replaced by ``REDACTED``."""
    if isinstance(value, dict):
        return {k: REDACTED if SECRET_KEY.match(k) and v else redact_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return value


def restore_secrets(stored: Mapping[str, JsonValue], current: Mapping[str, object]) -> dict[str, object]:
    """Journaled model_kwargs for a resumed run: each redacted value is taken from the agent's
    ``current`` model_kwargs at the same place, or left out when the agent has none."""
    out: dict[str, object] = {}
    for k, v in stored.items():
        mine = current.get(k)
        if v == REDACTED:
            if mine is not None:
                out[k] = mine
        elif isinstance(v, dict):
            out[k] = restore_secrets(v, mine if _is_mapping(mine) else {})
        else:
            out[k] = v
    return out


def _result_summary(result: RunnerResult[object]) -> object:
    return to_jsonable({"answer": result.answer, "error": result.error, "error_type": result.error_type,
                        "status": result.status})




def record_decision(store: RunStore, run_id: str, call_id: str, *, approve: bool, always: bool = False,
                    kwargs: dict[str, Any] | None = None, reason: str | None = None, agent: Any = None) -> None:
    """Record a decision for a run suspended while waiting for approval of ``call_id``;
    resuming the run applies it. Refused unless that call is the one waiting; the first
    decision wins (a second one, from any thread or process, raises ``AlreadyDecidedError``);
    refused with ``RunLeasedError`` while a live process runs the run. Edited ``kwargs`` are
    checked against the schema of the call's tool in ``agent`` (when given and it has the
    tool) before anything is recorded: ``InvalidEdit`` when they do not fit."""
    for _ in range(100):  # a seq taken by a decision on another call of the run: read again
        record = store.get_run(run_id)
        if record is None:
            raise UserError(f"no run {run_id!r} in the store")
        entries = store.events(run_id)
        decided = {r.call_id for r in (e.record for e in entries) if isinstance(r, Decision)}
        if call_id in decided:
            raise AlreadyDecidedError(f"call {call_id!r} of run {run_id!r} was already decided")
        if record.status != "waiting_for_approval":
            raise UserError(f"run {run_id!r} is not waiting for an approval (status {record.status})")
        waiting = {r.get("id"): r for r in open_requests(entries)}
        if call_id not in waiting:
            from .store.links import child_links  # the child run (an agent called as a tool) whose call waits

            inner = next((link["run_id"] for link in child_links(store, run_id, entries)
                          if link["status"] == "waiting_for_approval" and any(
                              isinstance(r := e.record, PermissionRequest) and r.item.id == call_id
                              for e in store.events(link["run_id"]))), None)
            if inner is not None:  # an inner agent's call: its run holds the decision
                return record_decision(store, inner, call_id, approve=approve, always=always, kwargs=kwargs,
                                       reason=reason, agent=agent)
            raise UserError(f"call {call_id!r} of run {run_id!r} is not waiting for a decision"
                            + (f" (waiting: {', '.join(sorted(str(w) for w in waiting))})" if waiting else ""))
        if approve and kwargs is not None:  # before recording: a refused edit leaves the call pending
            from ._edits import check_edit

            check_edit(agent, str(waiting[call_id].get("tool_name") or ""), kwargs)
        payload = {"call_id": call_id, "approve": approve, "always": always, "kwargs": kwargs, "reason": reason}
        seq = max((e.seq for e in entries), default=0) + 1
        entry = JournalEntry(run_id, seq, DECISION, payload, time.time(), key=f"decision:{call_id}")
        err = store.commit([Commit(run_id, None, entries=[entry])])[0]
        if err is None:
            return
        if not isinstance(err, JournalConflictError):
            raise err
        if any(e.key == entry.key for e in store.events(run_id)):
            raise AlreadyDecidedError(f"call {call_id!r} of run {run_id!r} was already decided") from err
    raise UserError(f"could not record the decision on run {run_id!r}: too many concurrent writers")
