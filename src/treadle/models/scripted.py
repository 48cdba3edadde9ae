"""ScriptedModel: a deterministic model for tests of agents and of the runner itself."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading
from typing import Any, AsyncIterator, Callable, Sequence, Union, cast

from ..errors import ScriptExhaustedError
from ..types import Function, Usage
from .base import ModelDelta, ModelRequest, ModelResponse

__all__ = ["ScriptedModel", "Reply"]

Reply = Union[Function, str, BaseException, list[Function], ModelResponse, Callable[[list[Any]], Any]]


class ScriptedModel:
    """A model that answers from a script; use it in your own agent tests.

    Each reply is one of:

    * a ``Function`` — a tool call (or the final answer, ``name="finish"`` or
      ``_is_answer_final=True``); a list of Functions — parallel tool calls;
    * a ``str`` — raw text the planner must parse (JSON mode) or the final answer text
      (native mode), possibly malformed on purpose;
    * an exception instance — raised as the provider's error (use ``treadle.errors``);
    * a ``ModelResponse`` — returned as it is;
    * a callable ``(messages) -> reply`` (sync or async) — computed per request.

    Args:
        replies: the script.
        delay: seconds to wait before each reply (one float, or one per reply).
        per_run: replay the whole script for every run (the cursor is the planner step
            of the run) instead of consuming it once across runs. Needed when many runs
            share one model concurrently.
        native_tools: behave like a native tool-calling model (plain text = final answer).
        structured_output: with ``native_tools``, take a structured answer's schema as
            ``ModelRequest.answer_format`` (the reply text is the answer's JSON) instead of an output tool.
        usage: fixed usage per reply; default estimates ~4 characters per token.
        stream_chunk: characters per streamed text delta.
        repeat_last: keep answering the last reply once the script is used up.

    Every request is kept in ``requests`` (with a snapshot of its messages) unless
    ``record_requests`` is set to False.
    """

    def __init__(self, replies: Sequence[Reply] = (), *, delay: float | Sequence[float] = 0.0,
                 per_run: bool = False, native_tools: bool = False, usage: Usage | None = None,
                 stream_chunk: int = 8, repeat_last: bool = False, name: str = "scripted",
                 provider: str = "scripted", structured_output: bool = False) -> None:
        self.replies = list(replies)
        self.delay = delay
        self.per_run = per_run
        self.native_tools = native_tools
        self.structured_output = structured_output
        self.usage = usage
        self.stream_chunk = max(1, stream_chunk)
        self.repeat_last = repeat_last
        self.name = name
        self.provider = provider
        self.requests: list[ModelRequest] = []
        self.record_requests = True
        self._cursor = 0
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return self._cursor

    def _next(self, request: ModelRequest) -> tuple[Reply, float]:
        with self._lock:
            if self.per_run:
                i = request.step
            else:
                i = self._cursor
                self._cursor += 1
            if self.record_requests:  # a snapshot: the run keeps appending to its message list
                self.requests.append(ModelRequest(messages=list(request.messages), tools=request.tools,
                                                  output_schema=request.output_schema,
                                                  model_kwargs=request.model_kwargs, run_id=request.run_id,
                                                  step=request.step, answer_format=request.answer_format))
        if i >= len(self.replies):
            if not (self.repeat_last and self.replies):
                raise ScriptExhaustedError(
                    f"ScriptedModel has {len(self.replies)} replies but was asked for reply {i + 1}")
            i = len(self.replies) - 1
        d = self.delay
        delay = d if isinstance(d, (int, float)) else (d[i] if i < len(d) else 0.0)
        return self.replies[i], float(delay)

    async def _resolve(self, request: ModelRequest) -> ModelResponse:
        reply, delay = self._next(request)
        if delay:
            await asyncio.sleep(delay)
        if callable(reply) and not isinstance(reply, (Function, BaseException, ModelResponse)):
            reply = reply(request.messages)
            if inspect.isawaitable(reply):
                reply = await reply
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, ModelResponse):
            resp = reply
        elif isinstance(reply, Function):
            resp = ModelResponse(tool_calls=[_copy_fn(reply)])
        elif isinstance(reply, list):
            resp = ModelResponse(tool_calls=[_copy_fn(f) for f in cast("list[Function]", reply)])
        else:
            resp = ModelResponse(text=str(reply))
        if resp.usage is None:
            resp.usage = self.usage.copy() if self.usage is not None else _estimate(request, resp)
            resp.usage.requests = 1
        resp.model_name = resp.model_name or self.name
        return resp

    async def request(self, request: ModelRequest) -> ModelResponse:
        return await self._resolve(request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        resp = await self._resolve(request)
        if resp.text:
            n = self.stream_chunk
            for i in range(0, len(resp.text), n):
                yield ModelDelta(text=resp.text[i:i + n])
                await asyncio.sleep(0)
        for idx, fn in enumerate(resp.tool_calls):
            yield ModelDelta(tool_call_index=idx, tool_call_id=fn.id, tool_name=fn.name,
                             arguments_delta=repr(fn.kwargs))
        yield resp


def _copy_fn(fn: Function) -> Function:
    # every run gets its own Function object (the runner assigns ids)
    return dataclasses.replace(fn, args=list(fn.args), kwargs=dict(fn.kwargs))


def _estimate(request: ModelRequest, resp: ModelResponse) -> Usage:
    chars = 0
    for m in request.messages:
        c = m.get("content")
        if isinstance(c, str):
            chars += len(c)
    out = len(resp.text) if resp.text else 16 * len(resp.tool_calls)
    return Usage(input_tokens=chars // 4 + 1, output_tokens=out // 4 + 1)
