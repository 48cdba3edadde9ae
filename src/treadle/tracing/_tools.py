"""The spans of tool calls: permission requests, execution, activity (a part of OTelTracer)."""

from __future__ import annotations

from typing import Any

from ._common import _error_kind
from ._state import ContentText, TracedRun, current_task, ns

__all__ = ["ToolSpans"]


class ToolSpans(ContentText):
    """Mixed into OTelTracer: an ``execute_tool`` span per call, under its step's span."""

    set_current: bool
    _tracer: Any
    _set_span: Any
    _Status: Any
    _ERROR: Any

    def _ensure_step(self, st: TracedRun, now: int, step: int | None = None) -> None:
        raise NotImplementedError

    def _permission(self, st: TracedRun, item: Any) -> None:
        now = ns(item.created_at)
        self._ensure_step(st, now)
        req = item.data
        name = getattr(req, "tool_name", None) or ""
        st.asked[item.id] = now
        st.step_span.add_event("treadle.tool_permission_request",
                               {"gen_ai.tool.name": name, "gen_ai.tool.call.id": str(item.id or "")}, timestamp=now)

    def _tool_start(self, st: TracedRun, item: Any) -> None:
        start = ns(item.created_at)
        self._ensure_step(st, start)
        st.last = start
        span = self._start_tool(st, item.id, item.data, start)
        st.tools[item.id] = (span, start)
        if self.set_current:
            st.tool_tokens[item.id] = (self._context.attach(self._set_span(span, st.step_ctx)), current_task())

    def _start_tool(self, st: TracedRun, call_id: Any, fn: Any, start: int) -> Any:
        name = getattr(fn, "name", None) or "tool"
        attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                                 "gen_ai.tool.type": "function", "treadle.step": st.step,
                                 "treadle.run_id": st.chat_base["treadle.run_id"]}
        if call_id:
            attrs["gen_ai.tool.call.id"] = str(call_id)
        if self.include_content and fn is not None:
            args = dict(fn.kwargs)
            if fn.args:
                args["*args"] = list(fn.args)
            attrs["gen_ai.tool.call.arguments"] = self._json(args, st)
        return self._tracer.start_span(f"execute_tool {name}", context=st.step_ctx, start_time=start,
                                       attributes=attrs)

    def _tool_activity(self, st: TracedRun, item: Any) -> None:
        entry = st.tools.get(item.id)
        if entry is None:
            return
        span = entry[0]
        attrs = {"data": self._text(item.data, st)} if self.include_content and item.data is not None else None
        span.add_event("treadle.tool_call_activity", attrs, timestamp=ns(item.created_at))

    def _tool_complete(self, st: TracedRun, item: Any) -> None:
        end = ns(item.created_at)
        call_id = item.id
        entry = st.tools.pop(call_id, None)
        if entry is None:  # never started: denied, or failed before it ran
            self._ensure_step(st, end)
            start = st.asked.get(call_id, end)
            span = self._start_tool(st, call_id, getattr(item.data, "input", None), start)
        else:
            span, start = entry
        st.asked.pop(call_id, None)
        token = st.tool_tokens.pop(call_id, None)
        if token is not None:
            self._detach([token])
        st.last = max(st.last, end)
        fo = item.data
        output = getattr(fo, "output", None)
        status = getattr(output, "status", None)
        if not isinstance(status, str):
            status = "error" if item.error else "success"
        span.set_attribute("treadle.tool.status", status)
        if self.include_content:
            obs = getattr(output, "observation", None) if hasattr(output, "observation") else output
            if obs is None and output is not None:
                obs = getattr(output, "output", output)
            if obs is not None:
                span.set_attribute("gen_ai.tool.call.result", self._text(obs, st))
        if item.error:
            kind = _error_kind(item.error)
            span.set_attribute("error.type", kind if kind != "_OTHER" else "ToolError")
            span.set_status(self._Status(self._ERROR, self._error_text(item.error, st)))
        span.end(end_time=max(end, start))
