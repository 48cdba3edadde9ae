"""The spans of nested runs, guardrails, compactions and handoffs (a part of OTelTracer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from ..compaction import CompactionInfo
from ..events import RunItem
from ..guardrails import GuardrailDecision
from ..handoffs import HandoffInfo
from ._state import Attributes, ContentText, RunView, TracedRun
from ._state import ns as _ns

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

__all__ = ["NestingSpans"]


class NestingSpans(ContentText):
    """Mixed into OTelTracer: a child run's span under its parent's tool call span, a span per
    guardrail decision, an event per handoff."""

    _runs: dict[str, TracedRun | None]
    _tracer: Tracer
    _set_span: Callable[[Span, Optional[Context]], Context]

    def _parent_context(self, run: RunView) -> Context | None:
        """A child run's (an agent called as a tool): the span of the parent's tool call."""
        parent = run.parent
        if parent is None:
            return None
        pst = self._runs.get(parent.run_id)
        if pst is None:  # not traced (or not recording)
            return None
        call_id = str(run.parent_call_id or "").split(":", 1)[-1]
        entry = pst.tools.get(call_id)
        if entry is not None:
            return self._set_span(entry[0], pst.step_ctx)
        return pst.ctx

    def _guardrail(self, st: TracedRun, item: RunItem) -> None:
        d: object = item.data
        if not isinstance(d, GuardrailDecision):
            return
        end = _ns(item.created_at)
        parent = st.step_ctx if st.step_span is not None else st.ctx
        attrs: Attributes = {"treadle.guardrail.name": d.guardrail, "treadle.guardrail.kind": d.kind,
                             "treadle.guardrail.tripped": d.tripped, "treadle.guardrail.action": d.action,
                             "treadle.run_id": st.run_id}
        if d.tool:
            attrs["gen_ai.tool.name"] = d.tool
        start = min(_ns(d.started_at), end) if d.started_at else end
        span = self._tracer.start_span(f"guardrail {d.guardrail}", context=parent, start_time=start, attributes=attrs)
        if d.tripped and d.message:
            span.set_attribute("treadle.guardrail.message", self._clean(str(d.message), st))
        span.end(end_time=end)

    def _handoff(self, st: TracedRun, item: RunItem) -> None:
        d: object = item.data
        if not isinstance(d, HandoffInfo):
            return
        target = st.step_span if st.step_span is not None else st.span
        target.add_event("treadle.handoff", {"treadle.handoff.from": d.from_agent, "treadle.handoff.to": d.to_agent},
                         timestamp=_ns(item.created_at))

    def _compaction(self, st: TracedRun, item: RunItem) -> None:
        """A span per context compaction (its summary call's time and tokens), under the run."""
        d: object = item.data
        if not isinstance(d, CompactionInfo):
            return
        end = _ns(item.created_at)
        start = min(_ns(d.started_at), end) if d.started_at else end
        attrs: Attributes = {
            "treadle.compaction.reason": d.reason, "treadle.compaction.strategies": list(d.strategies),
            "treadle.compaction.tokens_before": d.tokens_before, "treadle.compaction.tokens_after": d.tokens_after,
            "treadle.compaction.window": d.window, "treadle.compaction.replaced": list(d.replaced),
            "treadle.run_id": st.run_id}
        if d.usage is not None:
            attrs["gen_ai.usage.input_tokens"] = d.usage.input_tokens
            attrs["gen_ai.usage.output_tokens"] = d.usage.output_tokens
        if d.summary_model:
            attrs["gen_ai.request.model"] = d.summary_model
        span = self._tracer.start_span("compaction", context=st.ctx, start_time=start, attributes=attrs)
        if d.summary and self.include_content:  # the summary is content: only when recorded
            span.set_attribute("treadle.compaction.summary", self._clean(str(d.summary), st))
        span.end(end_time=end)
