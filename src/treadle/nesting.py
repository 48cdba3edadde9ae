"""Runs inside runs: an Agent called as another agent's tool (``Agent.as_tool``), and agents
used as guardrails.

A child run is a real run, driven by the same loop in the caller's task:

* its events reach every consumer of the parent's (the stream, handlers, the journal, the
  tracer) marked with ``depth`` and ``parent_run_id``;
* its usage adds to its parent's as it happens, and the parent's ``UsageLimits`` count both;
* cancelling the parent cancels it; its approvals go to the parent's permission manager and
  decision channel; a child that suspends for approval suspends its parent;
* journaled, it is a run of its own in the store, linked to the parent's call
  (``config.parent_run_id`` / ``parent_call_id``), with an id derived from the parent's id
  and the call: when the parent is resumed after a crash or a suspension, the child is
  resumed where it was, or its recorded result is reused if it had finished.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from ._approval import SuspendedForApproval
from ._run import NestedRunTool, Nesting, SeedCall
from .errors import ToolArgumentsError, UserError
from .loop import RunState, drive
from .protocols import DrivenAgent, DriverTool, HandoffTarget
from .tools.function_tool import FunctionTool
from .tools.manager import ToolResult
from .types import Function, RunnerResult, ToolOutput, Usage, child_run_id, to_jsonable

__all__ = ["AgentTool", "child_run_id", "spawn"]


def _child_state(parent: RunState, agent: DrivenAgent, text: str, key: str) -> RunState:
    up = parent.config
    pk: dict[str, object] = {"input_str": text, "max_steps": agent.max_steps}
    config = replace(up, run_id=child_run_id(up.run_id, key), prompt_kwargs=pk, model_kwargs=dict(agent.model_kwargs),
                     max_steps=agent.max_steps, memory=None, seed_call=SeedCall())
    nesting = Nesting(parent=parent, call_id=key, depth=parent.nesting.depth + 1, root=parent.outermost())
    return RunState(config, agent, sinks=list(parent.sinks), nesting=nesting)


async def spawn(parent: RunState, agent: DrivenAgent, text: str, key: str) -> RunnerResult[Any]:
    """Run ``agent`` on ``text`` as a child of ``parent`` (``key`` names the call: the same key
    gives the same child, so a resumed parent finds its children again)."""
    return (await _spawn(parent, agent, text, key))[0]


async def _spawn(parent: RunState, agent: DrivenAgent, text: str, key: str) -> tuple[RunnerResult[Any], RunState]:
    run = _child_state(parent, agent, text, key)
    journal = parent.durability.journal
    if journal is not None:
        recorded = journal.resume_child(run)
        if recorded is not None:
            _roll_up(parent, recorded.usage)
            return recorded, run
        if run.durability.lease is not None:  # resumed: what it used before the crash counts for its callers
            _roll_up(parent, run.usage)
    return await drive(run), run


def _roll_up(parent: RunState, usage: Usage | None) -> None:
    """A child's usage from before a resume, counted for its callers again."""
    for r in parent.lineage():
        r.usage.add(usage)


class AgentTool(FunctionTool, NestedRunTool):
    """An Agent as another agent's tool (``Agent.as_tool``). The model calls it with
    ``input`` (a string, or ``input_type``'s fields); the observation is the inner agent's
    typed answer. A failed inner run is an error observation naming the inner run."""

    def __init__(self, agent: HandoffTarget, *, name: str | None = None, description: str | None = None,
                 input_type: object = None, require_approval: bool = False, timeout: float | None = None) -> None:
        self.agent = agent
        self.input_type = input_type

        async def run_agent(input: Any) -> Any:  # the schema; calls go through run_nested
            raise UserError("an agent tool runs inside a run (Runner), not on its own")

        run_agent.__annotations__ = {"input": input_type if input_type is not None else str, "return": Any}
        desc = description or agent.instructions or f"Ask the {agent.name} agent."
        run_agent.__doc__ = desc + ("\n\nArgs:\n    input: the task or question for the agent, in full "
                                    "(it sees nothing else of this conversation).")
        super().__init__(run_agent, name=name or _tool_name(agent.name), description=desc,
                         require_approval=require_approval, timeout=timeout, idempotent=True)

    async def run_nested(self, run: RunState, fn: Function, step: int) -> ToolResult:
        """The call, as a child run of ``run`` (the loop calls this instead of running ``fn``)."""
        try:
            values = self.validate(fn.args, fn.kwargs if isinstance(fn.kwargs, dict) else {})
        except ToolArgumentsError as e:
            return ToolResult(observation=str(e), status="error", error=str(e), error_type="ToolArgumentsError")
        value = values.get("input")
        text = value if isinstance(value, str) else json.dumps(to_jsonable(value), ensure_ascii=False)
        key = f"{step}:{fn.id}"
        result, state = await _spawn(run, self.agent, text, key)
        child = state.run_id
        if result.status == "waiting_for_approval":  # the caller waits too, for the same decision
            where, call_id = state.recovery.suspended or (child, "")
            raise SuspendedForApproval(call_id, run_id=where)
        meta = {"child_run_id": child, "agent": self.agent.name, "status": result.status,
                "usage": to_jsonable(result.usage)}
        if result.status == "success":
            answer = result.answer
            out = ToolOutput(output=answer, observation=answer, metadata=meta)  # type: ignore[arg-type]
            return ToolResult(output=answer, observation=answer, tool_output=out)
        msg = (f"Error: the {self.agent.name} agent did not answer ({result.status}): {result.error} "
               f"[run {child}]")
        out = ToolOutput(output=None, observation=msg, metadata=meta, status="error")
        # a usage limit is shared with the caller, which ends too (the loop sees this error type)
        kind = "UsageLimitExceeded" if result.error_type == "UsageLimitExceeded" else "AgentRunError"
        return ToolResult(observation=msg, status="error", error=msg, error_type=kind, tool_output=out)


def _tool_name(name: str) -> str:
    import re

    return re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "agent"


def find_tool(agent: DrivenAgent, name: str) -> DriverTool | None:
    """The tool called ``name`` of ``agent``, or of an agent it calls as a tool or hands off to
    (at any depth; the first found). None when there is none."""
    seen: set[int] = set()
    todo: list[DrivenAgent] = [agent]
    while todo:
        a = todo.pop(0)
        if id(a) in seen:
            continue
        seen.add(id(a))
        tm = a.tool_manager
        tool = tm.get(name)
        if tool is not None:
            return tool
        todo.extend(t.agent for t in tm.tools if isinstance(t, AgentTool))
        todo.extend(h.agent for h in a.handoffs)
    return None
