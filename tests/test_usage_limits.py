"""UsageLimits end a run with a clear error and the history intact, in every face."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import run_face
from treadle import Agent, Function, Runner, ScriptedModel, Usage, UsageLimits
from treadle.usage import price_usd


def add(a: int, b: int) -> int:
    return a + b


def looping_model(**kw: Any) -> ScriptedModel:
    return ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 1})], repeat_last=True,
                         usage=Usage(input_tokens=100, output_tokens=10), **kw)


@pytest.mark.parametrize("limits,fragment,steps", [
    (UsageLimits(request_limit=3), "request limit of 3", 3),
    (UsageLimits(input_tokens_limit=250), "300 input tokens exceed the limit of 250", 2),
    (UsageLimits(output_tokens_limit=15), "20 output tokens", 1),
    (UsageLimits(total_tokens_limit=400), "440 total tokens", 3),
    (UsageLimits(tool_calls_limit=2), "3 tool calls would exceed the limit of 2", 2),
])
async def test_limits_end_the_run(face: str, limits: UsageLimits, fragment: str, steps: int) -> None:
    runner = Runner(Agent(tools=[add], model=looping_model(), max_steps=50), usage_limits=limits)
    res, events = await run_face(runner, face)
    assert res.status == "error" and res.error_type == "UsageLimitExceeded"
    assert fragment in res.error
    assert len(res.step_history) == steps and all(s.observation == 2 for s in res.step_history)


async def test_cost_limit_uses_the_price_table(face: str) -> None:
    model = looping_model(name="gpt-4o-mini", provider="openai")
    per_call = price_usd(Usage(100, 10), "gpt-4o-mini", "openai")
    assert per_call is not None and per_call > 0
    runner = Runner(Agent(tools=[add], model=model, max_steps=50),
                    usage_limits=UsageLimits(cost_limit_usd=per_call * 2.5))
    res, _ = await run_face(runner, face)
    assert res.error_type == "UsageLimitExceeded" and "cost" in res.error
    assert res.usage.requests == 3 and abs(res.usage.cost_usd - 3 * per_call) < 1e-12


async def test_unknown_price_with_a_cost_limit_is_a_clear_error(face: str) -> None:
    model = looping_model(name="no-such-model-xyz", provider="nowhere")
    runner = Runner(Agent(tools=[add], model=model), usage_limits=UsageLimits(cost_limit_usd=1.0))
    res, _ = await run_face(runner, face)
    assert res.error_type == "UsageLimitExceeded" and "no price is known" in res.error


async def test_local_and_scripted_models_are_free(face: str) -> None:
    runner = Runner(Agent(tools=[add], model=ScriptedModel([Function(name="finish", kwargs={"answer": "x"})])),
                    usage_limits=UsageLimits(cost_limit_usd=0.0))
    res, _ = await run_face(runner, face)
    assert res.ok and res.usage.cost_usd == 0.0
