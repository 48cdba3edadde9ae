"""Every span of a run with tools, a failing tool, an unparseable reply, an approval, a nested agent
(``agent.as_tool``), a reply no model ran for, and a failed model call follows the GenAI semantic
conventions as a validating backend reads them (``semconv.py``)."""

from __future__ import annotations

import json
from typing import Any

from semconv import all_problems, span_problems
from tracing_tree import run_root, trace_of

from helpers import run_face
from treadle import Agent, ApprovalOutcome, ApprovalResponse, Function, PermissionManager, Runner, ScriptedModel, tool
from treadle.errors import ModelAuthenticationError
from treadle.models import ModelResponse
from treadle.tracing import OTelTracer
from treadle.types import Usage


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def flaky(x: int) -> int:
    """Fails."""
    raise RuntimeError(f"flaky broke on {x}")


@tool(require_approval=True)
def wipe(path: str) -> str:
    """Delete everything under path."""
    return f"wiped {path}"


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


def determined(answer: str) -> ModelResponse:
    """A reply the request fully determined: returned without a model call (as LocalModel does)."""
    return ModelResponse(text=json.dumps({"name": "finish", "kwargs": {"answer": answer}}), usage=Usage(),
                         model_ran=False, finish_reason="stop")


def mixed_runner(provider: Any) -> Runner[Any]:
    """Tools, a failing tool, an unparseable reply, an approval, a nested agent whose answer is determined."""
    inner = Agent("calc", tools=[add], answer_data_type=str, model=ScriptedModel(
        [Function(name="add", kwargs={"a": 1, "b": 2}), determined("3")], per_run=True, name="inner-model"))
    outer = Agent("planner", tools=[add, flaky, wipe, inner.as_tool()], max_steps=10, model=ScriptedModel([
        Function(name="add", kwargs={"a": 1, "b": 2}, thought="add first"),
        Function(name="flaky", kwargs={"x": 7}),
        "this is not the JSON I was asked for",
        Function(name="wipe", kwargs={"path": "/tmp/x"}),
        Function(name="calc", kwargs={"input": "1+2"}),
        final({"total": 3, "note": "done"}),
    ], per_run=True, name="outer-model"), model_kwargs={"temperature": 0.5, "max_tokens": 64, "stop": ["\n\n"]})
    pm = PermissionManager(approval_callback=lambda request: ApprovalResponse(outcome=ApprovalOutcome.PROCEED_ONCE))
    return Runner(outer, permission_manager=pm, event_handlers=[OTelTracer(provider, include_content=True)])


async def test_a_mixed_run_follows_the_genai_conventions(otel: Any, face: str) -> None:
    res, _ = await run_face(mixed_runner(otel.provider), face, "add, break, wipe, delegate")
    assert res.status == "success", (res.error, res.step_history)
    spans = trace_of(otel.spans(), run_root(otel.spans(), res.run_id))
    names = [s.name for s in spans]
    # everything the run was meant to exercise is in it
    assert {"execute_tool flaky", "execute_tool wipe", "execute_tool calc", "invoke_agent calc",
            "determined_reply"} <= set(names), names
    assert all_problems(spans) == []
    chats = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(chats) == 6 + 1  # the planner's six model calls, the nested agent's one (its answer was determined)
    for chat in chats:  # each model call's output: what a backend shows as the reply
        (message,) = json.loads(chat.attributes["gen_ai.output.messages"])
        assert message["finish_reason"] == chat.attributes["gen_ai.response.finish_reasons"][0]
        assert message["parts"] and chat.attributes["output.value"]
    by_step = {s.attributes["treadle.step"]: s for s in chats if s.attributes["treadle.run_id"] == res.run_id}
    first = json.loads(by_step[0].attributes["gen_ai.output.messages"])[0]
    assert first["finish_reason"] == "tool_call"
    assert first["parts"][0] == {"type": "reasoning", "content": "add first"}
    assert first["parts"][1]["type"] == "tool_call" and first["parts"][1]["name"] == "add"
    bad = json.loads(by_step[2].attributes["gen_ai.output.messages"])[0]
    assert bad["parts"] == [{"type": "text", "content": "this is not the JSON I was asked for"}]
    assert bad["finish_reason"] == "error"
    last = json.loads(by_step[5].attributes["gen_ai.output.messages"])[0]
    assert last["finish_reason"] == "stop"
    assert last["parts"] == [{"type": "text", "content": '{"total": 3, "note": "done"}'}]
    root = spans[0]
    assert json.loads(root.attributes["gen_ai.output.messages"])[0]["finish_reason"] == "stop"


async def test_a_failed_model_call_follows_the_conventions(otel: Any, face: str) -> None:
    agent = Agent("calc", tools=[add], model=ScriptedModel([ModelAuthenticationError("bad key")], per_run=True))
    res, _ = await run_face(Runner(agent, event_handlers=[OTelTracer(otel.provider, include_content=True)]), face)
    assert res.status == "error"
    spans = trace_of(otel.spans(), run_root(otel.spans(), res.run_id))
    assert all_problems(spans) == []
    (chat,) = [s for s in spans if s.name == "chat scripted"]
    assert chat.attributes["error.type"] == "ModelAuthenticationError"
    assert "gen_ai.output.messages" not in chat.attributes  # no reply, so no output and no finish reason


def test_the_checker_finds_what_a_validating_backend_drops() -> None:
    """The checks themselves: the output message of issue #34 (no finish_reason) is refused, and so
    are a chat span without its provider and a non-operation span a reader would take for a call."""
    from types import SimpleNamespace

    def span(name: str, kind: str = "CLIENT", **attrs: Any) -> Any:
        return SimpleNamespace(name=name, attributes=attrs, kind=SimpleNamespace(name=kind),
                               status=SimpleNamespace(status_code=SimpleNamespace(name="UNSET")))

    base = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "local", "gen_ai.request.model": "m",
            "gen_ai.usage.input_tokens": 1, "gen_ai.usage.output_tokens": 1,
            "gen_ai.response.finish_reasons": ["stop"]}
    ok = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "hi"}], "finish_reason": "stop"}])
    assert span_problems(span("chat m", **base, **{"gen_ai.output.messages": ok})) == []
    no_reason = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "hi"}]}])
    assert any("finish_reason" in p for p in span_problems(span("chat m", **base, **{
        "gen_ai.output.messages": no_reason})))
    bad_part = json.dumps([{"role": "assistant", "parts": [{"type": "tool_call", "name": None}],
                            "finish_reason": "tool_call"}])
    assert span_problems(span("chat m", **base, **{"gen_ai.output.messages": bad_part}))
    assert span_problems(span("chat m", **{k: v for k, v in base.items() if k != "gen_ai.provider.name"}))
    assert span_problems(span("determined_reply", "INTERNAL", **{"gen_ai.request.model": "m"}))
