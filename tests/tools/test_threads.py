"""Sync tools run in worker threads by default; ``inline=True`` keeps one on the loop.

Written as a user meets it: a run whose plain ``def`` tool blocks (on a ``threading.Event``,
never a sleep) must not block the loop, must be cancellable at once, and must still see its
``RunContext`` and the caller's contextvars. No timing asserts: orderings only.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

from treadle import Agent, Function, FunctionTool, ModelRetry, RunContext, Runner, ToolCallActivityRunItem, tool
from treadle.errors import UserError
from treadle.events import TOOL_CALL_ACTIVITY, TOOL_CALL_START
from treadle.models.scripted import ScriptedModel
from treadle.permissions import current_run_id

pytestmark = pytest.mark.timeout(60)

WAIT = 30  # an upper bound on a wait that should end at once (a hang fails the test, not a timing)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def script(*calls: Function) -> ScriptedModel:
    return ScriptedModel([*calls, Function(name="finish", kwargs={"answer": "done"})])


async def started(seen: asyncio.Event) -> None:
    """Wait (on the loop) until the tool's start event was emitted."""
    await asyncio.wait_for(seen.wait(), WAIT)


def on_start(seen: asyncio.Event) -> Any:
    def handler(event: Any) -> None:
        if getattr(event, "name", None) == TOOL_CALL_START:
            seen.set()
    return handler


async def test_a_plain_def_runs_off_the_loop_and_inline_true_on_it() -> None:
    where: dict[str, int] = {}

    def default(x: int) -> int:
        where["default"] = threading.get_ident()
        return x

    def gen(x: int):  # type: ignore[no-untyped-def]
        where["generator"] = threading.get_ident()
        yield ToolCallActivityRunItem(data={"x": x})
        yield x

    @tool(inline=True)
    def on_loop(x: int) -> int:
        where["inline"] = threading.get_ident()
        return x

    def inline_gen(x: int):  # type: ignore[no-untyped-def]
        where["inline_gen"] = threading.get_ident()
        yield x

    async def coro(x: int) -> int:
        where["async"] = threading.get_ident()
        return x

    agent = Agent(tools=[default, gen, on_loop, FunctionTool(inline_gen, inline=True), coro],
                  model=script(*(Function(name=n, kwargs={"x": 1})
                                 for n in ("default", "gen", "on_loop", "inline_gen", "coro"))), max_steps=8)
    activities: list[Any] = []
    runner = Runner(agent, event_handlers=[lambda e: activities.append(e)
                                           if getattr(e, "name", None) == TOOL_CALL_ACTIVITY else None])
    result = await runner.acall("go")
    assert result.status == "success", result.error
    loop_thread = threading.get_ident()
    assert where["inline"] == where["inline_gen"] == where["async"] == loop_thread
    assert where["default"] != loop_thread and where["generator"] != loop_thread
    assert len(activities) == 1 and activities[0].item.data == {"x": 1}  # relayed to the loop from the thread
    assert on_loop.inline and not on_loop.run_in_thread
    assert FunctionTool(default).run_in_thread and not FunctionTool(coro).run_in_thread


async def test_cancelling_a_run_whose_sync_tool_blocks_ends_it_before_the_tool_returns() -> None:
    release, entered, returned = threading.Event(), threading.Event(), threading.Event()

    def charge(amount: int) -> str:
        entered.set()
        release.wait(WAIT)
        returned.set()
        return f"charged {amount}"

    seen = asyncio.Event()
    runner = Runner(Agent(tools=[charge], model=script(Function(name="charge", kwargs={"amount": 5}))),
                    event_handlers=[on_start(seen)])
    events: list[str] = []
    stream = runner.astream("charge me")

    async def consume() -> None:
        async for event in stream.stream_events():
            events.append(getattr(event, "name", "raw"))
    consumer = asyncio.ensure_future(consume())
    try:
        await started(seen)
        assert await asyncio.to_thread(entered.wait, WAIT)  # the tool body is running, and blocks
        assert runner.cancel()
        result = await asyncio.wait_for(stream.wait_for_completion(), WAIT)
        await asyncio.wait_for(consumer, WAIT)
        assert result.status == "cancelled" and result.error_type == "RunCancelled"
        assert not returned.is_set()  # ended while the tool still blocks
        assert events[-3:] == ["runner.cancel_received", "runner.cancelled", "agent.execution_complete"]
        assert "agent.tool_call_complete" not in events  # started, never finished
    finally:
        release.set()
    assert await asyncio.to_thread(returned.wait, WAIT)  # the thread finished in the background
    await asyncio.sleep(0)
    assert result.status == "cancelled"  # its late result changed nothing


