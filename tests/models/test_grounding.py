"""Grounding a user's tools in the question (pure functions, no model): spans, parameter
kinds, routing by topic, arguments as ``enum``s, answers picked from the observation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from treadle import Agent
from treadle.models._answers import answer_from, last_call_args
from treadle.models._grounding import fit, ground_params, param_kind, question_spans
from treadle.models._local_helps import _branch_name, forced_value, ground_branch, idiom_expression, route_tools
from treadle.models.local import LocalModel, _limit_strings
from treadle.planner import Planner
from treadle.tools.builtin import DEMO_TOOLS


def city_climate(town: str) -> str:
    """Climate right now in a town: temperature and sky.

    Args:
        town: the town's name
    """
    return town


def money_convert(amount: float, base: str, quote: str) -> str:
    """Converts money between currencies.

    Args:
        amount: how much
        base: ISO 4217 currency code to convert from
        quote: ISO 4217 currency code to convert to
    """
    return base


def parcel_state(ref: str) -> str:
    """Delivery state of a parcel.

    Args:
        ref: the tracking reference, e.g. "ZX-1234"
    """
    return ref


def letters(text: str) -> int:
    """How many words a text has.

    Args:
        text: the text
    """
    return len(text.split())


def staff(first_name: str) -> str:
    """Phone and e-mail of a colleague.

    Args:
        first_name: the colleague's first name
    """
    return first_name


TOOLS = [city_climate, money_convert, parcel_state, letters, staff, *DEMO_TOOLS]


@pytest.fixture(scope="module")
def branches() -> list[dict[str, Any]]:
    model = LocalModel()
    agent = Agent(tools=TOOLS, model=model, max_steps=3)
    schema = _limit_strings(Planner(agent).output_schema("finish"))
    return [model._short_thought(b) for b in schema["anyOf"] if _branch_name(b) != "finish"]  # no thought field


def _call(branches: list[dict[str, Any]], question: str) -> tuple[list[str], Any]:
    chosen = [ground_branch(b, question) for b in route_tools(question, branches)]
    names = [_branch_name(b) or "" for b in chosen]
    value = forced_value({"anyOf": chosen}) if chosen else None
    return names, value


@pytest.mark.parametrize("question,tool,kwargs", [
    ("How chilly is it in Oslo?", "city_climate", {"town": "Oslo"}),
    ("Is it raining in new york?", "city_climate", {"town": "new york"}),
    ("How many yen for 20 US dollars?", "money_convert", {"amount": 20, "base": "USD", "quote": "JPY"}),
    ("Convert 15.5 EUR into pounds", "money_convert", {"amount": 15.5, "base": "EUR", "quote": "GBP"}),
    ("Has parcel ZX-9981 arrived yet?", "parcel_state", {"ref": "ZX-9981"}),
    ("How many words are in 'the cat sat'?", "letters", {"text": "the cat sat"}),
    ("What is Alice's email address?", "staff", {"first_name": "Alice"}),
    ("What time is it in Tokyo?", "current_time", {"timezone": "Asia/Tokyo"}),
    ("What does notes.txt say?", "read_file", {"path": "notes.txt"}),
])
def test_a_users_tool_is_routed_and_its_arguments_taken_from_the_question(
        branches: list[dict[str, Any]], question: str, tool: str, kwargs: dict[str, Any]) -> None:
    names, value = _call(branches, question)
    assert names == [tool]
    assert value == {"name": tool, "kwargs": kwargs}  # forced: no model run needed


@pytest.mark.parametrize("question", ["What is the capital of Italy?", "Say hello in Spanish.", "Hi there!",
                                      "How long is a marathon?", "Who wrote Hamlet?"])
def test_questions_needing_no_tool_are_answered_directly(branches: list[dict[str, Any]], question: str) -> None:
    assert route_tools(question, branches) == []


def test_spans_and_kinds() -> None:
    spans = question_spans("Change 200 Canadian dollars into US dollars for order A-17.")
    assert [(s.text, s.kind, s.role) for s in spans] == [
        ("200", "number", ""), ("CAD", "currency", "from"), ("USD", "currency", "to"), ("A-17", "id", "")]
    assert param_kind("city", {"type": "string"}) == "place"
    assert param_kind("tz", {"type": "string", "description": "an IANA zone"}) == "zone"
    assert param_kind("order_id", {"type": "string"}) == "id"
    assert param_kind("amount", {"type": "number"}) == "number"
    assert param_kind("flag", {"type": "boolean"}) is None


def test_a_required_argument_the_question_lacks_makes_the_tool_unlikely(branches: list[dict[str, Any]]) -> None:
    parcel = next(b for b in branches if _branch_name(b) == "parcel_state")
    assert fit(parcel, "Where is my parcel?") == -100
    assert fit(parcel, "Where is parcel ZX-1?") == 1


def test_schema_enums_and_patterns_are_respected() -> None:
    branch = {"properties": {"name": {"const": "t"}, "kwargs": {"type": "object", "required": ["unit", "code"],
              "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                             "code": {"type": "string", "description": "product code", "pattern": "^P\\d+$"}}}}}
    out = ground_params(branch, "Show P12 and Q7 in Fahrenheit")
    props = out["properties"]["kwargs"]["properties"]
    assert props["unit"]["enum"] == ["fahrenheit"]
    assert props["code"]["enum"] == ["P12"]


@pytest.mark.parametrize("question,observation,args,expected", [
    ("Which room is the meeting in?", "Meeting on Monday.\nThe meeting is in room B2.\nBring cake.", ["notes.txt"],
     "The meeting is in room B2."),
    ("What is Alice's email?", "Alice Martin\nEmail: a@x.org\nPhone: 555", ["Alice"], "Email: a@x.org"),
    ("How warm is it in Rome?", json.dumps({"town": "Rome", "temperature_c": 20, "sky": "clear"}), ["Rome"],
     "town: Rome; temperature c: 20; sky: clear"),
    ("Is it sunny in Rome?", json.dumps({"town": "Rome", "temperature_c": 20, "sky": "sunny"}), ["Rome"],
     "sky: sunny"),
    ("What day of the week is it in London?", "2026-12-07T10:05:00+00:00", ["Europe/London"], "It is Monday."),
    ("What time is it in Tokyo?", "2026-12-07T19:05:00+09:00", ["Asia/Tokyo"], "It is 19:05 (UTC+09:00)."),
    ("What is today's date?", "2026-12-07T10:05:00+00:00", [], "It is Monday, 2026-12-07."),
    ("What is 2 + 2?", "4", ["2 + 2"], "4"),
])
def test_the_answer_is_the_part_of_the_observation_asked_for(question: str, observation: str, args: list[str],
                                                              expected: str) -> None:
    assert answer_from(question, observation, args) == expected


def test_last_call_args() -> None:
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": json.dumps({"name": "t", "kwargs": {"a": "x", "b": 2}})},
                {"role": "user", "content": "Observation: y"}]
    assert last_call_args(messages) == ["x", 2]


@pytest.mark.parametrize("question,expression", [
    ("How much is 15% of 200?", "15 * 200 / 100"), ("What is the square root of 81?", "81 ** 0.5"),
    ("What is 5 squared?", "5 ** 2"), ("What is 7 times 8?", None), ("What is 15% of 2 and 3?", None)])
def test_arithmetic_idioms(question: str, expression: str | None) -> None:
    assert idiom_expression(question) == expression


def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


@pytest.mark.parametrize("question,kwargs", [("Shout hello", {"text": "hello"}),
                                             ("Shout good morning everyone!", {"text": "good morning everyone"}),
                                             ('Shout "hi there"', {"text": "hi there"})])
def test_an_order_gives_a_text_parameter_what_follows_its_verb(question: str, kwargs: dict[str, Any]) -> None:
    """No quotes: the text of an order ("Shout hello") is what follows its verb (the CLI's user-tool example)."""
    model = LocalModel()
    agent = Agent(tools=[shout, *DEMO_TOOLS], model=model, max_steps=3)
    schema = _limit_strings(Planner(agent).output_schema("finish"))
    own = [model._short_thought(b) for b in schema["anyOf"] if _branch_name(b) != "finish"]
    assert _call(own, question) == (["shout"], {"name": "shout", "kwargs": kwargs})
    assert all(s.kind != "rest" for s in question_spans("What is the capital of Italy?"))
    assert route_tools("Say hello in Spanish.", own) == []  # a text span alone does not route
