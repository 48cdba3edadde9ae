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


def test_native_mode_str_answer_adds_no_tool_and_no_prompt_lines() -> None:
    agent = Agent(tools=[add], model=ScriptedModel([], native_tools=True), instructions="Be terse.")
    assert agent.planner.mode(agent.model) == "native"
    assert [d.func_name for d in agent.planner.native_tools()] == ["add"]
    msgs = agent.planner.initial_messages("native", {"input_str": "q", "max_steps": 7})
    assert msgs == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "q"}]
    bare = Agent(tools=[add], model=ScriptedModel([], native_tools=True))  # no instructions: no system message
    assert bare.planner.initial_messages("native", {"input_str": "q"}) == [{"role": "user", "content": "q"}]
    out = agent.planner.parse_response("native", ModelResponse(text="plain answer"))
    assert out.data[0].is_final and out.data[0].final_answer == "plain answer"
    # a ``finish`` call (scripts, the seed prompt) is still the final answer, though not advertised
    out = agent.planner.parse_response("native", ModelResponse(tool_calls=[Function(name="finish",
                                                                                    kwargs={"answer": "ok"})]))
    assert out.data[0].is_final and out.data[0].final_answer == "ok"


def test_native_mode_structured_answer_output_tool() -> None:
    agent = Agent(tools=[add], model=ScriptedModel([], native_tools=True), answer_data_type=City)
    defs = agent.planner.native_tools()
    assert [d.func_name for d in defs] == ["add", "final_answer"]
    assert defs[1].func_parameters == {"properties": {"name": {"type": "string"},
                                                      "population": {"type": "integer"}},
                                       "required": ["name", "population"], "type": "object"}, "no titles, no wrapper"
    req = agent.planner.build_request("native", [], {}, "r", 0)
    assert req.answer_format is None and req.tools is defs
    call = Function(name="final_answer", kwargs={"name": "Oslo", "population": 700000})
    out = agent.planner.parse_response("native", ModelResponse(tool_calls=[call]))
    assert out.data[0].is_final and out.data[0].final_answer == {"name": "Oslo", "population": 700000}
    ints = Agent(model=ScriptedModel([], native_tools=True), answer_data_type=list[int])
    (tool,) = ints.planner.native_tools()
    assert tool.func_parameters["properties"]["answer"] == {"items": {"type": "integer"}, "type": "array"}
    out = ints.planner.parse_response("native", ModelResponse(tool_calls=[Function(name="final_answer",
                                                                                   kwargs={"answer": [1, 2]})]))
    assert out.data[0].final_answer == [1, 2]


def test_native_mode_structured_answer_native_format() -> None:
    model = ScriptedModel([], native_tools=True, structured_output=True)
    agent = Agent(tools=[add], model=model, answer_data_type=City)
    assert [d.func_name for d in agent.planner.native_tools()] == ["add"], "never both"
    req = agent.planner.build_request("native", [], {}, "r", 0)
    assert req.answer_format is not None and req.answer_format.name == "City" and not req.answer_format.wrapped
    assert "title" not in str(req.answer_format.schema)
    out = agent.planner.parse_response("native", ModelResponse(text='{"name": "Oslo", "population": 7}'))
    assert out.data[0].is_final and convert_answer(out.data[0].final_answer, City) == City(name="Oslo", population=7)
    ints = Agent(model=model, answer_data_type=list[int])
    fmt = ints.planner.build_request("native", [], {}, "r", 0).answer_format
    assert fmt is not None and fmt.wrapped and fmt.name == "answer" and fmt.schema["required"] == ["answer"]
    out = ints.planner.parse_response("native", ModelResponse(text='{"answer": [3, 4]}'))
    assert out.data[0].final_answer == [3, 4]


def test_output_tool_name_avoids_the_agents_tools() -> None:
    def final_answer(x: int) -> int:
        """Mine."""
        return x

    agent = Agent(tools=[final_answer], model=ScriptedModel([], native_tools=True), answer_data_type=City)
    assert [d.func_name for d in agent.planner.native_tools()] == ["final_answer", "final_answer_"]
    out = agent.planner.parse_response("native", ModelResponse(tool_calls=[Function(name="final_answer",
                                                                                    kwargs={"x": 1})]))
    assert not out.data[0].is_final


def test_seed_prompt_brings_back_finish_and_the_protocol_lines() -> None:
    from treadle.compat import set_seed_compat
    from treadle.compat.prompt import use_seed_prompt

    agent = use_seed_prompt(Agent(tools=[add], model=ScriptedModel([], native_tools=True), answer_data_type=City))
    defs = agent.planner.native_tools()
    assert [d.func_name for d in defs] == ["add", "finish"] and "population" in str(defs[1].func_parameters)
    system = agent.planner.initial_messages("native", {"input_str": "q", "max_steps": 7})[0]["content"]
    assert "call the `finish` tool" in system and "at most 7 steps" in system
    lean = Agent(tools=[add], model=ScriptedModel([], native_tools=True))
    set_seed_compat(True)  # the process switch
    try:
        assert [d.func_name for d in lean.planner.native_tools()] == ["add", "finish"]
        assert [d.func_name for d in use_seed_prompt(lean, False).planner.native_tools()] == ["add"]
    finally:
        set_seed_compat(None)


def test_prompt_renders_context_history_and_custom_template() -> None:
    agent = Agent(tools=[add], model=ScriptedModel([]), instructions="Be terse.")
    p = agent.get_prompt(input_str="q", context_str="CTX-123", chat_history_str="User: hi")
    assert "Be terse." in p and "CTX-123" in p and "User: hi" in p and "add" in p
    custom = Agent(model=ScriptedModel([]), template="Hello {{ who }}, max {{ max_steps }}")
    assert custom.get_prompt(who="you") == "Hello you, max 10"


async def test_seed_prompt_is_decided_per_run() -> None:
    from treadle import Runner
    from treadle.compat.prompt import use_seed_prompt

    model = ScriptedModel(["done"], native_tools=True, per_run=True)
    agent = Agent(tools=[add], model=model, instructions="Be terse.")
    runner = Runner(agent)
    assert (await runner.acall("q")).answer == "done"
    use_seed_prompt(agent)
    assert (await runner.acall("q")).answer == "done"
    use_seed_prompt(agent, None)
    assert (await runner.acall("q")).answer == "done"
    lean, seed, back = model.requests
    assert [d.func_name for d in lean.tools] == ["add"] and lean.messages[0]["content"] == "Be terse."
    assert [d.func_name for d in seed.tools] == ["add", "finish"] and "`finish`" in seed.messages[0]["content"]
    assert [d.func_name for d in back.tools] == ["add"] and back.messages[0]["content"] == "Be terse."
