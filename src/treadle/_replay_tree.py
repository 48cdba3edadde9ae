"""Replaying a tree of runs: an agent called as a tool is replayed with the model replies its
child run journaled, recursively (``Runner.areplay``). The run is replayed under its own id,
so every child run (an agent tool's, an agent guardrail's) has its journaled id too.

The twin keeps what decides the run's course besides the model: its handoffs (to twins of
the targets, answering from the same script) and its guardrails (an agent guardrail answers
from the replies its child run journaled).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import events as ev
from ._context import JournaledCompactions, journaled
from .agent import Agent
from .events import FunctionRequest, RunItemStreamEvent, StepRunItem, StreamEvent
from .guardrails import _Guardrail, _is_agent
from .handoffs import Handoff
from .models.base import ModelRequest, ModelResponse
from .models.scripted import ScriptedModel
from .nesting import AgentTool
from .permissions import ApprovalOutcome, ApprovalResponse, current_run_id
from .store.base import JournalEntry, RunStore
from .store.records import CallComplete, CallStart, Step, StepComplete
from .store.replay import Difference, _replies
from .tools.manager import ToolManager, ToolResult
from .types import Function, StepOutput, child_run_id, to_jsonable

if TYPE_CHECKING:
    from ._run import RunState

__all__ = ["journaled_approvals", "twin_agent"]

DENIED = "Tool execution cancelled by user"


def twin_agent(agent: Agent[Any], store: RunStore, run_id: str, entries: list[JournalEntry], found: list[Difference],
               path: str = "", max_steps: int | None = None, *, model: ScriptedModel | None = None,
               twins: dict[int, Agent[Any]] | None = None) -> Agent[Any]:
    """``agent`` answering with run ``run_id``'s journaled replies (no model call); its agent
    tools replayed alike. Differences inside child runs go to ``found``, named ``tool/inner``.
    ``model``/``twins``: the script and the twins already made for the agents of the same run
    (a handoff's target answers from its caller's run's script)."""
    twins = {} if twins is None else twins
    mode = agent.planner.mode(agent.model)  # the mode the run had: its messages, so its compactions, are that mode's
    if model is None:
        model = ScriptedModel(_replies(entries), name=f"replay:{run_id}", native_tools=mode == "native")
    handoffs = list(agent.handoffs)
    transfers = {h.tool_name for h in handoffs}
    tools: list[object] = []
    for t in agent.tool_manager.tools:
        if t.name in transfers:
            continue  # added again below, pointing at the target's twin
        tools.append(_ReplayedAgentTool(t, store, run_id, found, path) if isinstance(t, AgentTool) else t)
    same = not handoffs and not any(isinstance(t, _ReplayedAgentTool) for t in tools)
    tm = agent.tool_manager
    manager = tm if same else ToolManager(tools, additional_context=tm.context_variables
                                          if isinstance(tm, ToolManager) else None)
    journal = _JournaledReplies(store)
    twin: Agent[Any] = Agent(
        name=agent.name, tools=manager, model=model, max_steps=max_steps or agent.max_steps,
        answer_data_type=agent.answer_data_type, instructions=agent.instructions, template=agent.template,
        planner_mode=mode,
        input_guardrails=[_twin_guard(g, journal) for g in agent.input_guardrails],
        output_guardrails=[_twin_guard(g, journal) for g in agent.output_guardrails],
        tool_guardrails=[_twin_guard(g, journal) for g in agent.tool_guardrails])
    # the journaled compactions, made again at the same steps from the journal: no summary call
    twin.context = JournaledCompactions(journaled(entries))
    twins[id(agent)] = twin
    for h in handoffs:
        target = twins.get(id(h.agent))
        if target is None:
            target = twin_agent(_agent(h.agent), store, run_id, entries, found, path, model=model, twins=twins)
        twin.add_handoff(Handoff(target, tool_name=h.tool_name, description=h.description,
                                 input_filter=h.input_filter))
    return twin


def _agent(a: object) -> Agent[Any]:
    if not isinstance(a, Agent):
        raise TypeError(f"only a treadle Agent is replayed, not {a!r}")
    return cast("Agent[Any]", a)


G = TypeVar("G", bound=_Guardrail)


def _twin_guard(g: G, journal: _JournaledReplies) -> G:
    """A guardrail as replayed: a function as it is today; an agent answering from its journaled child run."""
    if not _is_agent(g.check):
        return g
    inner = _agent(g.check)
    check = Agent(name=inner.name, tools=inner.tool_manager, model=journal, max_steps=inner.max_steps,
                  answer_data_type=inner.answer_data_type, instructions=inner.instructions, template=inner.template,
                  planner_mode="json")
    twin = object.__new__(type(g))
    twin.__dict__.update(vars(g))
    twin.check = check
    return twin


def journaled_approvals(store: RunStore) -> Callable[[FunctionRequest], ApprovalResponse]:
    """The replay's approver: a call that needed approval is decided as it was in the journaled
    run (of any depth: the run is the one replaying it): approved with the arguments it ran
    with, or denied with the same reason; one never decided there is denied."""
    runs: dict[str, dict[str, ApprovalResponse]] = {}

    def decide(request: FunctionRequest) -> ApprovalResponse:
        rid = current_run_id.get() or ""
        calls = runs.get(rid)
        if calls is None:
            calls = runs[rid] = {}
            for e in store.events(rid):
                r = e.record
                if isinstance(r, CallStart):
                    kwargs = r.item.data.kwargs if r.item.data else None
                    calls[r.item.id or ""] = ApprovalResponse.approve(kwargs=kwargs)
                elif isinstance(r, CallComplete) and r.item.id not in calls:  # ended without starting: denied
                    cid = r.item.id
                    raw = r.item.data.output if r.item.data is not None else None
                    output = str((raw.get("observation") if isinstance(raw, dict) else raw) or "")
                    reason = output[len(DENIED) + 2:] if output.startswith(DENIED + ": ") else output
                    calls[cid or ""] = ApprovalResponse(ApprovalOutcome.CANCEL, reason=reason or None)
        return calls.get(request.id) or ApprovalResponse(ApprovalOutcome.CANCEL,
                                                        reason="not decided in the journaled run")
    return decide


class _JournaledReplies:
    """A model answering each request with the reply journaled by the run of the same id at the
    same step (an agent guardrail's child run: replayed under its journaled id)."""

    name = "replay"
    provider = "scripted"
    native_tools = False

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._scripts: dict[str, ScriptedModel] = {}

    async def request(self, request: ModelRequest) -> ModelResponse:
        rid = request.run_id or ""
        script = self._scripts.get(rid)
        if script is None:
            script = self._scripts[rid] = ScriptedModel(_replies(self._store.events(rid)), per_run=True,
                                                        name=f"replay:{rid}")
        return await script.request(request)


def compare(entries: list[JournalEntry], steps: list[StepOutput], found: list[Difference], path: str) -> None:
    journaled = [r.item.data or Step() for r in (e.record for e in entries) if isinstance(r, StepComplete)]
    for old, new in zip(journaled, steps):
        if old.observation != to_jsonable(new.observation):
            name = old.function.name if old.function is not None else ""
            found.append(Difference(old.step, path + name, old.observation, new.observation))
    if len(journaled) != len(steps):
        found.append(Difference(len(steps), path, f"{len(journaled)} steps", f"{len(steps)} steps"))


class _ReplayedAgentTool(AgentTool):
    """Stands for an agent tool during a replay: the call runs the inner agent's twin, with
    the replies journaled by the child run the original call made."""

    def __init__(self, tool: AgentTool, store: RunStore, run_id: str, found: list[Difference], path: str) -> None:
        super().__init__(_agent(tool.agent), name=tool.name, description=tool.description, input_type=tool.input_type)
        self._store, self._run_id, self._found, self._path = store, run_id, found, path

    async def run_nested(self, run: RunState, fn: Function, step: int) -> ToolResult:
        original = child_run_id(self._run_id, f"{step}:{fn.id}")
        entries = self._store.events(original)
        path = f"{self._path}{self.name}/"
        twin = twin_agent(_agent(self.agent), self._store, original, entries, self._found, path)
        stand_in = AgentTool(twin, name=self.name, description=self.description, input_type=self.input_type)
        steps: list[StepOutput] = []

        def sink(event: StreamEvent) -> None:  # the step records of this call's child run
            if isinstance(event, RunItemStreamEvent) and event.name == ev.STEP_COMPLETE and \
                    event.parent_run_id == run.run_id and isinstance(event.item, StepRunItem):
                steps.append(event.item.data)

        run.sinks.append(sink)
        try:
            result = await stand_in.run_nested(run, fn, step)
        finally:
            run.sinks.remove(sink)
        compare(entries, steps, self._found, path)
        return result