def test_the_sync_face_returns_the_cancelled_result_while_the_tool_still_blocks() -> None:
    release, entered, returned = threading.Event(), threading.Event(), threading.Event()

    def slow(x: int) -> int:
        entered.set()
        release.wait(WAIT)
        returned.set()
        return x

    runner = Runner(Agent(tools=[slow], model=script(Function(name="slow", kwargs={"x": 1}))))

    def cancel_when_entered() -> None:
        entered.wait(WAIT)
        runner.cancel()

    canceller = threading.Thread(target=cancel_when_entered)
    canceller.start()
    try:
        result = runner.call("go")
        assert result.status == "cancelled" and not returned.is_set()
    finally:
        release.set()
        canceller.join(WAIT)


async def test_the_loop_keeps_running_while_a_sync_tool_blocks() -> None:
    release, entered = threading.Event(), threading.Event()

    def block(x: int) -> int:
        entered.set()
        release.wait(WAIT)
        return x

    runner = Runner(Agent(tools=[block], model=script(Function(name="block", kwargs={"x": 7}))))
    task = asyncio.ensure_future(runner.acall("go"))
    try:
        assert await asyncio.to_thread(entered.wait, WAIT)
        other = Runner(Agent(tools=[], model=script()))
        assert (await other.acall("meanwhile")).answer == "done"  # another run, on the same loop, finishes
        assert not task.done()
    finally:
        release.set()
    assert (await asyncio.wait_for(task, WAIT)).status == "success"


async def test_run_context_and_contextvars_reach_the_worker_thread() -> None:
    seen: dict[str, Any] = {}

    def whoami(ctx: RunContext[dict[str, str]], x: int) -> str:
        seen.update(thread=threading.get_ident(), ctx=ctx.context, run_id=ctx.run_id, call=ctx.tool_call_id,
                    var=request_id.get(), current_run=current_run_id.get())
        request_id.set("changed in the tool")  # a copy: the caller's value stays
        return ctx.context["user"]

    runner = Runner(Agent(tools=[whoami], model=script(Function(name="whoami", kwargs={"x": 1}, id="c1"))),
                    ctx={"user": "ada"})
    token = request_id.set("req-42")
    try:
        result = await runner.acall("who?")
    finally:
        seen["after"] = request_id.get()
        request_id.reset(token)
    assert result.status == "success", result.error
    assert seen["thread"] != threading.get_ident()
    assert seen["ctx"] == {"user": "ada"} and seen["call"] == "c1"
    assert seen["run_id"] == result.run_id == seen["current_run"]
    assert seen["var"] == "req-42" and seen["after"] == "req-42"
    assert result.step_history[0].observation == "ada"


async def test_timeout_and_model_retry_work_for_threaded_tools() -> None:
    release = threading.Event()
    calls: list[int] = []

    def hangs(x: int) -> int:
        release.wait(WAIT)
        return x

    def picky(x: int) -> int:
        calls.append(x)
        if x < 2:
            raise ModelRetry("give a bigger x")
        return x

    model = script(Function(name="hangs", kwargs={"x": 1}), Function(name="picky", kwargs={"x": 1}),
                   Function(name="picky", kwargs={"x": 2}))
    runner = Runner(Agent(tools=[FunctionTool(hangs, timeout=0.05), picky], model=model, max_steps=6))
    try:
        result = await runner.acall("go")
    finally:
        release.set()
    assert result.status == "success", result.error
    obs = [s.observation for s in result.step_history]
    assert obs == ["Tool hangs timed out after 0.05 s.", "give a bigger x", 2]
    assert calls == [1, 2]


async def test_a_cancelled_sync_generator_stops_at_its_next_yield() -> None:
    step, entered, closed = threading.Event(), threading.Event(), threading.Event()
    produced: list[int] = []

    def ticks(n: int):  # type: ignore[no-untyped-def]
        try:
            for k in range(n):
                entered.set()
                step.wait(WAIT)
                produced.append(k)
                yield ToolCallActivityRunItem(data={"k": k})
            yield "all"
        finally:
            closed.set()

    seen = asyncio.Event()
    runner = Runner(Agent(tools=[ticks], model=script(Function(name="ticks", kwargs={"n": 5}))),
                    event_handlers=[on_start(seen)])
    task = asyncio.ensure_future(runner.acall("go"))
    try:
        await started(seen)
        assert await asyncio.to_thread(entered.wait, WAIT)
        runner.cancel()
        result = await asyncio.wait_for(task, WAIT)
        assert result.status == "cancelled" and not closed.is_set()
    finally:
        step.set()
    assert await asyncio.to_thread(closed.wait, WAIT)  # closed at the next yield: its finally ran
    assert produced == [0]


