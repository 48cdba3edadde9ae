"""Replaying a tree of runs: an agent called as a tool is replayed with the model replies its
child run journaled, recursively (``Runner.areplay``)."""

from __future__ import annotations

from typing import Any

from . import events as ev
from .agent import Agent
from .models.scripted import ScriptedModel
from .nesting import AgentTool
from .store.base import JournalEntry, RunStore
from .store.replay import Difference, _replies
from .tools.manager import ToolManager
from .types import Function, child_run_id, to_jsonable

__all__ = ["twin_agent"]


def twin_agent(agent: Any, store: RunStore, run_id: str, entries: list[JournalEntry], found: list[Difference],
               path: str = "", max_steps: int | None = None) -> Agent[Any]:
    """``agent`` answering with run ``run_id``'s journaled replies (no model call); its agent
    tools replayed alike. Differences inside child runs go to ``found``, named ``tool/inner``."""
    tools: list[Any] = []
    for t in agent.tool_manager.tools:
        tools.append(_ReplayedAgentTool(t, store, run_id, found, path) if isinstance(t, AgentTool) else t)
    manager = ToolManager(tools) if any(isinstance(t, _ReplayedAgentTool) for t in tools) else agent.tool_manager
    return Agent(name=agent.name, tool_manager=manager, model=ScriptedModel(_replies(entries), name=f"replay:{run_id}"),
                 max_steps=max_steps or agent.max_steps, answer_data_type=agent.answer_data_type,
                 instructions=agent.instructions, template=agent.template, planner_mode="json")


def compare(entries: list[JournalEntry], steps: list[Any], found: list[Difference], path: str) -> None:
    journaled = [e.payload["item"]["data"] for e in entries if e.name == ev.STEP_COMPLETE]
    for old, new in zip(journaled, steps):
        fn = old.get("function") or {}
        if old.get("observation") != to_jsonable(new.observation):
            found.append(Difference(old.get("step", 0), path + fn.get("name", ""), old.get("observation"),
                                    new.observation))
    if len(journaled) != len(steps):
        found.append(Difference(len(steps), path, f"{len(journaled)} steps", f"{len(steps)} steps"))


class _ReplayedAgentTool(AgentTool):
    """Stands for an agent tool during a replay: the call runs the inner agent's twin, with
    the replies journaled by the child run the original call made."""

    def __init__(self, tool: AgentTool, store: RunStore, run_id: str, found: list[Difference], path: str) -> None:
        super().__init__(tool.agent, name=tool.name, description=tool.description, input_type=tool.input_type)
        self._store, self._run_id, self._found, self._path = store, run_id, found, path

    async def run_nested(self, run: Any, fn: Function, step: int) -> Any:
        original = child_run_id(self._run_id, f"{step}:{fn.id}")
        entries = self._store.events(original)
        path = f"{self._path}{self.name}/"
        twin = twin_agent(self.agent, self._store, original, entries, self._found, path)
        stand_in = AgentTool(twin, name=self.name, description=self.description, input_type=self.input_type)
        steps: list[Any] = []

        def sink(event: Any) -> None:  # the step records of this call's child run
            if getattr(event, "name", None) == ev.STEP_COMPLETE and event.parent_run_id == run.run_id:
                steps.append(event.item.data)

        run.sinks.append(sink)
        try:
            result = await stand_in.run_nested(run, fn, step)
        finally:
            run.sinks.remove(sink)
        compare(entries, steps, self._found, path)
        return result
