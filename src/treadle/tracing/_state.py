"""The per-run state of OTelTracer and the text of its content attributes (a part of ``treadle.tracing``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..types import _utf8, to_jsonable
from ._common import _cut, _message, scrub

__all__ = ["ContentText", "TracedRun", "current_task", "ns"]


def ns(t: float) -> int:
    """Seconds (an event's ``created_at``) as the nanoseconds OpenTelemetry takes."""
    return int(t * 1e9)


def current_task() -> Any:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


class TracedRun:
    """The open spans and bookkeeping of one traced run."""

    __slots__ = ("asked", "chat_bad_text", "chat_base", "chat_calls", "chat_error", "chat_finish", "chat_first",
                 "chat_last", "chat_name", "chat_ran", "chat_text", "chat_usage", "ctx", "in_acc",
                 "last", "messages", "msg_json", "out_acc", "prev_end",
                 "response_model", "run", "secrets", "seq", "span", "start", "step", "step_ctx", "step_end",
                 "step_span", "step_start", "step_status", "step_usage", "tokens", "tool_tokens", "tools")

    def __init__(self) -> None:
        self.run: Any = None
        self.span: Any = None
        self.ctx: Any = None
        self.start = 0
        self.chat_base: dict[str, Any] = {}
        self.chat_name = "chat"
        self.step: int | None = None
        self.step_span: Any = None
        self.step_ctx: Any = None
        self.step_start = 0
        self.step_end = 0
        self.step_status: str | None = None
        self.step_usage: Any = None
        self.prev_end = 0
        self.last = 0
        self.chat_first = 0
        self.chat_last = 0
        self.chat_error: str | None = None
        self.chat_calls: list[Any] | None = None
        self.chat_text: list[str] | None = None
        self.chat_finish: str | None = None  # the finish reason the model gave
        self.chat_ran = True  # False: the reply was determined, no model ran
        self.chat_usage: Any = None  # the model call's Usage, from its parsed reply
        self.chat_bad_text: str | None = None  # the text of a reply that could not be parsed
        self.messages: str | None = None
        self.msg_json: list[str] = []
        self.response_model: str | None = None
        self.in_acc = 0
        self.out_acc = 0
        self.tools: dict[Any, Any] = {}
        self.tool_tokens: dict[Any, tuple[Any, Any]] = {}
        self.asked: dict[Any, int] = {}
        self.tokens: list[tuple[Any, Any]] = []
        self.secrets: tuple[str, ...] = ()
        self.seq = 0


class ContentText:
    """Mixed into OTelTracer: detaching contexts, and content attributes as scrubbed, bounded text."""

    include_content: bool
    max_content_chars: int
    _context: Any

    def _detach(self, tokens: list[tuple[Any, Any]]) -> None:
        task = current_task()
        while tokens:
            token, owner = tokens.pop()
            if owner is task:  # a token is only valid in the context (task) that attached it
                self._context.detach(token)

    def _input_messages(self, st: TracedRun) -> str:
        """The request's messages as JSON; each message is converted (and scrubbed) once per run."""
        messages = st.run.messages
        done = st.msg_json
        if len(messages) < len(done):  # the history was replaced: start over
            done.clear()
        for m in messages[len(done):]:
            done.append(self._json(_message(m), st))
        return "[" + ", ".join(done) + "]"

    def _text(self, value: Any, st: TracedRun) -> str:
        if not isinstance(value, str):
            return self._json(value, st)
        return self._clean(value, st)

    def _json(self, value: Any, st: TracedRun) -> str:
        limit = self.max_content_chars
        try:  # plain data (messages, kwargs) directly; anything else through pydantic
            text = json.dumps(_cut(value, limit) if limit else value, ensure_ascii=False, default=to_jsonable)
        except Exception:  # a cycle, too deep, an int too long to print: to_jsonable makes it safe
            value = to_jsonable(value)
            text = json.dumps(_cut(value, limit) if limit else value, ensure_ascii=False)
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
