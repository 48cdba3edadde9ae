"""Every event names the agent speaking (``event.agent``): the run's agent, the agent it handed
to, a child run's agent (called as a tool, or judging as a guardrail) — in the three faces
and in the events read back from the journal."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import run_face
from treadle import Agent, Function, ModelDelta, Runner, ScriptedModel
from treadle.types import child_run_id

FACES = ["call", "acall", "astream"]


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


def build() -> Agent[Any]:
    judge = Agent("judge", answer_data_type=bool, model=ScriptedModel([final(True)]))
    calculator = Agent("calculator", answer_data_type=int, model=ScriptedModel([final(5)]))
    editor = Agent("editor", model=ScriptedModel([final("five")]))
    return Agent("writer", tools=[calculator.as_tool()], handoffs=[editor], input_guardrails=[judge],
                 model=ScriptedModel([Function(id="q1", name="calculator", kwargs={"input": "2+3"}),
                                      Function(id="h1", name="transfer_to_editor", kwargs={})]))


def speakers(pairs: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """Runs of the same (run id, agent) folded into one."""
    out: list[tuple[str, str | None]] = []
    for p in pairs:
        if not out or out[-1] != p:
            out.append(p)
    return out


@pytest.mark.parametrize("face", FACES)
async def test_every_event_names_the_agent_speaking(face: str, tmp_path: Any) -> None:
    runner = Runner(build(), store=f"sqlite:///{tmp_path}/a.db")
    res, events = await run_face(runner, face, "what is 2+3, in words?")
    assert res.status == "success" and res.answer == "five", res
    rid = res.run_id
    judge, calc = child_run_id(rid, "guardrail:input:judge:0:"), child_run_id(rid, "0:q1")
    assert all(isinstance(e.agent, str) for e in events)
    assert speakers([(e.run_id, e.agent) for e in events if not isinstance(getattr(e, "data", None), ModelDelta)]) == [
        (judge, "judge"), (rid, "writer"), (calc, "calculator"), (rid, "writer"), (rid, "editor")]
    handoff = next(e for e in events if getattr(e, "name", "") == "agent.handoff")
    assert handoff.agent == "editor" and handoff.item.data.from_agent == "writer"
    # read back from the journal
    store = runner.store
    journaled = [e.payload.get("agent") for e in store.events(rid)]
    cut = next(i for i, e in enumerate(store.events(rid)) if e.name == "agent.handoff")
    assert set(journaled[:cut]) == {"writer"} and set(journaled[cut:]) == {"editor"}, journaled
    assert {e.payload.get("agent") for e in store.events(calc)} == {"calculator"}
    assert {e.payload.get("agent") for e in store.events(judge)} == {"judge"}


async def test_a_streamed_delta_names_the_agent_too() -> None:
    model = ScriptedModel(["hello there"], stream_chunk=3)
    sr = Runner(Agent("greeter", model=model)).astream("hi")
    deltas = [e async for e in sr.stream_events() if isinstance(getattr(e, "data", None), ModelDelta)]
    await sr.wait_for_completion()
    assert deltas and {e.agent for e in deltas} == {"greeter"}
