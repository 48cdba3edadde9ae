"""Seed contract: the Agent constructor, its attributes and methods (spec §5), and AdalFlow-style
model clients plugged in through ``model_client`` (spec §3.1), in every face."""

from __future__ import annotations

from typing import Any

import pytest
from seed_fakes import FakeClient, FakePlanner, StreamingClient, SyncOnlyClient, answer_json, call_json

from helpers import names, run_face
from treadle import ModelDelta
from treadle.compat import Agent, Function, FunctionTool, GeneratorOutput, ModelClient, RawResponsesStreamEvent, Runner
from treadle.errors import UserError
from treadle.models.adalflow_client import AdalFlowModel, is_adalflow_client
from treadle.types import ModelType


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# ---------------------------------------------------------------------- the constructor
def test_seed_constructor_arguments_are_kept() -> None:
    client = FakeClient([])
    agent = Agent(name="seed", tools=[add], context_variables={"user": "alice"}, add_llm_as_fallback=False,
                  model_client=client, model_kwargs={"model": "m1", "temperature": 0.0}, model_type=ModelType.LLM,
                  template=None, role_desc="You are terse.", cache_path="/tmp/x", use_cache=False,
                  answer_data_type=int, max_steps=4, is_thinking_model=True, extra_option=1)
    assert (agent.name, agent.max_steps, agent.answer_data_type) == ("seed", 4, int)
    assert agent.model_client is client and isinstance(agent.model, AdalFlowModel) and agent.model.client is client
    assert agent.model_kwargs == {"model": "m1", "temperature": 0.0}
    assert agent.model_type is ModelType.LLM and agent.role_desc == "You are terse."
    assert (agent.cache_path, agent.use_cache, agent.is_thinking_model) == ("/tmp/x", False, True)
    assert agent.context_variables == {"user": "alice"}
    assert agent.tool_manager._additional_context["context_variables"] == {"user": "alice"}
    assert list(agent.tool_manager._context_map) == ["add"]
    assert agent.tool_manager._context_map["add"].call(2, 3).output == 5
    assert agent.kwargs == {"extra_option": 1}
    assert "You are terse." in agent.get_prompt(input_str="q")


def test_defaults_match_the_seed() -> None:
    agent = Agent(name="d", model_client=FakeClient([]))
    assert agent.max_steps == 10 and agent.answer_data_type is str and agent.is_thinking_model is False
    assert agent.use_cache is True and agent.tool_manager._context_map == {}
    assert "llm_tool" not in agent.tool_manager._context_map
    assert agent.is_training() is False
    agent.planner.training = True
    assert agent.is_training() is True
    with pytest.raises(UserError):
        Agent(name="bad", model_client=FakeClient([]), max_steps=0)


def test_llm_fallback_tool_asks_the_model() -> None:
    client = FakeClient(["the model's own answer"])
    agent = Agent(name="fb", tools=[add], add_llm_as_fallback=True, model_client=client,
                  model_kwargs={"model": "m2"})
    assert list(agent.tool_manager._context_map) == ["add", "llm_tool"]
    out = agent.tool_manager.execute_func(Function(name="llm_tool", kwargs={"input_str": "Who wrote Hamlet?"}))
    assert out.error is None and out.output == "the model's own answer"
    how, api_kwargs = client.sent[0]
    assert api_kwargs["model"] == "m2" and "Who wrote Hamlet?" in api_kwargs["messages"][0]["content"]
    with pytest.raises(UserError, match="needs a model"):
        Agent(name="nofb", add_llm_as_fallback=True)


def test_flip_thinking_model_toggles_and_rebuilds_the_planner() -> None:
    agent = Agent(name="t", model_client=FakeClient([]), model_kwargs={"model": "x"}, max_steps=15)
    first = agent.planner
    agent.flip_thinking_model()
    assert agent.is_thinking_model is True and agent.planner is not first
    assert (agent.max_steps, agent.model_kwargs, agent.name) == (15, {"model": "x"}, "t")
    agent.flip_thinking_model()
    assert agent.is_thinking_model is False


def test_tool_manager_and_planner_overrides_need_no_model() -> None:
    class TM:
        _context_map = {"x": "y"}

    planner = FakePlanner([])
    tm = TM()
    agent = Agent(name="o", tool_manager=tm, planner=planner)
    assert agent.tool_manager is tm and agent.planner is planner
    assert agent.get_prompt(example=1) == "prompt(['example'])"
    custom = Agent(name="c", planner=planner)
    custom.flip_thinking_model()
    assert custom.planner is planner, "a custom planner is kept"


# ---------------------------------------------------------------------- model clients
def test_client_shapes_are_recognised() -> None:
    assert is_adalflow_client(FakeClient([])) and is_adalflow_client(SyncOnlyClient([]))
    assert not is_adalflow_client(AdalFlowModel(FakeClient([]))) and not is_adalflow_client("openai:gpt-4o")

    class Bare(ModelClient):
        pass

    assert Bare().parse_chat_completion("t").raw_response == "t"
    assert Bare().convert_inputs_to_api_kwargs("hi", {"model": "m"}) == {"model": "m", "input": "hi"}
    with pytest.raises(NotImplementedError):
        Bare().call({})


