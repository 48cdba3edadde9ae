"""Replay a journaled run against today's tools, and fork a run at a step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import JsonValue

from .. import events as ev
from .._factories import new_list
from ..errors import ModelResponseError, UserError
from ..types import RunnerResult, to_jsonable
from ..types import new_run_id as _fresh_run_id
from .base import Commit, JournalEntry, RunRecord, RunStore
from .records import Handoff, Reply, StepComplete

__all__ = ["Difference", "ReplayReport", "fork_run", "replay_report", "replay_run", "replay_script"]


@dataclass(slots=True)
class Difference:
    step: int
    tool: str
    journaled: Any
    replayed: Any


@dataclass(slots=True)
class ReplayReport:
    """What re-executing a run with its journaled model replies gave."""

    run_id: str
    steps: int
    differences: list[Difference] = field(default_factory=new_list)
    journaled_answer: Any = None
    replayed_answer: Any = None
    status: str = ""

    @property
    def same(self) -> bool:
        return not self.differences and self.journaled_answer == self.replayed_answer


def _replies(entries: list[JournalEntry]) -> list[Any]:
    """The model's replies, step by step, as ScriptedModel replies."""
    replies: list[Any] = []
    for e in entries:
        r = e.record
        if not isinstance(r, Reply):
            continue
        calls, error = r.calls, r.error
        if calls is not None:
            replies.append([c.function() for c in calls])
        elif r.data is None and error:
            # an unparseable reply stays unparseable; a provider error stays an error
            replies.append("" if str(error).startswith("Error") else ModelResponseError(str(error)))
    return replies


class _Replaying(Protocol):
    async def areplay(self, run_id: str) -> ReplayReport: ...


async def replay_run(runner: _Replaying, run_id: str) -> ReplayReport:
    """Run the journaled run again with the same model replies (no model call) and the
    runner's current tools; report every tool observation that differs. The same as
    ``await runner.areplay(run_id)`` (the Runner builds the replaying twin of itself)."""
    return await runner.areplay(run_id)


def replay_script(store: RunStore | None, run_id: str) -> tuple[RunRecord, list[JournalEntry], list[Any]]:
    """A journaled run's record, its entries and its model replies (as ScriptedModel replies)."""
    if store is None:
        raise UserError("replay needs a store")
    record = store.get_run(run_id)
    if record is None:
        raise UserError(f"no run {run_id!r} in the store")
    entries = store.events(run_id)
    return record, entries, _replies(entries)


def replay_report(run_id: str, record: RunRecord, entries: list[JournalEntry], result: RunnerResult[Any]
                  ) -> ReplayReport:
    """What changed between the journaled steps and the replayed ``result``."""
    journaled = [r.item.data for r in (e.record for e in entries) if isinstance(r, StepComplete)]
    report = ReplayReport(run_id=run_id, steps=len(journaled), status=result.status,
                          journaled_answer=(record.result or {}).get("answer"), replayed_answer=result.answer)
    for old, new in zip(journaled, result.step_history):
        old_obs = old.observation if old is not None else None
        if old_obs != to_jsonable(new.observation):
            name = old.function.name if old is not None and old.function is not None else ""
            report.differences.append(Difference(old.step if old is not None else 0, name, old_obs, new.observation))
    if len(journaled) != len(result.step_history):
        report.differences.append(Difference(len(result.step_history), "", f"{len(journaled)} steps",
                                             f"{len(result.step_history)} steps"))
    return report


def fork_steps(entries: list[JournalEntry]) -> int:
    """How many steps a journaled run finished: a fork may start at any step from 0 (from
    scratch) to this one (every finished step kept, the next model call made again)."""
    return len({r.item.data.step if r.item.data is not None else 0 for r in (e.record for e in entries)
                if isinstance(r, StepComplete)})


def fork_run(store: RunStore, run_id: str, at_step: int, new_run_id: str | None = None) -> str:
    """A new run with the journaled history of ``run_id`` before step ``at_step`` (0-based:
    0 starts from scratch, N keeps steps 0..N-1; at most the number of steps the run
    finished), ready to be resumed. Returns its id; a step out of range is a UserError."""
    record = store.get_run(run_id)
    if record is None:
        raise UserError(f"no run {run_id!r} in the store")
    entries = store.events(run_id)
    steps = fork_steps(entries)
    if type(at_step) is not int or not 0 <= at_step <= steps:
        raise UserError(f"cannot fork run {run_id!r} at step {at_step!r}: it has {steps} finished step"
                        f"{'s' if steps != 1 else ''}, so the step (0-based) must be between 0 and {steps}")
    # a step ends with its step_complete events, then the handoff it made (if any)
    ends = [e.seq for e in entries if isinstance(r := e.record, (StepComplete, Handoff))
            and (r.item.data.step if r.item.data is not None else 0) < at_step]
    last = max(ends, default=0)
    if at_step > 0 and not ends:
        raise UserError(f"run {run_id!r} has no step before {at_step}")
    fork_id = new_run_id or _fresh_run_id()
    fork = RunRecord(run_id=fork_id, agent_name=record.agent_name, status="forked",
                     prompt_kwargs=record.prompt_kwargs, model_kwargs=record.model_kwargs,
                     config={**record.config, "forked_from": run_id, "fork_step": at_step})
    keep = [JournalEntry(fork_id, e.seq, e.name, _repoint(e.payload, fork_id), e.created_at) for e in entries
            if e.seq <= last and e.name != ev.TOOL_PERMISSION_REQUEST]
    # one commit: the fork's row and its history appear together (RunStore.commit, nothing else)
    err = store.commit([Commit(fork_id, None, entries=keep, create=fork)])[0]
    if err is not None:
        raise err
    return fork_id


def _repoint(payload: JsonValue, run_id: str) -> JsonValue:
    if isinstance(payload, dict) and "run_id" in payload:
        return {**payload, "run_id": run_id}
    return payload
