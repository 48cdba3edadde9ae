"""The per-run state of OTelTracer and the text of its content attributes (a part of ``treadle.tracing``)."""

from __future__ import annotations

import asyncio
import json
from contextvars import Token
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Protocol, Sequence, Union, runtime_checkable

from typing_extensions import TypeGuard

from ..types import Function, RunnerResult, Usage, _utf8, to_jsonable  # pyright: ignore[reportPrivateUsage]  (shared)
from ._common import cut, message_parts, scrub

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

__all__ = ["ContentText", "RunView", "TracedRun", "current_task", "ns"]

# an attribute's value, as OpenTelemetry takes it (``opentelemetry.util.types.AttributeValue``)
AttributeValue = Union[str, bool, int, float, Sequence[str], Sequence[bool], Sequence[int], Sequence[float]]
Attributes = dict[str, AttributeValue]
Task = Optional["asyncio.Task[object]"]


def ns(t: float) -> int:
    """Seconds (an event's ``created_at``) as the nanoseconds OpenTelemetry takes."""
    return int(t * 1e9)


def current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def is_result(value: object) -> TypeGuard[RunnerResult[object]]:
    """``isinstance(value, RunnerResult)`` (its answer of any type)."""
    return isinstance(value, RunnerResult)


@runtime_checkable
class RunView(Protocol):
    """What the tracer reads of a run (``treadle._run.RunState``) when it starts."""

    @property
    def run_id(self) -> str: ...
    @property
    def agent(self) -> object: ...
    @property
    def model_kwargs(self) -> Mapping[str, object]: ...
    @property
    def prompt_kwargs(self) -> Mapping[str, object]: ...
    @property
    def max_steps(self) -> int: ...
    @property
    def memory(self) -> object: ...
    @property
    def started_at(self) -> float: ...
    @property
    def stream_deltas(self) -> bool: ...
    @property
    def parent(self) -> RunView | None: ...
    @property
    def parent_call_id(self) -> str | None: ...
    @property
    def messages(self) -> Sequence[Mapping[str, object]]: ...


class TracedRun:
    """The open spans and bookkeeping of one traced run."""

    __slots__ = ("asked", "chat_bad_text", "chat_base", "chat_calls", "chat_error", "chat_finish", "chat_first",
                 "chat_last", "chat_name", "chat_ran", "chat_text", "chat_usage", "ctx", "in_acc",
                 "last", "messages", "msg_json", "out_acc", "prev_end",
                 "response_model", "run", "run_id", "secrets", "seq", "span", "start", "step", "step_ctx", "step_end",
                 "step_span", "step_start", "step_status", "step_usage", "tokens", "tool_tokens", "tools")

    def __init__(self, run_id: str, run: RunView | None, span: Span, ctx: Context, start: int) -> None:
        self.run_id = run_id
        self.run = run
        self.span = span
        self.ctx = ctx
        self.start = start
        self.chat_base: Attributes = {}
        self.chat_name = "chat"
        self.step: int | None = None
        self.step_span: Span | None = None
        self.step_ctx: Context | None = None
        self.step_start = 0
        self.step_end = 0
        self.step_status: str | None = None
        self.step_usage: Usage | None = None
        self.prev_end = start
        self.last = start
        self.chat_first = 0
        self.chat_last = 0
        self.chat_error: str | None = None
        self.chat_calls: list[Function] | None = None
        self.chat_text: list[str] | None = None
        self.chat_finish: str | None = None  # the finish reason the model gave
        self.chat_ran = True  # False: the reply was determined, no model ran
        self.chat_usage: Usage | None = None  # the model call's Usage, from its parsed reply
        self.chat_bad_text: str | None = None  # the text of a reply that could not be parsed
        self.messages: str | None = None
        self.msg_json: list[str] = []
        self.response_model: str | None = None
        self.in_acc = 0
        self.out_acc = 0
        self.tools: dict[str, tuple[Span, int]] = {}  # open tool spans by call id, with their start
        self.tool_tokens: dict[str, tuple[Token[Context], Task]] = {}
        self.asked: dict[str, int] = {}
        self.tokens: list[tuple[Token[Context], Task]] = []
        self.secrets: tuple[str, ...] = ()
        self.seq = 0


class ContentText:
    """Mixed into OTelTracer: detaching contexts, and content attributes as scrubbed, bounded text."""

    include_content: bool
    max_content_chars: int
    _detach_token: Callable[[Token[Context]], None]

    def _detach(self, tokens: list[tuple[Token[Context], Task]]) -> None:
        task = current_task()
        while tokens:
            token, owner = tokens.pop()
            if owner is task:  # a token is only valid in the context (task) that attached it
                self._detach_token(token)

    def _input_messages(self, st: TracedRun) -> str:
        """The request's messages as JSON; each message is converted (and scrubbed) once per run."""
        if st.run is None:
            return "[]"
        messages = st.run.messages
        done = st.msg_json
        if len(messages) < len(done):  # the history was replaced: start over
            done.clear()
        for m in messages[len(done):]:
            done.append(self._json(message_parts(m), st))
        return "[" + ", ".join(done) + "]"

    def _text(self, value: object, st: TracedRun) -> str:
        if not isinstance(value, str):
            return self._json(value, st)
        return self._clean(value, st)

    def _json(self, value: object, st: TracedRun) -> str:
        limit = self.max_content_chars
        try:  # plain data (messages, kwargs) directly; anything else through pydantic
            text = json.dumps(cut(value, limit) if limit else value, ensure_ascii=False, default=to_jsonable)
        except Exception:  # a cycle, too deep, an int too long to print: to_jsonable makes it safe
            value = to_jsonable(value)
            text = json.dumps(cut(value, limit) if limit else value, ensure_ascii=False)
        return self._clean(text, st, cut=False)

    def _clean(self, text: str, st: TracedRun, cut: bool = True) -> str:
        for secret in st.secrets:
            text = text.replace(secret, "[REDACTED]")
        text = _utf8(scrub(text))  # a lone surrogate would make the OTLP exporter drop the attribute
        limit = self.max_content_chars
        if cut and limit and len(text) > limit:
            text = text[:limit] + f"…[{len(text) - limit} more chars]"
        return text

    def _error_text(self, message: str, st: TracedRun) -> str:
        text = str(message)
        for secret in st.secrets:
            text = text.replace(secret, "[REDACTED]")
        text = _utf8(scrub(text))
        return text if len(text) <= 2000 else text[:2000] + "…"
