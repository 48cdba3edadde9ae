"""OpenAIModel: against a real llama.cpp server through the official SDK, and on the wire.

The wire tests serve payloads shaped like the OpenAI API reference from an
``httpx2.MockTransport`` given to a real ``openai.AsyncOpenAI``, so the SDK's own parsing
and exceptions are exercised; only the network is replaced.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import httpx2
import openai
import pytest

from treadle import Agent, Runner
from treadle.errors import (
    ModelAuthenticationError,
    ModelBadRequestError,
    ModelConnectionError,
    ModelContextTooLongError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelResponseError,
    ModelServerError,
    ModelTimeoutError,
)
from treadle.models._retry import RetryPolicy
from treadle.models.base import ModelDelta, ModelRequest, ModelResponse
from treadle.models.openai import OpenAIModel
from treadle.types import Function, FunctionDefinition, RunnerResult

BASE_URL = "https://api.openai.test/v1"
FAST = RetryPolicy(initial_delay=0.01, max_delay=0.05)
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# ------------------------------------------------------------------ wire helpers
class Server:
    """A scripted HTTP endpoint: each request gets the next reply (the last one repeats)."""

    def __init__(self, *replies: Callable[[], httpx2.Response] | BaseException) -> None:
        self.replies = list(replies)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, BaseException):
            raise reply
        return reply()

    def body(self, i: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[i].content)


def wire_model(server: Server, **kw: Any) -> OpenAIModel:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(server))
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=BASE_URL, http_client=http)
    kw.setdefault("retry_policy", FAST)
    return OpenAIModel("gpt-4o-mini", client=client, **kw)


def completion(message: dict[str, Any], finish_reason: str = "stop", usage: dict[str, Any] | None = None) -> dict:
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "refusal": None, "annotations": [], **message},
                     "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage or {
            "prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
    }


def ok(payload: dict[str, Any], headers: dict[str, str] | None = None) -> Callable[[], httpx2.Response]:
    return lambda: httpx2.Response(200, json=payload, headers=headers)


def api_error(status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
              headers: dict[str, str] | None = None) -> Callable[[], httpx2.Response]:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return lambda: httpx2.Response(status, json=body, headers=headers)


def sse(*chunks: dict[str, Any]) -> Callable[[], httpx2.Response]:
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return lambda: httpx2.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, usage: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish_reason}]
    out = {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
           "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb", "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out


HELLO_REPLY = completion({"content": "Hello there, how may I assist you today?"})


# ------------------------------------------------------------------ the real server
@pytest.mark.slow
async def test_plain_completion(llama_server: str) -> None:
    model = OpenAIModel("smollm2", base_url=llama_server + "/v1", native_tools=False,
                        model_kwargs={"max_tokens": 24, "temperature": 0})
    try:
        resp = await model.request(ModelRequest(messages=HELLO))
    finally:
        await model.aclose()
    assert isinstance(resp.text, str) and resp.text.strip()
    assert resp.tool_calls == []
    assert resp.finish_reason in ("stop", "length")
    assert resp.usage is not None and resp.usage.requests == 1
    assert resp.usage.input_tokens > 0 and 0 < resp.usage.output_tokens <= 24
    assert resp.model_name


@pytest.mark.slow
async def test_streamed_completion(llama_server: str) -> None:
    model = OpenAIModel("smollm2", base_url=llama_server + "/v1", native_tools=False,
                        model_kwargs={"max_tokens": 24, "temperature": 0})
    try:
        chunks = [c async for c in model.stream(ModelRequest(messages=HELLO))]
    finally:
        await model.aclose()
    deltas, final = chunks[:-1], chunks[-1]
    assert isinstance(final, ModelResponse)
    assert deltas and all(isinstance(d, ModelDelta) for d in deltas)
    text = "".join(d.text or "" for d in deltas)
    assert text.strip() and text == final.text
    assert final.usage is not None and final.usage.input_tokens > 0 and 0 < final.usage.output_tokens <= 24
    assert final.finish_reason in ("stop", "length")


@pytest.mark.slow
async def test_json_schema_step(llama_server: str) -> None:
    model = OpenAIModel("smollm2", base_url=llama_server + "/v1", native_tools=False, json_schema_mode=True)
    agent = Agent(tools=[add], model=model)
    schema = agent.planner.output_schema()
    messages = agent.planner.initial_messages("json", {"input_str": "What is 17 + 25? Use the add tool."})
    request = ModelRequest(messages=messages, output_schema=schema,
                           model_kwargs={"temperature": 0, "max_tokens": 200})
    try:
        resp = await model.request(request)
    finally:
        await model.aclose()
    assert resp.finish_reason == "stop"
    step = json.loads(resp.text)
    # the reply is one of the schema's branches: a complete call of add, or the final answer
    if step.get("name") == "add":
        assert set(step) == {"thought", "name", "kwargs"}
        assert set(step["kwargs"]) == {"a", "b"} and all(type(v) is int for v in step["kwargs"].values())
    else:
        assert set(step) == {"thought", "_is_answer_final", "_answer"} and step["_is_answer_final"] is True
    assert isinstance(step["thought"], str) and len(step["thought"]) <= 300


@pytest.mark.slow
async def test_agent_run_json_mode(llama_server: str) -> None:
    model = OpenAIModel("smollm2", base_url=llama_server + "/v1", native_tools=False, json_schema_mode=True)
    agent = Agent(tools=[add], model=model, planner_mode="json", max_steps=3,
                  model_kwargs={"temperature": 0, "max_tokens": 200})
    try:
        res = await Runner(agent).acall("What is 17 + 25? Use the add tool.")
    finally:
        await model.aclose()
    assert isinstance(res, RunnerResult)
    assert res.status in ("success", "max_steps"), res.error
    assert res.usage.requests >= 2 and res.usage.input_tokens > 0 and res.usage.output_tokens > 0
    assert res.step_history
    for step in res.step_history:
        fn = step.action
        assert isinstance(fn, Function) and fn.name == "add" and step.status == "success"
        assert set(fn.kwargs) == {"a", "b"} and all(type(v) is int for v in fn.kwargs.values())
        assert step.observation == fn.kwargs["a"] + fn.kwargs["b"]
    if res.status == "success":
        assert isinstance(res.answer, str)


@pytest.mark.slow
def test_one_model_serves_several_event_loops(llama_server: str) -> None:
    # the sync face may run a loop per thread; a pooled connection must not cross loops
    model = OpenAIModel("smollm2", base_url=llama_server + "/v1", model_kwargs={"max_tokens": 4})
    for _ in range(3):
        resp = asyncio.run(model.request(ModelRequest(messages=HELLO)))
        assert resp.usage.output_tokens > 0
    assert len(model._clients) == 1  # the clients of closed loops are let go


# ------------------------------------------------------------------ request shape
async def test_native_request_sends_tools_and_passes_model_kwargs() -> None:
    server = Server(ok(HELLO_REPLY))
    model = wire_model(server, model_kwargs={"temperature": 0.2, "top_k": 5})
    tools = [FunctionDefinition("add", "Add two integers.", {"type": "object", "properties": {
        "a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]})]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    await model.request(ModelRequest(messages=messages, tools=tools, output_schema={"type": "object"},
                                     model_kwargs={"seed": 7, "max_tokens": 50, "extra_body": {"min_p": 0.1}}))
    body = server.body()
    assert server.requests[0].url.path == "/v1/chat/completions"
    assert body["model"] == "gpt-4o-mini" and body["messages"] == messages
    assert body["tools"] == [tools[0].to_json_schema_tool()]
    assert "response_format" not in body
    assert body["temperature"] == 0.2 and body["seed"] == 7 and body["max_tokens"] == 50
    assert body["top_k"] == 5 and body["min_p"] == 0.1  # unknown to the SDK: sent through extra_body
    assert "stream" not in body


async def test_json_mode_request_sends_response_format() -> None:
    server = Server(ok(completion({"content": '{"name": "add", "kwargs": {"a": 1, "b": 2}}'})))
    schema = {"anyOf": [{"type": "object"}]}
    model = wire_model(server, native_tools=False, json_schema_mode=True)
    resp = await model.request(ModelRequest(messages=HELLO, output_schema=schema))
    body = server.body()
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "step", "schema": schema}}
    assert "tools" not in body
    assert resp.text == '{"name": "add", "kwargs": {"a": 1, "b": 2}}'
    # without json_schema_mode the schema is not sent (the planner parses the text)
    plain = wire_model(server, native_tools=False)
    await plain.request(ModelRequest(messages=HELLO, output_schema=schema))
    assert "response_format" not in server.body()


# ------------------------------------------------------------------ responses
async def test_parallel_tool_calls_become_functions() -> None:
    message = {"content": None, "tool_calls": [
        {"id": "call_abc123", "type": "function",
         "function": {"name": "add", "arguments": "{\n\"a\": 1,\n\"b\": 2\n}"}},
        {"id": "call_def456", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 3, \"b\": 4}"}},
    ]}
    usage = {"prompt_tokens": 82, "completion_tokens": 40, "total_tokens": 122}
    server = Server(ok(completion(message, finish_reason="tool_calls", usage=usage)))
    resp = await wire_model(server).request(ModelRequest(messages=HELLO))
    assert resp.text is None and resp.finish_reason == "tool_calls"
    assert [(f.id, f.name, f.kwargs) for f in resp.tool_calls] == [
        ("call_abc123", "add", {"a": 1, "b": 2}), ("call_def456", "add", {"a": 3, "b": 4})]
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.requests) == (82, 40, 1)
    assert resp.model_name == "gpt-4o-mini-2024-07-18"
    assert resp.raw.id == "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"


async def test_planner_accepts_broken_arguments() -> None:
    message = {"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{'a': 1, 'b': 2"}}]}
    server = Server(ok(completion(message, finish_reason="tool_calls")))
    model = wire_model(server)
    resp = await model.request(ModelRequest(messages=HELLO))
    assert resp.tool_calls[0].kwargs == "{'a': 1, 'b': 2"  # left for the planner to repair
    out = Agent(tools=[add], model=model).planner.parse_response("native", resp)
    assert out.error is None and out.data[0].kwargs == {"a": 1, "b": 2}


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_becomes_thinking(field: str) -> None:
    # not in the OpenAI reference: DeepSeek, llama.cpp and vLLM put reasoning here
    server = Server(ok(completion({"content": "42", field: "17 + 25 is 42."})))
    resp = await wire_model(server).request(ModelRequest(messages=HELLO))
    assert resp.text == "42" and resp.thinking == "17 + 25 is 42."


async def test_streamed_tool_calls() -> None:
    server = Server(sse(
        chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_abc", "type": "function", "function": {"name": "add", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\": 1,"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": " \"b\": 2}"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_def", "type": "function",
                               "function": {"name": "add", "arguments": "{\"a\": 3, \"b\": 4}"}}]}),
        chunk({}, finish_reason="tool_calls"),
        chunk(None, usage={"prompt_tokens": 50, "completion_tokens": 30, "total_tokens": 80}),
    ))
    model = wire_model(server)
    chunks = [c async for c in model.stream(ModelRequest(messages=HELLO))]
    deltas, final = chunks[:-1], chunks[-1]
    assert server.body()["stream"] is True and server.body()["stream_options"] == {"include_usage": True}
    assert [(d.tool_call_index, d.tool_call_id, d.tool_name, d.arguments_delta) for d in deltas] == [
        (0, "call_abc", "add", None), (0, None, None, '{"a": 1,'), (0, None, None, ' "b": 2}'),
        (1, "call_def", "add", '{"a": 3, "b": 4}')]
    assert isinstance(final, ModelResponse) and final.finish_reason == "tool_calls"
    assert [(f.id, f.name, f.kwargs) for f in final.tool_calls] == [
        ("call_abc", "add", {"a": 1, "b": 2}), ("call_def", "add", {"a": 3, "b": 4})]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (50, 30)


async def test_streamed_reasoning_and_text() -> None:
    server = Server(sse(
        chunk({"role": "assistant", "content": None}),
        chunk({"reasoning_content": "Think "}), chunk({"reasoning_content": "hard."}),
        chunk({"content": "Fo"}), chunk({"content": "ur"}),
        chunk({}, finish_reason="stop"),
    ))
    chunks = [c async for c in wire_model(server).stream(ModelRequest(messages=HELLO))]
    assert [(d.thinking, d.text) for d in chunks[:-1]] == [
        ("Think ", None), ("hard.", None), (None, "Fo"), (None, "ur")]
    final = chunks[-1]
    assert (final.thinking, final.text, final.finish_reason) == ("Think hard.", "Four", "stop")
    assert final.usage.requests == 1


# ------------------------------------------------------------------ errors and retries
SERVER_ERROR = api_error(500, "The server had an error while processing your request. Sorry about that!",
                         "server_error")


@pytest.mark.parametrize(("reply", "error", "status"), [
    (api_error(401, "Incorrect API key provided: sk-test. You can find your API key at "
               "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"),
     ModelAuthenticationError, 401),
    (api_error(403, "You are not allowed to sample from this model", "invalid_request_error"),
     ModelAuthenticationError, 403),
    (api_error(404, "The model `gpt-9` does not exist or you do not have access to it.",
               "invalid_request_error", "model_not_found"), ModelNotFoundError, 404),
    (api_error(400, "This model's maximum context length is 128000 tokens. However, your messages resulted in "
               "130017 tokens. Please reduce the length of the messages.", "invalid_request_error",
               "context_length_exceeded", "messages"), ModelContextTooLongError, 400),
    (api_error(400, "Invalid value for 'temperature': expected a number.", "invalid_request_error", None,
               "temperature"), ModelBadRequestError, 400),
    (api_error(429, "You exceeded your current quota, please check your plan and billing details.",
               "insufficient_quota", "insufficient_quota"), ModelAuthenticationError, 429),
])
async def test_errors_are_mapped_without_retry(reply: Any, error: type, status: int) -> None:
    server = Server(reply, ok(HELLO_REPLY))
    with pytest.raises(error) as info:
        await wire_model(server).request(ModelRequest(messages=HELLO))
    assert info.value.status_code == status and info.value.provider == "openai"
    assert not info.value.retryable
    assert len(server.requests) == 1
    if error is ModelBadRequestError:
        assert not isinstance(info.value, ModelContextTooLongError)


def record_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record every ``asyncio.sleep`` (the retry policy's default sleeper) and skip the wait."""
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, result: Any = None) -> Any:
        sleeps.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return sleeps


