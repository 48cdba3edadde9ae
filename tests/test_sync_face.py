"""The sync face: plain threads, inside a running loop (Jupyter), and nested runs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from treadle import Agent, Function, Runner, ScriptedModel


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


async def aadd(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def make_runner() -> Runner[Any]:
    model = ScriptedModel([Function(name="aadd", kwargs={"a": 1, "b": 2}), final("3")], per_run=True)
    return Runner(Agent(tools=[aadd], model=model))


def test_call_without_a_loop_runs_async_tools() -> None:
    res = make_runner().call({"input_str": "x"})
    assert res.answer == "3" and res.step_history[0].observation == 3


def test_call_reuses_its_private_loop_and_leaves_no_loop_set() -> None:
    runner = make_runner()
    for _ in range(3):
        assert runner.call("x").answer == "3"
    try:
        asyncio.get_running_loop()
        raise AssertionError("no loop should be running here")
    except RuntimeError:
        pass


def test_call_inside_a_running_loop_like_jupyter() -> None:
    async def notebook_cell() -> Any:
        # a Jupyter cell: sync code called while the kernel's loop runs
        return make_runner().call("x")

    res = asyncio.run(notebook_cell())
    assert res.answer == "3"


def test_call_from_many_threads() -> None:
    runner = make_runner()
    out: list[Any] = []

    def work() -> None:
        out.append(runner.call("x").answer)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == ["3"] * 8


def test_sync_tool_that_runs_another_agent_synchronously() -> None:
    inner = make_runner()

    def delegate(q: str) -> str:
        return f"inner said {inner.call(q).answer}"

    outer_model = ScriptedModel([Function(name="delegate", kwargs={"q": "sub"}), final("ok")])
    outer = Runner(Agent(tools=[delegate], model=outer_model))
    res = outer.call("x")
    assert res.step_history[0].observation == "inner said 3"

    async def in_loop() -> Any:
        model = ScriptedModel([Function(name="delegate", kwargs={"q": "sub"}), final("ok")])
        return Runner(Agent(tools=[delegate], model=model)).call("x")

    assert asyncio.run(in_loop()).step_history[0].observation == "inner said 3"


def test_runner_is_callable_like_the_seed() -> None:
    assert make_runner()({"input_str": "x"}).answer == "3"
