"""Issue #28: every paid request as lean as the leanest peer.

The task of ../shared/bench-http runs through the real OpenAI and Anthropic SDKs against a
recording endpoint (``bench/bench_request_weight.py``); each recorded request body is compared
with what a hand-written loop sends for the same conversation. Tokens are counted with the
bench's deterministic approximation (one per word and per punctuation character: it over-counts
JSON punctuation, roughly 1.5x cl100k_base on schemas), so the bounds below are in those units.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import pathlib
import sys
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from pydantic import BaseModel

from treadle import Agent, Runner
from treadle.models.anthropic import AnthropicModel
from treadle.models.base import ModelRequest
from treadle.models.openai import OpenAIModel
from treadle.types import FunctionDefinition

_PATH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "bench_request_weight.py"
_spec = importlib.util.spec_from_file_location("bench_request_weight", _PATH)
assert _spec is not None and _spec.loader is not None
bw = importlib.util.module_from_spec(_spec)
sys.modules["bench_request_weight"] = bw
_spec.loader.exec_module(bw)

STR_MAX = 10          # a str answer: tokens added per request, at most (today: 6, the tools' additionalProperties)
FORMAT_EXTRA = 10     # a structured answer by the provider's structured output: its schema once, plus this
TOOL_EXTRA = 45       # ... by one output tool: its schema once, plus the tool's envelope, name and description
WRAP_EXTRA = 40       # ... an answer whose schema is no object, wrapped as {"answer": ...}
JSON_FIRST_MAX = 450  # the JSON protocol (small models): its first request's additions, beside the schema


@pytest.fixture(scope="module")
def rows() -> dict[tuple[str, str], Any]:
    return {(r.mode, r.answer): r for r in asyncio.run(bw.run_all())}


@pytest.mark.parametrize("mode", bw.MODES)
@pytest.mark.parametrize("answer", list(bw.ANSWERS))
def test_tokens_added_per_request(rows: dict[tuple[str, str], Any], mode: str, answer: str) -> None:
    row = rows[(mode, answer)]
    assert row.ok and row.requests == bw.K + 1, "the run answered right in 6 requests"
    assert row.tools_identical, "the tools' JSON is the same in every request of the run"
    base = max(rows[(mode, "str")].added)
    wrapped = answer == "list[int]"
    if mode == "openai-json":  # the seed's JSON protocol: heavy by design, bounded against regressions
        assert row.added[0] <= JSON_FIRST_MAX + 2 * row.schema_tokens, row.added
    elif answer == "str":
        assert max(row.added) <= STR_MAX, row.added
    else:
        extra = FORMAT_EXTRA if mode in ("openai", "anthropic") else TOOL_EXTRA
        bound = base + row.schema_tokens + extra + (WRAP_EXTRA if wrapped else 0)
        assert max(row.added) <= bound, (row.added, bound)
    if mode != "openai-json":
        assert len(set(row.added)) == 1, "the history grows exactly as the hand-written loop's"


@pytest.mark.parametrize("mode", ["openai", "anthropic"])
def test_str_answer_sends_the_instructions_verbatim_and_only_the_agents_tools(
        rows: dict[tuple[str, str], Any], mode: str) -> None:
    first = rows[(mode, "str")].bodies[0]
    if mode == "anthropic":
        assert first["system"] == bw.INSTRUCTIONS and [t["name"] for t in first["tools"]] == ["add"]
        assert "output_config" not in first
    else:
        assert first["messages"][0] == {"role": "system", "content": bw.INSTRUCTIONS}
        assert [t["function"]["name"] for t in first["tools"]] == ["add"] and "response_format" not in first
    assert "title" not in json.dumps(first["tools"])


@pytest.mark.parametrize("mode", ["openai", "openai-tool", "anthropic", "anthropic-tool"])
def test_structured_answer_is_format_or_output_tool_never_both(rows: dict[tuple[str, str], Any],
                                                                     mode: str) -> None:
    body = rows[(mode, "Total")].bodies[0]
    names = [t["name"] if "name" in t else t["function"]["name"] for t in body["tools"]]
    native = "response_format" in body or "output_config" in body
    assert native == (mode in ("openai", "anthropic"))
    assert names == (["add"] if native else ["add", "final_answer"])
    system = body.get("system") or body["messages"][0]["content"]
    assert system == bw.INSTRUCTIONS, "no extra prose for a structured answer either"


@pytest.mark.parametrize("mode", ["openai", "anthropic"])
def test_tools_are_byte_identical_on_the_wire(rows: dict[tuple[str, str], Any], mode: str) -> None:
    segments = set()
    for raw in rows[(mode, "Total")].raw_bytes:
        text = raw.decode()
        start = text.index('"tools":') + len('"tools":')
        while text[start] == " ":
            start += 1
        _, end = json.JSONDecoder().raw_decode(text, start)
        segments.add(text[start:end])
    assert len(segments) == 1


def test_the_model_converts_a_tool_list_once() -> None:
    defs = [FunctionDefinition("add", "Add.", {"type": "object", "title": "add_arguments", "properties": {
        "a": {"type": "integer", "title": "A"}, "title": {"type": "string", "default": None}}})]
    oa = OpenAIModel("gpt-4o-mini", api_key="sk-test")
    one = oa.build_params(ModelRequest(messages=[], tools=defs))["tools"]
    assert oa.build_params(ModelRequest(messages=[], tools=defs))["tools"] is one
    assert one[0]["function"]["parameters"] == {"type": "object", "properties": {"a": {"type": "integer"},
                                                                                 "title": {"type": "string"}}}
    an = AnthropicModel("claude-sonnet-4-6", api_key="sk-ant-test")
    tools = an.build_params(ModelRequest(messages=[], tools=defs))["tools"]
    assert an.build_params(ModelRequest(messages=[], tools=defs))["tools"] is tools
    assert "title" not in json.dumps(tools[0]["input_schema"]["properties"]["a"])


def test_structured_output_defaults() -> None:
    assert OpenAIModel("gpt-4o-mini", api_key="k").structured_output is True
    assert OpenAIModel("m", base_url="http://localhost:8080/v1").structured_output is False
    assert OpenAIModel("m", base_url="http://localhost:8080/v1", structured_output=True).structured_output is True
    assert AnthropicModel("claude-sonnet-4-6", api_key="k").structured_output is True
    assert AnthropicModel("claude-opus-4-1", api_key="k").structured_output is True
    for old in ("claude-3-5-haiku-latest", "claude-sonnet-4-20250514", "claude-opus-4-0"):
        assert AnthropicModel(old, api_key="k").structured_output is False, old
    assert AnthropicModel("claude-sonnet-4-6", base_url="http://localhost:8080").structured_output is False
    for old in ("gpt-3.5-turbo", "gpt-4", "gpt-4-turbo", "gpt-4-0613", "gpt-4-turbo-2024-04-09"):
        assert OpenAIModel(old, api_key="k").structured_output is False, old
    for new in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", "o3"):
        assert OpenAIModel(new, api_key="k").structured_output is True, new
    local = openai.AsyncOpenAI(api_key="k", base_url="http://localhost:8080/v1")
    assert OpenAIModel("m", client=local).structured_output is False, "a given client's address counts"
    assert OpenAIModel("m", client=openai.AsyncOpenAI(api_key="k")).structured_output is True


# ------------------------------------------------------------------ validation retries on the wire
class Point(BaseModel):
    x: int
    y: int


def _openai(replies: list[dict[str, Any]], bodies: list[dict[str, Any]], **kw: Any) -> OpenAIModel:
    def handler(request: httpx2.Request) -> httpx2.Response:
        bodies.append(json.loads(request.content))
        message = {"role": "assistant", "content": None, **replies[min(len(bodies), len(replies)) - 1]}
        return httpx2.Response(200, json={"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                                          "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    client = openai.AsyncOpenAI(api_key="sk-test", base_url="https://api.openai.test/v1", http_client=http)
    return OpenAIModel("gpt-4o-mini", client=client, max_retries=0, **kw)


async def test_openai_structured_reply_that_does_not_fit_is_asked_again() -> None:
    bodies: list[dict[str, Any]] = []
    model = _openai([{"content": '{"x": 1}'}, {"content": '{"x": 1, "y": 2}'}], bodies, structured_output=True)
    res = await Runner(Agent(model=model, answer_data_type=Point, instructions="Be exact.")).acall("where?")
    assert res.status == "success" and res.answer == Point(x=1, y=2)
    assert bodies[0]["response_format"]["json_schema"]["name"] == "Point" and "tools" not in bodies[0]
    assert bodies[1]["messages"][-2] == {"role": "assistant", "content": '{"x": 1}'}, "the text reply, as text"
    assert bodies[1]["messages"][-1]["role"] == "user"
    assert "does not fit the answer type Point" in bodies[1]["messages"][-1]["content"]


async def test_openai_output_tool_reply_that_does_not_fit_is_asked_again() -> None:
    bodies: list[dict[str, Any]] = []
    bad = {"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "final_answer",
                                                                        "arguments": '{"x": 1}'}}]}
    good = {"tool_calls": [{"id": "c2", "type": "function", "function": {"name": "final_answer",
                                                                         "arguments": '{"x": 1, "y": 2}'}}]}
    model = _openai([bad, good], bodies, structured_output=False)
    res = await Runner(Agent(model=model, answer_data_type=Point)).acall("where?")
    assert res.status == "success" and res.answer == Point(x=1, y=2)
    assert [t["function"]["name"] for t in bodies[0]["tools"]] == ["final_answer"]
    assert "response_format" not in bodies[0] and bodies[0]["messages"] == [{"role": "user", "content": "where?"}]
    assert "does not fit the answer type Point" in bodies[1]["messages"][-1]["content"]


async def test_anthropic_structured_answer_goes_out_as_output_config() -> None:
    bodies: list[dict[str, Any]] = []
    texts = ['{"x": 3}', '{"x": 3, "y": 4}']

    def handler(request: httpx2.Request) -> httpx2.Response:
        bodies.append(json.loads(request.content))
        text = texts[min(len(bodies), len(texts)) - 1]
        return httpx2.Response(200, json={"id": "m", "type": "message", "role": "assistant", "model": "c",
                                          "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                                          "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}})

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url="https://api.anthropic.test", http_client=http)
    model = AnthropicModel("claude-sonnet-4-6", client=client, max_retries=0, structured_output=True,
                           model_kwargs={"output_config": {"effort": "low"}})
    res = await Runner(Agent(model=model, answer_data_type=Point)).acall("where?")
    assert res.status == "success" and res.answer == Point(x=3, y=4)
    config = bodies[0]["output_config"]
    assert config["effort"] == "low", "the caller's output_config is kept"
    assert config["format"] == {"type": "json_schema", "schema": {
        "type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
        "additionalProperties": False, "required": ["x", "y"]}}
    assert "tools" not in bodies[0] and "system" not in bodies[0]
    retry = bodies[1]["messages"]  # no tool_use block: the API refuses one in a request without tools
    assert retry[1] == {"role": "assistant", "content": '{"x": 3}'} and retry[2]["role"] == "user"
    assert "does not fit the answer type Point" in retry[2]["content"]
