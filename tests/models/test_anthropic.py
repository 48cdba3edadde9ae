"""AnthropicModel: against a real llama.cpp server through the official SDK, and on the wire.

The wire tests serve payloads shaped like the Anthropic Messages API reference from an
``httpx2.MockTransport`` given to a real ``anthropic.AsyncAnthropic``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import anthropic
import httpx2
import pytest

from treadle import Agent, Runner
from treadle.errors import (
    ModelAuthenticationError,
    ModelBadRequestError,
    ModelContextTooLongError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelResponseError,
    ModelServerError,
    ModelTimeoutError,
)
from treadle.models._retry import RetryPolicy
from treadle.models.anthropic import AnthropicModel, to_anthropic_messages, to_anthropic_tools
from treadle.models.base import ModelDelta, ModelRequest, ModelResponse
from treadle.types import FunctionDefinition

BASE_URL = "https://api.anthropic.test"
FAST = RetryPolicy(initial_delay=0.01, max_delay=0.05)
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
ADD = FunctionDefinition("add", "Add two integers.", {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]})
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# ------------------------------------------------------------------ wire helpers
class Server:
    """A scripted HTTP endpoint: each request gets the next reply (the last one repeats)."""

    def __init__(self, *replies: Callable[[], httpx2.Response]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.replies[min(len(self.requests), len(self.replies)) - 1]()

    def body(self, i: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[i].content)


def wire_model(server: Server, **kw: Any) -> AnthropicModel:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(server))
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=BASE_URL, http_client=http)
    kw.setdefault("retry_policy", FAST)
    return AnthropicModel("claude-sonnet-4-6", client=client, **kw)


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "service_tier": "standard", **usage},
    }


def ok(payload: dict[str, Any]) -> Callable[[], httpx2.Response]:
    return lambda: httpx2.Response(200, json=payload, headers={"request-id": "req_018EeWyXxfu5pfWkrYcMdjWG"})


def api_error(status: int, type_: str, msg: str,
              headers: dict[str, str] | None = None) -> Callable[[], httpx2.Response]:
    body = {"type": "error", "error": {"type": type_, "message": msg}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    return lambda: httpx2.Response(status, json=body, headers=headers)


def sse(*events: dict[str, Any]) -> Callable[[], httpx2.Response]:
    text = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return lambda: httpx2.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


HELLO_REPLY = message([{"type": "text", "text": "Hello! How can I help you today?"}])
MESSAGE_START = {"type": "message_start", "message": {
    "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
    "stop_sequence": None, "usage": {"input_tokens": 472, "output_tokens": 2, "cache_read_input_tokens": 100},
    "content": [], "stop_reason": None}}


# ------------------------------------------------------------------ the real server
@pytest.mark.slow
async def test_plain_reply(llama_server: str) -> None:
    model = AnthropicModel("smollm2", base_url=llama_server, max_tokens=24, model_kwargs={"temperature": 0})
    try:
        resp = await model.request(ModelRequest(messages=[{"role": "system", "content": "Be brief."}, *HELLO]))
    finally:
        await model.aclose()
    assert isinstance(resp.text, str) and resp.text.strip() and resp.tool_calls == []
    assert resp.finish_reason in ("end_turn", "max_tokens")
    assert resp.usage.requests == 1 and resp.usage.input_tokens > 0 and 0 < resp.usage.output_tokens <= 24


@pytest.mark.slow
async def test_streamed_reply(llama_server: str) -> None:
    model = AnthropicModel("smollm2", base_url=llama_server, max_tokens=24, model_kwargs={"temperature": 0})
    try:
        chunks = [c async for c in model.stream(ModelRequest(messages=HELLO))]
    finally:
        await model.aclose()
    deltas, final = chunks[:-1], chunks[-1]
    assert isinstance(final, ModelResponse) and deltas and all(isinstance(d, ModelDelta) for d in deltas)
    text = "".join(d.text or "" for d in deltas)
    assert text.strip() and text == final.text
    assert final.usage.input_tokens > 0 and 0 < final.usage.output_tokens <= 24
    assert final.finish_reason in ("end_turn", "max_tokens")


@pytest.mark.slow
async def test_converted_tool_history_is_accepted(llama_server: str) -> None:
    # a native-mode history (assistant tool_calls, tool results) as the planner writes it
    msgs = [{"role": "system", "content": "You add numbers."}, {"role": "user", "content": "What is 1 + 2?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "3"}]
    model = AnthropicModel("smollm2", base_url=llama_server, max_tokens=16, model_kwargs={"temperature": 0})
    try:
        resp = await model.request(ModelRequest(messages=msgs, tools=[ADD]))
        # a whole native-mode run: SmolLM2 answers in text, which is the final answer
        res = await Runner(Agent(tools=[add], model=model, max_steps=2, model_kwargs={"max_tokens": 16})).acall(
            "What is 1 + 2?")
    finally:
        await model.aclose()
    assert resp.text and resp.usage.input_tokens > 0
    assert res.status == "success" and isinstance(res.answer, str) and res.usage.requests == 1


# ------------------------------------------------------------------ conversion
def test_message_conversion() -> None:
    msgs = [
        {"role": "system", "content": "You are a calculator."},
        {"role": "user", "content": "What are 1 + 2 and 3 + 4?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "add", "arguments": '{"a": 3, "b": 4}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "3"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "7"},
        {"role": "user", "content": "Now say both."},
        {"role": "assistant", "content": ""},  # empty turns are dropped
        {"role": "user", "content": [
            {"type": "text", "text": "Please."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": "3 and 7."},
    ]
    system, out = to_anthropic_messages(msgs)
    assert system == "You are a calculator."
    assert out == [
        {"role": "user", "content": "What are 1 + 2 and 3 + 4?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 1, "b": 2}},
            {"type": "tool_use", "id": "toolu_2", "name": "add", "input": {"a": 3, "b": 4}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "3"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "7"},
            {"type": "text", "text": "Now say both."},
            {"type": "text", "text": "Please."},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
        {"role": "assistant", "content": "3 and 7."},
    ]
    assert msgs[2]["content"] is None and len(msgs) == 9  # the run's messages are not changed


def test_tool_result_goes_before_user_text_and_text_with_calls() -> None:
    msgs = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Let me add.", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "add", "arguments": "{bad json"}}]},
            {"role": "user", "content": "(interrupting)"},
            {"role": "tool", "tool_call_id": "t1", "content": "Error: bad arguments"}]
    _, out = to_anthropic_messages(msgs)
    assert out[1]["content"] == [{"type": "text", "text": "Let me add."},
                                 {"type": "tool_use", "id": "t1", "name": "add", "input": {"arguments": "{bad json"}}]
    assert [b["type"] for b in out[2]["content"]] == ["tool_result", "text"]
    assert to_anthropic_tools([ADD]) == [{"name": "add", "description": "Add two integers.",
                                         "input_schema": ADD.func_parameters}]


async def test_request_body() -> None:
    server = Server(ok(HELLO_REPLY))
    model = wire_model(server, max_tokens=300, thinking={"type": "enabled", "budget_tokens": 200},
                       model_kwargs={"temperature": 1})
    msgs = [{"role": "system", "content": "Be brief."}, *HELLO]
    await model.request(ModelRequest(messages=msgs, tools=[ADD], model_kwargs={"top_k": 5}))
    body = server.body()
    assert server.requests[0].url.path == "/v1/messages"
    assert server.requests[0].headers["authorization"] == "Bearer sk-ant-test"
    assert body["model"] == "claude-sonnet-4-6" and body["max_tokens"] == 300
    assert body["system"] == "Be brief." and body["messages"] == HELLO
    assert body["tools"] == [{"name": "add", "description": "Add two integers.", "input_schema": ADD.func_parameters}]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 200}
    assert body["temperature"] == 1 and body["top_k"] == 5
    assert "stream" not in body


# ------------------------------------------------------------------ responses
async def test_parallel_tool_use_blocks_become_functions() -> None:
    server = Server(ok(message([
        {"type": "text", "text": "I'll add both pairs."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "add", "input": {"a": 1, "b": 2}},
        {"type": "tool_use", "id": "toolu_01B19q90qw90lq917835lq0", "name": "add", "input": {"a": 3, "b": 4}},
    ], stop_reason="tool_use", input_tokens=400, output_tokens=120, cache_creation_input_tokens=50,
        cache_read_input_tokens=1000)))
    resp = await wire_model(server).request(ModelRequest(messages=HELLO, tools=[ADD]))
    assert resp.text == "I'll add both pairs." and resp.finish_reason == "tool_use"
    assert [(f.id, f.name, f.kwargs) for f in resp.tool_calls] == [
        ("toolu_01A09q90qw90lq917835lq9", "add", {"a": 1, "b": 2}),
        ("toolu_01B19q90qw90lq917835lq0", "add", {"a": 3, "b": 4})]
    # cached prompt tokens count as input
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.requests) == (1450, 120, 1)
    assert resp.model_name == "claude-sonnet-4-6"


async def test_thinking_blocks_become_thinking_and_are_sent_back() -> None:
    server = Server(ok(message([
        {"type": "thinking", "thinking": "The user wants 17 + 25. I should call add.", "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIw"},
        {"type": "tool_use", "id": "toolu_01", "name": "add", "input": {"a": 17, "b": 25}},
    ], stop_reason="tool_use")), ok(HELLO_REPLY))
    model = wire_model(server, thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048)
    resp = await model.request(ModelRequest(messages=HELLO, tools=[ADD]))
    assert resp.thinking == "The user wants 17 + 25. I should call add." and resp.text is None
    assert resp.tool_calls[0].kwargs == {"a": 17, "b": 25}
    # the planner's next request carries the call and its result; the thinking goes back with the call
    history = [*HELLO, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_01", "type": "function", "function": {"name": "add", "arguments": '{"a": 17, "b": 25}'}}]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "42"}]
    await model.request(ModelRequest(messages=history, tools=[ADD]))
    assistant = server.body()["messages"][1]
    assert [b["type"] for b in assistant["content"]] == ["thinking", "redacted_thinking", "tool_use"]
    assert assistant["content"][0]["signature"] == SIGNATURE


async def test_streamed_tool_use() -> None:
    server = Server(sse(
        MESSAGE_START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Two sums."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIGNATURE}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Okay"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "add", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a": 1'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ', "b": 2}'}},
        {"type": "content_block_stop", "index": 2},
        {"type": "content_block_start", "index": 3, "content_block": {
            "type": "tool_use", "id": "toolu_02", "name": "add", "input": {}}},
        {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta",
                                                              "partial_json": '{"a": 3, "b": 4}'}},
        {"type": "content_block_stop", "index": 3},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 89}},
        {"type": "message_stop"},
    ))
    model = wire_model(server)
    chunks = [c async for c in model.stream(ModelRequest(messages=HELLO, tools=[ADD]))]
    assert server.body()["stream"] is True
    deltas, final = chunks[:-1], chunks[-1]
    assert [(d.text, d.thinking, d.tool_call_index, d.tool_call_id, d.tool_name, d.arguments_delta)
            for d in deltas] == [
        (None, "Two sums.", None, None, None, None),
        ("Okay", None, None, None, None, None),
        (None, None, 0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "add", None),
        (None, None, 0, None, None, '{"a": 1'),
        (None, None, 0, None, None, ', "b": 2}'),
        (None, None, 1, "toolu_02", "add", None),
        (None, None, 1, None, None, '{"a": 3, "b": 4}'),
    ]
    assert isinstance(final, ModelResponse)
    assert (final.text, final.thinking, final.finish_reason) == ("Okay", "Two sums.", "tool_use")
    assert [(f.id, f.name, f.kwargs) for f in final.tool_calls] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "add", {"a": 1, "b": 2}), ("toolu_02", "add", {"a": 3, "b": 4})]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (572, 89)
    assert final.raw["content"][0]["signature"] == SIGNATURE


# ------------------------------------------------------------------ errors and retries
async def test_rate_limit_honours_retry_after_then_succeeds() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    server = Server(api_error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate "
                              "limit.", headers={"retry-after": "7"}), ok(HELLO_REPLY))
    model = wire_model(server, retry_policy=RetryPolicy(initial_delay=0.01, sleep=sleep))
    resp = await model.request(ModelRequest(messages=HELLO))
    assert resp.text == "Hello! How can I help you today?"
    assert len(server.requests) == 2
    assert len(sleeps) == 1 and 7.0 <= sleeps[0] <= 7.5  # the header's 7 s, not the 0.01 s backoff


async def test_rate_limit_waits_with_the_default_sleeper(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, result: Any = None) -> Any:  # records, does not wait
        sleeps.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    server = Server(api_error(429, "rate_limit_error", "Rate limited.", headers={"retry-after": "1"}), ok(HELLO_REPLY))
    resp = await wire_model(server).request(ModelRequest(messages=HELLO))
    assert resp.text and len(server.requests) == 2
    # asyncio.sleep (no sleeper given) was asked for the header's 1 s, plus at most 5 % jitter
    assert [s for s in sleeps if s > 0] and all(1.0 <= s <= 1.05 for s in sleeps if s > 0), sleeps


def drip(payload: bytes, *, stream: bool, gave: list[int]) -> Callable[[], httpx2.Response]:
    """A 200 whose body comes one byte every 0.2 s (no read waits long; the whole takes minutes)."""

    async def body() -> Any:
        for i in range(len(payload)):
            gave.append(i)
            yield payload[i:i + 1]
            await asyncio.sleep(0.2)

    ctype = "text/event-stream" if stream else "application/json"
    return lambda: httpx2.Response(200, content=body(), headers={"content-type": ctype})


@pytest.mark.parametrize("stream", [False, True])
async def test_a_drip_fed_reply_ends_at_the_overall_deadline(stream: bool) -> None:
    gave: list[int] = []
    text = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in (MESSAGE_START,)) if stream \
        else json.dumps(HELLO_REPLY)
    payload = text.encode()
    assert len(payload) * 0.2 > 30  # the whole reply would take far longer than the test's hang guard
    server = Server(drip(payload, stream=stream, gave=gave))
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    model = wire_model(server, timeout=1.0, max_retries=1, retry_policy=RetryPolicy(initial_delay=0.01, sleep=sleep))
    request = ModelRequest(messages=HELLO)

    async def go() -> None:
        if stream:
            async for _ in model.stream(request):
                pass
        else:
            await model.request(request)

    with pytest.raises(ModelTimeoutError, match="timed out") as info:
        await asyncio.wait_for(go(), 60)  # a hang guard only
    assert info.value.retryable and info.value.provider == "anthropic"
    assert len(server.requests) == 2 and len(sleeps) == 1  # one try and one retry, as max_retries=1 says
    assert 0 < len(gave) < 2 * len(payload)  # neither reply was read to its end


@pytest.mark.parametrize("reply", [
    {"content": None}, {"content": "Hello"}, {"content": ["Hello"]}, {"content": [None]},
])
async def test_a_reply_of_the_wrong_shape_is_a_typed_error(reply: dict[str, Any]) -> None:
    server = Server(ok({**HELLO_REPLY, **reply}))
    with pytest.raises(ModelResponseError, match="malformed"):
        await wire_model(server).request(ModelRequest(messages=HELLO))
    assert len(server.requests) == 1


async def test_a_null_usage_counts_no_tokens() -> None:
    server = Server(ok({**HELLO_REPLY, "usage": None}))
    resp = await wire_model(server).request(ModelRequest(messages=HELLO))
    assert resp.text == "Hello! How can I help you today?"
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.requests) == (0, 0, 1)


async def test_a_stream_event_of_the_wrong_shape_is_a_typed_error() -> None:
    server = Server(sse({"type": "message_start", "message": None}))
    with pytest.raises(ModelResponseError, match="malformed"):
        async for _ in wire_model(server).stream(ModelRequest(messages=HELLO)):
            pass


async def test_overloaded_is_retried_then_raised() -> None:
    server = Server(api_error(529, "overloaded_error", "Overloaded"))
    with pytest.raises(ModelServerError) as info:
        await wire_model(server, max_retries=2).request(ModelRequest(messages=HELLO))
    assert info.value.status_code == 529 and info.value.retryable and info.value.provider == "anthropic"
    assert len(server.requests) == 3


async def test_overloaded_then_success() -> None:
    server = Server(api_error(529, "overloaded_error", "Overloaded"), ok(HELLO_REPLY))
    resp = await wire_model(server).request(ModelRequest(messages=HELLO))
    assert resp.text and len(server.requests) == 2


@pytest.mark.parametrize(("reply", "error", "status"), [
    (api_error(401, "authentication_error", "invalid x-api-key"), ModelAuthenticationError, 401),
    (api_error(403, "permission_error", "Your API key does not have permission to use the specified resource."),
     ModelAuthenticationError, 403),
    (api_error(404, "not_found_error", "model: claude-nope"), ModelNotFoundError, 404),
    (api_error(400, "invalid_request_error", "messages: roles must alternate"), ModelBadRequestError, 400),
    (api_error(413, "request_too_large", "Request exceeds the maximum allowed number of bytes."),
     ModelContextTooLongError, 413),
])
async def test_errors_are_mapped_without_retry(reply: Any, error: type, status: int) -> None:
    server = Server(reply, ok(HELLO_REPLY))
    with pytest.raises(error) as info:
        await wire_model(server).request(ModelRequest(messages=HELLO))
    assert info.value.status_code == status and not info.value.retryable
    assert len(server.requests) == 1


async def test_stream_retries_before_the_first_event() -> None:
    server = Server(api_error(529, "overloaded_error", "Overloaded"), sse(
        MESSAGE_START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 3}},
        {"type": "message_stop"}))
    chunks = [c async for c in wire_model(server).stream(ModelRequest(messages=HELLO))]
    assert len(server.requests) == 2 and chunks[-1].text == "Hi" and chunks[-1].finish_reason == "end_turn"


async def test_error_event_mid_stream_is_mapped_not_retried() -> None:
    server = Server(sse(
        MESSAGE_START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    got: list[Any] = []
    with pytest.raises(ModelServerError):
        async for c in wire_model(server).stream(ModelRequest(messages=HELLO)):
            got.append(c)
    assert [d.text for d in got] == ["Hel"] and len(server.requests) == 1


@pytest.mark.slow
async def test_context_too_long_from_the_real_server(llama_server: str) -> None:
    model = AnthropicModel("smollm2", base_url=llama_server, max_tokens=8)
    try:
        with pytest.raises(ModelContextTooLongError):
            await model.request(ModelRequest(messages=[{"role": "user", "content": "hello " * 5000}]))
    finally:
        await model.aclose()


async def test_rate_limit_error_type_maps() -> None:
    server = Server(api_error(429, "rate_limit_error", "slow down"))
    with pytest.raises(ModelRateLimitError):
        await wire_model(server, max_retries=0).request(ModelRequest(messages=HELLO))
    assert len(server.requests) == 1
