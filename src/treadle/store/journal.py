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
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from .. import events as ev
from .._plugs import check_plug
from ..errors import AlreadyDecidedError, JournalConflictError, UserError
from ..models.base import ModelDelta
from ..types import MAX_INT_DIGITS, RunnerResult, StepOutput, _fallback, child_run_id, to_jsonable
from ._codec import GROUP, STEPS_FROM_JOURNAL, Buffered, dumps, json_name
from ._commit import ENDED
from ._encode import encode, encode_end, positional
from .base import Commit, JournalEntry, RunRecord, RunStore, drop_owner, new_owner
from .resume import DECISION, RAW, InterruptPolicy, answer_type_of, journaled_steps, recorded_result, restore
from .writer import Ticket, committer_for, next_turn

if TYPE_CHECKING:
    from .._run import RunState

__all__ = ["InterruptPolicy", "Journal", "journaled_steps", "open_store", "record_decision", "recorded_result",
           "redact_secrets", "restore", "restore_secrets"]

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


def open_store(spec: RunStore | str) -> RunStore:
    """A RunStore from an object or a URL: ``sqlite:///path.db``, or
    ``postgresql://user:pw@host/db[?table_prefix=name_]`` (psycopg 3, extra ``[postgres]``).
    An object must fit the ``RunStore`` protocol (``UserError`` naming what it lacks)."""
    if not isinstance(spec, str):
        check_plug(spec, RunStore, "run store")
        return spec
    if spec.startswith("sqlite://"):
        from .sqlite import SQLiteRunStore

        path = spec[len("sqlite://"):]
        return SQLiteRunStore(path[1:] if path.startswith("/") and not path.startswith("//") else path)
    if spec.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresRunStore

        return PostgresRunStore.from_url(spec)
    raise UserError(f"unknown store {spec!r}; use sqlite:///path/to/runs.db or postgresql://…")


class _RunLog:
    """What the journal keeps for one live run."""

    __slots__ = ("buf", "ended", "epoch", "error", "fields", "first", "fresh", "last", "late", "new", "owner", "parts",
                 "prompt", "rows", "run", "run_id", "steps", "t0", "ticket", "waiting")

    def __init__(self, run: Any, owner: str, epoch: int) -> None:
        self.run = run
        self.run_id: str = run.run_id
        self.owner = owner
        self.epoch = epoch
        self.buf: list[Buffered] = []  # a store that is not compact: its entries as they came
        # a compact store: the group-row entries of the stretch being buffered (seqs first..last; the first
        # written at t0 µs), and the rows of the stretches before it (a seq not journaled ends a stretch)
        self.parts: list[bytes] = []
        self.rows: list[JournalEntry] = []
        self.first = self.last = self.t0 = 0
        self.fields: dict[str, Any] = {}
        self.ticket: Ticket | None = None
        self.error: BaseException | None = None  # set when a write was refused: the run stops
        self.fresh = False  # its first model reply has not come yet (the prompt may still change)
        self.prompt: Any = None  # the prompt_kwargs its run row was created with
        self.waiting = False  # status is waiting_for_approval
        self.ended = False
        self.late = False  # entries nobody awaits are buffered: the loop's flush timer hands them over
        self.new = False  # started here (not resumed): every step it has is journaled by this log
        self.steps = 0  # agent.step_complete events journaled by this log


