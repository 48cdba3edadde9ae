"""Seed contract: the Runner driving agent-shaped objects with the seed's planner and tool-manager
protocols (spec §6-§8), its public and test-facing methods, and the seed-compatibility switch."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from seed_fakes import DuckAgent, FakePlanner, FakeToolManager, SeedFunction

from helpers import names, run_face
from treadle.compat import (
    SEED_COMPAT_ENV,
    Agent,
    ConversationMemory,
    FunctionOutput,
    GeneratorOutput,
    PermissionManager,
    Runner,
    RunnerResult,
    RunnerStreamingResult,
    ToolCallActivityRunItem,
    ToolOutput,
)
from treadle.errors import UserError


def final(answer: Any) -> SeedFunction:
    return SeedFunction("answer_output", _is_answer_final=True, _answer=answer)


def step(name: str, **kwargs: Any) -> SeedFunction:
    return SeedFunction(name, kwargs=kwargs)


# ---------------------------------------------------------------------- construction
def test_any_agent_shaped_object_is_accepted() -> None:
    runner = Runner(agent=DuckAgent(planner=None, answer_data_type=None))
    assert runner.answer_data_type is str and runner.max_steps == 10 and runner.step_history == []
    assert runner.is_thinking_model is False and runner.use_conversation_memory is False
    assert callable(runner.call) and callable(runner.acall) and callable(runner.astream)
    with pytest.raises(UserError, match="planner"):
        Runner(object())


def test_constructor_arguments() -> None:
    pm = PermissionManager()
    memory = ConversationMemory()
    tm = FakeToolManager()
    agent = DuckAgent(FakePlanner([]), max_steps=7, tool_manager=tm, answer_data_type=int)
    runner = Runner(agent, ctx={"k": 1}, max_steps=3, permission_manager=pm, conversation_memory=memory)
    assert (runner.max_steps, runner.ctx, runner.answer_data_type) == (3, {"k": 1}, int)
    assert agent.max_steps == 7, "treadle never mutates the agent (seed bug B20)"
    assert runner.permission_manager is pm and pm._tool_manager is tm and runner.tool_manager is tm
    assert runner.conversation_memory is memory and runner.use_conversation_memory
    other = PermissionManager()
    runner.set_permission_manager(other)
    assert runner.permission_manager is other and other._tool_manager is tm


def test_cancellation_and_token_surface() -> None:
    runner = Runner(DuckAgent(FakePlanner([])))
    seen: list[int] = []
    runner.register_cancel_callback(lambda: seen.append(1))
    assert runner.is_cancelled() is False
    runner.reset_cancellation()
    assert set(runner.get_token_consumption()) >= {"total_prompt_tokens", "current_step_tokens",
                                                    "steps_token_history", "last_total_tokens"}


# ---------------------------------------------------------------------- the protocol, per face
async def test_planner_and_tool_manager_protocol(face: str) -> None:
    planner = FakePlanner([step("search", q="x"), step("lookup"), final("the answer")])
    tm = FakeToolManager({"search": lambda q: f"found {q}"})
    runner = Runner(DuckAgent(planner, tool_manager=tm))
    res, events = await run_face(runner, face, {"input_str": "find x"}, model_kwargs={"temperature": 0},
                                 id="run-1")
    assert isinstance(res, RunnerResult) and res.status == "success" and res.answer == "the answer"
    assert [(s.step, s.function.name, s.observation) for s in res.step_history] == \
        [(0, "search", "found x"), (1, "lookup", "out_lookup")]
    assert type(res.step_history[0].function) is SeedFunction, "the planner's own Function object"
    assert runner.step_history == res.step_history, "the final step is not recorded"
    sync = face == "call"
    assert [how for how, _ in planner.calls] == ["call" if sync else "acall"] * 3
    assert [how for how, _, _ in tm.executed] == ["execute_func" if sync else "execute_func_async"] * 2
    kw = planner.calls[0][1]
    assert kw["prompt_kwargs"]["input_str"] == "find x" and kw["prompt_kwargs"]["max_steps"] == 10
    assert (kw["model_kwargs"], kw["id"]) == ({"temperature": 0}, "run-1")
    assert "chat_history_str" not in kw["prompt_kwargs"], "only with a memory"
    assert [c[1]["steps_seen"] for c in planner.calls] == [0, 1, 2], "step_history is the run's live list"
    assert all(f.id for f in (s.function for s in res.step_history)), "each call gets an id"
    assert names(events) == ["raw", "agent.tool_call_start", "agent.tool_call_complete", "agent.step_complete"] * 2 \
        + ["raw", "agent.execution_complete"]


async def test_answer_conversion_uses_the_answer_type(face: str) -> None:
    class Weather(BaseModel):
        city: str
        temp: int

    res, _ = await run_face(Runner(DuckAgent(FakePlanner([final('{"city": "Oslo", "temp": 3}')]),
                                             answer_data_type=Weather)), face, {})
    assert res.answer == Weather(city="Oslo", temp=3)
    res, _ = await run_face(Runner(DuckAgent(FakePlanner([final(0)]), answer_data_type=int)), face, {})
    assert res.status == "success" and res.answer == 0, "falsy answers are valid (seed bug B12)"


async def test_recoverable_planner_errors_are_steps(face: str) -> None:
    planner = FakePlanner([GeneratorOutput(data=None, error="Parsing error"), final("ok")])
    res, _ = await run_face(Runner(DuckAgent(planner)), face, {})
    assert res.answer == "ok"
    assert [(s.function, s.observation) for s in res.step_history] == [(None, "Parsing error")]


async def test_bad_planner_outputs_and_failures(face: str) -> None:
    class NotAGeneratorOutput:
        def call(self, **kw: Any) -> Any:
            return "invalid_output"

        async def acall(self, **kw: Any) -> Any:
            return "invalid_output"

    res, _ = await run_face(Runner(DuckAgent(NotAGeneratorOutput())), face, {})
    assert res.status == "error" and "Expected GeneratorOutput" in res.error and res.answer is None

    class Failing:
        def call(self, **kw: Any) -> Any:
            raise ValueError("Planner failed")

        async def acall(self, **kw: Any) -> Any:
            raise ValueError("Planner failed")

    res, _ = await run_face(Runner(DuckAgent(Failing())), face, {})
    assert res.status == "error" and "Planner failed" in res.error

    planner = FakePlanner([GeneratorOutput(data="a string, not a Function"), final("recovered")])
    res, _ = await run_face(Runner(DuckAgent(planner)), face, {})
    assert res.answer == "recovered", "a non-Function is fed back, not fatal (seed bug B3)"
    assert "not a Function" in res.step_history[0].observation


async def test_tool_errors_reach_the_planner(face: str) -> None:
    planner = FakePlanner([step("flaky"), final("done")])
    tm = FakeToolManager({"flaky": RuntimeError("disk full")})
    res, _ = await run_face(Runner(DuckAgent(planner, tool_manager=tm)), face, {})
    s = res.step_history[0]
    assert s.status == "error" and "disk full" in s.observation, "seed bug B1: the error was invisible"


async def test_thinking_model_copies_the_reasoning(face: str) -> None:
    agent = DuckAgent(FakePlanner([GeneratorOutput(data=step("t"), thinking="deep thought"), final("x")]))
    agent.is_thinking_model = True
    res, _ = await run_face(Runner(agent), face, {})
    assert res.step_history[0].function.thought == "deep thought"


async def test_generator_tool_outputs_stream_activity(face: str) -> None:
    async def progress() -> Any:
        yield ToolCallActivityRunItem(data="50%")
        yield ToolOutput(output={"rows": 3}, observation="3 rows", display="Three rows")

    tm = FakeToolManager({"scan": lambda: progress()})
    res, events = await run_face(Runner(DuckAgent(FakePlanner([step("scan"), final("ok")]), tool_manager=tm)), face, {})
    assert res.step_history[0].observation == "3 rows"
    activity = [e for e in events if getattr(e, "name", "") == "agent.tool_call_activity"]
    assert [a.item.data for a in activity] == ["50%"] and activity[0].item.id == res.step_history[0].function.id


async def test_memory_feeds_chat_history_str(face: str) -> None:
    memory = ConversationMemory()
    planner = FakePlanner([final("Hi Alice"), final("You are Alice"), final("No idea")])
    runner = Runner(DuckAgent(planner), conversation_memory=memory)
    await run_face(runner, face, {"input_str": "Hello, my name is Alice"})
    await run_face(runner, face, {"input_str": "What is my name?"})
    memory.clear_conversation_turns()
    await run_face(runner, face, {"input_str": "Do you remember?"})
    histories = [c[1]["prompt_kwargs"]["chat_history_str"] for c in planner.calls]
    assert histories[0] == "" and histories[2] == ""
    assert "Alice" in histories[1] and histories[1].startswith("User:\nquery: Hello, my name is Alice")


async def test_approval_gates_seed_tool_managers(face: str) -> None:
    asked: list[str] = []

    def approver(request: Any) -> bool:
        asked.append(request.tool_name)
        return request.tool.kwargs.get("path") != "/etc"

    pm = PermissionManager(approver)
    pm.register_tool("delete", True)
    tm = FakeToolManager()
    planner = FakePlanner([step("delete", path="/tmp"), step("delete", path="/etc"), step("read"), final("ok")])
    res, events = await run_face(Runner(DuckAgent(planner, tool_manager=tm), permission_manager=pm), face, {})
    assert asked == ["delete", "delete"]
    assert [x[1:] for x in tm.executed] == [("delete", {"path": "/tmp"}), ("read", {})]
    denied = res.step_history[1]
    assert denied.status == "cancelled" and denied.observation.startswith("Tool execution cancelled by user")
    assert names(events).count("agent.tool_permission_request") == 2


# ---------------------------------------------------------------------- Agent(planner=...)
async def test_a_treadle_agent_with_a_custom_planner(face: str) -> None:
    def add(a: int, b: int) -> int:
        return a + b

    planner = FakePlanner([step("add", a=1, b=2), final("3")])
    res, _ = await run_face(Runner(Agent(name="p", tools=[add], planner=planner, answer_data_type=int)), face,
                            {"input_str": "1+2"})
    assert res.answer == 3 and res.step_history[0].observation == 3


# ---------------------------------------------------------------------- endings and the switch
async def test_max_steps_default_and_seed_compat(face: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def runner(**kw: Any) -> Runner[Any]:
        return Runner(DuckAgent(FakePlanner([step(f"a{i}") for i in range(5)]), max_steps=3), **kw)

    res, _ = await run_face(runner(), face, {})
    assert res.status == "max_steps" and res.answer is None and "max_steps: 3" in res.error
    res, _ = await run_face(runner(seed_compat=True), face, {})
    assert res.status == "max_steps" and res.error is None
    assert res.answer == "No output generated after 3 steps (max_steps: 3)"
    monkeypatch.setenv(SEED_COMPAT_ENV, "1")
    res, _ = await run_face(runner(), face, {})
    assert res.answer.startswith("No output generated after 3 steps")
    res, _ = await run_face(runner(seed_compat=False), face, {})
    assert res.answer is None, "the Runner's flag wins over the environment"


@pytest.mark.parametrize("face", ["call", "acall"])  # astream: test_stream_exception_default_and_seed_compat
async def test_errors_under_seed_compat(face: str) -> None:
    class Bad:
        def call(self, **kw: Any) -> Any:
            return 42

        async def acall(self, **kw: Any) -> Any:
            return 42

    res, _ = await run_face(Runner(DuckAgent(Bad()), seed_compat=True), face, {})
    assert res.status == "error" and res.answer == res.error and "Expected GeneratorOutput" in res.answer


async def test_stream_exception_default_and_seed_compat() -> None:
    class Failing:
        async def acall(self, **kw: Any) -> Any:
            raise ValueError("Async planner failed")

    stream = Runner(DuckAgent(Failing())).astream({})
    events = [e async for e in stream.stream_events()]
    assert stream._exception is None and (await stream.wait_for_completion()).status == "error"
    assert events[-1].name == "agent.execution_complete"

    stream = Runner(DuckAgent(Failing()), seed_compat=True).astream({})
    seen: list[Any] = []
    with pytest.raises(RuntimeError, match="Async planner failed"):
        async for e in stream.stream_events():
            seen.append(e)
    assert seen[-1].name == "agent.execution_complete", "every event is delivered before the error"
    assert isinstance(stream._exception, str) and "Async planner failed" in stream._exception
    assert (await stream.wait_for_completion()).answer == stream._exception


async def test_cancel_a_seed_stream() -> None:
    import asyncio

    started = asyncio.Event()

    class Slow:
        async def acall(self, **kw: Any) -> Any:
            started.set()
            await asyncio.Event().wait()

    runner = Runner(DuckAgent(Slow()))
    stream = runner.astream({})
    await started.wait()
    await runner.cancel()
    res = await stream.wait_for_completion()
    assert runner.is_cancelled() and res.status == "cancelled"
    assert runner._current_task is stream._run_task


# ---------------------------------------------------------------------- the seed's helper methods
def test_check_last_step_and_final_answer() -> None:
    runner = Runner(DuckAgent(None, answer_data_type=int))
    assert runner._check_last_step(final(1)) is True
    assert runner._check_last_step(step("continue")) is False
    assert runner._get_final_answer(final("7")) == 7


def test_process_data() -> None:
    class M(BaseModel):
        value: str

    assert Runner(DuckAgent(None))._process_data(data="raw", id=None) == "raw"
    runner = Runner(DuckAgent(None, answer_data_type=M))
    assert runner._process_data('{"value": "v"}') == M(value="v")
    assert runner._process_data({"value": "d"}) == M(value="d")
    with pytest.raises(ValueError, match="Invalid JSON"):
        runner._process_data("invalid json")
    with pytest.raises(ValueError, match="Expected dict after JSON parsing"):
        runner._process_data('"just a string"')
    with pytest.raises(ValueError, match="Error processing output"):
        Runner(DuckAgent(None, answer_data_type=int))._process_data("seven")
    result = runner._create_runner_result(answer="a", step_history=[])
    assert isinstance(result, RunnerResult) and result.answer == "a" and result.error is None


def test_tool_execute_sync() -> None:
    runner = Runner(DuckAgent(None, tool_manager=FakeToolManager({"f": "sync_result"})))
    out = runner._tool_execute_sync(step("f"))
    assert isinstance(out, FunctionOutput) and out.output == "sync_result"
    pm = PermissionManager(lambda request: False)
    pm.register_tool("f", True)
    runner.set_permission_manager(pm)
    denied = runner._tool_execute_sync(step("f"))
    assert denied.output.status == "cancelled" and denied.output.display == "Permission denied"


async def test_tool_execute_async_and_stream_tool_execution() -> None:
    async def gen() -> Any:
        yield ToolCallActivityRunItem(data="working")
        yield "result"

    runner = Runner(DuckAgent(FakePlanner([final("x")]), tool_manager=FakeToolManager({"f": "v", "g": lambda: gen()})))
    out = await runner._tool_execute_async(step("f"))
    assert isinstance(out, FunctionOutput) and out.output == "v"
    stream = runner.astream({})
    assert isinstance(stream, RunnerStreamingResult)
    await stream.wait_for_completion()
    fn = step("g")
    fn.id = "call-1"
    fo, output, observation = await runner.stream_tool_execution(fn, "call-1", "g", stream)
    assert (output, observation) == ("result", "result") and isinstance(fo, FunctionOutput)


async def test_seed_compat_keeps_memory_turns_readable() -> None:
    memory = ConversationMemory()
    runner = Runner(DuckAgent(FakePlanner([step("a"), step("b")]), max_steps=2), conversation_memory=memory,
                    seed_compat=True)
    res = await runner.acall({"input_str": "loop"})
    assert res.error is None
    reply = memory.current_conversation.dialog_turns[0].assistant_response
    assert reply.response_str == "(the run ended without an answer: No output generated after 2 steps (max_steps: 2))"
    assert reply.metadata["status"] == "max_steps"


async def test_a_treadle_agent_with_a_seed_tool_manager(face: str) -> None:
    from treadle import Function, ScriptedModel

    model = ScriptedModel([Function(name="lookup", kwargs={"key": "k"}),
                           Function(name="finish", kwargs={"answer": "v"})])
    tm = FakeToolManager({"lookup": lambda key: f"value of {key}"})
    res, _ = await run_face(Runner(Agent(name="tm", tool_manager=tm, model=model)), face, "q")
    assert res.answer == "v" and res.step_history[0].observation == "value of k"
    assert [x[1:] for x in tm.executed] == [("lookup", {"key": "k"})]
