"""Handoffs: an agent passes the conversation to another agent, which carries on the run.

``Agent(handoffs=[billing, handoff(refunds, input_filter=...)])`` gives the model one more
tool per target (``transfer_to_<name>``), chosen as it chooses tools. When it calls one,
the step is recorded, an ``agent.handoff`` event names both agents, and the run goes on
with the target: its instructions, tools, model and answer type. The history so far
(everything after the system prompt) carries over, through ``input_filter`` if given.
See docs/multi-agent.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, cast, runtime_checkable

from . import events as ev
from .errors import UserError
from .events import HandoffRunItem
from .tools.function_tool import FunctionTool
from .types import Function, to_jsonable

if TYPE_CHECKING:
    from ._driven import DrivenAgent, HandoffSpec, HandoffTarget
    from ._run import RunState

__all__ = ["Handoff", "HandoffInfo", "handoff", "keep_last_messages", "remove_tool_messages"]

Message = dict[str, Any]
InputFilter = Callable[[list[Message]], list[Message]]


@dataclass(slots=True)
class HandoffInfo:
    """The data of an ``agent.handoff`` event."""

    from_agent: str
    to_agent: str
    call_id: str | None = None
    step: int = 0
    message: str | None = None


class Handoff:
    """A handoff target: the agent, the tool the model calls, and an optional input filter
    (messages after the system prompt -> the messages the target sees)."""

    def __init__(self, agent: HandoffTarget, *, tool_name: str | None = None, description: str | None = None,
                 input_filter: InputFilter | None = None) -> None:
        if not isinstance(cast(object, agent), _AgentLike):
            raise UserError(f"a handoff target is an Agent, not {agent!r}")
        self.agent: HandoffTarget = agent
        self.tool_name = tool_name or "transfer_to_" + (re.sub(r"[^0-9A-Za-z_]+", "_", agent.name).strip("_")
                                                         or "agent")
        self.description = description or (f"Hand the conversation to {agent.name}"
                                           + (f": {agent.instructions}" if agent.instructions else "."))
        self.input_filter = input_filter

    def tool(self) -> FunctionTool:
        def transfer(message: str = "") -> str:
            return f"Transferred to {self.agent.name}."

        transfer.__doc__ = self.description + "\n\nArgs:\n    message: what the next agent should know (optional)."
        t = FunctionTool(transfer, name=self.tool_name, description=self.description, idempotent=True,
                         inline=True)  # returns a constant: no thread hop
        return t  # the loop switches agents after a successful call of it (by its name: DrivenAgent.handoffs)

    def __repr__(self) -> str:
        return f"Handoff({self.agent.name!r}, tool={self.tool_name!r})"


def handoff(agent: HandoffTarget, *, tool_name: str | None = None, description: str | None = None,
            input_filter: InputFilter | None = None) -> Handoff:
    """A handoff to ``agent`` (see ``Handoff``)."""
    return Handoff(agent, tool_name=tool_name, description=description, input_filter=input_filter)


def as_handoff(obj: Handoff | HandoffTarget) -> Handoff:
    return obj if isinstance(obj, Handoff) else Handoff(obj)


@runtime_checkable
class _AgentLike(Protocol):
    tool_manager: object
    planner: object


# ---------------------------------------------------------------------------- input filters
def remove_tool_messages(messages: list[Message]) -> list[Message]:
    """An input filter: drop tool calls and their results (the target sees the user's words
    and the agents' plain replies only)."""
    out = []
    for m in messages:
        if m.get("role") == "tool" or m.get("tool_calls"):
            continue
        content = m.get("content")
        if isinstance(content, str) and (content.startswith("Observation:") or content.lstrip().startswith("{")):
            continue
        out.append(m)
    return out


def keep_last_messages(n: int) -> InputFilter:
    """An input filter: the first user message and the last ``n`` messages (fewer when the
    cut would keep a tool result without the call it answers: providers refuse that)."""
    def keep(messages: list[Message]) -> list[Message]:
        if len(messages) <= n + 1:
            return list(messages)
        tail = messages[-n:] if n > 0 else []
        while tail and tail[0].get("role") == "tool":
            tail = tail[1:]
        return messages[:1] + tail
    return keep


# ---------------------------------------------------------------------------- the switch
def find_agent(root: DrivenAgent, name: str) -> DrivenAgent:
    """The agent called ``name`` among ``root`` and everything reachable by its handoffs."""
    seen: set[int] = set()
    todo: list[DrivenAgent] = [root]
    while todo:
        a = todo.pop()
        if id(a) in seen:
            continue
        seen.add(id(a))
        if a.name == name:
            return a
        todo.extend(h.agent for h in a.handoffs)
    raise UserError(f"no agent named {name!r} is reachable from {root.name!r} by handoffs")


def transcript(messages: list[Message]) -> str:
    """A history in another planner's message format, as plain text."""
    lines = []
    for m in messages:
        role = m.get("role", "")
        if m.get("tool_calls"):
            for c in m["tool_calls"]:
                f = c.get("function") or {}
                lines.append(f"assistant called {f.get('name')}({f.get('arguments')})")
            continue
        content = m.get("content")
        if not isinstance(content, str):
            content = str(to_jsonable(content))
        lines.append(f"{role}: {content}")
    return "The conversation so far:\n" + "\n".join(lines)


def switch_messages(messages: list[Message], old_mode: str, target: DrivenAgent, mode: str,
                    prompt_kwargs: dict[str, Any], style: str, h: HandoffSpec | None) -> list[Message]:
    """The target's messages: its own system prompt, then the history carried over."""
    head = target.planner.initial_messages(mode, prompt_kwargs, style)[:-1]  # its system prompt (if it has one)
    history = messages[1:] if messages and messages[0].get("role") == "system" else list(messages)
    if h is not None and h.input_filter is not None:
        history = list(h.input_filter([dict(m) for m in history]))
    if mode != old_mode:
        history = [{"role": "user", "content": transcript(history)}]
    return [*head, *history]


def switch_to(run: RunState, h: HandoffSpec, fn: Function, step: int, old_mode: str) -> None:
    """Hand ``run`` to ``h.agent`` after step ``step`` (whose call ``fn`` asked for it)."""
    target, source = h.agent, run.driven()
    model = target.model
    planner = target.planner
    mode, style = planner.mode(model), planner.final_style(model)
    run.progress.set_messages(switch_messages(run.messages, old_mode, target, mode, run.prompt_kwargs, style, h),
                              style)
    run.hand_to(target)
    message = fn.kwargs.get("message")
    run.emit_item(ev.HANDOFF, HandoffRunItem(id=fn.id or "", data=HandoffInfo(
        from_agent=source.name, to_agent=target.name, call_id=fn.id, step=step,
        message=str(message) if message else None)))
