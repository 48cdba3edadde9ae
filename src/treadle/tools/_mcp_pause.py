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
import contextvars
import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .._approval import ask_during_call
from .._run import current_run
from ..permissions import current_channel_id, current_run_id
from ._mcp_requests import MCPElicitation, MCPElicitationAnswer, apply_defaults, check_content

__all__ = ["Asker", "InFlight", "current_flight", "run_asker"]

current_flight: contextvars.ContextVar[InFlight | None] = contextvars.ContextVar("treadle_mcp_flight", default=None)
"""The call whose task is running on the server's loop: a 2026-07-28 ``input_required`` question is
answered inside it, so it is known exactly (a 2025 server-to-client request is not tied to a call)."""


@dataclass(eq=False)
class InFlight:
    """One tool call in flight on a server's session: who answers its questions, and how it went."""

    tool: str
    ask: Asker | None = None  # None: a call made outside a run
    suspended: BaseException | None = None  # the run paused on a question: the call ends with this
    unanswered: str | None = None  # a question nobody could answer (the call cannot have succeeded)
    started: float = field(default_factory=time.monotonic)
    asking_since: float | None = None  # a question waits for its answer since then
    asked_for: float = 0.0  # seconds spent waiting for answers

    def working_time(self) -> float:
        """Seconds the call has run, less the time its questions waited for answers."""
        now = time.monotonic()
        waiting = self.asked_for + (now - self.asking_since if self.asking_since is not None else 0.0)
        return now - self.started - waiting

    async def asking(self, coro: Any) -> Any:
        """Await a question's answer, off the call's clock."""
        self.asking_since = time.monotonic()
        try:
            return await coro
        finally:
            self.asked_for += time.monotonic() - self.asking_since
            self.asking_since = None


class QuestionNotAnswered(Exception):
    """The answer given does not fit the question's form."""


def run_asker(tool_name: str, ctx: Any, *, sampling: str = "approve") -> Asker | None:
    """For a call made by a run (``ctx`` its RunContext): ask that run; None outside a run."""
    run = current_run.get()
    call_id = getattr(ctx, "tool_call_id", None)
    if run is None or call_id is None:
        return None
    return Asker(run, call_id, tool_name, asyncio.get_running_loop(), sampling)


class Asker:
    """The questions and model requests of one tool call of a run, sent to that run's loop."""

    def __init__(self, run: Any, call_id: str, tool_name: str, loop: asyncio.AbstractEventLoop, sampling: str) -> None:
        self.run, self.call_id, self.tool_name, self.loop, self.sampling = run, call_id, tool_name, loop, sampling
        self._rank = itertools.count(1)

    async def _on_run_loop(self, coro: Any) -> Any:
        if asyncio.get_running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def _enter(self) -> None:
        # a task of its own (sent over from the server's loop): the run's context, for the approval channel
        current_run_id.set(self.run.run_id)
        current_channel_id.set((self.run.root or self.run).run_id)

    async def elicit(self, question: MCPElicitation) -> MCPElicitationAnswer:
        return await self._on_run_loop(self._elicit(question))

    async def _elicit(self, question: MCPElicitation) -> MCPElicitationAnswer:
        self._enter()
        question_id = f"{self.call_id}:q{next(self._rank)}:{question.fingerprint[:8]}"
        details: dict[str, Any] = {"kind": "mcp_elicitation", "call_id": self.call_id, **question.to_dict()}
        proposed = apply_defaults(question.schema, {}) if question.mode == "form" else {}
        accepted, content, _reason = await ask_during_call(self.run, question_id, f"{self.tool_name}.question",
                                                           proposed, details)
        if not accepted:
            return MCPElicitationAnswer.decline()
        if question.mode == "form":
            problem = check_content(question.schema, apply_defaults(question.schema, content))
            if problem:
                raise QuestionNotAnswered(f"the answer to {question.message!r} does not fit its form: {problem}")
        return MCPElicitationAnswer.accept(content)

    async def sample(self, server: str, params: Any) -> Any:
        return await self._on_run_loop(self._sample(server, params))

    async def _sample(self, server: str, params: Any) -> Any:
        """The server asks for a model reply: the run's own model answers (after an approval, by default)."""
        import mcp.types as mcp_types

        from ..models.base import ModelRequest

        self._enter()
        messages = sampling_messages(params)
        if self.sampling == "approve":
            digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:8]
            request_id = f"{self.call_id}:s{next(self._rank)}:{digest}"
            last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            details = {"kind": "mcp_sampling", "call_id": self.call_id, "server": server, "tool": self.tool_name,
                       "message": f"{server} asks to use the model: {last[:300]}", "messages": messages,
                       "max_tokens": params.max_tokens}
            accepted, _, reason = await ask_during_call(self.run, request_id, f"{self.tool_name}.sampling", {},
                                                        details)
            if not accepted:
                why = f": {reason}" if reason else ""
                return mcp_types.ErrorData(code=mcp_types.INVALID_REQUEST,
                                           message=f"the user refused the model request{why}")
        model = self.run.driven().model
        reply = await model.request(ModelRequest(messages=messages, model_kwargs={"max_tokens": params.max_tokens},
                                                 run_id=self.run.run_id))
        if reply.usage is not None:
            self.run.usage.add(reply.usage)
        return mcp_types.CreateMessageResult(role="assistant", content=mcp_types.TextContent(type="text",
                                             text=reply.text or ""), model=reply.model_name or "treadle",
                                             stop_reason="endTurn")


def sampling_messages(params: Any) -> list[dict[str, str]]:
    """A sampling request's conversation as chat messages (text only: other content becomes a reference)."""
    out: list[dict[str, str]] = []
    if params.system_prompt:
        out.append({"role": "system", "content": params.system_prompt})
    for message in params.messages:
        blocks = message.content if isinstance(message.content, list) else [message.content]
        text = "\n".join(getattr(b, "text", None) or f"[{getattr(b, 'type', 'content')} content]" for b in blocks)
        out.append({"role": message.role, "content": text})
    return out
