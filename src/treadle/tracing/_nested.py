"""The spans of nested runs, guardrails, compactions and handoffs (a part of OTelTracer)."""

from __future__ import annotations

from typing import Any

from ._state import ContentText
from ._state import ns as _ns

__all__ = ["NestingSpans"]


class NestingSpans(ContentText):
    """Mixed into OTelTracer: a child run's span under its parent's tool call span, a span per
    guardrail decision, an event per handoff."""

    _runs: dict[str, Any]
    _tracer: Any
    _set_span: Any

    def _parent_context(self, run: Any) -> Any:
        """A child run's (an agent called as a tool): the span of the parent's tool call."""
        parent = getattr(run, "parent", None)
        if parent is None:
            return None
        pst = self._runs.get(parent.run_id)
        if pst is None:  # not traced (or not recording)
            return None
        call_id = str(getattr(run, "parent_call_id", None) or "").split(":", 1)[-1]
        entry = pst.tools.get(call_id)
        if entry is not None:
            return self._set_span(entry[0], pst.step_ctx)
        return pst.ctx

    def _guardrail(self, st: Any, item: Any) -> None:
        d = item.data
        end = _ns(item.created_at)
        parent = st.step_ctx if st.step_span is not None else st.ctx
        attrs = {"treadle.guardrail.name": d.guardrail, "treadle.guardrail.kind": d.kind,
                 "treadle.guardrail.tripped": d.tripped, "treadle.guardrail.action": d.action,
                 "treadle.run_id": st.chat_base["treadle.run_id"]}
        if d.tool:
            attrs["gen_ai.tool.name"] = d.tool
        start = min(_ns(d.started_at), end) if d.started_at else end
        span = self._tracer.start_span(f"guardrail {d.guardrail}", context=parent, start_time=start, attributes=attrs)
        if d.tripped and d.message:
            span.set_attribute("treadle.guardrail.message", self._clean(str(d.message), st))
        span.end(end_time=end)

    def _handoff(self, st: Any, item: Any) -> None:
        d = item.data
        target = st.step_span if st.step_span is not None else st.span
        target.add_event("treadle.handoff", {"treadle.handoff.from": d.from_agent, "treadle.handoff.to": d.to_agent},
                         timestamp=_ns(item.created_at))

    def _compaction(self, st: Any, item: Any) -> None:
        """A span per context compaction (its summary call's time and tokens), under the run."""
        d = item.data
        end = _ns(item.created_at)
        start = min(_ns(d.started_at), end) if d.started_at else end
        attrs: dict[str, Any] = {
            "treadle.compaction.reason": d.reason, "treadle.compaction.strategies": list(d.strategies),
            "treadle.compaction.tokens_before": d.tokens_before, "treadle.compaction.tokens_after": d.tokens_after,
            "treadle.compaction.window": d.window, "treadle.compaction.replaced": list(d.replaced),
            "treadle.run_id": st.chat_base["treadle.run_id"]}
        if d.usage is not None:
            attrs["gen_ai.usage.input_tokens"] = d.usage.input_tokens
            attrs["gen_ai.usage.output_tokens"] = d.usage.output_tokens
        if d.summary_model:
            attrs["gen_ai.request.model"] = d.summary_model
        span = self._tracer.start_span("compaction", context=st.ctx, start_time=start, attributes=attrs)
        if d.summary and getattr(self, "include_content", False):  # the summary is content: only when recorded
            span.set_attribute("treadle.compaction.summary", self._clean(str(d.summary), st))
        span.end(end_time=end)