async def test_a_seed_client_runs_an_agent_in_every_face(face: str) -> None:
    client = FakeClient([call_json("add", a=2, b=3), answer_json(5)],
                        usage={"prompt_tokens": 11, "completion_tokens": 4})
    agent = Agent(name="calc", tools=[add], model_client=client, model_kwargs={"model": "m", "temperature": 0.1},
                  answer_data_type=int)
    runner = Runner(agent)
    res, events = await run_face(runner, face, {"input_str": "What is 2+3?"}, model_kwargs={"temperature": 0.7})
    assert res.status == "success" and res.answer == 5
    assert [(s.function.name, s.function.kwargs, s.observation) for s in res.step_history] == \
        [("add", {"a": 2, "b": 3}, 5)]
    assert res.usage.input_tokens == 22 and res.usage.output_tokens == 8
    assert [how for how, _ in client.sent] == ["acall", "acall"]
    first, second = (kw for _, kw in client.sent)
    assert first["model"] == "m" and first["temperature"] == 0.7, "agent model_kwargs merged with the call's"
    prompt = first["messages"][0]["content"]
    assert "add" in prompt and "What is 2+3?" in prompt
    assert "Observation: 5" in second["messages"][0]["content"], "the next prompt shows the observation"
    assert names(events)[-1] == "agent.execution_complete"


def test_a_client_without_acall_is_called_with_call() -> None:
    client = SyncOnlyClient([answer_json("hello")])
    res = Runner(Agent(name="s", model_client=client)).call({"input_str": "greet"})
    assert res.answer == "hello" and "greet" in client.prompts[0]


async def test_a_client_error_ends_the_run_with_its_text() -> None:
    client = FakeClient([RuntimeError("Error code: 503 - upstream down")])
    res = await Runner(Agent(name="e", model_client=client)).acall({"input_str": "q"})
    assert res.status == "error" and "upstream down" in res.error


async def test_a_streaming_client_streams_its_chunks() -> None:
    client = StreamingClient([answer_json("streamed answer")])
    runner = Runner(Agent(name="st", model_client=client, model_kwargs={"stream": True}))
    stream = runner.astream({"input_str": "q"})
    deltas = [e.data for e in [e async for e in stream.stream_events()]
              if isinstance(e, RawResponsesStreamEvent) and isinstance(e.data, ModelDelta)]
    assert len(deltas) > 2 and "".join(d.text for d in deltas) == answer_json("streamed answer")
    assert (await stream.wait_for_completion()).answer == "streamed answer"


async def test_a_streamed_completion_is_joined_outside_astream() -> None:
    client = StreamingClient([answer_json(42)])
    res = await Runner(Agent(name="st", model_client=client, model_kwargs={"stream": True},
                             answer_data_type=int)).acall({"input_str": "q"})
    assert res.answer == 42


async def test_thinking_from_the_client_becomes_the_thought() -> None:
    class Thinking(FakeClient):
        def parse_chat_completion(self, completion: Any) -> GeneratorOutput[Any]:
            return GeneratorOutput(raw_response=completion, thinking="I should add.")

    client = Thinking(['{"name": "add", "kwargs": {"a": 1, "b": 1}}', answer_json(2)])
    res = await Runner(Agent(name="th", tools=[FunctionTool(add)], model_client=client, is_thinking_model=True,
                             answer_data_type=int)).acall("q")
    assert res.answer == 2 and res.step_history[0].function.thought == "I should add."


# ---------------------------------------------------------------------- the planner, seed-style
async def test_the_default_planner_answers_the_seed_protocol() -> None:
    from treadle import ScriptedModel, StepOutput

    model = ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 2}),
                           Function(_is_answer_final=True, _answer=3), RuntimeError("down")])
    agent = Agent(name="p", tools=[add], model=model, answer_data_type=int)
    assert callable(agent.planner) and callable(agent.tool_manager)
    out = await agent.planner.acall(prompt_kwargs={"input_str": "1+2?", "step_history": []}, id="r1")
    assert isinstance(out, GeneratorOutput) and out.id == "r1"
    assert isinstance(out.data, Function) and (out.data.name, out.data.kwargs) == ("add", {"a": 1, "b": 2})
    history = [StepOutput(step=0, action=out.data, function=out.data, observation=3)]
    out = agent.planner.call(prompt_kwargs={"input_str": "1+2?", "step_history": history})
    assert out.data._is_answer_final is True and out.data._answer == 3
    sent = model.requests[1].messages
    assert sent[-1]["content"] == "Observation: 3" and "1+2?" in sent[1]["content"]
    out = await agent.planner.acall(prompt_kwargs={"input_str": "again"})
    assert out.data is None and "down" in out.error
    assert agent.planner.get_prompt(input_str="x") == agent.get_prompt(input_str="x")


async def test_chat_history_str_is_present_and_empty_without_history(face: str) -> None:
    from treadle import ConversationMemory, ScriptedModel

    model = ScriptedModel([Function(_is_answer_final=True, _answer="hi")], repeat_last=True)
    agent = Agent(name="h", model=model, template="[{{ chat_history_str | default('ABSENT') }}]")
    runner = Runner(agent, conversation_memory=ConversationMemory())
    await run_face(runner, face, "hello")
    await run_face(runner, face, "again")
    assert model.requests[0].messages[0]["content"] == "[]"
    assert model.requests[1].messages[0]["content"] == "[User:\nquery: hello\nAssistant: hi]"
    await run_face(Runner(agent), face, "no memory")
    assert model.requests[2].messages[0]["content"] == "[ABSENT]"
