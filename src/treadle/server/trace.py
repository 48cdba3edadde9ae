"""A run's spans (run → step → model call / approval / tool) from its events, for the
trace waterfall. The same events the journal keeps, read as the journal's typed records
(``treadle.store.records``), so a finished run draws the same."""

from __future__ import annotations

from typing import Callable, NamedTuple

from pydantic import BaseModel

from .. import events as ev
from .._json import JsonValue, is_list, is_object
from ..store.records import (
    CallComplete,
    CallStart,
    Compaction,
    End,
    Guardrail,
    Handoff,
    PermissionRequest,
    Record,
    Reply,
    StepComplete,
)
from .bodies import ChildRun, Span, Trace

__all__ = ["MAX_DEPTH", "TraceEvent", "nested_trace", "spans_from_events"]

MAX_DEPTH = 16  # child runs drawn this deep


class TraceEvent(NamedTuple):
    """One event of a run as the trace reads it: its seq, its time and its typed record."""

    seq: int
    ts: float
    record: Record


def _span(sid: str, parent: str | None, name: str, kind: str, start: float, **attributes: JsonValue) -> Span:
    return Span(id=sid, parent=parent, name=name, kind=kind, start=start, end=None, status="ok",
                attributes=attributes)


def _extra(model: BaseModel | None, key: str) -> JsonValue:
    """A field of a journaled record that its class does not name (kept: ``extra="allow"``;
    decoded from JSON, so a JSON value)."""
    extra = model.model_extra if model is not None else None
    return extra.get(key) if extra else None


def spans_from_events(run_id: str, events: list[TraceEvent], started_at: float | None = None) -> Trace:
    """Spans of one run from its events.

    A step starts when the previous one ended (or the run started) and ends at its
    ``agent.step_complete``; its model call ends at the parsed reply; a tool call spans
    ``tool_call_start`` → ``tool_call_complete``; an approval spans the request until the
    call starts or is answered. Spans still open at the end are closed at the last event.
    """
    events = sorted(events, key=lambda x: x.seq)
    first = events[0].ts if events else None
    start = min(t for t in (started_at, first) if t is not None) if (started_at or first) else 0.0
    run = _span(run_id, None, "run", "run", start)
    spans: list[Span] = [run]
    steps: dict[int, Span] = {}
    step_of_call: dict[str | None, Span] = {}
    tools: dict[str | None, Span] = {}
    approvals: dict[str | None, Span] = {}
    cursor = start
    last = start
    for seq, ts, r in events:
        last = max(last, ts)
        if isinstance(r, Reply):
            calls = r.calls
            if calls is None:
                continue  # a streamed delta, or a reply that did not parse into calls
            idx = r.input if isinstance(r.input, int) else len(steps)
            step = steps.get(idx)
            if step is None:
                step = steps[idx] = _span(f"{run_id}:step:{idx}", run.id, f"step {idx + 1}", "step", cursor)
                spans.append(step)
            usage = r.usage
            model = _span(f"{run_id}:model:{seq}", step.id, "model call", "model", cursor,
                          input_tokens=usage.input_tokens if usage is not None else None,
                          output_tokens=usage.output_tokens if usage is not None else None,
                          calls=[c.name for c in calls])
            model.end = ts
            if r.error:
                model.status = "error"
                model.attributes["error"] = r.error
            spans.append(model)
            for c in calls:
                if c.id:
                    step_of_call[c.id] = step
        elif isinstance(r, PermissionRequest):
            req = r.item.data
            cid = req.id if req is not None else None
            parent = step_of_call.get(cid) or run
            span = _span(f"{run_id}:approval:{cid}", parent.id, f"approval {req.tool_name if req else None}",
                         "approval", ts)
            approvals[cid] = span
            spans.append(span)
        elif isinstance(r, CallStart):
            call = r.item.data
            cid = (call.id if call is not None else None) or r.item.id
            _close(approvals.pop(cid, None), ts)
            parent = step_of_call.get(cid) or run
            span = _span(f"{run_id}:tool:{cid}", parent.id, f"tool {call.name if call else None}", "tool", ts,
                         call_id=cid)
            tools[cid] = span
            spans.append(span)
        elif isinstance(r, CallComplete):
            out = r.item.data
            fn_id = out.input.id if out is not None and out.input is not None else None
            span = tools.pop(fn_id or r.item.id, None)
            if span is not None:
                span.end = ts
                if out is not None and out.error:
                    span.status = "error"
                    span.attributes["error"] = out.error
        elif isinstance(r, StepComplete):
            s = r.item.data
            fn_id = s.function.id if s is not None and s.function is not None else None
            step = step_of_call.get(fn_id) or (steps.get(s.step) if s is not None else None)
            approval = approvals.pop(fn_id, None)
            if approval is not None:
                approval.end = ts
                approval.status = "error"  # answered without the call running: denied
            if step is not None:
                step.end = ts
                if s is not None and s.status != "success":
                    step.status = "error"
            cursor = ts
        elif isinstance(r, Guardrail):
            g = r.item.data
            if g is None:
                continue
            parent = step_of_call.get(g.call_id) or steps.get(g.step) or run
            began = _extra(g, "started_at")
            began = began if isinstance(began, (int, float)) and began else ts
            key = f"guardrail:{g.kind}:{g.guardrail}:{g.step or 0}:{g.call_id or ''}"
            tripped = _extra(g, "tripped")
            span = _span(f"{run_id}:guardrail:{seq}", parent.id, f"guardrail {g.guardrail}", "guardrail",
                         min(began, ts), guardrail_kind=g.kind, tripped=tripped, action=g.action,
                         message=_extra(g, "message"), key=key)
            span.end = ts
            if tripped:
                span.status = "error"
            spans.append(span)
        elif isinstance(r, Handoff):
            h = r.item.data
            if h is None:
                continue
            parent = step_of_call.get(h.call_id) or steps.get(h.step) or run
            span = _span(f"{run_id}:handoff:{seq}", parent.id, f"handoff → {h.to_agent}", "handoff", ts,
                         from_agent=h.from_agent, to_agent=h.to_agent, message=_extra(h, "message"))
            span.end = ts
            spans.append(span)
        elif isinstance(r, End):
            if r.name != ev.EXECUTION_COMPLETE:
                continue
            status = r.item.data.status if r.item.data is not None else None
            run.end = ts
            run.attributes["status"] = status
            if status not in ("success", None):
                run.status = "error"
        elif isinstance(r, Compaction):
            info: dict[str, object] = r.item.data.model_dump() if r.item.data is not None else {}
            span = _span(f"{run_id}:compaction:{seq}", run.id, f"compaction ({info.get('reason')})", "compaction",
                         ts, **{k: _json_of(info.get(k)) for k in ("tokens_before", "tokens_after", "window",
                                                                   "strategies", "replaced", "summary_model",
                                                                   "usage")})
            span.end = ts
            spans.append(span)
    end = run.end or last
    for s in spans:
        if s.end is None:
            s.end = end
        if s.kind == "step" and s.end < s.start:
            s.end = s.start
    return Trace(run_id=run_id, start=start, end=end, spans=spans)


