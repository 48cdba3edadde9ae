"""The trace view reads typed journal records: a live run keeps light copies of its events
(no outputs, prompts or histories) and draws the same spans as from the whole records."""

from __future__ import annotations

from typing import Any

from treadle import Agent, Function, Runner, ScriptedModel
from treadle.server.frames import light
from treadle.server.trace import TraceEvent, spans_from_events
from treadle.store.records import CallComplete, End, Reply, StepComplete, decode, event_json


def fetch(page: int) -> str:
    """Fetch a page."""
    return f"page {page}: " + "lorem ipsum " * 5000


def events() -> list[Any]:
    seen: list[Any] = []
    model = ScriptedModel([Function(name="fetch", kwargs={"page": 1}), Function(name="fetch", kwargs={"page": 2}),
                           Function(name="finish", kwargs={"answer": "done"})])
    res = Runner(Agent(tools=[fetch], model=model, max_steps=5), event_handlers=[seen.append]).call("go")
    assert res.status == "success", res.error
    return seen


def test_light_records_keep_what_the_trace_needs_and_drop_the_rest() -> None:
    full = [TraceEvent(e.seq, float(e.seq), decode(event_json(e))) for e in events()]
    kept = [TraceEvent(t.seq, t.ts, light(t.record)) for t in full]
    outputs = [t.record.item.data for t in kept if isinstance(t.record, CallComplete)]
    assert len(outputs) == 2 and all(o is not None and o.output is None and o.input is not None for o in outputs)
    steps = [t.record.item.data for t in kept if isinstance(t.record, StepComplete)]
    assert steps and all(s is not None and s.observation is None and s.function is not None for s in steps)
    end = next(t.record for t in kept if isinstance(t.record, End))
    assert end.item.data is not None and end.item.data.status == "success" and end.item.data.step_history is None
    assert sum(len(str(t.record)) for t in kept) < sum(len(str(t.record)) for t in full) / 10
    assert any(isinstance(t.record, Reply) and t.record.calls for t in kept)

    drawn, from_light = spans_from_events("r", full), spans_from_events("r", kept)
    assert [(s.id, s.parent, s.kind, s.status, s.start, s.end) for s in from_light.spans] == \
        [(s.id, s.parent, s.kind, s.status, s.start, s.end) for s in drawn.spans]
    kinds = [s.kind for s in drawn.spans]
    assert kinds.count("tool") == 2 and kinds.count("model") == 3 and kinds[0] == "run"
    tools = [s for s in drawn.spans if s.kind == "tool"]
    assert all(s.end is not None and s.end > s.start for s in tools)
