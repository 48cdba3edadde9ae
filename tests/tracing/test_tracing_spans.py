"""The span tree of real runs, in all three faces, through a real Runner."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tracing_tree import (
    ADD,
    FINISH,
    add,
    agent,
    check_times,
    children,
    roots,
    run_root,
    shape,
    three_step_agent,
    trace_of,
)

from helpers import run_face
from treadle import Agent, Function, Runner, ScriptedModel, Usage
from treadle.tracing import OTelTracer

EXPECTED_TREE = ("invoke_agent calc", [
    ("step 0", ["chat scripted", "execute_tool add"]),
    ("step 1", ["chat scripted", "execute_tool add"]),
    ("step 2", ["chat scripted"]),
    "response",
])


async def test_three_step_run_span_tree(otel: Any, face: str) -> None:
    runner = Runner(three_step_agent(usage=Usage(input_tokens=10, output_tokens=2)),
                    event_handlers=[OTelTracer(otel.provider)])
    res, events = await run_face(runner, face, "what is 1+2?")
    assert res.status == "success" and res.answer == "3"
    spans = otel.spans()
    assert len(spans) == 10
    assert len(roots(spans)) == 1
    root = run_root(spans, res.run_id)
    assert shape(spans, root) == EXPECTED_TREE
    check_times(spans, root)
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}

    # the run span
    a = root.attributes
    assert a["gen_ai.operation.name"] == "invoke_agent"
    assert a["gen_ai.agent.name"] == "calc"
    assert a["gen_ai.provider.name"] == "scripted"
    assert a["gen_ai.request.model"] == "scripted"
    assert a["treadle.run_id"] == res.run_id
    assert a["treadle.workflow_status"] == "success"
    assert a["treadle.steps"] == 3
    assert a["treadle.max_steps"] == 6
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (30, 6)
    assert a["treadle.usage.tool_calls"] == 2
    assert root.status.status_code.name == "UNSET"
    assert root.kind.name == "INTERNAL"

    steps = [s for s in children(spans, root) if s.name.startswith("step ")]
    for i, step in enumerate(steps):
        assert step.attributes["treadle.step"] == i
        assert step.attributes["treadle.run_id"] == res.run_id
        assert step.attributes["treadle.step.status"] == "success"
        chat = children(spans, step)[0]
        assert chat.kind.name == "CLIENT"
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.request.model"] == "scripted"
        assert chat.attributes["treadle.step"] == i
        assert (chat.attributes["gen_ai.usage.input_tokens"], chat.attributes["gen_ai.usage.output_tokens"]) == (10, 2)
        assert chat.start_time == step.start_time  # the call is the first thing a step does
        assert chat.attributes.get("gen_ai.request.stream", False) is (face == "astream")
        if face == "astream":
            assert chat.attributes["gen_ai.response.time_to_first_chunk"] >= 0
    assert steps[2].attributes["treadle.step.final"] is True
    assert "treadle.step.final" not in steps[0].attributes

    # tool spans: ids match the events, times match the events
    starts = [e for e in events if getattr(e, "name", "") == "agent.tool_call_start"]
    dones = [e for e in events if getattr(e, "name", "") == "agent.tool_call_complete"]
    tools = [children(spans, s)[1] for s in steps[:2]]
    for tool, start, done in zip(tools, starts, dones):
        assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
        assert tool.attributes["gen_ai.tool.name"] == "add"
        assert tool.attributes["gen_ai.tool.call.id"] == start.item.id
        assert tool.attributes["treadle.tool.status"] == "success"
        assert tool.start_time == int(start.item.created_at * 1e9)
        assert tool.end_time == int(done.item.created_at * 1e9)
        assert tool.status.status_code.name == "UNSET"
    # steps end at their step_complete event; the next one starts there
    step_done = [e for e in events if getattr(e, "name", "") == "agent.step_complete"]
    for step, done in zip(steps, step_done):
        assert step.end_time == int(done.item.created_at * 1e9)
    assert steps[1].start_time == steps[0].end_time
    assert root.start_time == steps[0].start_time

    response = children(spans, root)[-1]
    assert response.attributes["treadle.workflow_status"] == "success"
    assert response.attributes["treadle.answer_type"] == "str"
    assert response.end_time == root.end_time
    final = [e for e in events if getattr(e, "name", "") == "agent.execution_complete"][0]
    assert root.end_time == int(final.item.created_at * 1e9)


async def test_parallel_tool_calls_share_one_step(otel: Any, face: str) -> None:
    both = [Function(name="add", kwargs={"a": 1, "b": 2}), Function(name="add", kwargs={"a": 3, "b": 4})]
    runner = Runner(agent([both, FINISH]), event_handlers=[OTelTracer(otel.provider)])
    res, _ = await run_face(runner, face)
    assert res.status == "success"
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert shape(spans, root) == ("invoke_agent calc", [
        ("step 0", ["chat scripted", "execute_tool add", "execute_tool add"]),
        ("step 1", ["chat scripted"]),
        "response",
    ])
    check_times(spans, root)
    step0 = children(spans, root)[0]
    ids = {s.attributes["gen_ai.tool.call.id"] for s in children(spans, step0)[1:]}
    assert len(ids) == 2
    # one model call, one usage: not counted once per tool call
    chat = children(spans, step0)[0]
    assert chat.attributes["gen_ai.usage.input_tokens"] + children(spans, children(spans, root)[1])[0].attributes[
        "gen_ai.usage.input_tokens"] == root.attributes["gen_ai.usage.input_tokens"]


async def test_concurrent_runs_do_not_mix(otel: Any) -> None:
    tracer = OTelTracer(otel.provider)
    runner = Runner(three_step_agent(delay=[0.003, 0.001, 0.002]), event_handlers=[tracer])
    n = 25
    results = await asyncio.gather(*(runner.acall(f"q{i}") for i in range(n)))
    assert all(r.status == "success" for r in results)
    spans = otel.spans()
    assert len(spans) == 10 * n
    assert len(roots(spans)) == n
    for res in results:
        root = run_root(spans, res.run_id)
        tree = trace_of(spans, root)
        assert shape(spans, root) == EXPECTED_TREE
        check_times(spans, root)
        assert {s.attributes["treadle.run_id"] for s in tree} == {res.run_id}
        assert {s.context.trace_id for s in tree} == {root.context.trace_id}
    assert len({s.context.trace_id for s in spans}) == n
    assert tracer.open_runs == []


def test_concurrent_runs_in_threads(otel: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    runner = Runner(three_step_agent(delay=0.001), event_handlers=[OTelTracer(otel.provider)])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: runner.call(f"q{i}"), range(12)))
    spans = otel.spans()
    for res in results:
        root = run_root(spans, res.run_id)
        assert shape(spans, root) == EXPECTED_TREE
        assert {s.attributes["treadle.run_id"] for s in trace_of(spans, root)} == {res.run_id}


async def test_run_span_is_a_child_of_the_callers_span(otel: Any, face: str) -> None:
    tracer = otel.provider.get_tracer("app")
    runner = Runner(three_step_agent(), event_handlers=[OTelTracer(otel.provider)])
    with tracer.start_as_current_span("request") as outer:
        if face == "call":  # from plain sync code: a worker thread without a loop (the context goes along)
            res = await asyncio.to_thread(runner.call, "q")
        else:
            res, _ = await run_face(runner, face)
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert root.parent is not None and root.parent.span_id == outer.get_span_context().span_id


async def test_spans_made_inside_a_tool_nest_under_its_span(otel: Any, face: str) -> None:
    app = otel.provider.get_tracer("app")

    def lookup(key: str) -> str:
        """Look a key up."""
        with app.start_as_current_span("db.query"):
            return key.upper()

    inner = Runner(agent([FINISH], name="inner", tools=()), event_handlers=[OTelTracer(otel.provider)])

    async def delegate(question: str) -> str:
        """Ask the inner agent."""
        return (await inner.acall(question)).answer

    runner = Runner(agent([Function(name="lookup", kwargs={"key": "k"}),
                           Function(name="delegate", kwargs={"question": "q"}), FINISH],
                          tools=[lookup, delegate]), event_handlers=[OTelTracer(otel.provider)])
    res, _ = await run_face(runner, face)
    assert res.status == "success"
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    tool0 = children(spans, children(spans, root)[0])[1]
    assert tool0.name == "execute_tool lookup"
    assert [s.name for s in children(spans, tool0)] == ["db.query"]
    tool1 = children(spans, children(spans, root)[1])[1]
    assert tool1.name == "execute_tool delegate"
    assert [s.name for s in children(spans, tool1)] == ["invoke_agent inner"]
    assert len(roots(spans)) == 1  # the nested run is part of the same trace
    # after the run, nothing of it is left as the current span
    from opentelemetry import trace

    assert not trace.get_current_span().get_span_context().is_valid


async def test_streamed_model_without_deltas_still_gets_chat_spans(otel: Any) -> None:
    class Quiet(ScriptedModel):
        """Streams no delta at all: only the final response."""

        async def stream(self, request: Any) -> Any:
            yield await self.request(request)

    runner = Runner(Agent(name="calc", tools=[add], model=Quiet([ADD, FINISH], per_run=True, name="quiet")),
                    event_handlers=[OTelTracer(otel.provider)])
    res, _ = await run_face(runner, "astream")
    assert res.status == "success"
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert shape(spans, root) == ("invoke_agent calc", [
        ("step 0", ["chat quiet", "execute_tool add"]),
        ("step 1", ["chat quiet"]),
        "response",
    ])
    check_times(spans, root)


def test_a_tracer_listed_twice_records_once(otel: Any) -> None:
    tracer = OTelTracer(otel.provider)
    runner = Runner(three_step_agent(), event_handlers=[tracer, tracer])
    res = runner.call("q")
    spans = otel.spans()
    # on_run_start is called twice too: the second one must not open a second run span
    assert shape(spans, run_root(spans, res.run_id)) == EXPECTED_TREE


@pytest.mark.parametrize("content", [False, True])
def test_non_recording_provider_keeps_no_state(content: bool) -> None:
    from opentelemetry.trace import NoOpTracerProvider

    tracer = OTelTracer(NoOpTracerProvider(), include_content=content)
    seen: list[int] = []
    runner = Runner(three_step_agent(), event_handlers=[tracer, lambda e: seen.append(len(tracer.open_runs))])
    assert runner.call("q").status == "success"
    assert tracer.open_runs == []
    assert max(seen) == 1  # only a marker per run, removed at the end


class _Memory:
    """The seed's memory contract, with a session id."""

    session_id = "session-42"

    def __call__(self) -> str:
        return ""

    def reset_pending_query(self) -> None: ...

    def add_user_query(self, query: Any) -> None: ...

    def add_assistant_response(self, response: Any) -> None: ...


