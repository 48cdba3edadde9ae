"""What a newcomer's typos meet: errors that name the fix, at construction, never silence (#27)."""

from __future__ import annotations

import warnings

import pytest

import treadle
from treadle import Agent, Function, Runner, ScriptedModel, UnknownArgumentError, UserError, compat


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _agent(**kwargs: object) -> Agent[str]:
    return Agent(model=ScriptedModel([Function(name="finish", kwargs={"answer": "ok"})]), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs,meant", [({"tool": [add]}, "tools"), ({"instruction": "be brief"}, "instructions"),
                                         ({"answer_type": int}, "answer_data_type"), ({"max_step": 3}, "max_steps"),
                                         ({"model_client": None}, "model")])
def test_an_unknown_agent_argument_names_the_closest_one(kwargs: dict[str, object], meant: str) -> None:
    with pytest.raises(UnknownArgumentError, match=f"unknown argument '{next(iter(kwargs))}' for Agent; "
                                                   f"did you mean '{meant}'"):
        Agent(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs,meant", [({"max_step": 3}, "max_steps"), ({"stroe": "sqlite:///x.db"}, "store"),
                                         ({"memory": None}, "conversation_memory")])
def test_an_unknown_runner_argument_names_the_closest_one(kwargs: dict[str, object], meant: str) -> None:
    with pytest.raises(UnknownArgumentError, match=f"did you mean '{meant}'"):
        Runner(_agent(), **kwargs)  # type: ignore[arg-type]


def test_an_unknown_argument_is_a_type_error_and_a_user_error() -> None:
    with pytest.raises(TypeError):
        Agent(tool=[add])  # type: ignore[call-arg]
    with pytest.raises(UserError):
        Agent(tool=[add])  # type: ignore[call-arg]


def test_adalflow_arguments_point_to_treadle_compat() -> None:
    with pytest.raises(UnknownArgumentError, match=r"treadle\.compat\.Agent"):
        Agent(role_desc="x")  # type: ignore[call-arg]
    with pytest.raises(UnknownArgumentError, match=r"treadle\.compat\.Runner"):
        Runner(_agent(), seed_compat=True)  # type: ignore[call-arg]
    model = ScriptedModel([Function(name="finish", kwargs={"answer": "hi"})])
    agent = compat.Agent(role_desc="be brief", model_client=model, cache_path="x", whatever=1)
    assert agent.instructions == "be brief"
    assert compat.Runner(agent, seed_compat=True, name="seed").call({"input_str": "q"}).answer == "hi"


def test_a_prompt_variable_no_template_reads_is_an_error_listing_the_variables() -> None:
    runner = Runner(_agent())
    with pytest.raises(UnknownArgumentError, match=r"'input'.*did you mean 'input_str'.*input_str"):
        runner.call({"input": "hi"})
    assert runner.call({"input_str": "hi", "context_str": "notes"}).answer == "ok"
    templated = Runner(_agent(template="Topic: {{ topic }}"))
    assert templated.call({"input_str": "hi", "topic": "tides"}).answer == "ok"
    with pytest.raises(UnknownArgumentError, match="topic"):
        templated.call({"input_str": "hi", "topic_": "tides"})


def test_a_bad_model_string_fails_when_the_agent_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match=r"unknown model string 'opnai:gpt-4o'; did you mean 'openai:gpt-4o'"):
        Agent(model="opnai:gpt-4o")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        Agent(model="openai:gpt-4o")
    with pytest.raises(UserError, match="names no model"):
        Agent(model="anthropic:")
    with pytest.raises(UserError, match="needs a URL"):
        Agent(model="openai-compatible:localhost:8000#m")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    Agent(model="openai:gpt-4o")  # checked, not connected


def test_astream_outside_an_event_loop_says_what_to_do() -> None:
    with pytest.raises(UserError, match=r"astream\(\).*async def.*runner.call"):
        Runner(_agent()).astream("hi")


def test_adalflow_names_left_treadle_all_for_treadle_compat() -> None:
    for name in ("AdalFlowClient", "SeedPlanner", "SeedToolManager", "GeneratorOutput", "UserQuery",
                 "AssistantResponse", "ModelType"):
        assert name not in treadle.__all__ and name in compat.__all__
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert getattr(treadle, name) is getattr(compat, name)
        assert "treadle.compat" in str(caught[0].message)
    with pytest.raises(AttributeError):
        treadle.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