async def test_rate_limit_waits_for_retry_after_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    limited = api_error(429, "Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): "
                        "Limit 3, Used 3, Requested 1. Please try again in 1s.", "requests", "rate_limit_exceeded",
                        headers={"retry-after": "1"})
    server = Server(limited, ok(HELLO_REPLY))
    sleeps = record_sleeps(monkeypatch)
    resp = await wire_model(server).request(ModelRequest(messages=HELLO))
    assert resp.text == "Hello there, how may I assist you today?"
    assert len(server.requests) == 2
    # the default sleeper was asked for the header's 1 s (plus at most 5 % jitter); the backoff alone is ~0.01 s
    assert [s for s in sleeps if s > 0] and all(1.0 <= s <= 1.05 for s in sleeps if s > 0), sleeps


async def test_retry_after_beyond_the_limit_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    limited = api_error(429, "Rate limit reached.", "requests", "rate_limit_exceeded", headers={"retry-after": "3600"})
    server = Server(limited, ok(HELLO_REPLY))
    sleeps = record_sleeps(monkeypatch)
    with pytest.raises(ModelRateLimitError) as info:
        await wire_model(server).request(ModelRequest(messages=HELLO))
    assert len(server.requests) == 1 and not [s for s in sleeps if s > 0], sleeps  # raised at once, no wait
    assert info.value.retry_after == 3600 and info.value.retryable


