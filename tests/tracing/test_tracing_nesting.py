"""Nested runs in the trace: an agent called as a tool is a child of the tool call's span;
guardrail decisions are spans; handoffs are events."""

from __future__ import annotations

from typing import Any

from tracing_tree import run_root, shape

from treadle import Agent, Function, Runner, ScriptedModel
from treadle.guardrails import GuardrailResult, output_guardrail
from treadle.tracing import OTelTracer


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


def add(a: int, b: int) -> int:
    """Add."""
    return a + b


async def test_a_child_run_nests_under_the_parent_tool_span(otel: Any, face: str) -> None:
    inner = Agent("calc", tools=[add], model=ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 2}), final(3)],
                                                           per_run=True), answer_data_type=int)
    outer = Agent("writer", tools=[inner.as_tool()],
                  model=ScriptedModel([Function(id="q", name="calc", kwargs={"input": "1+2"}), final("3")],
                                      per_run=True))
    from helpers import run_face

    res, _ = await run_face(Runner(outer, event_handlers=[OTelTracer(otel.provider)]), face, "go")
    assert res.status == "success"
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert shape(spans, root) == ("invoke_agent writer", [
        ("step 0", ["chat scripted", ("execute_tool calc", [("invoke_agent calc", [
            ("step 0", ["chat scripted", "execute_tool add"]), ("step 1", ["chat scripted"]), "response"])])]),
        ("step 1", ["chat scripted"]),
        "response",
    ])
    child = next(s for s in spans if s.name == "invoke_agent calc")
    assert child.attributes["treadle.parent_run_id"] == res.run_id


async def test_guardrail_decisions_are_spans(otel: Any) -> None:
    @output_guardrail(max_retries=1)
    def short(answer: str) -> GuardrailResult:
        return GuardrailResult(len(answer) > 3, "too long")

    agent = Agent("g", model=ScriptedModel([final("toolong"), final("ok")]), output_guardrails=[short])
    res = await Runner(agent, event_handlers=[OTelTracer(otel.provider)]).acall("hi")
    assert res.answer == "ok"
    spans = otel.spans()
    guards = [s for s in spans if s.name == "guardrail short"]
    assert [(s.attributes["treadle.guardrail.tripped"], s.attributes["treadle.guardrail.action"]) for s in guards] == \
        [(True, "retry"), (False, "passed")]
    assert all(s.attributes["treadle.run_id"] == res.run_id for s in guards)
