"""Edge cases of cancellation, approvals, memory and streams (found in review)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from helpers import names
from treadle import (
    Agent,
    ConversationMemory,
    Function,
    FunctionTool,
    PermissionManager,
    Runner,
    ScriptedModel,
    ToolCallActivityRunItem,
)
from treadle.errors import (
    ModelAuthenticationError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelServerError,
    ModelTimeoutError,
)


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


async def sleepy(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


def test_retryable_errors_are_marked() -> None:
    assert all(e.retryable for e in (ModelRateLimitError, ModelServerError, ModelConnectionError, ModelTimeoutError))
    assert not ModelAuthenticationError.retryable


async def test_no_event_after_execution_complete_from_a_timed_out_thread_tool() -> None:
    def ticker():  # type: ignore[no-untyped-def]
        for i in range(20):
            time.sleep(0.01)
            yield ToolCallActivityRunItem(data=i)
        yield "done"

    events: list[Any] = []
    model = ScriptedModel([Function(name="ticker"), final("x")])
    runner = Runner(Agent(tools=[FunctionTool(ticker, timeout=0.03, run_in_thread=True)], model=model),
                    event_handlers=[events.append])
    res = await runner.acall("go")
    await asyncio.sleep(0.3)  # the thread keeps ticking after the timeout
    assert res.status == "success"
    assert names(events)[-1] == "agent.execution_complete" and names(events).count("agent.execution_complete") == 1


async def test_cancel_after_the_answer_is_refused() -> None:
    runner = Runner(Agent(model=ScriptedModel([final("x")])))
    res = await runner.acall("go", id="r1")
    assert res.ok and not runner.cancel("r1") and not runner.cancel()


async def test_outside_cancel_in_the_same_tick_as_runner_cancel_still_propagates() -> None:
    runner = Runner(Agent(tools=[sleepy], model=ScriptedModel([Function(name="sleepy", kwargs={"seconds": 10})])))
    t = asyncio.ensure_future(runner.acall("go"))
    await asyncio.sleep(0.01)
    runner.cancel()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t


@pytest.mark.parametrize("face", ["acall", "call"])
async def test_cancel_mid_model_in_each_face_interrupts_the_model(face: str) -> None:
    model = ScriptedModel([final("never")], delay=30)
    runner = Runner(Agent(model=model))
    if face == "acall":
        task = asyncio.ensure_future(runner.acall("go", id="x"))
    else:  # the sync face inside a running loop (helper thread), cancelled from this thread
        task = asyncio.ensure_future(asyncio.to_thread(runner.call, "go", None, None, "x"))
    while "x" not in runner.active_runs:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.02)
    assert runner.cancel("x")
    res = await task
    # the 30 s model call was interrupted, not waited for: it never gave its reply (no request counted)
    assert res.status == "cancelled" and res.usage.requests == 0
    assert model.calls == 1


async def test_cancel_mid_concurrent_tools_leaves_no_task() -> None:
    before = set(asyncio.all_tasks())
    model = ScriptedModel([[Function(name="sleepy", kwargs={"seconds": 10}),
                            Function(name="sleepy", kwargs={"seconds": 10})]], native_tools=True)
    runner = Runner(Agent(tools=[sleepy], model=model))
    t = asyncio.ensure_future(runner.acall("go"))
    await asyncio.sleep(0.02)
    runner.cancel()
    assert (await t).status == "cancelled"
    await asyncio.sleep(0)
    assert set(asyncio.all_tasks()) - before <= {asyncio.current_task()}


async def test_memory_shared_by_concurrent_runs_keeps_whole_turns() -> None:
    mem = ConversationMemory()
    model = ScriptedModel([lambda msgs: final("A:" + msgs[-1]["content"])], repeat_last=True, delay=0.01)
    runner = Runner(Agent(model=model), conversation_memory=mem)
    await asyncio.gather(runner.acall("q1"), runner.acall("q2"), runner.acall("q3"))
    turns = {(t.user_query.query_str, t.assistant_response.response_str) for t in mem.turns}
    assert turns == {("q1", "A:q1"), ("q2", "A:q2"), ("q3", "A:q3")}


async def test_a_second_consumer_of_one_stream_is_refused() -> None:
    sr = Runner(Agent(model=ScriptedModel([final("x")], delay=0.05))).astream("go")

    async def consume() -> list[Any]:
        return [e async for e in sr.stream_events()]

    first = asyncio.ensure_future(consume())
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="one consumer"):
        await consume()
    assert names(await first)[-1] == "agent.execution_complete"


async def test_run_cancelled_before_start_leaves_no_active_run() -> None:
    runner = Runner(Agent(model=ScriptedModel([final("x")])))
    sr = runner.astream("go")
    sr._run_task.cancel()
    await sr.wait_for_completion()
    assert runner.active_runs == []


async def test_token_figures_of_a_finished_run_by_id() -> None:
    runner = Runner(Agent(model=ScriptedModel([final("x")], per_run=True)))
    await runner.acall("go", id="a")
    await runner.acall("go", id="b")
    assert runner.get_token_consumption("a")["steps_token_history"] != []


async def test_tool_added_after_a_run_reaches_the_schema_and_needs_approval() -> None:
    ran: list[str] = []

    def rm(path: str) -> str:
        ran.append(path)
        return "deleted"

    asked: list[str] = []

    def approver(req: Any) -> bool:
        asked.append(req.tool_name)
        return False

    agent = Agent(tools=[], model=ScriptedModel([final("x"), Function(name="rm", kwargs={"path": "/"}), final("y")],
                                                native_tools=True))
    runner = Runner(agent, permission_manager=PermissionManager(approver))
    await runner.acall("go")
    agent.tool_manager.add(FunctionTool(rm, require_approval=True))
    assert "rm" in [d.func_name for d in agent.planner.native_tools()]
    res = await runner.acall("go")
    assert ran == [] and asked == ["rm"] and res.step_history[0].status == "cancelled"


async def test_an_approver_cannot_switch_the_tool_by_mutating_the_request() -> None:
    ran: list[str] = []

    def read(path: str) -> str:
        ran.append("read")
        return "content"

    def delete(path: str) -> str:
        ran.append("delete")
        return "deleted"

    def sneaky(req: Any) -> bool:
        req.tool.name = "delete"  # tries to turn the approved call into another tool
        return True

    model = ScriptedModel([Function(name="read", kwargs={"path": "a"}), final("x")])
    runner = Runner(Agent(tools=[FunctionTool(read, require_approval=True), FunctionTool(delete)], model=model),
                    permission_manager=PermissionManager(sneaky))
    res = await runner.acall("go")
    assert ran == [] and res.step_history[0].status == "cancelled"


async def test_an_approver_that_raises_denies() -> None:
    def broken(req: Any) -> bool:
        raise RuntimeError("approval service down")

    ran: list[int] = []
    model = ScriptedModel([Function(name="act"), final("x")])
    runner = Runner(Agent(tools=[FunctionTool(lambda: ran.append(1), name="act", require_approval=True)],
                          model=model), permission_manager=PermissionManager(broken))
    res = await runner.acall("go")
    assert ran == [] and res.ok and "approval service down" in res.step_history[0].observation


class Crash(BaseException):
    """Not an Exception: escapes the driver, like a bug in the interpreter would."""


async def test_a_crashed_run_delivers_queued_events_then_raises() -> None:
    def crash(messages: Any) -> Any:
        raise Crash("boom")

    model = ScriptedModel([Function(name="noop"), crash])
    sr = Runner(Agent(tools=[FunctionTool(lambda: "ok", name="noop")], model=model)).astream("go")
    seen: list[Any] = []
    with pytest.raises(Crash):
        async for e in sr.stream_events():
            seen.append(e)
    assert names(seen)[:4] == ["raw", "agent.tool_call_start", "agent.tool_call_complete", "agent.step_complete"]
    assert names(seen)[-1] == "agent.execution_complete" and seen[-1].item.data.status == "error"
    with pytest.raises(Crash):
        await sr.wait_for_completion()


def test_cancel_is_thread_safe_under_contention() -> None:
    model = ScriptedModel([Function(name="sleepy", kwargs={"seconds": 0.05})], repeat_last=True)
    runner = Runner(Agent(tools=[sleepy], model=model, max_steps=100))
    threads = [threading.Timer(0.1, runner.cancel, args=("t",)) for _ in range(8)]
    for t in threads:
        t.start()
    res = runner.call("go", id="t")
    assert res.status == "cancelled"
