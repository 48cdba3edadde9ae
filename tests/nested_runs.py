"""A journaled run with nested child runs, a handoff and a guardrail decision, for the CLI
and server tests: writer -> calculator (a child run) -> doubler (a grandchild), then a
handoff to the editor, who answers."""

from __future__ import annotations

from typing import Any

from treadle import Agent, Function, Runner, ScriptedModel, Usage
from treadle.guardrails import input_guardrail

USAGE = Usage(input_tokens=10, output_tokens=2)


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def double(n: int) -> int:
    """Double a number."""
    return 2 * n


@input_guardrail
def polite(text: str) -> bool:
    return "rude" not in text


def agents() -> Agent[Any]:
    doubler = Agent("doubler", tools=[double], answer_data_type=int, model=ScriptedModel(
        [Function(id="d1", name="double", kwargs={"n": 5}), final(10)], usage=USAGE))
    calculator = Agent("calculator", tools=[add, doubler.as_tool()], answer_data_type=int, model=ScriptedModel(
        [Function(id="a1", name="add", kwargs={"a": 2, "b": 3}),
         Function(id="c2", name="doubler", kwargs={"input": "double 5"}), final(10)], usage=USAGE))
    editor = Agent("editor", model=ScriptedModel([final("ten")], usage=USAGE))
    return Agent("writer", tools=[calculator.as_tool()], handoffs=[editor], input_guardrails=[polite],
                 model=ScriptedModel([Function(id="q1", name="calculator", kwargs={"input": "(2+3)*2?"}),
                                      Function(id="h1", name="transfer_to_editor", kwargs={"message": "polish"})],
                                     usage=USAGE))


def nested_run(store: Any) -> tuple[str, str, str]:
    """Run it into ``store`` (a URL or RunStore): (writer's id, calculator's id, doubler's id)."""
    from treadle.types import child_run_id

    res = Runner(agents(), store=store).call("what is (2+3)*2?")
    assert res.status == "success" and res.answer == "ten", res
    child = child_run_id(res.run_id, "0:q1")
    return res.run_id, child, child_run_id(child, "1:c2")