async def test_run_attributes_from_model_memory_and_kwargs(otel: Any) -> None:
    model = ScriptedModel([FINISH], per_run=True, name="local:llama", provider="openai")
    model.model = "llama-3"  # type: ignore[attr-defined]
    model.base_url = "http://user:pw@127.0.0.1:8080/v1"  # type: ignore[attr-defined]
    runner = Runner(Agent(name="calc", model=model), conversation_memory=_Memory(),
                    event_handlers=[OTelTracer(otel.provider)])
    res = await runner.acall("q", model_kwargs={"temperature": 0.5, "stop": ["\n"], "seed": 7})
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert root.attributes["gen_ai.request.model"] == "llama-3"
    assert root.attributes["gen_ai.provider.name"] == "openai"
    assert root.attributes["gen_ai.conversation.id"] == "session-42"
    assert (root.attributes["server.address"], root.attributes["server.port"]) == ("127.0.0.1", 8080)
    chat = children(spans, children(spans, root)[0])[0]
    assert chat.name == "chat llama-3"
    assert chat.attributes["gen_ai.request.temperature"] == 0.5
    assert chat.attributes["gen_ai.request.seed"] == 7
    assert tuple(chat.attributes["gen_ai.request.stop_sequences"]) == ("\n",)
    assert "pw" not in str(dict(root.attributes))
    res = await runner.acall("q", model_kwargs={"model": "llama-3-70b"})
    assert run_root(otel.spans(), res.run_id).attributes["gen_ai.request.model"] == "llama-3-70b"
