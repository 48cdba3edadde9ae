from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from treadle import Agent, Function, ModelResponse, ScriptedModel
from treadle.errors import AnswerConversionError, OutputParseError
from treadle.planner import convert_answer, parse_function, render_observation


class City(BaseModel):
    name: str
    population: int


@dataclasses.dataclass
class Pair:
    a: int
    b: str


@pytest.mark.parametrize("text", [
    '{"thought": "t", "name": "add", "kwargs": {"a": 1, "b": 2}}',
    '```json\n{"thought": "t", "name": "add", "kwargs": {"a": 1, "b": 2}}\n```',
    'Sure, here it is: {"name": "add", "kwargs": {"a": 1, "b": 2}} hope it helps',
    '{"name": "add", "kwargs": {"a": 1, "b": 2}',  # missing brace
    "{'name': 'add', 'kwargs': {'a': 1, 'b': 2}}",  # single quotes
    '{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}',  # OpenAI-style string arguments
])
def test_parse_tool_call_variants(text: str) -> None:
    fn = parse_function(text)
    assert fn.name == "add" and fn.kwargs == {"a": 1, "b": 2} and not fn.is_final


@pytest.mark.parametrize("text,answer", [
    ('{"thought": "done", "_is_answer_final": true, "_answer": "42"}', "42"),
    ('{"_is_answer_final": "true", "_answer": 7}', 7),
    ('{"name": "finish", "kwargs": {"answer": "ok"}}', "ok"),
    ('{"answer": [1, 2]}', [1, 2]),
])
def test_parse_final_answer_both_spellings(text: str, answer: Any) -> None:
    fn = parse_function(text)
    assert fn.is_final and fn.final_answer == answer


def test_false_string_is_not_final() -> None:
    fn = parse_function('{"name": "add", "kwargs": {}, "_is_answer_final": "false"}')
    assert not fn.is_final, "the seed treated the string 'false' as final"


@pytest.mark.parametrize("text", ["", "   ", "no json at all", '{"thought": "hmm"}', "42",
                                  '{"name": "a", "kwargs": 5}'])
def test_parse_errors_are_typed(text: str) -> None:
    with pytest.raises(OutputParseError):
        parse_function(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_parse_never_crashes_on_arbitrary_text(text: str) -> None:
    try:
        fn = parse_function(text)
    except OutputParseError:
        return
    assert isinstance(fn, Function)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=12))
def test_convert_answer_never_crashes(value: Any) -> None:
    for tp in (str, int, City, Pair, list[int], bool):
        try:
            convert_answer(value, tp)
        except AnswerConversionError:
            pass


def test_convert_answer_types() -> None:
    assert convert_answer('{"name": "Oslo", "population": 700000}', City) == City(name="Oslo", population=700000)
    assert convert_answer({"name": "Oslo", "population": "7"}, City).population == 7
    assert convert_answer({"a": 1, "b": "x"}, Pair) == Pair(1, "x")
    assert convert_answer('{"a": 1, "b": "x"}', Pair) == Pair(1, "x")
    assert convert_answer("7", int) == 7
    assert convert_answer(0, int) == 0, "falsy answers are valid (seed bug B12)"
    assert convert_answer("", str) == ""
    assert convert_answer("False", bool) is False
    assert convert_answer("[1, 2]", list[int]) == [1, 2]
    assert convert_answer(5, str) == "5"
    assert convert_answer({"k": 1}, str) == '{"k": 1}'
    with pytest.raises(AnswerConversionError, match="City"):
        convert_answer("not a city", City)
    with pytest.raises(AnswerConversionError):
        convert_answer("seven", int)
    with pytest.raises(AnswerConversionError, match="missing"):
        convert_answer(None, str)


def test_render_observation_truncates_and_handles_odd_values() -> None:
    assert render_observation("x" * 50, 10).startswith("x" * 10 + "… [truncated 40")
    assert render_observation({"a": 1}, 100) == '{"a": 1}'
    assert render_observation(b"\x00\xff", 100) == "<2 bytes of binary data>"
    assert render_observation(object(), 100).startswith('"<object object')


def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def test_output_schema_has_a_branch_per_tool_and_the_answer() -> None:
    agent = Agent(tools=[add], model=ScriptedModel([]), answer_data_type=int)
    schema = agent.planner.output_schema()
    names = [b["properties"].get("name", {}).get("const") for b in schema["anyOf"]]
    assert names == ["add", None]
    final = schema["anyOf"][1]["properties"]
    assert final["_is_answer_final"] == {"const": True} and final["_answer"] == {"type": "integer"}
    assert schema["anyOf"][0]["properties"]["kwargs"]["required"] == ["a", "b"]


def test_native_mode_tools_include_finish_with_answer_schema() -> None:
    agent = Agent(tools=[add], model=ScriptedModel([], native_tools=True), answer_data_type=City)
    assert agent.planner.mode(agent.model) == "native"
    defs = agent.planner.native_tools()
    assert [d.func_name for d in defs] == ["add", "finish"]
    assert "population" in str(defs[1].func_parameters)
    out = agent.planner.parse_response("native", ModelResponse(text="plain answer"))
    assert out.data[0].is_final and out.data[0].final_answer == "plain answer"


def test_prompt_renders_context_history_and_custom_template() -> None:
    agent = Agent(tools=[add], model=ScriptedModel([]), instructions="Be terse.")
    p = agent.get_prompt(input_str="q", context_str="CTX-123", chat_history_str="User: hi")
    assert "Be terse." in p and "CTX-123" in p and "User: hi" in p and "add" in p
    custom = Agent(model=ScriptedModel([]), template="Hello {{ who }}, max {{ max_steps }}")
    assert custom.get_prompt(who="you") == "Hello you, max 10"