class Journal:
    """The event sink that writes one Runner's runs to a RunStore.

    Each run owns its journal through a lease (see ``store.base``); its writes go through
    the store's group-commit writer, fenced by the lease's epoch. The loop awaits
    ``barrier(run)`` where a write must be durable before the run goes on.
    """

    def __init__(self, store: RunStore, metadata: dict[str, Any] | None = None, *, lease_ttl: float = 30.0,
                 max_delay: float = 0.002) -> None:
        self.store = store
        self.compact = bool(getattr(store, "compact_payloads", False))  # see store._codec
        self.metadata = metadata or {}
        self.lease_ttl = lease_ttl
        self.max_delay = max_delay
        self.writer = committer_for(store)
        self._logs: dict[str, _RunLog] = {}
        self._late: dict[Any, list[_RunLog]] = {}  # per event loop: runs with buffered entries
        self._timers: dict[Any, Any] = {}  # per event loop: the timer that flushes them

    def on_run_start(self, run: RunState) -> None:
        lease = run.lease
        if lease is not None:  # resumed: the lease was acquired by Runner.resume
            log = self._logs[run.run_id] = _RunLog(run, *lease)
            log.fields = {"status": "running", "steps": run.step}
            self._submit(log, wake=False)  # committed at the run's first barrier
        else:
            owner = new_owner()
            log = self._logs[run.run_id] = _RunLog(run, owner, 1)
            record = _record(run, "running", self.metadata)
            record.owner, record.epoch, record.lease_until = owner, 1, time.time() + self.lease_ttl
            log.fresh = log.new = True
            log.prompt = record.prompt_kwargs
            log.ticket = self.writer.submit(Commit(run.run_id, 1, create=record), wake=False)
        self.writer.hold(run.run_id, log.epoch, self.lease_ttl, lambda e: _fence(log, e))
        run.barrier = self.barrier
        run.journal = self

    def __call__(self, event: Any) -> None:
        log = self._logs.get(event.run_id)
        if log is None or log.error is not None:  # not ours, or fenced: nothing more is written
            return
        name = getattr(event, "name", RAW)
        if name == RAW and type(event.data) is ModelDelta:
            return  # streamed pieces are not kept: the parsed reply follows them
        created_us = time.time_ns() // 1000
        seq = event.seq
        if self.compact:  # the event's values only, where it has a known layout (store._encode)
            if name == STEP_COMPLETE:
                log.steps += 1
            part = positional(event, name, created_us) if name != EXECUTION_COMPLETE else None
            if part is None or (len(part) > MAX_INT_DIGITS and _long_int(part)):  # written whole, as its entry
                if name == STEP_COMPLETE:
                    payload = _json(event, True)
                elif name == EXECUTION_COMPLETE:
                    payload = _compact_end(event, log)
                else:
                    payload = _json(event)
                part = b"[%d,%s,%d,%s]" % (seq, json_name(name), created_us, payload)
            parts = log.parts
            if parts and seq != log.last + 1:  # a seq not journaled (a streamed piece): the stretch ends
                _end_stretch(log)
                parts = log.parts
            if not parts:
                log.first, log.t0 = seq, created_us
            parts.append(part)
            log.last = seq
        else:
            log.buf.append((seq, name, _json(event), created_us))
        if name == RAW:
            if log.fresh:  # its first reply: the prompt is final now (memory was read)
                log.fresh = False
                prompt = to_jsonable(log.run.prompt_kwargs)
                # the run row has it already unless it changed since (as text: 1, 1.0 and True differ there)
                if not _same_text(prompt, log.prompt):
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
        elif name == EXECUTION_COMPLETE:
            result = event.item.data
            log.fields.update(status=result.status, steps=len(result.step_history), usage=to_jsonable(result.usage),
                              result=_result_summary(result))
            log.ended = True
        if name in URGENT:  # the run awaits it next (barrier): no need to wake the writer yet
            self._submit(log, wake=False)
        elif not log.late:  # a completion: committed with the next write, or within max_delay s
            log.late = True
            loop = run.loop
            self._late.setdefault(loop, []).append(log)
            if loop not in self._timers:  # one timer per loop, however many runs wait on it
                self._timers[loop] = loop.call_later(self.max_delay, self._flush_late, loop)

    def _flush_late(self, loop: Any) -> None:
        self._timers.pop(loop, None)
        for log in self._late.pop(loop, ()):
            if log.late:
                self._submit(log, wake=False)
        self.writer.commit_soon(loop)

    def _submit(self, log: _RunLog, wake: bool = True) -> None:
        log.late = False
        if log.error is not None or not (log.parts or log.rows or log.buf or log.fields or log.ended):
            return
        run_id = log.run_id
        if self.compact:  # one group row per stretch of seqs (see store._codec)
            if log.parts:
                _end_stretch(log)
            entries, log.rows = log.rows, []
        else:
            entries = [JournalEntry(run_id, seq, name, payload, t / 1e6) for seq, name, payload, t in log.buf]
            log.buf = []
        commit = Commit(run_id, log.epoch, entries, log.fields, None, log.ended)
        log.fields = {}
        log.ticket = self.writer.submit(commit, wake=wake)
        if log.ended:
            self.writer.release(run_id)

    async def barrier(self, run: RunState) -> None:
        """Until the run's writes so far are durable. Raises the error that refused one
        (``RunOwnershipLostError``: another process took the run over; stop it)."""
        log = self._logs.get(run.run_id)
        if log is None:
            return
        ticket = log.ticket
        if ticket is not None:
            if not ticket._done:
                w = self.writer
                if not w.inline:  # a network store: its writer thread commits
                    w.kick()
                else:
                    loop = asyncio.get_running_loop()
                    if len(w._leases) > 1 or getattr(loop, "_ready", True):
                        # other runs (or callbacks) are ready: after they have queued theirs, in one commit
                        # with them, made on this loop by a callback queued before this run's next turn
                        w.commit_soon(loop)
                        await next_turn()
                    elif not w.commit_here():  # alone: right here, unless the writer thread is committing
                        w.kick()
                if not ticket._done:  # a commit made by the writer thread (a network store, or it was busy)
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
        run.lease = (owner, record.epoch)
        restore(run, store.events(run.run_id), "interrupt-observation")
        return None

    def end(self, run: RunState) -> None:
        """The run is over in this process (ended, or abandoned after an error)."""
        log = self._logs.pop(run.run_id, None)
        if log is not None:
            self.writer.release(run.run_id)
            drop_owner(log.owner)


