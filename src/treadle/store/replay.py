"""Replay a journaled run against today's tools, and fork a run at a step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import events as ev
from ..errors import ModelResponseError, UserError
from ..nesting import AgentTool
from ..types import Function, child_run_id
from ..types import new_run_id as _fresh_run_id
from .base import JournalEntry, RunRecord, RunStore
from .journal import RAW

if TYPE_CHECKING:
    from ..runner import Runner

__all__ = ["Difference", "ReplayReport", "fork_run", "replay_run"]


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
    differences: list[Difference] = field(default_factory=list)
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
        if e.name != RAW:
            continue
        data, error = e.payload.get("data"), e.payload.get("error")
        if isinstance(data, list) and data and isinstance(data[0], dict) and "name" in data[0]:
            replies.append([Function.from_dict(d) for d in data])
        elif data is None and error:
            # an unparseable reply stays unparseable; a provider error stays an error
            replies.append("" if str(error).startswith("Error") else ModelResponseError(str(error)))
    return replies


async def replay_run(runner: Runner[Any], run_id: str) -> ReplayReport:
    """Run the journaled run again with the same model replies (no model call) and the
    runner's current tools; report every tool observation that differs. An agent called as
    a tool is replayed too, with its own journaled replies (its differences are named
    ``<agent tool>/<tool>``)."""
    from ..runner import Runner as _Runner

    store = runner.store
    if store is None:
        raise UserError("replay needs a store")
    record = store.get_run(run_id)
    if record is None:
        raise UserError(f"no run {run_id!r} in the store")
    entries = store.events(run_id)
    report = ReplayReport(run_id=run_id, steps=0, journaled_answer=(record.result or {}).get("answer"))
    twin = _twin(runner.agent, store, run_id, entries, report, "",
                 int(record.config.get("max_steps", runner.agent.max_steps)))
    result = await _Runner(twin, permission_manager=runner.permission_manager).acall(record.prompt_kwargs)
    report.status, report.replayed_answer = result.status, result.answer
    _compare(entries, result.step_history, report, "")
    report.steps = sum(1 for e in entries if e.name == ev.STEP_COMPLETE)
    return report


def _twin(agent: Any, store: RunStore, run_id: str, entries: list[JournalEntry], report: ReplayReport, path: str,
          max_steps: int | None = None) -> Any:
    """``agent`` answering with run ``run_id``'s journaled replies; its agent tools replayed alike."""
    from ..agent import Agent
    from ..models.scripted import ScriptedModel
    from ..tools.manager import ToolManager

    tools = []
    for t in agent.tool_manager.tools:
        if isinstance(t, AgentTool):
            t = _ReplayedAgentTool(t, store, run_id, report, path)
        tools.append(t)
    model = ScriptedModel(_replies(entries), name=f"replay:{run_id}")
    return Agent(name=agent.name, tool_manager=ToolManager(tools), model=model,
                 max_steps=max_steps or agent.max_steps, answer_data_type=agent.answer_data_type,
                 instructions=agent.instructions, template=agent.template, planner_mode="json")


def _compare(entries: list[JournalEntry], steps: list[Any], report: ReplayReport, path: str) -> None:
    journaled = [e.payload["item"]["data"] for e in entries if e.name == ev.STEP_COMPLETE]
    for old, new in zip(journaled, steps):
        fn = old.get("function") or {}
        if old.get("observation") != _plain(new.observation):
            report.differences.append(Difference(old.get("step", 0), path + fn.get("name", ""),
                                                 old.get("observation"), new.observation))
    if len(journaled) != len(steps):
        report.differences.append(Difference(len(steps), path, f"{len(journaled)} steps", f"{len(steps)} steps"))


class _ReplayedAgentTool(AgentTool):
    """Stands for an agent tool during a replay: the call runs the inner agent's twin, with
    the replies journaled by the child run the original call made."""

    def __init__(self, tool: AgentTool, store: RunStore, run_id: str, report: ReplayReport, path: str) -> None:
        super().__init__(tool.agent, name=tool.name, description=tool.description, input_type=tool.input_type)
        self._store, self._run_id, self._report, self._path = store, run_id, report, path

    async def run_nested(self, run: Any, fn: Function, step: int) -> Any:
        original = child_run_id(self._run_id, f"{step}:{fn.id}")
        entries = self._store.events(original)
        path = f"{self._path}{self.name}/"
        twin = _twin(self.agent, self._store, original, entries, self._report, path)
        stand_in = AgentTool(twin, name=self.name, description=self.description, input_type=self.input_type)
        steps: list[Any] = []
        sink = _steps_of(run, steps)
        run.sinks.append(sink)
        try:
            result = await stand_in.run_nested(run, fn, step)
        finally:
            run.sinks.remove(sink)
        _compare(entries, steps, self._report, path)
        return result


def _steps_of(parent: Any, into: list[Any]) -> Any:
    """A sink keeping the step records of the parent's direct child runs."""
    def sink(event: Any) -> None:
        if getattr(event, "name", None) == ev.STEP_COMPLETE and event.depth == parent.depth + 1 \
                and event.parent_run_id == parent.run_id:
            into.append(event.item.data)
    return sink


def _plain(value: Any) -> Any:
    from ..types import to_jsonable

    return to_jsonable(value)


def fork_run(store: RunStore, run_id: str, at_step: int, new_run_id: str | None = None) -> str:
    """A new run with the journaled history of ``run_id`` before step ``at_step`` (0-based),
    ready to be resumed. Returns its id."""
    record = store.get_run(run_id)
    if record is None:
        raise UserError(f"no run {run_id!r} in the store")
    entries = store.events(run_id)
    ends = [e.seq for e in entries if e.name == ev.STEP_COMPLETE
            and (e.payload.get("item") or {}).get("data", {}).get("step", 0) < at_step]
    last = max(ends, default=0)
    if at_step > 0 and not ends:
        raise UserError(f"run {run_id!r} has no step before {at_step}")
    fork_id = new_run_id or _fresh_run_id()
    store.create_run(RunRecord(run_id=fork_id, agent_name=record.agent_name, status="forked",
                               prompt_kwargs=record.prompt_kwargs, model_kwargs=record.model_kwargs,
                               config={**record.config, "forked_from": run_id, "fork_step": at_step}))
    keep = [JournalEntry(fork_id, e.seq, e.name, _repoint(e.payload, fork_id), e.created_at) for e in entries
            if e.seq <= last and e.name != ev.TOOL_PERMISSION_REQUEST]
    store.append(keep, durable=True)
    return fork_id


def _repoint(payload: Any, run_id: str) -> Any:
    if isinstance(payload, dict) and "run_id" in payload:
        return {**payload, "run_id": run_id}
    return payload
