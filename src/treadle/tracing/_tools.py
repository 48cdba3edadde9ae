"""The spans of tool calls: permission requests, execution, activity (a part of OTelTracer)."""

from __future__ import annotations

from contextvars import Token
from typing import TYPE_CHECKING, Callable, Optional

from ..events import FunctionRequest, RunItem
from ..types import Function, FunctionOutput, ToolOutput
from ._common import error_kind
from ._state import Attributes, ContentText, TracedRun, current_task, ns

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Status, StatusCode, Tracer

__all__ = ["ToolSpans"]


class ToolSpans(ContentText):
    """Mixed into OTelTracer: an ``execute_tool`` span per call, under its step's span."""

    set_current: bool
    _tracer: Tracer
    _set_span: Callable[[Span, Optional[Context]], Context]
    _attach: Callable[[Context], Token[Context]]
    _Status: type[Status]
    _ERROR: StatusCode

    def _ensure_step(self, st: TracedRun, now: int, step: int | None = None) -> None:
        raise NotImplementedError

    def _permission(self, st: TracedRun, item: RunItem) -> None:
        now = ns(item.created_at)
        self._ensure_step(st, now)
        req: object = item.data
        name = (req.tool_name if isinstance(req, FunctionRequest) else None) or ""
        st.asked[item.id] = now
        if st.step_span is not None:
            st.step_span.add_event("treadle.tool_permission_request",
                               {"gen_ai.tool.name": name, "gen_ai.tool.call.id": str(item.id or "")}, timestamp=now)

    def _tool_start(self, st: TracedRun, item: RunItem) -> None:
        start = ns(item.created_at)
        self._ensure_step(st, start)
        st.last = start
        data: object = item.data
        span = self._start_tool(st, item.id, data if isinstance(data, Function) else None, start)
        st.tools[item.id] = (span, start)
        if self.set_current:
            st.tool_tokens[item.id] = (self._attach(self._set_span(span, st.step_ctx)), current_task())

    def _start_tool(self, st: TracedRun, call_id: str, fn: Function | None, start: int) -> Span:
        name = (fn.name if fn is not None else None) or "tool"
        attrs: Attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                             "gen_ai.tool.type": "function", "treadle.run_id": st.run_id}
        if st.step is not None:
            attrs["treadle.step"] = st.step
        if call_id:
            attrs["gen_ai.tool.call.id"] = str(call_id)
        if self.include_content and fn is not None:
            args: dict[str, object] = dict(fn.kwargs)
            if fn.args:
                args["*args"] = list(fn.args)
            attrs["gen_ai.tool.call.arguments"] = self._json(args, st)
        return self._tracer.start_span(f"execute_tool {name}", context=st.step_ctx, start_time=start,
                                       attributes=attrs)

    def _tool_activity(self, st: TracedRun, item: RunItem) -> None:
        entry = st.tools.get(item.id)
        if entry is None:
            return
        span = entry[0]
        attrs = {"data": self._text(item.data, st)} if self.include_content and item.data is not None else None
        span.add_event("treadle.tool_call_activity", attrs, timestamp=ns(item.created_at))

    def _tool_complete(self, st: TracedRun, item: RunItem) -> None:
        end = ns(item.created_at)
        call_id = item.id
        data: object = item.data
        fo = data if isinstance(data, FunctionOutput) else None
        entry = st.tools.pop(call_id, None)
        if entry is None:  # never started: denied, or failed before it ran
            self._ensure_step(st, end)
            start = st.asked.get(call_id, end)
            span = self._start_tool(st, call_id, fo.input if fo is not None else None, start)
        else:
            span, start = entry
        st.asked.pop(call_id, None)
        token = st.tool_tokens.pop(call_id, None)
        if token is not None:
            self._detach([token])
        st.last = max(st.last, end)
        output: object = fo.output if fo is not None else None
        tool_output = output if isinstance(output, ToolOutput) else None
        status: str = tool_output.status if tool_output is not None else "error" if item.error else "success"
        span.set_attribute("treadle.tool.status", status)
        if self.include_content:
            # a ToolOutput's observation, else what it holds; any other value as it is
            obs = output if tool_output is None else tool_output.observation if tool_output.observation is not None \
                else tool_output.output
            if obs is not None:
                span.set_attribute("gen_ai.tool.call.result", self._text(obs, st))
        if item.error:
            kind = error_kind(item.error)
            span.set_attribute("error.type", kind if kind != "_OTHER" else "ToolError")
            span.set_status(self._Status(self._ERROR, self._error_text(item.error, st)))
        span.end(end_time=max(end, start))