def _end_stretch(log: _RunLog) -> None:
    """The buffered stretch of entries as one group row (see store._codec), and a new stretch."""
    log.rows.append(JournalEntry(log.run_id, log.first, GROUP, b"[%s]" % b",".join(log.parts), log.t0 / 1e6))
    log.parts = []


_SCALARS = (str, int, float, bool, type(None))


def _same_text(a: Any, b: Any) -> bool:
    """JSON-ready ``a`` and ``b`` are written as the same text (a dict of plain scalars, the usual
    prompt, compared key by key in order, each value of the same type; anything else as text)."""
    if type(a) is dict and type(b) is dict and len(a) == len(b):
        for (k, v), (k2, w) in zip(a.items(), b.items()):
            t = type(v)
            if t not in _SCALARS or type(w) is not t:
                break
            if k != k2 or v != w or (t is float and repr(v) != repr(w)):  # (0.0 and -0.0 differ as text)
                return False
        else:
            return True
    return dumps(a) == dumps(b)


def _fence(log: _RunLog, error: BaseException) -> None:
    if log.error is None:
        log.error = error
        logger.error("run %s: %s", log.run_id, error)


# an integer literal json.loads refuses to read back (longer than CPython's int <-> str limit)
_LONG_INT = re.compile(rb"(?<![0-9])[0-9]{%d}" % (MAX_INT_DIGITS + 1))


