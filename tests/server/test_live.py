"""LiveRun.follow: the one loop by which the server's readers (the UI's SSE, the protocol faces,
A2A, MCP) go through a live run's frames."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from treadle import events as ev
from treadle.server.live import LiveRun

pytestmark = pytest.mark.timeout(30)


def live_run() -> LiveRun:
    return LiveRun(run_id="r", agent_name="a", session_id=None, runner=None, input="x",  # type: ignore[arg-type]
                   stream=None)  # type: ignore[arg-type]


def event(seq: int, name: str, depth: int = 0) -> Any:
    return ev.RunItemStreamEvent(name=name, item=ev.RunItem(data={"n": seq}), run_id="c" if depth else "r", seq=seq,
                                 depth=depth, parent_run_id="r" if depth else None)


def finish(live: LiveRun) -> None:
    """What the hub does once the run's result is set."""
    live.finished = True
    live.changed.set()


async def test_frames_come_as_they_are_added_and_end_after_the_runs_own_end_is_settled() -> None:
    live = live_run()
    live.add(event(1, ev.TOOL_CALL_START))
    live.add(event(2, ev.TOOL_CALL_ACTIVITY))
    frames = live.follow(1)
    assert (await anext(frames)).key == (2, 0)  # after seq 1
    reader = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0.05)
    assert not reader.done()  # waits for the next event
    live.add(event(1, ev.EXECUTION_COMPLETE, depth=1))  # a child's end is not the run's
    assert (await asyncio.wait_for(reader, 5)).key == (2, 1)
    live.add(event(3, ev.EXECUTION_COMPLETE))
    last = await asyncio.wait_for(anext(frames), 5)
    assert (last.name, last.key) == (ev.EXECUTION_COMPLETE, (3, 0))
    ending = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0.05)
    assert not ending.done()  # the run's result is not set yet
    finish(live)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(ending, 5)


async def test_a_run_that_finished_without_its_end_event_ends_after_its_last_frame() -> None:
    live = live_run()
    live.add(event(1, ev.TOOL_CALL_START))
    finish(live)
    assert [f.key async for f in live.follow((0, 0))] == [(1, 0)]
    assert [f async for f in live.follow((1, 0))] == []


async def test_until_ends_the_frames_once_caught_up_and_the_condition_still_holds() -> None:
    live = live_run()
    asked: list[bool] = []

    def until() -> bool:  # the run waits for a decision; its request's event is added in a callback ready now
        if not asked:
            asked.append(True)
            asyncio.get_running_loop().call_soon(live.add, event(2, ev.TOOL_PERMISSION_REQUEST))
        return True

    live.add(event(1, ev.TOOL_CALL_START))
    frames = live.follow(until=until)
    assert (await anext(frames)).key == (1, 0)
    assert (await asyncio.wait_for(anext(frames), 5)).name == ev.TOOL_PERMISSION_REQUEST  # read before stopping
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(frames), 5)


async def test_ticks_give_none_after_idle_seconds_without_a_frame() -> None:
    live = live_run()
    frames = live.follow(idle=0.05, ticks=True)
    assert await asyncio.wait_for(anext(frames), 5) is None
    live.add(event(1, ev.TOOL_CALL_START))
    assert (await asyncio.wait_for(anext(frames), 5)) is not None
    quiet = live.follow(1, idle=0.05)
    reader = asyncio.ensure_future(anext(quiet))
    await asyncio.sleep(0.2)
    assert not reader.done()  # no ticks asked: it keeps waiting
    reader.cancel()