def test_inline_is_refused_where_it_cannot_hold() -> None:
    def f(x: int) -> int:
        return x

    with pytest.raises(UserError, match="cannot be timed out"):
        FunctionTool(f, inline=True, timeout=1)
    with pytest.raises(UserError, match="both"):
        FunctionTool(f, inline=True, run_in_thread=True)

    async def g(x: int) -> int:
        return x

    assert FunctionTool(g, inline=True, timeout=1).timeout == 1  # async: inline changes nothing


async def test_the_pool_is_bounded_and_reused() -> None:
    from treadle.tools import _threads

    pool = _threads.ToolThreads(2)
    release = threading.Event()
    idents: list[int] = []

    def work() -> int:
        release.wait(WAIT)
        idents.append(threading.get_ident())
        return 1

    futs = [pool.submit(work) for _ in range(5)]
    assert pool.threads == 2  # the other three wait in the queue
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*futs), WAIT) == [1] * 5
    assert len(set(idents)) == 2
    queued = pool.submit(release.wait, WAIT)
    assert await asyncio.wait_for(queued, WAIT) is True
    assert pool.threads == 2


async def test_calls_one_after_another_use_one_thread() -> None:
    """A thread says it is free before the loop hears its result, so the next call goes to it (a thread
    that said so only after waking the loop lost that race now and then: a thread started per loss)."""
    from treadle.tools import _threads

    pool = _threads.ToolThreads(8)
    idents: set[int] = set()

    def work(i: int) -> int:
        idents.add(threading.get_ident())
        return i

    for i in range(300):
        assert await asyncio.wait_for(pool.submit(work, i), WAIT) == i
    assert pool.threads == 1 and len(idents) == 1


async def test_a_call_cancelled_while_queued_never_starts() -> None:
    from treadle.tools import _threads

    pool = _threads.ToolThreads(1)
    release, ran = threading.Event(), threading.Event()
    busy = pool.submit(release.wait, WAIT)
    queued = pool.submit(ran.set)
    queued.cancel()
    release.set()
    await asyncio.wait_for(busy, WAIT)
    assert await asyncio.wait_for(pool.submit(lambda: 2), WAIT) == 2  # the queue moved past it
    assert not ran.is_set()


async def test_a_durable_run_cancelled_in_a_threaded_tool_keeps_the_call_started_not_finished(tmp_path: Any) -> None:
    release, entered, returned = threading.Event(), threading.Event(), threading.Event()
    charges: list[int] = []

    def charge(amount: int) -> str:
        entered.set()
        release.wait(WAIT)
        charges.append(amount)  # the side effect lands after the cancel
        returned.set()
        return f"charged {amount}"

    def make() -> Runner[Any]:
        return Runner(Agent(tools=[charge], model=script(Function(name="charge", kwargs={"amount": 5}))),
                      store=f"sqlite:///{tmp_path / 'runs.db'}")

    runner = make()
    task = asyncio.ensure_future(runner.acall("charge me"))
    try:
        assert await asyncio.to_thread(entered.wait, WAIT)  # the start was committed before the tool ran
        runner.cancel()
        result = await asyncio.wait_for(task, WAIT)
        assert result.status == "cancelled" and not returned.is_set()
    finally:
        release.set()
    assert await asyncio.to_thread(returned.wait, WAIT)
    assert charges == [5]
    assert runner.store is not None
    names = [e.name for e in runner.store.events(result.run_id)]
    assert names.count("agent.tool_call_start") == 1 and "agent.tool_call_complete" not in names
    assert names[-3:] == ["runner.cancel_received", "runner.cancelled", "agent.execution_complete"]
    again = await make().aresume(result.run_id)  # an ended run: its recorded result, nothing runs
    assert again.status == "cancelled" and charges == [5]
    assert [e.name for e in runner.store.events(result.run_id)] == names  # the late result changed nothing


def test_a_closed_loop_is_not_kept_alive_by_the_pool() -> None:
    import gc
    import weakref

    from treadle.tools._threads import run_in_thread

    loop = asyncio.new_event_loop()

    async def one() -> int:
        return await run_in_thread(int, "3")

    assert loop.run_until_complete(one()) == 3
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None