def _json(event: Any, compact: bool = False, exclude: Any = None) -> bytes:
    """The event as strict JSON (UTF-8, no NaN, readable back by json.loads), without the
    fields ``exclude`` names (pydantic's include/exclude form); ``compact``: a step without
    its ``function`` when that is its ``action`` (``store._codec`` puts it back). Never raises."""
    data = encode(event, compact) if exclude is None else None
    if data is not None and not _long_int(data):
        return data
    if compact and exclude is None:  # the general paths below leave the same out as encode does
        step = getattr(getattr(event, "item", None), "data", None)
        if type(step) is StepOutput and step.function is step.action and step.action is not None:
            exclude = _NO_FUNCTION
    if data is None:  # not a step's usual event (see store._encode), or one it could not write
        try:
            data = to_json(event, fallback=_fallback, serialize_unknown=True, inf_nan_mode="strings",
                           exclude=exclude)
        except Exception:  # a cycle, too deep, bytes that are not UTF-8, a lone surrogate, a failing __repr__...
            data = None
    if data is None or _long_int(data):
        data = to_json(to_jsonable(event), exclude=exclude)  # the careful path: every such value made JSON-safe
    return data


def _long_int(data: bytes) -> bool:
    """``data`` holds an integer json.loads refuses to read back (cheap first: a short text holds none)."""
    return (len(data) > MAX_INT_DIGITS and len(data) - len(data.translate(None, b"0123456789")) > MAX_INT_DIGITS
            and _LONG_INT.search(data) is not None)


_NO_FUNCTION = {"item": {"data": {"function"}}}
_NO_HISTORY = {"item": {"data": {"step_history"}}}
_RESULT_DATA = b'"type":"final_output","data":{'


def _compact_end(event: Any, log: _RunLog) -> bytes:
    """The run's end without its result's ``step_history`` when that is exactly the steps this
    log journaled (a run started here): ``store._codec`` puts it back when read."""
    data = event.item.data
    steps = getattr(data, "step_history", None)
    if log.new and type(data) is RunnerResult and type(steps) is list and len(steps) == log.steps:
        out = encode_end(event, STEPS_FROM_JOURNAL, log.steps)
        if out is not None and not _long_int(out):
            return out
        out = _json(event, exclude=_NO_HISTORY)
        at = out.find(_RESULT_DATA)
        if at >= 0 and b'"step_history"' not in out[at:at + len(_RESULT_DATA) + 16]:
            at += len(_RESULT_DATA)
            return b"%s\"%s\":%d,%s" % (out[:at], STEPS_FROM_JOURNAL.encode(), log.steps, out[at:])
    return _json(event)


def _record(run: RunState, status: str, metadata: dict[str, Any]) -> RunRecord:
    agent = run.driven()
    model = getattr(agent, "_model", None)  # an Agent's model as given (a model string stays one)
    if model is None:
        model = getattr(agent, "model", None)
    config = {**metadata, "max_steps": run.max_steps,
              "model": model if isinstance(model, str) else getattr(model, "name", type(model).__name__),
              "memory_session_id": getattr(run.memory, "session_id", None)}
    parent = run.parent
    if parent is not None:  # a child run: an agent called as a tool (treadle.nesting)
        config.update(parent_run_id=parent.run_id, parent_call_id=run.parent_call_id, depth=run.depth)
    return RunRecord(run_id=run.run_id, agent_name=agent.name, status=status, created_at=run.started_at,
                     prompt_kwargs=to_jsonable(run.prompt_kwargs),
                     model_kwargs=to_jsonable(redact_secrets(run.model_kwargs)),
                     config=to_jsonable(config))


def redact_secrets(value: Any) -> Any:
    """``value`` with every credential-named key's value replaced by ``REDACTED``."""
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and SECRET_KEY.match(k) and value[k] else redact_secrets(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_secrets(v) for v in value]
    return value


