"""Human approval of tool calls: callbacks, the stream's approve/deny/edit, timeouts, safety."""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import threading
from typing import Any

import pytest

from helpers import names
from treadle import (
    Agent,
    ApprovalOutcome,
    ApprovalResponse,
    Function,
    FunctionTool,
    PermissionManager,
    RunItemStreamEvent,
    Runner,
    ScriptedModel,
)

ran: list[tuple[str, Any]] = []


def transfer(to: str, amount: int) -> str:
    """Move money."""
    ran.append(("transfer", (to, amount)))
    return f"sent {amount} to {to}"


def delete(path: str) -> str:
    ran.append(("delete", path))
    return f"deleted {path}"


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


@pytest.fixture(autouse=True)
def _reset() -> None:
    ran.clear()


def gated(*replies: Any, native: bool = False, **pm_kw: Any) -> Runner[Any]:
    tools = [FunctionTool(transfer, require_approval=True), FunctionTool(delete, require_approval=True)]
    return Runner(Agent(tools=tools, model=ScriptedModel(list(replies), native_tools=native)),
                  permission_manager=PermissionManager(**pm_kw))


async def drive_stream(runner: Runner[Any], decide: Any) -> tuple[Any, list[Any]]:
    """Consume a stream, answering each permission request with decide(stream, request)."""
    sr = runner.astream("go")
    seen = []
    async for e in sr.stream_events():
        seen.append(e)
        if isinstance(e, RunItemStreamEvent) and e.name == "agent.tool_permission_request":
            decide(sr, e.item.data)
    return await sr.wait_for_completion(), seen


async def test_parallel_calls_decided_independently_in_the_stream() -> None:
    runner = gated([Function(name="transfer", kwargs={"to": "alice", "amount": 5}),
                    Function(name="delete", kwargs={"path": "/etc"})], final("ok"), native=True)

    def decide(sr: Any, req: Any) -> None:
        if req.tool_name == "transfer":
            assert sr.approve(req.id)
        else:
            assert sr.deny(req.id, "never delete /etc")

    res, seen = await drive_stream(runner, decide)
    assert ran == [("transfer", ("alice", 5))]
    ok, denied = res.step_history
    assert ok.observation == "sent 5 to alice" and denied.status == "cancelled"
    assert denied.observation == "Tool execution cancelled by user: never delete /etc"
    requests = [e.item.data for e in seen if getattr(e, "name", "") == "agent.tool_permission_request"]
    assert len({r.id for r in requests}) == 2 and all(r.run_id == res.run_id for r in requests)
    model_saw = runner.agent.model.requests[1].messages
    assert "never delete /etc" in model_saw[-1]["content"]


async def test_edit_is_validated_before_the_tool_runs() -> None:
    runner = gated(Function(name="transfer", kwargs={"to": "mallory", "amount": 1000}),
                   Function(name="transfer", kwargs={"to": "bob", "amount": 10}), final("ok"))
    edits = iter([{"to": "alice", "amount": 3}, {"to": "bob", "amount": "lots"}])

    res, _ = await drive_stream(runner, lambda sr, req: sr.edit(req.id, next(edits)))
    assert ran == [("transfer", ("alice", 3))]
    assert res.step_history[0].observation == "sent 3 to alice"
    assert res.step_history[0].function.kwargs == {"to": "mallory", "amount": 1000}, "history keeps the model's call"
    bad = res.step_history[1]
    assert bad.status == "cancelled" and "edited arguments are invalid" in bad.observation


async def test_always_allow_skips_later_requests() -> None:
    runner = gated(Function(name="transfer", kwargs={"to": "a", "amount": 1}),
                   Function(name="transfer", kwargs={"to": "b", "amount": 2}),
                   Function(name="delete", kwargs={"path": "x"}), final("ok"))
    asked: list[str] = []

    def decide(sr: Any, req: Any) -> None:
        asked.append(req.tool_name)
        sr.approve(req.id, always=req.tool_name == "transfer")

    await drive_stream(runner, decide)
    assert asked == ["transfer", "delete"], "the second transfer was not asked about"
    assert [r[0] for r in ran] == ["transfer", "transfer", "delete"]


class StepCounter(collections.abc.Coroutine):  # type: ignore[type-arg]
    """Wraps a task's coroutine and counts the times the loop steps it (send/throw)."""

    def __init__(self, coro: Any, steps: collections.Counter[int]) -> None:
        self._coro, self._steps = coro, steps

    def send(self, value: Any) -> Any:
        self._steps[id(self)] += 1
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        self._steps[id(self)] += 1
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Any:
        return self._coro.__await__()


