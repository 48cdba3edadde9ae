"""A question an MCP server asks during a run's tool call, as a pause of the run (a part of
``treadle.tools.mcp``).

The question goes through the run's approval machinery (``treadle._approval.ask_during_call``):
a ``ToolCallQuestion`` event on the stream and in the journal, decided by the approval callback,
the stream's consumer, the HTTP API or ``treadle approve``; with ``suspend_for_approval`` the run
suspends, and its resume calls the tool again with the same arguments and gives the journaled
answer to the same question (a question is named by its call, its rank in the call and its
fingerprint, so a different question is asked anew, never answered with a stale answer).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .._approval import ask_during_call
from .._run import current_run
from ..permissions import current_channel_id, current_run_id
from ._mcp_requests import MCPElicitation, MCPElicitationAnswer, apply_defaults, check_content

__all__ = ["Asker", "InFlight", "run_asker"]

Asker = Callable[[MCPElicitation], Awaitable[MCPElicitationAnswer]]


@dataclass(eq=False)
class InFlight:
    """One tool call in flight on a server's session: who answers its questions, and how it went."""

    tool: str
    ask: Asker | None = None
    suspended: BaseException | None = None  # the run paused on a question: the call ends with this
    unanswered: str | None = None  # a question nobody could answer (the call cannot have succeeded)


class QuestionNotAnswered(Exception):
    """The answer given does not fit the question's form."""


def run_asker(tool_name: str, ctx: Any) -> Asker | None:
    """For a call made by a run (``ctx`` its RunContext): ask that run; None outside a run."""
    run = current_run.get()
    call_id = getattr(ctx, "tool_call_id", None)
    if run is None or call_id is None:
        return None
    loop = asyncio.get_running_loop()
    rank = itertools.count(1)

    async def ask(question: MCPElicitation) -> MCPElicitationAnswer:
        # a task of its own (sent over from the server's loop): the run's context, for the approval channel
        current_run_id.set(run.run_id)
        current_channel_id.set((run.root or run).run_id)
        n = next(rank)
        question_id = f"{call_id}:q{n}:{question.fingerprint[:8]}"
        details: dict[str, Any] = {"kind": "mcp_elicitation", "call_id": call_id, **question.to_dict()}
        proposed = apply_defaults(question.schema, {}) if question.mode == "form" else {}
        accepted, content, _reason = await ask_during_call(run, question_id, f"{tool_name}.question", proposed,
                                                           details)
        if not accepted:
            return MCPElicitationAnswer.decline()
        if question.mode == "form":
            problem = check_content(question.schema, apply_defaults(question.schema, content))
            if problem:
                raise QuestionNotAnswered(f"the answer to {question.message!r} does not fit its form: {problem}")
        return MCPElicitationAnswer.accept(content)

    async def ask_from_any_loop(question: MCPElicitation) -> MCPElicitationAnswer:
        if asyncio.get_running_loop() is loop:
            return await ask(question)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(ask(question), loop))

    return ask_from_any_loop
