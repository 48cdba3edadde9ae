"""Re-entrancy: one Runner and one Agent serve many concurrent runs without mixing state."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from treadle import Agent, Function, Runner, ScriptedModel


def add(a: int, b: int) -> int:
    return a + b


def stateless_script(messages: list[dict[str, Any]]) -> Any:
    """Derives the turn from the history, like a real model: add the run's own number 3 times."""
    query = int(messages[1]["content"])
    done = [m for m in messages if m["role"] == "user" and m["content"].startswith("Observation:")]
    if len(done) < 3:
        last = int(done[-1]["content"].split(": ")[1]) if done else 0
        return Function(name="add", kwargs={"a": last, "b": query})
    return Function(name="finish", kwargs={"answer": done[-1]["content"].split(": ")[1]})


async def test_1000_concurrent_acall_runs_do_not_bleed() -> None:
    model = ScriptedModel([stateless_script], repeat_last=True, delay=0.001)
    model.record_requests = False
    runner = Runner(Agent(tools=[add], model=model, answer_data_type=int))
    results = await asyncio.gather(*(runner.acall({"input_str": str(i)}) for i in range(1000)))
    for i, res in enumerate(results):
        assert res.status == "success", res.error
        assert res.answer == 3 * i
        assert [s.observation for s in res.step_history] == [i, 2 * i, 3 * i]
        assert res.usage.requests == 4
    assert len({r.run_id for r in results}) == 1000
    assert runner.active_runs == []


async def test_per_run_script_with_streams_and_calls_mixed() -> None:
    model = ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 1}),
                           Function(name="finish", kwargs={"answer": "2"})], per_run=True, delay=0.001)
    runner = Runner(Agent(tools=[add], model=model))

    async def streamed() -> Any:
        sr = runner.astream("s")
        async for _ in sr.stream_events():
            pass
        return sr.result

    results = await asyncio.gather(*([runner.acall("a") for _ in range(50)] + [streamed() for _ in range(50)]))
    assert all(r.answer == "2" and len(r.step_history) == 1 for r in results)
    assert json.dumps([r.status for r in results]).count("success") == 100