async def test_waiting_for_a_decision_does_not_busy_loop() -> None:
    # every task the run starts is counted each time the loop runs it: while the run waits for a
    # decision, none of them may be woken again and again (a poll), only by the decision
    steps: collections.Counter[int] = collections.Counter()
    loop = asyncio.get_running_loop()
    old_factory = loop.get_task_factory()
    loop.set_task_factory(lambda lp, coro, **kw: asyncio.Task(StepCounter(coro, steps), loop=lp, **kw))
    try:
        runner = gated(Function(name="delete", kwargs={"path": "x"}), final("ok"))
        sr = runner.astream("go")
    finally:
        loop.set_task_factory(old_factory)
    async for e in sr.stream_events():
        if getattr(e, "name", "") == "agent.tool_permission_request":
            await asyncio.sleep(0)
            before = collections.Counter(steps)
            for _ in range(100):  # the run waits meanwhile: the loop turns 100 times (and for 0.3 s)
                await asyncio.sleep(0)
            await asyncio.sleep(0.3)
            woken = steps - before
            assert steps and max(woken.values(), default=0) <= 2, woken  # a poll would be woken 100+ times
            assert [r.id for r in sr.pending_approvals] == [e.item.data.id]
            # decided from another thread, as a web server would
            threading.Thread(target=runner.permission_manager.approve, args=(sr.run_id, e.item.data.id)).start()
    assert (await sr.wait_for_completion()).ok and ran == [("delete", "x")]


async def test_decisions_never_carry_over_to_other_calls_or_runs() -> None:
    runner = gated(Function(name="delete", kwargs={"path": "x"}), final("ok"), timeout=0.2)
    pm = runner.permission_manager
    other = gated(final("ok"))
    sr = runner.astream("go")
    async for e in sr.stream_events():
        if getattr(e, "name", "") == "agent.tool_permission_request":
            call_id = e.item.data.id
            assert not pm.approve("some-other-run", call_id), "another run id"
            assert not sr.approve("call-that-does-not-exist"), "another call id"
            assert not other.permission_manager.approve(sr.run_id, call_id), "another manager"
    res = await sr.wait_for_completion()
    assert ran == [] and "no decision within 0.2 s" in res.step_history[0].observation
    assert not pm.approve(sr.run_id, call_id), "a replayed approval after the run ended"


@pytest.mark.parametrize("face", ["call", "acall"])
async def test_callbacks_sync_and_async_with_edits(face: str) -> None:
    async def async_approver(req: Any) -> Any:
        await asyncio.sleep(0)
        if req.tool_name == "delete":
            return ApprovalOutcome.CANCEL
        return ApprovalResponse.approve(kwargs={"to": req.tool.kwargs["to"], "amount": 1})

    def sync_approver(req: Any) -> Any:
        return req.tool_name == "transfer"

    for approver in (async_approver, sync_approver):
        ran.clear()
        runner = gated(Function(name="transfer", kwargs={"to": "z", "amount": 9}),
                       Function(name="delete", kwargs={"path": "p"}), final("ok"), approval_callback=approver)
        res = runner.call("go") if face == "call" else await runner.acall("go")
        assert [r[0] for r in ran] == ["transfer"] and res.step_history[1].status == "cancelled"
    assert res.step_history[0].observation == "sent 9 to z"


async def test_callback_timeout_denies() -> None:
    async def slow(req: Any) -> bool:
        await asyncio.sleep(5)
        return True

    runner = gated(Function(name="delete", kwargs={"path": "x"}), final("ok"), approval_callback=slow, timeout=0.05)
    res = await runner.acall("go")
    assert ran == [] and "no decision within 0.05 s" in res.step_history[0].observation


async def test_modes_and_blocked_tools() -> None:
    runner = gated(Function(name="delete", kwargs={"path": "x"}), final("ok"), approval_mode="auto_approve")
    events: list[Any] = []
    runner.event_handlers.append(events.append)
    await runner.acall("go")
    assert ran == [] or ran == [("delete", "x")]
    assert ran == [("delete", "x")] and "agent.tool_permission_request" not in names(events)
    ran.clear()
    runner = gated(Function(name="delete", kwargs={"path": "x"}), final("ok"), approval_mode="yolo",
                   approval_callback=lambda req: True)
    runner.permission_manager.add_to_blocked("delete")
    res = await runner.acall("go")
    assert ran == [] and "blocked" in res.step_history[0].observation


async def test_stream_name_tricks_never_reach_the_tool() -> None:
    tricks = ["Delete", "delete ", " delete", "DELETE", "functions.delete", "delete\u200b"]
    runner = gated(*[Function(name=t, kwargs={"path": "/"}) for t in tricks], final("ok"))
    runner.agent.max_steps = 20
    runner.max_steps = 20
    res, seen = await drive_stream(runner, lambda sr, req: pytest.fail("no request for an unknown name"))
    assert ran == [] and all("Unknown tool" in s.observation for s in res.step_history)