async def test_server_errors_exhaust_the_retries() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    server = Server(SERVER_ERROR)
    model = wire_model(server, max_retries=3, retry_policy=RetryPolicy(initial_delay=0.1, max_delay=10, sleep=sleep))
    with pytest.raises(ModelServerError) as info:
        await model.request(ModelRequest(messages=HELLO))
    assert info.value.status_code == 500 and info.value.retryable
    assert len(server.requests) == 4  # the first attempt and three retries
    assert len(sleeps) == 3
    for n, s in enumerate(sleeps):  # exponential backoff with jitter: [base/2, base], base = 0.1 * 2**n
        base = 0.1 * 2 ** n
        assert base / 2 <= s <= base


async def test_server_error_then_success() -> None:
    server = Server(SERVER_ERROR, api_error(503, "Service unavailable.", "server_error"), ok(HELLO_REPLY))
    resp = await wire_model(server).request(ModelRequest(messages=HELLO))
    assert resp.text and len(server.requests) == 3


@pytest.mark.parametrize(("exc", "error"), [
    (httpx2.ConnectError("connection refused"), ModelConnectionError),
    (httpx2.ReadTimeout("timed out"), ModelTimeoutError),
])
async def test_transport_failures_are_retried_then_mapped(exc: Exception, error: type) -> None:
    server = Server(exc)
    with pytest.raises(error):
        await wire_model(server, max_retries=2).request(ModelRequest(messages=HELLO))
    assert len(server.requests) == 3