def _json_of(value: object) -> JsonValue:
    """A value of a payload decoded from JSON (so a JSON value; anything else is dropped)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if is_object(value):
        return {k: _json_of(v) for k, v in value.items()}
    if is_list(value):
        return [_json_of(v) for v in value]
    return None


def _close(span: Span | None, ts: float) -> None:
    if span is not None:
        span.end = ts


def nested_trace(run_id: str, started_at: float | None,
                 read: Callable[[str], tuple[list[TraceEvent], list[ChildRun]]], *,
                 created: Callable[[str], float | None] = lambda rid: None) -> Trace:
    """The trace of ``run_id`` with each child run's spans (an agent called as a tool, or
    used as a guardrail) under the parent's tool call (or guardrail) span, recursively.
    ``read(run_id)`` gives a run's events and its child links
    (``treadle.store.links.child_links``); ``created(run_id)`` its start time."""

    def build(rid: str, start: float | None, depth: int, seen: frozenset[str]) -> Trace:
        events, links = read(rid)
        trace = spans_from_events(rid, events, start)
        if depth >= MAX_DEPTH:
            return trace
        ids = {s.id for s in trace.spans}
        guard_spans = {str(s.attributes.get("key")): s.id for s in trace.spans if s.kind == "guardrail"}
        for link in links:
            child = link.run_id
            if child in seen:
                continue
            sub = build(child, created(child), depth + 1, seen | {child})
            root = sub.spans[0]
            if link.kind == "guardrail":
                parent = guard_spans.get(link.parent_call_id) or rid
            else:
                tool = f"{rid}:tool:{link.call_id}"
                parent = tool if tool in ids else rid
            root.parent = parent
            root.name = f"agent {link.agent or 'run'}"
            root.attributes.update(run_id=child, agent=link.agent, depth=depth + 1,
                                   parent_call_id=link.parent_call_id)
            trace.spans.extend(sub.spans)
            trace.start = min(trace.start, sub.start)
            trace.end = max(trace.end or 0.0, sub.end or 0.0)  # (both set: spans_from_events closes them)
        return trace

    return build(run_id, started_at, 0, frozenset({run_id}))
