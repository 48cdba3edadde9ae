"""Guardrails on the input, the final answer and each tool call: functions and agents, in the
three faces, journaled (a real SQLite store)."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

from helpers import cut_journal, run_face
from treadle import Agent, Function, Runner, ScriptedModel
from treadle.errors import UserError
from treadle.guardrails import (
    GuardrailContext,
    GuardrailResult,
    InputGuardrail,
    ToolGuardrail,
    input_guardrail,
    output_guardrail,
    tool_guardrail,
)

FACES = ["call", "acall", "astream"]


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


def call(name: str, **kwargs: Any) -> Function:
    return Function(name=name, kwargs=kwargs)


ran: list[Any] = []


def send(to: str, body: str) -> str:
    """Send an e-mail."""
    ran.append((to, body))
    return f"sent to {to}"


@pytest.fixture(autouse=True)
def _clear() -> None:
    ran.clear()


def decisions(events: list[Any]) -> list[tuple[str, str, bool, str]]:
    return [(e.item.data.guardrail, e.item.data.kind, e.item.data.tripped, e.item.data.action)
            for e in events if getattr(e, "name", "") == "agent.guardrail"]


# ---------------------------------------------------------------------------- input
@pytest.mark.parametrize("face", FACES)
async def test_an_input_tripwire_ends_the_run_before_the_model_is_called(face: str) -> None:
    def no_secrets(text: str) -> GuardrailResult:
        return GuardrailResult(tripwire="password" in text, message="asks for a password", info={"hits": 1})

    model = ScriptedModel([call("send", to="a", body="b"), final("done")])
    agent = Agent("mailer", tools=[send], model=model, input_guardrails=[no_secrets])
    res, events = await run_face(Runner(agent), face, "mail me the password")
    assert res.status == "error" and res.error_type == "InputGuardrailTripwireTriggered"
    assert "no_secrets" in res.error and "asks for a password" in res.error
    assert model.requests == [] and ran == []
    assert decisions(events) == [("no_secrets", "input", True, "ended")]
    assert [e.name for e in events if e.type == "run_item_stream_event"][-1] == "agent.execution_complete"


@pytest.mark.parametrize("face", FACES)
async def test_a_passing_input_check_lets_the_run_go_on_and_sees_the_context(face: str) -> None:
    seen: list[GuardrailContext] = []

    async def check(ctx: GuardrailContext, text: str) -> bool:
        seen.append(ctx)
        return True

    agent = Agent("a", model=ScriptedModel([final("hi")], per_run=True), input_guardrails=[check])
    res, events = await run_face(Runner(agent, ctx={"user": 7}), face, "hello")
    assert res.answer == "hi" and decisions(events) == [("check", "input", False, "passed")]
    assert seen[0].context == {"user": 7} and seen[0].kind == "input" and seen[0].agent_name == "a"


@pytest.mark.parametrize("face", FACES)
async def test_a_parallel_input_check_that_trips_cancels_the_model_call(face: str) -> None:
    gate = asyncio.Event()
    model_started = asyncio.Event()

    async def slow_model_reply(messages: list[Any]) -> Function:
        model_started.set()
        await asyncio.Event().wait()  # never answers: only the guardrail can end this
        return final("x")

    @input_guardrail(parallel=True)
    async def policy(text: str) -> bool:
        await model_started.wait()  # the model call is under way beside it
        gate.set()
        return False

    agent = Agent("a", tools=[send], model=ScriptedModel([slow_model_reply]), input_guardrails=[policy])
    res, events = await asyncio.wait_for(run_face(Runner(agent), face, "hi"), 30)
    assert gate.is_set() and res.error_type == "InputGuardrailTripwireTriggered"
    assert ran == [] and decisions(events) == [("policy", "input", True, "ended")]
    assert [e.name for e in events if e.type == "run_item_stream_event"][-1] == "agent.execution_complete"


@pytest.mark.parametrize("face", FACES)
async def test_a_parallel_input_check_slower_than_the_model_still_stops_the_tool(face: str) -> None:
    answered = asyncio.Event()

    def reply(messages: list[Any]) -> Function:
        answered.set()
        return call("send", to="x", body="y")

    @input_guardrail(parallel=True)
    async def late(text: str) -> str:
        await answered.wait()
        await asyncio.sleep(0)
        return "not allowed"

    agent = Agent("a", tools=[send], model=ScriptedModel([reply, final("z")]), input_guardrails=[late])
    res, events = await run_face(Runner(agent), face, "hi")
    assert res.error_type == "InputGuardrailTripwireTriggered" and ran == [] and res.step_history == []
    assert "agent.tool_call_start" not in [getattr(e, "name", "") for e in events]


async def test_a_check_that_raises_fails_closed() -> None:
    def broken(text: str) -> bool:
        raise RuntimeError("no policy server")

    agent = Agent("a", model=ScriptedModel([final("x")]), input_guardrails=[broken])
    res = await Runner(agent).acall("hi")
    assert res.error_type == "InputGuardrailTripwireTriggered" and "no policy server" in res.error


async def test_a_guardrail_with_a_wrong_verdict_type_fails_closed_with_a_clear_message() -> None:
    agent = Agent("a", model=ScriptedModel([final("x")]), input_guardrails=[lambda text: 42])
    res = await Runner(agent).acall("hi")
    assert res.status == "error" and "return None/True" in res.error


def test_guardrail_lists_are_checked_at_construction() -> None:
    with pytest.raises(UserError, match="not a OutputGuardrail"):
        Agent("a", output_guardrails=[InputGuardrail(lambda t: True)])
    with pytest.raises(UserError, match="function or an Agent"):
        Agent("a", input_guardrails=[42])
    with pytest.raises(UserError, match="'before' or 'after'"):
        ToolGuardrail(lambda v: True, when="during")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- output
@pytest.mark.parametrize("face", FACES)
async def test_an_output_guardrail_sends_the_answer_back_then_accepts_the_retry(face: str) -> None:
    @output_guardrail(max_retries=1)
    def short(answer: str) -> GuardrailResult:
        return GuardrailResult(len(answer) > 5, "keep it under 6 characters")

    model = ScriptedModel([final("much too long"), final("short")])
    res, events = await run_face(Runner(Agent("a", model=model, output_guardrails=[short])), face, "hi")
    assert res.status == "success" and res.answer == "short"
    assert decisions(events) == [("short", "output", True, "retry"), ("short", "output", False, "passed")]
    second = model.requests[1].messages
    assert "keep it under 6 characters" in second[-1]["content"] and "much too long" in str(second[-2])
    assert res.step_history[0].status == "error"


@pytest.mark.parametrize("face", FACES)
async def test_an_output_guardrail_out_of_retries_ends_the_run(face: str) -> None:
    @output_guardrail(max_retries=1)
    def never(answer: Any) -> bool:
        return False

    model = ScriptedModel([final("a"), final("b"), final("c")])
    res, events = await run_face(Runner(Agent("a", model=model, output_guardrails=[never])), face, "hi")
    assert res.error_type == "OutputGuardrailTripwireTriggered" and len(model.requests) == 2
    assert decisions(events) == [("never", "output", True, "retry"), ("never", "output", True, "ended")]


async def test_an_output_guardrail_sees_the_typed_answer() -> None:
    class Report(pydantic.BaseModel):
        score: int

    got: list[Any] = []

    def positive(r: Report) -> bool:
        got.append(r)
        return r.score >= 0

    agent = Agent("a", model=ScriptedModel([final({"score": -1})]), answer_data_type=Report,
                  output_guardrails=[positive])
    res = await Runner(agent).acall("hi")
    assert isinstance(got[0], Report) and res.error_type == "OutputGuardrailTripwireTriggered"


# ---------------------------------------------------------------------------- tool calls
@pytest.mark.parametrize("face", FACES)
async def test_a_tool_guardrail_blocks_a_call_before_it_runs(face: str) -> None:
    @tool_guardrail(tools=["send"])
    def internal_only(call: dict[str, Any]) -> GuardrailResult:
        to = call["kwargs"].get("to", "")
        return GuardrailResult(not to.endswith("@corp.example"), f"{to} is outside the company")

    model = ScriptedModel([call("send", to="x@evil.example", body="hi"), call("send", to="y@corp.example", body="hi"),
                           final("done")], per_run=True)
    agent = Agent("a", tools=[send], model=model, tool_guardrails=[internal_only])
    res, events = await run_face(Runner(agent), face, "mail")
    assert res.answer == "done" and ran == [("y@corp.example", "hi")]
    first = res.step_history[0]
    assert first.status == "error" and "outside the company" in first.observation
    assert decisions(events) == [("internal_only", "tool_input", True, "blocked"),
                                 ("internal_only", "tool_input", False, "passed")]
    starts = [e.item.id for e in events if getattr(e, "name", "") == "agent.tool_call_start"]
    assert len(starts) == 1  # the blocked call never started


async def test_a_halting_tool_guardrail_ends_the_run() -> None:
    guard = ToolGuardrail(lambda call: False, name="stop_all", halt=True)
    agent = Agent("a", tools=[send], model=ScriptedModel([call("send", to="a", body="b"), final("x")]),
                  tool_guardrails=[guard])
    res = await Runner(agent).acall("go")
    assert res.error_type == "ToolGuardrailTripwireTriggered" and "stop_all" in res.error and ran == []


@pytest.mark.parametrize("face", FACES)
async def test_a_tool_output_guardrail_withholds_or_replaces_the_output(face: str) -> None:
    def lookup(key: str) -> str:
        """Look up a record."""
        return f"record {key}: ssn=123-45-6789"

    @tool_guardrail(when="after")
    def redact(output: str) -> GuardrailResult:
        if "ssn=" in output:
            return GuardrailResult(True, "it holds a social security number", replacement=output.split(":")[0])
        return GuardrailResult()

    @tool_guardrail(when="after", name="withhold")
    def withhold(output: str) -> str | None:
        return "secret" if "record b" in output else None

    agent = Agent("a", tools=[lookup], model=ScriptedModel([call("lookup", key="a"), call("lookup", key="b"),
                                                           final("ok")]),
                  tool_guardrails=[withhold, redact])
    res, events = await run_face(Runner(agent), face, "go")
    assert res.answer == "ok" and res.step_history[0].observation == "record a"  # replaced by redact
    assert decisions(events) == [("withhold", "tool_output", False, "passed"),
                                 ("redact", "tool_output", True, "replaced"),
                                 ("withhold", "tool_output", True, "replaced")]
    assert res.step_history[1].status == "error" and "withheld by the withhold guardrail" in \
        res.step_history[1].observation


# ---------------------------------------------------------------------------- agents as guardrails
async def test_an_agent_as_a_guardrail_runs_as_a_child_run() -> None:
    class Verdict(pydantic.BaseModel):
        tripwire: bool
        message: str | None = None

    judge = Agent("judge", model=ScriptedModel([final({"tripwire": True, "message": "off topic"})]),
                  answer_data_type=Verdict)
    model = ScriptedModel([final("x")])
    agent = Agent("a", model=model, input_guardrails=[judge])
    events: list[Any] = []
    res = await Runner(agent, event_handlers=[events.append]).acall("tell me a joke")
    assert res.error_type == "InputGuardrailTripwireTriggered" and "off topic" in res.error
    assert model.requests == [] and judge.model.requests[0].messages[1]["content"] == "tell me a joke"
    assert {e.depth for e in events} == {0, 1}


async def test_a_bool_agent_as_an_output_guardrail() -> None:
    judge = Agent("polite", model=ScriptedModel([final(True)], per_run=True), answer_data_type=bool)
    agent = Agent("a", model=ScriptedModel([final("thanks")]), output_guardrails=[judge])
    res = await Runner(agent).acall("hi")
    assert res.answer == "thanks"


# ---------------------------------------------------------------------------- the journal
@pytest.mark.parametrize("face", FACES)
async def test_guardrail_decisions_are_journaled(tmp_path: Any, face: str) -> None:
    @output_guardrail(max_retries=1)
    def non_empty(answer: str) -> bool:
        return bool(answer.strip())

    agent = Agent("a", model=ScriptedModel([final(" "), final("ok")]), output_guardrails=[non_empty])
    runner = Runner(agent, store=f"sqlite:///{tmp_path}/g.db")
    res, _ = await run_face(runner, face, "hi")
    entries = runner.store.events(res.run_id)
    got = [(e.payload["item"]["data"]["guardrail"], e.payload["item"]["data"]["action"])
           for e in entries if e.name == "agent.guardrail"]
    assert got == [("non_empty", "retry"), ("non_empty", "passed")]


async def test_guardrails_hold_across_a_suspension_and_resume(tmp_path: Any) -> None:
    from treadle import FunctionTool

    checked: list[str] = []

    def build() -> Runner[Any]:
        def no_bomb(text: str) -> bool:
            checked.append("input")
            return "bomb" not in text

        @output_guardrail(max_retries=1)
        def polite(answer: str) -> str | None:
            checked.append("output")
            return None if answer.endswith("please") else "say please"

        agent = Agent("a", tools=[FunctionTool(send, require_approval=True)],
                      model=ScriptedModel([call("send", to="x", body="y"), final("sent"), final("sent, please")],
                                          per_run=True),
                      input_guardrails=[no_bomb], output_guardrails=[polite])
        return Runner(agent, store=f"sqlite:///{tmp_path}/s.db", suspend_for_approval=True)

    first = await build().acall("mail x")
    assert first.status == "waiting_for_approval" and checked == ["input"]
    second = build()
    call_id = first.error.split("tool call ")[1].split()[0]
    second.record_decision(first.run_id, call_id, approve=True)
    done = await second.aresume(first.run_id)
    assert done.answer == "sent, please" and ran == [("x", "y")]
    assert checked == ["input", "output", "output"], "the input check is not run again on resume"
    names = [e.payload["item"]["data"]["kind"] for e in second.store.events(first.run_id)
             if e.name == "agent.guardrail"]
    assert names == ["input", "output", "output"]


# ---------------------------------------------------------------------------- found by the audit of #17
async def test_the_output_retry_bound_holds_across_a_resume(tmp_path: Any) -> None:
    """One retry allowed, used before the crash: the first answer after the resume that fails
    ends the run (the journaled retry counts)."""

    def build(replies: list[Any]) -> Runner[Any]:
        @output_guardrail(max_retries=1)
        def short(answer: str) -> str | None:
            return None if len(answer) < 6 else "too long"

        return Runner(Agent("a", model=ScriptedModel(replies), output_guardrails=[short]),
                      store=f"sqlite:///{tmp_path}/r.db")

    first = await build([final("much too long"), final("also too long")]).acall("hi")
    assert first.error_type == "OutputGuardrailTripwireTriggered" and len(first.step_history) == 1
    runner = build([final("still too long"), final("ok")])
    entries = runner.store.events(first.run_id)
    cut = next(e.seq for e in entries if e.name == "agent.step_complete")  # the crash: right after the retry
    cut_journal(runner.store, first.run_id, lambda e: e.seq <= cut)
    again = await runner.aresume(first.run_id)
    assert again.error_type == "OutputGuardrailTripwireTriggered", again
    assert len(again.step_history) == 1 and len(runner.agent.model.requests) == 1


async def test_replay_keeps_the_guardrails(tmp_path: Any) -> None:
    """A replay decides as the run did: the output guardrail's retry, the blocked call that
    must not run now either, an agent guardrail answering from its journaled child run."""
    judged: list[str] = []

    def build() -> Runner[Any]:
        judge = Agent("judge", answer_data_type=bool, model=ScriptedModel(
            [lambda msgs: (judged.append(msgs[1]["content"]), final(True))[1]], per_run=True))

        @output_guardrail(max_retries=1)
        def short(answer: str) -> str | None:
            return None if len(answer) < 6 else "too long"

        @tool_guardrail(tools=["send"])
        def internal(call: dict[str, Any]) -> bool:
            return call["kwargs"]["to"].endswith("@corp.example")

        model = ScriptedModel([call("send", to="x@evil.example", body="b"), final("much too long"), final("sent")],
                              per_run=True)
        return Runner(Agent("a", tools=[send], model=model, input_guardrails=[judge], output_guardrails=[short],
                            tool_guardrails=[internal]), store=f"sqlite:///{tmp_path}/p.db")

    res = await build().acall("mail")
    assert res.answer == "sent" and ran == [] and judged == ["mail"]
    runner = build()
    report = await runner.areplay(res.run_id)
    assert report.same and report.replayed_answer == "sent", report
    assert ran == [], "the call the guardrail blocked did not run in the replay either"
    assert judged == ["mail"] and runner.agent.model.requests == []  # no model was called, the judge's neither


async def test_a_pending_calls_tool_guardrail_decision_is_reused_on_resume(tmp_path: Any) -> None:
    """A call checked, then suspended for approval: resumed, the journaled decision stands (the
    check is not run again and no second decision is recorded)."""
    from treadle import FunctionTool

    checked: list[str] = []

    def build() -> Runner[Any]:
        @tool_guardrail(tools=["send"])
        def internal(call: dict[str, Any]) -> bool:
            checked.append(call["kwargs"]["to"])
            return True

        agent = Agent("a", tools=[FunctionTool(send, require_approval=True)], tool_guardrails=[internal],
                      model=ScriptedModel([call("send", to="x", body="y"), final("sent")], per_run=True))
        return Runner(agent, store=f"sqlite:///{tmp_path}/t.db", suspend_for_approval=True)

    first = await build().acall("mail x")
    assert first.status == "waiting_for_approval" and checked == ["x"]
    second = build()
    call_id = first.error.split("tool call ")[1].split()[0]
    second.record_decision(first.run_id, call_id, approve=True)
    done = await second.aresume(first.run_id)
    assert done.answer == "sent" and ran == [("x", "y")]
    assert checked == ["x"], "the check was made again on resume"
    got = [(e.payload["item"]["data"]["guardrail"], e.payload["item"]["data"]["call_id"])
           for e in second.store.events(first.run_id) if e.name == "agent.guardrail"]
    assert got == [("internal", call_id)]


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("kind", ["input", "output"])
async def test_cancelling_during_a_guardrail_agents_run_cancels_both_runs(tmp_path: Any, face: str,
                                                                         kind: str) -> None:
    """The run is cancelled while its agent guardrail's child run waits on its model: both end
    cancelled (in the events and the journal), and nothing after the check happens."""
    import threading

    from treadle.types import child_run_id

    started, never = threading.Event(), asyncio.Event()

    async def thinking(messages: list[Any]) -> Function:
        started.set()
        await never.wait()
        return final(True)

    judge = Agent("judge", answer_data_type=bool, model=ScriptedModel([thinking]))
    model = ScriptedModel([call("send", to="a", body="b"), final("x")])
    checks: dict[str, Any] = {"input_guardrails": [judge]} if kind == "input" else {"output_guardrails": [judge]}
    if kind == "output":
        model = ScriptedModel([final("x")])
    runner = Runner(Agent("a", tools=[send], model=model, **checks), store=f"sqlite:///{tmp_path}/c.db")
    events: list[Any] = []
    runner.event_handlers.append(events.append)
    if face == "call":
        threading.Thread(target=lambda: (started.wait(30), runner.cancel()), daemon=True).start()
        res = runner.call("hi")
    else:
        async def go() -> Any:
            if face == "acall":
                return await runner.acall("hi")
            sr = runner.astream("hi")
            async for _ in sr.stream_events():
                pass
            return await sr.wait_for_completion()

        task = asyncio.ensure_future(go())
        while not started.is_set():
            await asyncio.sleep(0.005)
        assert runner.cancel()
        res = await asyncio.wait_for(task, 30)
    assert res.status == "cancelled" and ran == []
    child = child_run_id(res.run_id, f"guardrail:{kind}:judge:0:")  # both checks at step 0
    endings = [(e.run_id, e.item.data.status) for e in events if getattr(e, "name", "") == "agent.execution_complete"]
    assert endings == [(child, "cancelled"), (res.run_id, "cancelled")]
    assert decisions(events) == [], "a cancelled check decides nothing"
    store = runner.store
    assert store.get_run(child).status == "cancelled" and store.get_run(res.run_id).status == "cancelled"
    assert store.get_run(child).config["parent_run_id"] == res.run_id