async def test_stream_retries_before_the_first_chunk() -> None:
    server = Server(SERVER_ERROR, sse(chunk({"role": "assistant", "content": "Hi"}), chunk({}, finish_reason="stop")))
    chunks = [c async for c in wire_model(server).stream(ModelRequest(messages=HELLO))]
    assert len(server.requests) == 2 and chunks[-1].text == "Hi"


class _BrokenStream(httpx2.AsyncByteStream):
    """One SSE chunk, then the connection drops."""

    def __init__(self, first: dict[str, Any]) -> None:
        self.first = first

    async def __aiter__(self) -> Any:
        yield f"data: {json.dumps(self.first)}\n\n".encode()
        raise httpx2.ReadError("connection reset by peer")


async def test_stream_failure_after_the_first_chunk_is_not_retried() -> None:
    server = Server(lambda: httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                            stream=_BrokenStream(chunk({"role": "assistant", "content": "Hel"}))))
    got: list[Any] = []
    with pytest.raises(ModelConnectionError):
        async for c in wire_model(server).stream(ModelRequest(messages=HELLO)):
            got.append(c)
    assert [d.text for d in got] == ["Hel"]
    assert len(server.requests) == 1


async def test_stream_error_event_is_mapped() -> None:
    # llama.cpp reports a too long prompt inside the stream with its own error type
    server = Server(lambda: httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=(
        b'data: {"error": {"code": 400, "message": "request (5031 tokens) exceeds the available context size '
        b'(4096 tokens), try increasing it", "type": "exceed_context_size_error"}}\n\n')))
    with pytest.raises(ModelContextTooLongError):
        async for _ in wire_model(server).stream(ModelRequest(messages=HELLO)):
            pass
    assert len(server.requests) == 1


