"""Journaling a run's events, and rebuilding an unfinished run from its journal.

Write-ahead: the model's reply and a tool call's start are committed before the tool
runs; its completion is committed as soon as it finishes; everything else is batched
into the next commit. So after a crash the journal tells, for every call, whether it
finished (its result is reused), started without finishing (re-run only if the tool is
idempotent, else the model is told it was interrupted), or never started (it runs).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic_core import to_json

from .. import events as ev
from ..errors import UserError
from ..models.base import ModelDelta
from ..tools.manager import ToolResult
from ..types import MAX_INT_DIGITS, Function, StepOutput, Usage, _fallback, to_jsonable
from .base import JournalEntry, RunRecord, RunStore

if TYPE_CHECKING:
    from ..loop import RunState

__all__ = ["InterruptPolicy", "Journal", "journaled_steps", "open_store", "record_decision", "redact_secrets",
           "restore", "restore_secrets"]

InterruptPolicy = Literal["interrupt-observation", "retry", "fail"]

# an event with one of these names is committed before the run goes on
DURABLE = frozenset({ev.TOOL_CALL_START, ev.TOOL_CALL_COMPLETE, ev.TOOL_PERMISSION_REQUEST, ev.EXECUTION_COMPLETE,
                     ev.CANCELLED})
RAW = "raw"
REDACTED = "[REDACTED]"
SEQ_EPOCH = 1_000_000  # a resumed run numbers its events from the next multiple of this
# model_kwargs keys whose values are credentials (Authorization, x-api-key, api_key, auth_token, client_secret…):
# they are not journaled; a resumed run takes them from its agent again
SECRET_KEY = re.compile(r"^(?:.*[-_])?(?:authorization|api[-_]?key|token|secret|password|passwd|cookie|credentials?)$",
                        re.IGNORECASE)
DECISION = "treadle.approval_decision"  # a decision recorded while the run was suspended


def open_store(spec: Any) -> RunStore:
    """A RunStore from an object or a URL: ``sqlite:///path.db``, or
    ``postgresql://user:pw@host/db[?table_prefix=name_]`` (psycopg 3, extra ``[postgres]``)."""
    if not isinstance(spec, str):
        return spec  # type: ignore[no-any-return]
    if spec.startswith("sqlite://"):
        from .sqlite import SQLiteRunStore

        path = spec[len("sqlite://"):]
        return SQLiteRunStore(path[1:] if path.startswith("/") and not path.startswith("//") else path)
    if spec.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresRunStore

        return PostgresRunStore.from_url(spec)
    raise UserError(f"unknown store {spec!r}; use sqlite:///path/to/runs.db or postgresql://…")


class Journal:
    """The event sink that writes one Runner's runs to a RunStore."""

    def __init__(self, store: RunStore, metadata: dict[str, Any] | None = None) -> None:
        self.store = store
        self.metadata = metadata or {}
        self._buffers: dict[str, list[JournalEntry]] = {}
        self._runs: dict[str, Any] = {}
        self._fresh: set[str] = set()  # runs whose first model reply has not come yet

    def on_run_start(self, run: RunState) -> None:
        self._runs[run.run_id] = run
        self._buffers.setdefault(run.run_id, [])
        if run.step or run.pending_step is not None:  # resumed
            self.store.update_run(run.run_id, status="running", steps=run.step)
            return
        self.store.create_run(_record(run, "running", self.metadata))
        self._fresh.add(run.run_id)

    def __call__(self, event: Any) -> None:
        run_id = event.run_id
        buf = self._buffers.get(run_id)
        if buf is None:
            return
        name = getattr(event, "name", RAW)
        if name == RAW and isinstance(event.data, ModelDelta):
            return  # streamed pieces are not kept: the parsed reply follows them
        buf.append(JournalEntry(run_id, event.seq, name, _json(event), time.time()))
        if name == RAW and run_id in self._fresh:  # its first reply: the prompt is final now (memory was read)
            self._fresh.discard(run_id)
            self.store.create_run(_record(self._runs[run_id], "running", self.metadata))
        if name in DURABLE:
            self._buffers[run_id] = []
            self.store.append(buf, durable=True)
            run = self._runs[run_id]
            if name == ev.TOOL_PERMISSION_REQUEST:
                self.store.update_run(run_id, status="waiting_for_approval", steps=run.step)
            elif name == ev.EXECUTION_COMPLETE:
                result = event.item.data
                self.store.update_run(run_id, status=result.status, steps=len(result.step_history),
                                      usage=to_jsonable(result.usage), result=_result_summary(result))
                self._buffers.pop(run_id, None)
                self._runs.pop(run_id, None)
                self._fresh.discard(run_id)


