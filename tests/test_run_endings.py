"""One exception class per way a run ends: ``RunnerResult.unwrap()`` gives a successful run's
answer and raises the ending's error for the others, carrying the result; the ``error_type``
strings a run ends with name those classes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from treadle import (
    Agent,
    Function,
    FunctionTool,
    MaxStepsExceeded,
    ModelAuthenticationError,
    RunCancelledError,
    RunFailedError,
    Runner,
    RunnerResult,
    RunSuspendedError,
    ScriptedModel,
    TreadleError,
    UsageLimits,
)
from treadle.errors import UsageLimitExceeded

ADD = Function(name="add", kwargs={"a": 1, "b": 2})


def add(a: int, b: int) -> int:
    return a + b


def pay(to: str) -> str:
    return f"paid {to}"


async def test_a_successful_run_unwraps_to_its_answer() -> None:
    res = await Runner(Agent(tools=[add], model=ScriptedModel([ADD, Function(name="finish", kwargs={"answer": 3})]),
                             answer_data_type=int)).acall("q")
    assert res.ok and res.unwrap() == 3


async def test_max_steps_is_a_class_its_error_type_names() -> None:
    res = await Runner(Agent(tools=[add], model=ScriptedModel([ADD], repeat_last=True), max_steps=2)).acall("q")
    assert res.status == "max_steps" and res.error_type == MaxStepsExceeded.__name__
    with pytest.raises(MaxStepsExceeded, match="max_steps: 2") as raised:
        res.unwrap()
    assert raised.value.result is res and len(res.step_history) == 2
    assert isinstance(raised.value, TreadleError)


async def test_a_cancelled_run_raises_run_cancelled_error() -> None:
    model = ScriptedModel([ADD, Function(name="finish", kwargs={"answer": "x"})], delay=[0, 30])
    runner = Runner(Agent(tools=[add], model=model))
    task = asyncio.ensure_future(runner.acall("go", id="c"))
    while not runner.active_runs:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    assert runner.cancel("c")
    res = await asyncio.wait_for(task, 30)
    assert res.status == "cancelled"
    with pytest.raises(RunCancelledError) as raised:
        res.unwrap()
    assert raised.value.result is res


async def test_a_failed_run_raises_run_failed_error_with_its_error_type() -> None:
    res = await Runner(Agent(tools=[add], model=ScriptedModel([ModelAuthenticationError("bad key")]))).acall("q")
    assert res.status == "error"
    with pytest.raises(RunFailedError, match="bad key") as raised:
        res.unwrap()
    assert raised.value.error_type == ModelAuthenticationError.__name__ and raised.value.result is res

    limited = await Runner(Agent(tools=[add], model=ScriptedModel([ADD], repeat_last=True), max_steps=50),
                           usage_limits=UsageLimits(request_limit=2)).acall("q")
    assert limited.status == "error" and limited.error_type == UsageLimitExceeded.__name__
    with pytest.raises(RunFailedError) as raised:
        limited.unwrap()
    assert raised.value.error_type == "UsageLimitExceeded"


async def test_a_run_waiting_for_approval_raises_run_suspended_error(tmp_path: Path) -> None:
    agent = Agent(tools=[FunctionTool(pay, require_approval=True)],
                  model=ScriptedModel([Function(id="p1", name="pay", kwargs={"to": "bob"})]))
    res = await Runner(agent, store=f"sqlite:///{tmp_path / 'runs.db'}", suspend_for_approval=True).acall("q")
    assert res.status == "waiting_for_approval"
    with pytest.raises(RunSuspendedError, match="p1") as raised:
        res.unwrap()
    assert raised.value.result is res


def test_every_ending_but_success_raises_a_class_of_its_own() -> None:
    raised: dict[str, type[BaseException]] = {}
    for status in ("max_steps", "cancelled", "waiting_for_approval", "error"):
        with pytest.raises(TreadleError) as e:
            RunnerResult(status=status, error="why").unwrap()  # type: ignore[arg-type]
        raised[status] = type(e.value)
    assert raised == {"max_steps": MaxStepsExceeded, "cancelled": RunCancelledError,
                      "waiting_for_approval": RunSuspendedError, "error": RunFailedError}