@pytest.mark.slow
async def test_context_too_long_from_the_real_server(llama_server: str) -> None:
    model = OpenAIModel("smollm2", base_url=llama_server + "/v1", model_kwargs={"max_tokens": 8})
    try:
        with pytest.raises(ModelContextTooLongError) as info:
            await model.request(ModelRequest(messages=[{"role": "user", "content": "hello " * 5000}]))
    finally:
        await model.aclose()
    assert info.value.status_code == 400


def test_api_key_is_required_without_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from treadle.errors import UserError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError):
        OpenAIModel("gpt-4o-mini")
    assert OpenAIModel("llama3", base_url="http://localhost:11434/v1").native_tools is True


async def test_a_stream_cut_off_before_its_finish_reason_is_an_error() -> None:
    server = Server(sse(chunk({"role": "assistant", "content": "The answer is 4"})))  # no finish_reason
    with pytest.raises(ModelResponseError, match="before the reply was complete"):
        async for _ in wire_model(server).stream(ModelRequest(messages=HELLO)):
            pass


async def test_a_reply_cut_at_max_tokens_is_fed_back_not_taken_as_the_answer() -> None:
    server = Server(ok(completion({"content": "The answer is"}, finish_reason="length")),
                    ok(completion({"content": "4"})))
    res = await Runner(Agent(model=wire_model(server))).acall("2+2?")
    assert res.answer == "4"
    assert "cut off" in res.step_history[0].observation


# ------------------------------------------------------------------ replies of the wrong shape
def with_choice(**changes: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(HELLO_REPLY))
    body["choices"][0]["message"].update(changes)
    return body


@pytest.mark.parametrize("payload", [
    {**HELLO_REPLY, "choices": [None]},
    {**HELLO_REPLY, "choices": "abc"},
    {**HELLO_REPLY, "choices": [{"index": 0, "message": None, "finish_reason": "stop"}]},
    with_choice(content=None, tool_calls=[{"id": "call_1", "type": "function", "function": None}]),
    with_choice(content=None, tool_calls=[{"id": "call_1", "type": "function",
                                           "function": {"name": None, "arguments": "{}"}}]),
    with_choice(content=None, tool_calls=[{"id": "call_1", "type": "function",
                                           "function": {"name": "add", "arguments": 5}}]),
    with_choice(content=None, tool_calls="add"),
    with_choice(content=42),
    with_choice(content=None, function_call={"name": None, "arguments": "{}"}),
], ids=["choice-null", "choices-string", "message-null", "function-null", "name-null", "arguments-number",
        "tool-calls-string", "content-number", "legacy-call-without-name"])