# an integer literal json.loads refuses to read back (longer than CPython's int <-> str limit)
_LONG_INT = re.compile(rb"(?<![0-9])[0-9]{%d}" % (MAX_INT_DIGITS + 1))


def _json(event: Any) -> bytes:
    """The event as strict JSON (UTF-8, no NaN, readable back by json.loads). Never raises."""
    try:
        data = to_json(event, fallback=_fallback, serialize_unknown=True, inf_nan_mode="strings")
    except Exception:  # a cycle, too deep, bytes that are not UTF-8, a lone surrogate, a failing __repr__...
        data = None
    if data is None or (len(data) - len(data.translate(None, b"0123456789")) > MAX_INT_DIGITS  # cheap first
                        and _LONG_INT.search(data)):
        data = to_json(to_jsonable(event))  # the careful path: every such value made JSON-safe
    return data


def _record(run: RunState, status: str, metadata: dict[str, Any]) -> RunRecord:
    model = run.agent._model
    config = {**metadata, "max_steps": run.max_steps,
              "model": model if isinstance(model, str) else getattr(model, "name", type(model).__name__),
              "memory_session_id": getattr(run.memory, "session_id", None)}
    return RunRecord(run_id=run.run_id, agent_name=run.agent.name, status=status, created_at=run.started_at,
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


# ---------------------------------------------------------------------------- resume
def _function(d: dict[str, Any] | None) -> Function | None:
    return Function.from_dict(d) if d else None


def _usage(d: dict[str, Any] | None) -> Usage | None:
    if not d:
        return None
    return Usage(input_tokens=d.get("input_tokens", 0), output_tokens=d.get("output_tokens", 0),
                 requests=d.get("requests", 0), tool_calls=d.get("tool_calls", 0), cost_usd=d.get("cost_usd", 0.0))


def _step(d: dict[str, Any]) -> StepOutput:
    fn = _function(d.get("function"))
    return StepOutput(step=d.get("step", 0), action=fn, function=fn, observation=d.get("observation"),
                      output=d.get("output"), status=d.get("status", "success"), usage=_usage(d.get("usage")))


def record_decision(store: RunStore, run_id: str, call_id: str, *, approve: bool, always: bool = False,
                    kwargs: dict[str, Any] | None = None, reason: str | None = None) -> None:
    """Record a decision for a run suspended while waiting for approval of ``call_id``;
    resuming the run applies it. Refused unless that call is the one waiting."""
    record = store.get_run(run_id)
    if record is None:
        raise UserError(f"no run {run_id!r} in the store")
    if record.status != "waiting_for_approval":
        raise UserError(f"run {run_id!r} is not waiting for an approval (status {record.status})")
    entries = store.events(run_id)
    asked = {(e.payload.get("item") or {}).get("id") for e in entries if e.name == ev.TOOL_PERMISSION_REQUEST}
    started = {(e.payload.get("item") or {}).get("id") for e in entries if e.name == ev.TOOL_CALL_START}
    decided = {e.payload.get("call_id") for e in entries if e.name == DECISION}
    waiting = asked - started - decided
    if call_id not in waiting:
        raise UserError(f"call {call_id!r} of run {run_id!r} is not waiting for a decision"
                        + (f" (waiting: {', '.join(sorted(waiting))})" if waiting else ""))
    payload = {"call_id": call_id, "approve": approve, "always": always, "kwargs": kwargs, "reason": reason}
    seq = max((e.seq for e in entries), default=0) + 1
    store.append([JournalEntry(run_id, seq, DECISION, payload, time.time())], durable=True)


def journaled_steps(entries: list[JournalEntry]) -> list[StepOutput]:
    """The recorded steps of a run, from its journal."""
    return [_step((e.payload.get("item") or {}).get("data") or {}) for e in entries if e.name == ev.STEP_COMPLETE]


def restore(run: RunState, entries: list[JournalEntry], policy: InterruptPolicy = "interrupt-observation") -> None:
    """Load an unfinished run's progress into ``run`` (a fresh RunState with the same id).

    Finished steps become ``step_history`` and messages; the step cut short becomes
    ``run.pending_step`` with what its calls already produced in ``run.recovered``.
    """
    planner, agent = run.agent.planner, run.agent
    model = agent.model
    mode, style = planner.mode(model), planner.final_style(model)
    run.final_style = style
    run.messages = planner.initial_messages(mode, run.prompt_kwargs, style)
    steps: dict[int, list[StepOutput]] = {}
    last_reply: tuple[int, list[Function], Usage | None] | None = None
    error_texts: dict[int, str] = {}  # step -> the unparseable reply's text
    started: dict[str, Function] = {}
    completed: dict[str, dict[str, Any]] = {}
    for e in entries:
        p = e.payload
        run.seq = max(run.seq, e.seq)
        if e.name == RAW:
            data = p.get("data")
            if isinstance(data, list) and data and isinstance(data[0], dict) and "name" in data[0]:
                last_reply = (int(p.get("input") or 0), [Function.from_dict(x) for x in data], _usage(p.get("usage")))
            elif p.get("text"):
                error_texts[int(p.get("input") or 0)] = p["text"]
            continue
        item = p.get("item") or {}
        if e.name == ev.STEP_COMPLETE:
            s = _step(item.get("data") or {})
            steps.setdefault(s.step, []).append(s)
            if s.usage is not None and (not steps[s.step][:-1]):
                run.usage.add(s.usage)
        elif e.name == ev.TOOL_CALL_START:
            started[item.get("id")] = Function.from_dict(item.get("data") or {})
        elif e.name == ev.TOOL_CALL_COMPLETE:
            completed[item.get("id")] = item
        elif e.name == DECISION:
            run.decisions[p["call_id"]] = p
    limit = agent.max_observation_chars
    from ..planner import render_observation

    for n in sorted(steps):
        group = steps[n]
        run.step_history.extend(group)
        calls = [s.function for s in group if s.function is not None]
        if calls and all(s.status != "error" or s.function.id in completed for s in group):
            planner.add_step_messages(mode, run.messages, calls,
                                      [render_observation(s.observation, limit) for s in group],
                                      [s.status != "success" for s in group])
        else:
            planner.add_error_messages(mode, run.messages, error_texts.get(n, ""), calls or None,
                                       str(group[0].observation))
        run.usage.tool_calls += len(calls)
    run.step = max(steps) + 1 if steps else 0
    # the resumed run's events are numbered from the next epoch: streamed deltas and events not yet
    # committed at the crash were seen by stream readers with seqs the journal does not have, and a
    # reader that reconnects with Last-Event-ID must not have new events mistaken for those
    run.seq = (run.seq // SEQ_EPOCH + 1) * SEQ_EPOCH
    if last_reply is None or last_reply[0] < run.step:
        return  # the cut came between steps: the next model call simply happens
    step, calls, _ = last_reply
    for fn in calls:
        if fn.is_final:
            return  # the answer was given but not recorded: ask again
    run.pending_step = (step, calls, last_reply[2])
    if last_reply[2] is not None:  # the cut step's model call happened: count it
        run.usage.add(last_reply[2])
    for fn in calls:
        done = completed.get(fn.id)
        if done is not None:
            out = done.get("data") or {}
            err = out.get("error")
            raw = out.get("output")
            obs = raw.get("observation") if isinstance(raw, dict) and "observation" in raw else raw
            run.recovered[fn.id] = ToolResult(output=raw, observation=err if err else obs,
                                              status="error" if err else "success", error=err)
            run.usage.tool_calls += 1
        elif fn.id in started:
            tool = agent.tool_manager.get(fn.name)
            if (tool is not None and tool.idempotent) or policy == "retry":
                continue  # runs again
            if policy == "fail":
                raise UserError(f"call {fn.id} of {fn.name} was interrupted and the policy is 'fail'")
            msg = (f"The call to {fn.name} was interrupted (the process stopped) and may or may not have taken "
                   "effect. Check before repeating it.")
            run.recovered[fn.id] = ToolResult(observation=msg, status="error", error=msg, error_type="Interrupted")