def restore_secrets(stored: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Journaled model_kwargs for a resumed run: each redacted value is taken from the agent's
    ``current`` model_kwargs at the same place, or left out when the agent has none."""
    out: dict[str, Any] = {}
    for k, v in stored.items():
        mine = current.get(k) if isinstance(current, dict) else None
        if v == REDACTED:
            if mine is not None:
                out[k] = mine
        elif isinstance(v, dict):
            out[k] = restore_secrets(v, mine if isinstance(mine, dict) else {})
        else:
            out[k] = v
    return out


def _result_summary(result: Any) -> dict[str, Any]:
    return to_jsonable({"answer": result.answer, "error": result.error, "error_type": result.error_type,
                        "status": result.status})




def _waiting_child(store: RunStore, run_id: str, entries: list[JournalEntry], call_id: str) -> str | None:
    """The child run (an agent called as a tool, at any depth) whose call ``call_id`` waits."""
    started = {(e.payload.get("item") or {}).get("id") for e in entries if e.name == ev.TOOL_CALL_START}
    done = {(e.payload.get("item") or {}).get("id") for e in entries if e.name == ev.TOOL_CALL_COMPLETE}
    for e in entries:
        if e.name != RAW or not isinstance(e.payload.get("data"), list):
            continue
        for call in e.payload["data"]:
            cid = call.get("id") if isinstance(call, dict) else None
            if cid not in started or cid in done:
                continue
            child = child_run_id(run_id, f"{e.payload.get('input') or 0}:{cid}")
            record = store.get_run(child)
            if record is None or record.status != "waiting_for_approval":
                continue
            kids = store.events(child)
            asked = {(k.payload.get("item") or {}).get("id") for k in kids if k.name == ev.TOOL_PERMISSION_REQUEST}
            if call_id in asked:
                return child
            deeper = _waiting_child(store, child, kids, call_id)
            if deeper is not None:
                return deeper
    return None


def record_decision(store: RunStore, run_id: str, call_id: str, *, approve: bool, always: bool = False,
                    kwargs: dict[str, Any] | None = None, reason: str | None = None, agent: Any = None) -> None:
    """Record a decision for a run suspended while waiting for approval of ``call_id``;
    resuming the run applies it. Refused unless that call is the one waiting; the first
    decision wins (a second one, from any thread or process, raises ``AlreadyDecidedError``);
    refused with ``RunLeasedError`` while a live process runs the run. Edited ``kwargs`` are
    checked against the schema of the call's tool in ``agent`` (when given and it has the
    tool) before anything is recorded: ``InvalidEdit`` when they do not fit."""
    from .resume import open_requests  # (here: the import block above is one line long)

    for _ in range(100):  # a seq taken by a decision on another call of the run: read again
        record = store.get_run(run_id)
        if record is None:
            raise UserError(f"no run {run_id!r} in the store")
        entries = store.events(run_id)
        decided = {e.payload.get("call_id") for e in entries if e.name == DECISION}
        if call_id in decided:
            raise AlreadyDecidedError(f"call {call_id!r} of run {run_id!r} was already decided")
        if record.status != "waiting_for_approval":
            raise UserError(f"run {run_id!r} is not waiting for an approval (status {record.status})")
        waiting = {r.get("id"): r for r in open_requests(entries)}
        if call_id not in waiting:
            inner = _waiting_child(store, run_id, entries, call_id)
            if inner is not None:  # an inner agent's call: its run holds the decision
                return record_decision(store, inner, call_id, approve=approve, always=always, kwargs=kwargs,
                                       reason=reason, agent=agent)
            raise UserError(f"call {call_id!r} of run {run_id!r} is not waiting for a decision"
                            + (f" (waiting: {', '.join(sorted(str(w) for w in waiting))})" if waiting else ""))
        if approve and kwargs is not None:  # before recording: a refused edit leaves the call pending
            from .._edits import check_edit

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


def is_ended(record: RunRecord | None, entries: list[JournalEntry]) -> bool:
    """A run whose status or journal says it ended (a terminal event is the last word)."""
    return (record is not None and record.status in ENDED) or any(e.name == ev.EXECUTION_COMPLETE
                                                                  and _ended_status(e) for e in entries)


def _ended_status(e: JournalEntry) -> bool:
    data = (e.payload.get("item") or {}).get("data") or {}
    return data.get("status") in ENDED
