"""The Runner's behaviours, each through all three faces (call, acall, astream)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from pydantic import BaseModel

from helpers import names, run_face
from treadle import (
    Agent,
    ConversationMemory,
    Function,
    FunctionTool,
    ModelAuthenticationError,
    ModelRetry,
    PermissionManager,
    RunContext,
    Runner,
    ScriptedModel,
    ToolCallActivityRunItem,
    ToolOutput,
    Usage,
)
from treadle.errors import ModelContextTooLongError


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def fail(x: int) -> int:
    raise ValueError(f"cannot handle {x}")


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


def call_add(a: int, b: int) -> Function:
    return Function(name="add", kwargs={"a": a, "b": b})


class Weather(BaseModel):
    city: str
    celsius: float


@dataclasses.dataclass
class Box:
    w: int
    h: int


async def test_multi_step_success(face: str) -> None:
    model = ScriptedModel([call_add(1, 2), call_add(3, 4), final("done: 7")])
    res, events = await run_face(Runner(Agent(tools=[add], model=model)), face)
    assert res.status == "success" and res.ok and res.answer == "done: 7" and res.error is None
    assert [s.observation for s in res.step_history] == [3, 7]
    assert [s.step for s in res.step_history] == [0, 1]
    assert [s.function.name for s in res.step_history] == ["add", "add"]
    assert res.usage.requests == 3 and res.usage.tool_calls == 2
    assert names(events) == ["raw", "agent.tool_call_start", "agent.tool_call_complete", "agent.step_complete"] * 2 \
        + ["raw", "agent.execution_complete"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].item.data is res or events[-1].item.data == res


async def test_seed_final_answer_form_via_json_text(face: str) -> None:
    model = ScriptedModel(['{"thought": "easy", "_is_answer_final": true, "_answer": "hi"}'])
    res, _ = await run_face(Runner(Agent(model=model)), face)
    assert res.answer == "hi" and res.step_history == []


async def test_typed_answers(face: str) -> None:
    cases = [
        (Weather, '{"_is_answer_final": true, "_answer": {"city": "Oslo", "celsius": "-3.5"}}',
         Weather(city="Oslo", celsius=-3.5)),
        (Box, '{"_is_answer_final": true, "_answer": "{\\"w\\": 2, \\"h\\": 3}"}', Box(2, 3)),
        (int, '{"name": "finish", "kwargs": {"answer": "0"}}', 0),
        (list[int], final([3, "4"]), [3, 4]),
    ]
    for tp, reply, expected in cases:
        res, _ = await run_face(Runner(Agent(model=ScriptedModel([reply]), answer_data_type=tp)), face)
        assert res.status == "success", res.error
        assert res.answer == expected and type(res.answer) is type(expected)


async def test_answer_conversion_failure_is_fed_back_then_recovers(face: str) -> None:
    model = ScriptedModel([final("not a number"), final("12")])
    res, events = await run_face(Runner(Agent(model=model, answer_data_type=int)), face)
    assert res.answer == 12
    [step] = res.step_history
    assert step.status == "error" and "answer type int" in step.observation
    assert "answer type int" in model.requests[1].messages[-1]["content"], "the model saw the error"


async def test_malformed_json_then_recovery(face: str) -> None:
    model = ScriptedModel(["I think I should add", '```json\n{"name": "add", "kwargs": {"a": 2, "b": 2}\n```',
                           final("4")])
    res, _ = await run_face(Runner(Agent(tools=[add], model=model)), face)
    assert res.answer == "4"
    first, second = res.step_history
    assert first.function is None and first.status == "error" and "could not parse" in first.observation
    assert second.observation == 4
    sent = model.requests[1].messages
    assert sent[-2] == {"role": "assistant", "content": "I think I should add"}
    assert "could not parse" in sent[-1]["content"]


async def test_unknown_tool_is_recoverable(face: str) -> None:
    model = ScriptedModel([Function(name="multiply", kwargs={"a": 2}), final("ok")])
    res, events = await run_face(Runner(Agent(tools=[add], model=model)), face)
    assert res.status == "success"
    [s] = res.step_history
    assert s.status == "error" and "Unknown tool 'multiply'" in s.observation
    complete = [e for e in events if getattr(e, "name", "") == "agent.tool_call_complete"]
    assert complete[0].item.error and "multiply" in complete[0].item.error


async def test_bad_arguments_are_recoverable(face: str) -> None:
    model = ScriptedModel([Function(name="add", kwargs={"a": "two", "b": 2}), call_add(2, 2), final("4")])
    res, _ = await run_face(Runner(Agent(tools=[add], model=model)), face)
    assert res.answer == "4"
    assert res.step_history[0].status == "error" and "invalid arguments for add" in res.step_history[0].observation
    assert "invalid arguments" in model.requests[1].messages[-1]["content"]


async def test_tool_exception_is_shown_to_the_model(face: str) -> None:
    model = ScriptedModel([Function(name="fail", kwargs={"x": 3}), final("gave up")])
    res, events = await run_face(Runner(Agent(tools=[fail], model=model)), face)
    assert res.status == "success"
    obs = res.step_history[0].observation
    assert "ValueError: cannot handle 3" in obs, "seed bug B1: tool errors were invisible to the model"
    assert "cannot handle 3" in model.requests[1].messages[-1]["content"]
    complete = [e for e in events if getattr(e, "name", "") == "agent.tool_call_complete"][0]
    assert "cannot handle 3" in complete.item.data.error


async def test_unrecoverable_model_error_ends_the_run(face: str) -> None:
    model = ScriptedModel([call_add(1, 1), ModelAuthenticationError("bad key", status_code=401)])
    res, events = await run_face(Runner(Agent(tools=[add], model=model)), face)
    assert res.status == "error" and res.answer is None
    assert res.error_type == "ModelAuthenticationError" and "bad key" in res.error
    assert len(res.step_history) == 2 and res.step_history[1].observation.startswith("Unrecoverable error")
    assert names(events).count("agent.execution_complete") == 1 and names(events)[-1] == "agent.execution_complete"


async def test_error_text_with_status_like_numbers_is_not_misclassified(face: str) -> None:
    # the seed stopped on any error text containing "400"; here a parse error mentioning 400 is recoverable
    model = ScriptedModel(["the total is 400 or 429", final("400")])
    res, _ = await run_face(Runner(Agent(model=model)), face)
    assert res.status == "success" and res.answer == "400"


async def test_context_too_long_and_untyped_client_errors_end_the_run(face: str) -> None:
    res, _ = await run_face(Runner(Agent(model=ScriptedModel([ModelContextTooLongError("too long")]))), face)
    assert res.status == "error" and res.error_type == "ModelContextTooLongError"
    res, _ = await run_face(Runner(Agent(model=ScriptedModel([KeyError("oops")]))), face)
    assert res.status == "error" and res.error_type == "KeyError"


async def test_max_steps_exhausted(face: str) -> None:
    model = ScriptedModel([call_add(1, 1)], repeat_last=True)
    res, events = await run_face(Runner(Agent(tools=[add], model=model, max_steps=3)), face)
    assert res.status == "max_steps" and res.answer is None
    assert res.error == "No final answer after 3 steps (max_steps: 3)."
    assert len(res.step_history) == 3 and all(s.observation == 2 for s in res.step_history)
    assert names(events)[-1] == "agent.execution_complete"


async def test_runner_max_steps_does_not_mutate_agent(face: str) -> None:
    agent = Agent(tools=[add], model=ScriptedModel([call_add(1, 1)], repeat_last=True), max_steps=5)
    res, _ = await run_face(Runner(agent, max_steps=2), face)
    assert len(res.step_history) == 2 and agent.max_steps == 5


async def test_generator_and_async_generator_tools_stream_activity(face: str) -> None:
    def count(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield ToolCallActivityRunItem(data=f"tick {i}")
        yield f"counted to {n}"

    async def acount(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            await asyncio.sleep(0)
            yield ToolCallActivityRunItem(data=f"atick {i}")
        yield ToolOutput(output=n, observation=f"acounted to {n}", display=f"{n} ticks")

    model = ScriptedModel([Function(name="count", kwargs={"n": 2}), Function(name="acount", kwargs={"n": 3}),
                           final("ok")])
    res, events = await run_face(Runner(Agent(tools=[count, acount], model=model)), face)
    assert [s.observation for s in res.step_history] == ["counted to 2", "acounted to 3"]
    assert res.step_history[1].output == 3
    n = names(events)
    assert n[:6] == ["raw", "agent.tool_call_start", "agent.tool_call_activity", "agent.tool_call_activity",
                     "agent.tool_call_complete", "agent.step_complete"]
    acts = [e for e in events if getattr(e, "name", "") == "agent.tool_call_activity"]
    assert [a.item.data for a in acts] == ["tick 0", "tick 1", "atick 0", "atick 1", "atick 2"]
    starts = [e for e in events if getattr(e, "name", "") == "agent.tool_call_start"]
    assert acts[0].item.id == starts[0].item.id == res.step_history[0].function.id
    complete = [e for e in events if getattr(e, "name", "") == "agent.tool_call_complete"][1]
    assert isinstance(complete.item.data.output, ToolOutput) and complete.item.data.output.display == "3 ticks"


async def test_concurrent_tool_calls_in_one_reply(face: str) -> None:
    order: list[str] = []

    async def slow(tag: str, delay: float) -> str:
        order.append(f"start {tag}")
        await asyncio.sleep(delay)
        order.append(f"end {tag}")
        return tag

    model = ScriptedModel([[Function(name="slow", kwargs={"tag": "A", "delay": 0.05}),
                            Function(name="slow", kwargs={"tag": "B", "delay": 0.01})], final("ok")],
                          native_tools=True)
    res, _ = await run_face(Runner(Agent(tools=[slow], model=model)), face)
    assert order == ["start A", "start B", "end B", "end A"], "the two calls ran concurrently"
    assert [s.observation for s in res.step_history] == ["A", "B"], "recorded in call order"
    assert {s.step for s in res.step_history} == {0}
    msgs = model.requests[1].messages
    assert msgs[-3]["role"] == "assistant" and len(msgs[-3]["tool_calls"]) == 2
    assert [m["content"] for m in msgs[-2:]] == ["A", "B"]
    assert msgs[-1]["tool_call_id"] == res.step_history[1].function.id


async def test_native_mode_plain_text_is_the_final_answer(face: str) -> None:
    model = ScriptedModel([call_add(2, 3), "The sum is 5."], native_tools=True)
    res, _ = await run_face(Runner(Agent(tools=[add], model=model)), face)
    assert res.answer == "The sum is 5."
    assert [d.func_name for d in model.requests[0].tools] == ["add"] and model.requests[0].output_schema is None


async def test_model_retry_is_bounded(face: str) -> None:
    def strict(x: int) -> int:
        if x < 0:
            raise ModelRetry("x must be >= 0")
        return x

    ok = ScriptedModel([Function(name="strict", kwargs={"x": -1}), Function(name="strict", kwargs={"x": 1}),
                        final("1")])
    res, _ = await run_face(Runner(Agent(tools=[FunctionTool(strict, max_retries=1)], model=ok)), face)
    assert res.status == "success" and res.step_history[0].observation == "x must be >= 0"
    bad = ScriptedModel([Function(name="strict", kwargs={"x": -1})], repeat_last=True)
    res, _ = await run_face(Runner(Agent(tools=[FunctionTool(strict, max_retries=2)], model=bad)), face)
    assert res.status == "error" and res.error_type == "ToolRetriesExceededError"
    assert len(res.step_history) == 3


async def test_tool_timeout_is_an_observation(face: str) -> None:
    async def sleepy() -> str:
        await asyncio.sleep(10)
        return "never"

    model = ScriptedModel([Function(name="sleepy"), final("moved on")])
    res, _ = await run_face(Runner(Agent(tools=[FunctionTool(sleepy, timeout=0.05)], model=model)), face)
    assert res.answer == "moved on" and "timed out" in res.step_history[0].observation


async def test_ctx_reaches_tools_that_ask_for_it(face: str) -> None:
    seen: list[Any] = []

    def whoami(ctx: RunContext[dict], greeting: str) -> str:
        seen.append(ctx)
        return f"{greeting} {ctx.context['user']}"

    model = ScriptedModel([Function(name="whoami", kwargs={"greeting": "hi"}), final("ok")])
    res, _ = await run_face(Runner(Agent(tools=[whoami], model=model), ctx={"user": "ada"}), face)
    assert res.step_history[0].observation == "hi ada"
    assert seen[0].run_id == res.run_id and seen[0].step == 0 and seen[0].tool_call_id
    assert "ctx" not in str(model.requests[0].messages[0]["content"]).split("arguments")[1].split("\n")[0]


async def test_approval_required_without_a_decision_is_denied(face: str) -> None:
    ran: list[int] = []

    def rm(path: str) -> str:
        ran.append(1)
        return "deleted"

    model = ScriptedModel([Function(name="rm", kwargs={"path": "/"}), final("ok")])
    # no callback; in astream the consumer below never answers, so the wait times out
    runner = Runner(Agent(tools=[FunctionTool(rm, require_approval=True)], model=model),
                    permission_manager=PermissionManager(timeout=0.05))
    res, events = await run_face(runner, face)
    assert ran == [] and res.step_history[0].status == "cancelled"
    expected = "no decision within 0.05 s" if face == "astream" else "no approver is configured"
    assert expected in res.step_history[0].observation
    assert "agent.tool_call_start" not in names(events)


async def test_permission_manager_is_consulted(face: str) -> None:
    ran: list[str] = []

    def rm(path: str) -> str:
        ran.append(path)
        return f"deleted {path}"

    def approver(req: Any) -> bool:
        return req.tool.kwargs["path"] != "/"

    model = ScriptedModel([Function(name="rm", kwargs={"path": "/"}), Function(name="rm", kwargs={"path": "/tmp/x"}),
                           final("ok")])
    runner = Runner(Agent(tools=[FunctionTool(rm, require_approval=True)], model=model),
                    permission_manager=PermissionManager(approver))
    res, events = await run_face(runner, face)
    assert ran == ["/tmp/x"]
    denied, allowed = res.step_history
    assert denied.status == "cancelled" and denied.observation.startswith("Tool execution cancelled by user")
    assert allowed.observation == "deleted /tmp/x"
    n = names(events)
    assert n[:4] == ["raw", "agent.tool_permission_request", "agent.tool_call_complete", "agent.step_complete"]
    assert n[4:9] == ["raw", "agent.tool_permission_request", "agent.tool_call_start", "agent.tool_call_complete",
                      "agent.step_complete"]
    req = [e for e in events if getattr(e, "name", "") == "agent.tool_permission_request"][0]
    assert req.item.data.id == denied.function.id and req.item.data.tool_name == "rm"


async def test_tool_name_tricks_never_reach_an_approval_tool(face: str) -> None:
    ran: list[int] = []

    def rm(path: str) -> str:
        ran.append(1)
        return "deleted"

    tricks = ["RM", " rm", "rm ", "rm\n", "r\u200bm", "functions.rm", "Rm"]
    model = ScriptedModel([Function(name=t, kwargs={"path": "/"}) for t in tricks] + [final("ok")])
    runner = Runner(Agent(tools=[FunctionTool(rm, require_approval=True)], model=model, max_steps=20),
                    permission_manager=PermissionManager(lambda req: False))
    res, _ = await run_face(runner, face)
    assert ran == [] and all(s.status in ("error", "cancelled") for s in res.step_history)


async def test_memory_records_every_turn(face: str) -> None:
    mem = ConversationMemory()
    model = ScriptedModel([final("Paris"), ModelAuthenticationError("expired"), final("Rome")])
    runner = Runner(Agent(model=model), conversation_memory=mem)
    await run_face(runner, face, {"input_str": "Capital of France?"})
    await run_face(runner, face, {"input_str": "And Spain?"})
    res, _ = await run_face(runner, face, {"input_str": "And Italy?"})
    assert res.answer == "Rome"
    assert [t.user_query.query_str for t in mem.turns] == ["Capital of France?", "And Spain?", "And Italy?"]
    assert mem.turns[1].assistant_response.metadata["status"] == "error", "failed turns are kept (seed bug B16)"
    system = model.requests[2].messages[0]["content"]
    assert "User:\nquery: Capital of France?\nAssistant: Paris" in system and "And Spain?" in system


async def test_token_accounting(face: str) -> None:
    model = ScriptedModel([call_add(1, 1), final("2")], usage=Usage(input_tokens=100, output_tokens=10))
    runner = Runner(Agent(tools=[add], model=model))
    res, _ = await run_face(runner, face)
    assert (res.usage.input_tokens, res.usage.output_tokens, res.usage.requests) == (200, 20, 2)
    assert res.step_history[0].usage.input_tokens == 100
    tc = runner.get_token_consumption()
    assert tc["total_prompt_tokens"] == 200 and tc["steps_token_history"] == [110, 110]
    assert tc["current_step_tokens"] == 110 and tc["last_total_tokens"] == 220


async def test_event_handler_errors_do_not_break_the_run(face: str) -> None:
    def bad_handler(e: Any) -> None:
        raise RuntimeError("handler bug")

    runner = Runner(Agent(tools=[add], model=ScriptedModel([call_add(1, 1), final("2")])),
                    event_handlers=[bad_handler])
    res, _ = await run_face(runner, face)
    assert res.answer == "2"


async def test_failing_memory_store_ends_with_a_clear_error(face: str) -> None:
    class BrokenMemory(ConversationMemory):
        def __call__(self) -> str:
            raise OSError("disk gone")

    runner = Runner(Agent(model=ScriptedModel([final("x")])), conversation_memory=BrokenMemory())
    res, events = await run_face(runner, face)
    assert res.status == "error" and "disk gone" in res.error
    assert names(events) == ["agent.execution_complete"]
