"""Error statuses: a failed model call, a failing tool, max steps, a cancel, a denied call; no key leaks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tracing_tree import ADD, FINISH, agent, check_times, children, recorded_text, run_root, shape

from helpers import run_face
from treadle import ApprovalOutcome, ApprovalResponse, Function, PermissionManager, Runner, tool
from treadle.errors import ModelAuthenticationError
from treadle.tracing import OTelTracer

KEY = "sk-test-SECRET0123456789abcdef"


async def test_failed_model_call_marks_run_and_chat(otel: Any, face: str) -> None:
    runner = Runner(agent([ModelAuthenticationError("bad key")]), event_handlers=[OTelTracer(otel.provider)])
    res, _ = await run_face(runner, face)
    assert res.status == "error"
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert shape(spans, root) == ("invoke_agent calc", [("step 0", ["chat scripted"]), "response"])
    check_times(spans, root)
    assert root.status.status_code.name == "ERROR"
    assert "bad key" in root.status.description
    assert root.attributes["error.type"] == "ModelAuthenticationError"
    assert root.attributes["treadle.workflow_status"] == "error"
    step = children(spans, root)[0]
    assert step.attributes["treadle.step.status"] == "error"
    chat = children(spans, step)[0]
    assert chat.status.status_code.name == "ERROR"
    assert chat.attributes["error.type"] == "ModelAuthenticationError"
    assert "gen_ai.usage.input_tokens" not in chat.attributes
    response = children(spans, root)[-1]
    assert response.status.status_code.name == "ERROR"
    assert response.attributes["treadle.workflow_status"] == "error"


def boom(x: int) -> int:
    """Always fails."""
    raise ValueError(f"kaput {x}")


async def test_failing_tool_marks_its_span_only(otel: Any, face: str) -> None:
    runner = Runner(agent([Function(name="boom", kwargs={"x": 7}), FINISH], tools=[boom]),
                    event_handlers=[OTelTracer(otel.provider)])
    res, _ = await run_face(runner, face)
    assert res.status == "success"
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert shape(spans, root) == ("invoke_agent calc", [("step 0", ["chat scripted", "execute_tool boom"]),
                                                        ("step 1", ["chat scripted"]), "response"])
    tool_span = children(spans, children(spans, root)[0])[1]
    assert tool_span.status.status_code.name == "ERROR"
    assert tool_span.attributes["error.type"] == "ValueError"
    assert tool_span.attributes["treadle.tool.status"] == "error"
    assert "kaput 7" in tool_span.status.description  # the error is shown; arguments are not recorded
    assert "gen_ai.tool.call.arguments" not in tool_span.attributes
    assert children(spans, root)[0].attributes["treadle.step.status"] == "error"
    assert root.status.status_code.name == "UNSET"
    assert children(spans, root)[0].status.status_code.name == "UNSET"


async def test_max_steps_is_an_error_ending(otel: Any, face: str) -> None:
    runner = Runner(agent([ADD], repeat_last=True), max_steps=2, event_handlers=[OTelTracer(otel.provider)])
    res, _ = await run_face(runner, face)
    assert res.status == "max_steps"
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert shape(spans, root) == ("invoke_agent calc", [("step 0", ["chat scripted", "execute_tool add"]),
                                                        ("step 1", ["chat scripted", "execute_tool add"]),
                                                        "response"])
    check_times(spans, root)
    assert root.status.status_code.name == "ERROR"
    assert root.attributes["treadle.workflow_status"] == "max_steps"
    assert root.attributes["error.type"] == "MaxStepsExceeded"
    assert all(s.status.status_code.name == "UNSET" for s in children(spans, root)[:2])


async def test_cancelled_run_is_marked(otel: Any, face: str) -> None:
    async def slow() -> str:
        """Takes its time."""
        await asyncio.sleep(30)
        return "late"

    runner: Runner[Any] = Runner(agent([Function(name="slow"), FINISH], tools=[slow]))

    def cancel_on_tool_start(event: Any) -> None:
        if getattr(event, "name", "") == "agent.tool_call_start":  # once the tool awaits, on the run's loop
            asyncio.get_running_loop().call_soon(runner.cancel, event.run_id)

    runner.event_handlers.extend([OTelTracer(otel.provider), cancel_on_tool_start])
    res, _ = await run_face(runner, face)
    assert res.status == "cancelled"
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert shape(spans, root) == ("invoke_agent calc", [("step 0", ["chat scripted", "execute_tool slow"]),
                                                        "response"])
    check_times(spans, root)
    assert root.attributes["treadle.workflow_status"] == "cancelled"
    assert root.attributes["error.type"] == "RunCancelled"
    assert root.status.status_code.name == "ERROR"
    assert [e.name for e in root.events] == ["runner.cancel_received", "runner.cancelled"]
    step = children(spans, root)[0]
    assert step.attributes["treadle.step.status"] == "cancelled"
    tool_span = children(spans, step)[1]
    assert tool_span.attributes["treadle.tool.status"] == "interrupted"
    assert tool_span.status.status_code.name == "ERROR"
    assert tool_span.end_time == root.end_time


@tool(require_approval=True)
def wipe(path: str) -> str:
    """Delete everything under path."""
    return f"wiped {path}"


@pytest.mark.parametrize("allow", [False, True])
async def test_approval_decisions_on_the_tool_span(otel: Any, face: str, allow: bool) -> None:
    outcome = ApprovalOutcome.PROCEED_ONCE if allow else ApprovalOutcome.CANCEL
    pm = PermissionManager(approval_callback=lambda request: ApprovalResponse(outcome=outcome, reason="not today"))
    runner = Runner(agent([Function(name="wipe", kwargs={"path": "/"}), FINISH], tools=[wipe]),
                    permission_manager=pm, event_handlers=[OTelTracer(otel.provider)])
    res, events = await run_face(runner, face)
    assert res.status == "success"
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    check_times(spans, root)
    step = children(spans, root)[0]
    tool_span = children(spans, step)[1]
    assert tool_span.name == "execute_tool wipe"
    assert tool_span.attributes["treadle.tool.status"] == ("success" if allow else "cancelled")
    assert tool_span.status.status_code.name == "UNSET"  # a denial is a decision, not a failure
    call_id = tool_span.attributes["gen_ai.tool.call.id"]
    assert [(e.name, e.attributes["gen_ai.tool.call.id"]) for e in step.events] == [
        ("treadle.tool_permission_request", call_id)]
    if not allow:  # never started: the span covers the wait for the decision
        asked = [e for e in events if getattr(e, "name", "") == "agent.tool_permission_request"][0]
        assert tool_span.start_time == int(asked.item.created_at * 1e9)


def leaky(q: str) -> str:
    """Echoes a config line."""
    return f"config: api_key={KEY[3:]} password: hunter2hunter2 Authorization: Bearer abcdef0123456789"


async def test_api_keys_never_reach_a_span(otel: Any, face: str) -> None:
    model_kwargs = {"api_key": KEY, "temperature": 0.25, "max_tokens": 64, "extra_headers": {"x-api-key": KEY}}
    replies = [Function(name="leaky", kwargs={"q": "x"}), ModelAuthenticationError(f"Incorrect API key: {KEY}")]
    runner = Runner(agent(replies, tools=[leaky]), event_handlers=[OTelTracer(otel.provider, include_content=True)])
    res, _ = await run_face(runner, face, "hello", model_kwargs=model_kwargs)
    assert res.status == "error"
    spans = otel.spans()
    text = recorded_text(spans)
    assert "SECRET0123456789" not in text
    assert "hunter2" not in text and "abcdef0123456789" not in text
    assert "[REDACTED]" in text
    chat = children(spans, children(spans, run_root(spans, res.run_id))[0])[0]
    assert chat.attributes["gen_ai.request.temperature"] == 0.25
    assert chat.attributes["gen_ai.request.max_tokens"] == 64