async def test_a_reply_of_the_wrong_shape_is_a_typed_error(payload: dict[str, Any]) -> None:
    server = Server(ok(payload))
    with pytest.raises(ModelResponseError, match=r"malformed|no choices"):
        await wire_model(server).request(ModelRequest(messages=HELLO))
    assert len(server.requests) == 1  # not retried


@pytest.mark.parametrize("usage", [None, 7, {"prompt_tokens": None, "completion_tokens": "x"}])
async def test_an_odd_usage_counts_no_tokens(usage: Any) -> None:
    server = Server(ok({**HELLO_REPLY, "usage": usage}))
    resp = await wire_model(server).request(ModelRequest(messages=HELLO))
    assert resp.text == "Hello there, how may I assist you today?"
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.requests) == (0, 0, 1)


@pytest.mark.parametrize("bad", [
    {"id": "chatcmpl-123", "object": "chat.completion.chunk", "choices": [None]},
    chunk({"content": 42}),
    chunk({"tool_calls": [{"index": None, "id": "call_1", "function": {"name": "add", "arguments": ""}}]}),
], ids=["choice-null", "content-number", "tool-call-index-null"])
async def test_a_stream_chunk_of_the_wrong_shape_is_a_typed_error(bad: dict[str, Any]) -> None:
    server = Server(sse(chunk({"role": "assistant", "content": ""}), bad, chunk({}, "stop")))
    with pytest.raises(ModelResponseError, match="malformed"):
        async for _ in wire_model(server).stream(ModelRequest(messages=HELLO)):
            pass
    assert len(server.requests) == 1


# ------------------------------------------------------------------ the other reply shapes
async def test_custom_tool_calls_legacy_function_calls_and_refusals() -> None:
    custom = completion({"content": None, "tool_calls": [
        {"id": "call_c", "type": "custom", "custom": {"name": "grep", "input": "TODO src/"}}]}, "tool_calls")
    resp = await wire_model(Server(ok(custom))).request(ModelRequest(messages=HELLO))
    assert [(f.id, f.name, f.kwargs) for f in resp.tool_calls] == [("call_c", "grep", {"input": "TODO src/"})]

    legacy = completion({"content": None, "function_call": {"name": "add", "arguments": "{\"a\": 1, \"b\": 2}"}},
                        "function_call")
    resp = await wire_model(Server(ok(legacy))).request(ModelRequest(messages=HELLO))
    assert [(f.id, f.name, f.kwargs) for f in resp.tool_calls] == [(None, "add", {"a": 1, "b": 2})]

    refused = completion({"content": None, "refusal": "I can't help with that."})
    resp = await wire_model(Server(ok(refused))).request(ModelRequest(messages=HELLO))
    assert resp.text == "I can't help with that." and resp.tool_calls == []


async def test_a_custom_tool_call_without_a_name_is_a_typed_error() -> None:
    bad = completion({"content": None, "tool_calls": [{"id": "call_c", "type": "custom", "custom": None}]})
    with pytest.raises(ModelResponseError, match="tool call 0 has no function name"):
        await wire_model(Server(ok(bad))).request(ModelRequest(messages=HELLO))


async def test_the_key_is_redacted_from_an_error_the_server_echoes() -> None:
    key = "sk-test-0123456789abcdef"
    server = Server(api_error(401, f"Incorrect API key provided: {key}", "invalid_request_error", "invalid_api_key"))
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(server))
    model = OpenAIModel("gpt-4o-mini", client=openai.AsyncOpenAI(api_key=key, base_url=BASE_URL, http_client=http),
                        retry_policy=FAST)
    with pytest.raises(ModelAuthenticationError) as info:
        await model.request(ModelRequest(messages=HELLO))
    assert key not in str(info.value) and "[REDACTED]" in str(info.value)
    cause = info.value.__cause__
    assert isinstance(cause, openai.APIError) and key not in cause.message and "[REDACTED]" in cause.message
