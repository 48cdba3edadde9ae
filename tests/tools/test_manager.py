from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from treadle import Function, FunctionTool, ModelRetry, ToolCallActivityRunItem, ToolManager, ToolOutput
from treadle.errors import UserError


def add(a: int, b: int) -> int:
    return a + b


async def aadd(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def gen_count(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield ToolCallActivityRunItem(data={"progress": i})
    yield f"counted {n}"


async def agen_count(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        await asyncio.sleep(0)
        yield ToolCallActivityRunItem(data={"progress": i})
    yield ToolOutput(output=n, observation=f"counted {n}", display="done")


def boom() -> None:
    raise RuntimeError("kaput")


async def call(tm: ToolManager, name: str, **kwargs: Any) -> Any:
    acts: list[Any] = []
    r = await tm.execute(Function(id="c1", name=name, kwargs=kwargs), None, acts.append)
    return r, acts


async def test_sync_and_async_tools() -> None:
    tm = ToolManager([add, aadd])
    r, _ = await call(tm, "add", a=1, b=2)
    assert (r.output, r.observation, r.status) == (3, 3, "success")
    r, _ = await call(tm, "aadd", a=2, b=2)
    assert r.output == 4


async def test_generator_tools_emit_activity_and_last_item_wins() -> None:
    tm = ToolManager([gen_count, agen_count])
    r, acts = await call(tm, "gen_count", n=3)
    assert r.output == "counted 3"
    assert [a.data["progress"] for a in acts] == [0, 1, 2]
    assert all(a.id == "c1" for a in acts), "activity items carry the tool call id"
    r, acts = await call(tm, "agen_count", n=2)
    assert r.observation == "counted 2" and r.output == 2 and r.tool_output.display == "done"
    assert len(acts) == 2


async def test_errors_become_observations() -> None:
    tm = ToolManager([add, boom])
    r, _ = await call(tm, "nope")
    assert r.status == "error" and "Unknown tool 'nope'" in r.observation and "add, boom" in r.observation
    r, _ = await call(tm, "add", a="x", b=1)
    assert r.status == "error" and r.error_type == "ToolArgumentsError" and "a:" in r.observation
    r, _ = await call(tm, "boom")
    assert r.status == "error" and "RuntimeError: kaput" in r.observation


async def test_timeout_async_and_sync() -> None:
    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    release, returned = threading.Event(), threading.Event()

    def slow_sync() -> str:
        release.wait(30)  # blocked until the test lets it go (a hang guard of 30 s)
        returned.set()
        return "late"

    ticks = 0

    async def ticker() -> None:  # another coroutine on the loop
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    tm = ToolManager([FunctionTool(slow, timeout=0.05), FunctionTool(slow_sync, timeout=0.05)])
    r, _ = await call(tm, "slow")
    assert r.status == "error" and r.error_type == "ToolTimeoutError" and "timed out" in r.observation
    tick_task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    try:
        before = ticks
        r, _ = await call(tm, "slow_sync")
        assert r.error_type == "ToolTimeoutError"
        # a timed-out sync tool does not block the loop until it returns: the call ended while the
        # tool is still blocked, and the other coroutine made progress meanwhile
        assert not returned.is_set() and ticks > before
    finally:
        release.set()
        tick_task.cancel()


async def test_model_retry_flags_retry() -> None:
    def picky(x: int) -> int:
        if x < 0:
            raise ModelRetry("x must be positive, try again")
        return x

    tm = ToolManager([picky])
    r, _ = await call(tm, "picky", x=-1)
    assert r.retry and r.observation == "x must be positive, try again"


async def test_tool_output_status_error_is_an_error() -> None:
    def soft_fail() -> ToolOutput:
        return ToolOutput(output=None, observation="disk full", status="error")

    r, _ = await call(ToolManager([soft_fail]), "soft_fail")
    assert r.status == "error" and r.error == "disk full"


async def test_run_in_thread_generator_relays_activity() -> None:
    tm = ToolManager([FunctionTool(gen_count, run_in_thread=True)])
    r, acts = await call(tm, "gen_count", n=2)
    await asyncio.sleep(0.01)
    assert r.output == "counted 2" and len(acts) == 2


def test_duplicate_names_rejected() -> None:
    with pytest.raises(UserError):
        ToolManager([add, FunctionTool(aadd, name="add")])
