"""Cancellation: per run, from any thread, at any await, always ending the stream."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from helpers import names
from treadle import Agent, Function, FunctionTool, ModelDelta, RunContext, Runner, ScriptedModel


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


# what slow_tool went through, in order: "start", then "end" (it slept its time) or "cancelled"
SLOW_TOOL_LOG: list[str] = []


async def slow_tool(seconds: float) -> str:
    SLOW_TOOL_LOG.append("start")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        SLOW_TOOL_LOG.append("cancelled")
        raise
    SLOW_TOOL_LOG.append("end")
    return "slept"


def sync_sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def agent_with_slow_tool(**model_kw: Any) -> Agent[Any]:
    model = ScriptedModel([Function(name="slow_tool", kwargs={"seconds": 30}), final("never")], **model_kw)
    return Agent(tools=[slow_tool], model=model)


def baseline_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_cancel_mid_tool_in_astream() -> None:
    before = baseline_tasks()
    SLOW_TOOL_LOG.clear()
    runner = Runner(agent_with_slow_tool())
    sr = runner.astream("go")
    seen: list[Any] = []
    async for e in sr.stream_events():
        seen.append(e)
        if getattr(e, "name", "") == "agent.tool_call_start":
            assert sr.cancel()
    res = await sr.wait_for_completion()
    assert SLOW_TOOL_LOG == ["start", "cancelled"], "cancel does not wait for the 30 s tool: it is cancelled"
    assert names(seen)[-4:] == ["agent.tool_call_start", "runner.cancel_received", "runner.cancelled",
                                "agent.execution_complete"]
    assert res.status == "cancelled" and res.cancelled and res.step_history == []
    assert sr.answer is None and sr.result is res
    assert names(seen).count("agent.execution_complete") == 1
    await asyncio.sleep(0)
    assert baseline_tasks() <= before, "no task left running"


async def test_cancel_mid_model_keeps_history() -> None:
    model = ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 1}), final("x")], delay=[0, 30])

    def add(a: int, b: int) -> int:
        return a + b

    runner = Runner(Agent(tools=[add], model=model))
    sr = runner.astream("go")
    seen = []
    async for e in sr.stream_events():
        seen.append(e)
        if getattr(e, "name", "") == "agent.step_complete":
            await asyncio.sleep(0.01)  # the model is now sleeping in step 2
            await runner.cancel()
    res = sr.result
    assert res.status == "cancelled" and len(res.step_history) == 1 and res.step_history[0].observation == 2
    cancelled = [e for e in seen if getattr(e, "name", "") == "runner.cancelled"][0]
    assert cancelled.item.data["step_count"] == 1


async def test_acall_cancelled_by_run_id_returns_cancelled_result() -> None:
    runner = Runner(agent_with_slow_tool(per_run=True))
    task = asyncio.ensure_future(runner.acall("go", id="run-A"))
    other = asyncio.ensure_future(runner.acall("go", id="run-B"))
    await asyncio.sleep(0.05)
    assert set(runner.active_runs) == {"run-A", "run-B"}
    assert runner.cancel("run-A")
    res = await asyncio.wait_for(task, 30)
    assert res.status == "cancelled" and res.run_id == "run-A" and res.error == "Execution cancelled by user"
    assert not other.done(), "cancel targets one run, not every run sharing the Runner"
    assert runner.active_runs == ["run-B"]
    runner.cancel("run-B")
    assert (await other).status == "cancelled"
    assert not runner.cancel("run-B"), "a finished run cannot be cancelled"


async def test_acall_task_survives_its_own_cancel() -> None:
    # after a handled cancel, the caller's task is not left in a 'cancelling' state
    runner = Runner(agent_with_slow_tool())

    async def main() -> str:
        res = await runner.acall("go")
        await asyncio.sleep(0.01)  # would raise CancelledError if the cancel leaked
        return res.status

    t = asyncio.ensure_future(main())
    await asyncio.sleep(0.02)
    runner.cancel()
    assert await t == "cancelled"


async def test_external_cancellation_of_acall_propagates() -> None:
    runner = Runner(agent_with_slow_tool())
    events: list[Any] = []
    runner.event_handlers.append(events.append)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(runner.acall("go"), 0.05)
    assert names(events)[-2:] == ["runner.cancelled", "agent.execution_complete"]


def test_cancel_sync_call_from_another_thread() -> None:
    # the tool's second call asks another thread to cancel, and returns once the cancel is in
    second_call, cancelled = threading.Event(), threading.Event()
    calls: list[int] = []
    accepted: list[bool] = []

    def step_tool(n: int) -> int:
        calls.append(n)
        if len(calls) == 2:
            second_call.set()
            assert cancelled.wait(30)  # a hang guard
        return n

    def canceller() -> None:
        assert second_call.wait(30)
        accepted.append(runner.cancel("sync-run"))
        cancelled.set()

    model = ScriptedModel([Function(name="step_tool", kwargs={"n": 1})] * 50, per_run=True)
    runner = Runner(Agent(tools=[step_tool], model=model, max_steps=50))
    thread = threading.Thread(target=canceller)
    thread.start()
    res = runner.call("go", id="sync-run")
    thread.join(30)
    assert len(accepted) == 1 and accepted[0]  # the cancel was accepted
    # the run stopped at the step the cancel came in: no third tool call, the first step kept
    assert res.status == "cancelled" and len(calls) == 2 and 1 <= len(res.step_history) <= 2


async def test_cancel_before_the_task_starts_still_ends_the_stream() -> None:
    runner = Runner(agent_with_slow_tool())
    sr = runner.astream("go")
    sr.cancel()  # the task has not run a single step yet
    seen = [e async for e in sr.stream_events()]
    assert names(seen)[-1] == "agent.execution_complete"
    assert (await sr.wait_for_completion()).status == "cancelled"


async def test_task_cancelled_directly_before_start_still_ends_the_stream() -> None:
    runner = Runner(agent_with_slow_tool())
    sr = runner.astream("go")
    sr._run_task.cancel()  # bypasses the handle: the safety net closes the stream
    seen = [e async for e in asyncio.wait_for(_collect(sr), 30)] if False else await asyncio.wait_for(_collect(sr), 30)
    assert names(seen)[-1] == "agent.execution_complete"
    assert sr.result.status == "cancelled"


async def _collect(sr: Any) -> list[Any]:
    return [e async for e in sr.stream_events()]


async def test_two_streams_on_one_runner_both_complete() -> None:
    model = ScriptedModel([final("one")], per_run=True)
    runner = Runner(Agent(model=model))
    a = runner.astream("first")
    b = runner.astream("second")
    ea, eb = await asyncio.wait_for(asyncio.gather(_collect(a), _collect(b)), 30)
    assert a.answer == "one" and b.answer == "one"
    assert names(ea)[-1] == names(eb)[-1] == "agent.execution_complete"
    assert a.run_id != b.run_id


async def test_cancel_callbacks_are_invoked() -> None:
    called: list[int] = []
    runner = Runner(agent_with_slow_tool())
    runner.register_cancel_callback(lambda: called.append(1))
    sr = runner.astream("go")
    await asyncio.sleep(0.01)
    runner.cancel()
    await sr.wait_for_completion()
    assert called == [1] and runner.is_cancelled()
    runner.reset_cancellation()
    assert not runner.is_cancelled()


@pytest.mark.parametrize("point", ["model", "sync_tool_thread", "async_tool", "generator", "approval"])
async def test_cancel_at_each_await_point_leaves_consistent_state(point: str) -> None:
    from treadle import PermissionManager, ToolCallActivityRunItem

    gate = asyncio.Event()

    async def waits_forever(req: Any) -> bool:
        await gate.wait()
        return True

    async def agen():  # type: ignore[no-untyped-def]
        yield ToolCallActivityRunItem(data="started")
        await asyncio.sleep(30)
        yield "never"

    def add(a: int, b: int) -> int:
        return a + b

    first = Function(name="add", kwargs={"a": 1, "b": 2})
    tools: list[Any] = [add]
    pm = None
    if point == "model":
        model = ScriptedModel([first, final("x")], delay=[0, 30])
    elif point == "sync_tool_thread":
        tools.append(FunctionTool(sync_sleep, run_in_thread=True))
        model = ScriptedModel([first, Function(name="sync_sleep", kwargs={"seconds": 1})])
    elif point == "async_tool":
        tools.append(slow_tool)
        model = ScriptedModel([first, Function(name="slow_tool", kwargs={"seconds": 30})])
    elif point == "generator":
        tools.append(agen)
        model = ScriptedModel([first, Function(name="agen")])
    else:
        tools.append(FunctionTool(slow_tool, require_approval=True))
        pm = PermissionManager(waits_forever)
        model = ScriptedModel([first, Function(name="slow_tool", kwargs={"seconds": 1})])
    before = baseline_tasks()
    runner = Runner(Agent(tools=tools, model=model), permission_manager=pm)
    sr = runner.astream("go")
    seen: list[Any] = []
    async for e in sr.stream_events():
        seen.append(e)
        if getattr(e, "name", "") == "agent.step_complete":
            await asyncio.sleep(0.02)
            sr.cancel()
    res = sr.result
    assert res.status == "cancelled"
    assert [s.observation for s in res.step_history] == [3], "the finished step is kept, the cut one is not"
    assert names(seen).count("agent.execution_complete") == 1 and names(seen)[-1] == "agent.execution_complete"
    await asyncio.sleep(0.01)
    assert baseline_tasks() <= before


# ---------------------------------------------------------------- found by tests/test_cancel_everywhere.py
async def test_cancel_from_inside_the_run_interrupts_its_next_await() -> None:
    # a tool (or an event handler) running in the run's own task cancels the run, then waits:
    # the wait is interrupted, not sat out until the step boundary
    runner: Runner[Any]

    quits_log: list[str] = []

    async def quits(ctx: RunContext[Any]) -> str:
        assert runner.cancel(ctx.run_id)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            quits_log.append("cancelled")
            raise
        quits_log.append("end")
        return "never"

    runner = Runner(Agent(tools=[quits], model=ScriptedModel([Function(name="quits"), final("x")])))
    res = await asyncio.wait_for(runner.acall("go"), 60)  # a hang guard only
    assert res.status == "cancelled" and quits_log == ["cancelled"]  # interrupted, not sat out

    SLOW_TOOL_LOG.clear()
    handler_runner = Runner(agent_with_slow_tool(), event_handlers=[
        lambda e: getattr(e, "name", "") == "agent.tool_call_start" and handler_runner.cancel()])
    res = await asyncio.wait_for(handler_runner.acall("go"), 60)
    assert res.status == "cancelled" and SLOW_TOOL_LOG in ([], ["start", "cancelled"]), SLOW_TOOL_LOG


async def test_events_stay_in_order_when_a_handler_cancels(tmp_path: Any) -> None:
    # the cancel's own events come after the event being delivered, for every later handler too
    seen: list[Any] = []
    runner: Runner[Any] = Runner(agent_with_slow_tool(), store=f"sqlite:///{tmp_path}/runs.db", event_handlers=[
        lambda e: getattr(e, "name", "") == "agent.tool_call_start" and runner.cancel(), seen.append])
    sr = runner.astream("go", id="ordered")
    streamed = [e async for e in sr.stream_events()]
    for events in (seen, streamed):
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert names(events)[-4:] == ["agent.tool_call_start", "runner.cancel_received", "runner.cancelled",
                                      "agent.execution_complete"]
    journaled = [e.seq for e in seen if not (e.type == "raw_response_event" and isinstance(e.data, ModelDelta))]
    assert [e.seq for e in runner.store.events("ordered")] == journaled


@pytest.mark.parametrize("where", ["handler", "thread"])
async def test_an_accepted_cancel_wins_over_the_final_answer(where: str) -> None:
    # runner.cancel() returned True before the answer was recorded: the run ends cancelled
    accepted: list[bool] = []

    def on_event(e: Any) -> None:
        if getattr(e, "type", "") == "raw_response_event" and e.data and e.data[0].name == "finish":
            if where == "handler":
                accepted.append(bool(runner.cancel()))
            else:
                t = threading.Thread(target=lambda: accepted.append(bool(runner.cancel())))
                t.start()
                t.join()

    runner = Runner(Agent(model=ScriptedModel([final("x")])), event_handlers=[on_event])
    res = await runner.acall("go")
    assert len(accepted) == 1 and accepted[0]  # the cancel was accepted
    assert res.status == "cancelled" and res.answer is None and res.error == "Execution cancelled by user"
    assert not runner.cancel(res.run_id), "refused once the ending is recorded"


async def test_caller_cancelled_during_the_memory_write_still_records_the_turn() -> None:
    from treadle import ConversationMemory
    from treadle.memory import InMemoryStore

    entered, gate = asyncio.Event(), asyncio.Event()

    class SlowStore(InMemoryStore):
        async def append_turn(self, session_id: str, turn: Any) -> int:  # type: ignore[override]
            entered.set()
            await gate.wait()
            return super().append_turn(session_id, turn)

    store = SlowStore()
    runner = Runner(Agent(model=ScriptedModel([final("x")])), conversation_memory=ConversationMemory(store, "s"))
    task = asyncio.ensure_future(runner.acall("go"))
    await entered.wait()
    task.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    turns = store.load_turns("s")
    assert len(turns) == 1 and turns[0].assistant_response.metadata["status"] == "success"
