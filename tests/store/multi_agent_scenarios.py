"""Two more runs for the write-boundary crash tests (boundary_worker.py, ``BOUNDARY_SCENARIO``):

* ``handoff``: the desk charges 5, then hands the conversation to the closer, who looks a
  value up, charges 7 and answers a ``Receipt`` (the closer's answer type, not the desk's);
* ``guardrails``: an agent guardrail (a child run) checks the input; a tool guardrail checks
  every call and blocks a charge of 500; another, after every call, replaces the lookup's output
  (``CHECKED``); an output guardrail sends the first answer back once.

Same tools as boundary_worker's (``charge`` must not run twice, ``lookup`` may), same log.
"""

from __future__ import annotations

from typing import Any, Callable

import pydantic

from treadle import Agent, Function, FunctionTool, ScriptedModel
from treadle.guardrails import GuardrailResult, ToolGuardrail, output_guardrail

# what the model does after n tool results (the call ids are f"{run}-c{n}")
HANDOFF_PLAN: list[tuple[str, dict[str, Any]]] = [
    ("charge", {"amount": 5}), ("transfer_to_closer", {"message": "finish up"}),
    ("lookup", {"key": "x"}), ("charge", {"amount": 7})]
GUARDED_PLAN: list[tuple[str, dict[str, Any]]] = [
    ("charge", {"amount": 5}), ("lookup", {"key": "x"}), ("charge", {"amount": 500})]
REJECTED = "rejected by the"
CHECKED = "value of x (checked)"  # the lookup's output, as the after-call guardrail replaces it


class Receipt(pydantic.BaseModel):
    run: str
    total: int


def _question(messages: list) -> str:
    """The run's input: its first user message (a native agent without instructions sends no system message)."""
    return next(m["content"] for m in messages if m["role"] == "user")


def _model(script: Callable[[list[dict[str, Any]]], Function]) -> ScriptedModel:
    model = ScriptedModel([script], repeat_last=True, native_tools=True)
    model.record_requests = False
    return model


def _results(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if m["role"] == "tool" and REJECTED not in str(m.get("content")))


def _planned(plan: list[tuple[str, dict[str, Any]]], run: str, done: int) -> Function:
    name, kwargs = plan[done]
    return Function(id=f"{run}-c{done}", name=name, kwargs=kwargs)


def handoff_agent(charge: Callable[..., str], lookup: Callable[..., str]) -> Agent[Any]:
    def closer_script(messages: list[dict[str, Any]]) -> Function:
        run, done = _question(messages), _results(messages)
        if done < len(HANDOFF_PLAN):
            return _planned(HANDOFF_PLAN, run, done)
        return Function(name="finish", kwargs={"answer": {"run": run, "total": 12}})

    def desk_script(messages: list[dict[str, Any]]) -> Function:
        run, done = _question(messages), _results(messages)
        return _planned(HANDOFF_PLAN, run, min(done, 1))

    tools = [FunctionTool(charge), FunctionTool(lookup, idempotent=True)]
    closer = Agent("closer", tools=tools, model=_model(closer_script), answer_data_type=Receipt, max_steps=8)
    return Agent("desk", tools=tools, handoffs=[closer], model=_model(desk_script), max_steps=8)


def guarded_agent(charge: Callable[..., str], lookup: Callable[..., str], log: Callable[[str], None]) -> Agent[Any]:
    def script(messages: list[dict[str, Any]]) -> Function:
        run, done = _question(messages), _results(messages)
        if done < len(GUARDED_PLAN):
            return _planned(GUARDED_PLAN, run, done)
        answer = f"done {run}" if any(REJECTED in str(m.get("content")) for m in messages) else f"draft {run}"
        return Function(name="finish", kwargs={"answer": answer})

    def judge_script(messages: list[dict[str, Any]]) -> Function:
        log("judge")
        return Function(name="finish", kwargs={"answer": True})

    def limit(call: dict[str, Any]) -> str | None:
        log("limit")
        return "over the limit" if call["kwargs"].get("amount", 0) > 100 else None

    def receipt(output: Any) -> GuardrailResult | None:
        log("receipt")
        if isinstance(output, str) and output.startswith("value of"):
            return GuardrailResult(True, "a raw value", replacement=CHECKED)
        return None

    @output_guardrail(max_retries=1)
    def final_only(answer: str) -> str | None:
        log("final_only")
        return None if answer.startswith("done") else "a draft is not an answer"

    judge = Agent("judge", model=_model(judge_script), answer_data_type=bool, max_steps=2)
    return Agent("guarded", tools=[FunctionTool(charge), FunctionTool(lookup, idempotent=True)], model=_model(script),
                 input_guardrails=[judge], tool_guardrails=[ToolGuardrail(limit, name="limit"),
                                  ToolGuardrail(receipt, name="receipt", when="after")],
                 output_guardrails=[final_only], max_steps=8)
