"""OpenAIModel: the OpenAI Chat Completions API, and every server that speaks it.

Works with api.openai.com and with OpenAI-compatible servers (Ollama, vLLM, LM Studio,
llama.cpp's server, xllamacpp…) through ``base_url``. Native tool calling sends the
request's tools; JSON mode can constrain the reply with ``response_format`` json_schema.
SDK exceptions become ``treadle.errors.ModelError`` subclasses; retryable failures are
retried here (tenacity, backoff with jitter, ``Retry-After`` honoured) with the SDK's
own retries switched off.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import partial
from typing import AsyncIterator, Callable, TypeVar

try:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
    from openai.types.chat.chat_completion import Choice
    from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
    from openai.types.chat.chat_completion_chunk import ChoiceDelta, ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction
    from openai.types.chat.chat_completion_message import FunctionCall
    from openai.types.chat.chat_completion_message_custom_tool_call import ChatCompletionMessageCustomToolCall
    from openai.types.chat.chat_completion_message_custom_tool_call import Custom as CustomToolCallCustom
    from openai.types.chat.chat_completion_message_function_tool_call import ChatCompletionMessageFunctionToolCall
    from openai.types.chat.chat_completion_message_function_tool_call import Function as FunctionToolCallFunction
    from openai.types.completion_usage import CompletionUsage
    from pydantic import BaseModel, JsonValue
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("OpenAIModel needs the OpenAI SDK: pip install 'treadle[openai]'") from e

from .._factories import new_list
from ..errors import (
    ModelAuthenticationError,
    ModelError,
    ModelResponseError,
    UserError,
)
from ..types import Function, FunctionDefinition, Usage
from ._guards import is_list
from ._retry import (
    CONTEXT_TOO_LONG_CODES,
    RetryPolicy,
    error_for_status,
    error_for_type,
    parse_retry_after,
)
from ._schema import WireCache, compact_schema
from ._sdk import (
    PLACEHOLDER_KEY,
    EventStream,
    Params,
    SDKModel,
    connection_failed,
    count,
    create_params,
    invalid_response,
    malformed,
    other_error,
    raw_call,
    read_reply,
    timed_out,
    unchecked,
    without_stream,
)
from .base import AnswerFormat, ModelDelta, ModelRequest, ModelResponse

__all__ = ["OpenAIModel", "RetryPolicy"]

PROVIDER = "openai"
T = TypeVar("T")
# what a key-less local server gets as the API key (the SDK insists on one)
# OpenAI models without json_schema structured outputs: GPT-3.5 and GPT-4 (not 4o, 4.1…)
_NO_STRUCTURED = re.compile(r"gpt-3\.5|gpt-4(-turbo|-32k|-\d{4})?(-preview|-vision-preview|-\d{4}-\d\d-\d\d)?$")
# keys of a message (or delta) where OpenAI-compatible servers put reasoning text
REASONING_FIELDS = ("reasoning_content", "reasoning")


def _create_params() -> frozenset[str]:
    from openai.resources.chat.completions import AsyncCompletions

    return create_params(AsyncCompletions.create)


_CREATE_PARAMS = _create_params()


class OpenAIModel(SDKModel[openai.AsyncOpenAI, ChatCompletion, ChatCompletionChunk]):
    """A ModelClient for the OpenAI Chat Completions API (or any compatible server).

    Args:
        model: the model name sent with each request.
        base_url: the API root of a compatible server, e.g. ``http://localhost:11434/v1``.
        api_key: default ``$OPENAI_API_KEY``; a placeholder when ``base_url`` is given without one.
        client: an ``openai.AsyncOpenAI`` to reuse (a copy with ``max_retries=0`` is used).
        native_tools: advertise native tool calling (the planner's ``auto`` mode uses it).
        json_schema_mode: in JSON mode, send the planner's schema as ``response_format``
            (``{"type": "json_schema", ...}``) so the server constrains the reply.
        structured_output: in native mode, a structured answer type (a pydantic model, a list…)
            goes out as ``response_format`` json_schema beside the tools, and the reply text is the
            answer; False: the planner adds one output tool instead. Default: True for
            api.openai.com (no ``base_url``, or its address; also a given client's) except GPT-3.5
            and GPT-4 (not 4o), False for other servers.
        max_retries: retries of rate limits, 5xx, timeouts and connection failures.
        timeout: seconds one request attempt may wait for the provider in all, an overall deadline
            (the SDK's own timeout is only per read): for a streamed request, the waits for the
            response and for every event add up against it, so it bounds the whole stream but not
            the time the consumer takes between events. Running out of it is a ``ModelTimeoutError``,
            retried like any timeout (a stream only before its first event). None: the client's default
            per-read timeout and no overall deadline.
        model_kwargs: default request parameters (``temperature``, ``max_tokens``, ``seed``,
            ``extra_body``…); ``ModelRequest.model_kwargs`` override them. Keys the SDK does
            not know (``top_k``, ``min_p``…) are sent in ``extra_body``.
        name: a label for logs (default ``openai:<model>``).
        retry_policy: backoff settings (its ``max_retries`` is replaced by ``max_retries``).
    """

    provider = PROVIDER

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 client: openai.AsyncOpenAI | None = None, native_tools: bool = True,
                 json_schema_mode: bool = False, max_retries: int | None = None, timeout: float | None = 60.0,
                 model_kwargs: dict[str, object] | None = None,
                 name: str | None = None, retry_policy: RetryPolicy | None = None,
                 structured_output: bool | None = None) -> None:
        self.native_tools = native_tools
        self.json_schema_mode = json_schema_mode
        if structured_output is None:  # OpenAI's own API, for models that have json_schema
            url = base_url or (str(client.base_url) if client is not None else None)
            structured_output = (not url or "//api.openai.com" in url) and not _NO_STRUCTURED.match(model)
        self.structured_output = structured_output
        self._tools = WireCache(_wire_tools)
        self._formats = WireCache(_response_format)
        make: Callable[[], openai.AsyncOpenAI] | None = None
        if client is None:
            key = api_key or os.environ.get("OPENAI_API_KEY") or (PLACEHOLDER_KEY if base_url else None)
            if not key:
                raise UserError("OpenAIModel needs an API key: pass api_key=..., set OPENAI_API_KEY, "
                                "or give the base_url of a server that needs none")

            def make_openai() -> openai.AsyncOpenAI:
                return openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0)

            make = make_openai

        self._setup(model, label="OpenAIModel", max_retries=max_retries, timeout=timeout,
                    model_kwargs=model_kwargs, name=name, retry_policy=retry_policy, base_url=base_url,
                    client=client, make_client=make)

    def __repr__(self) -> str:
        return f"OpenAIModel({self.model!r}, base_url={self.base_url!r}, native_tools={self.native_tools})"

    # -------------------------------------------------------------- requests
    def build_params(self, request: ModelRequest, *, stream: bool = False) -> Params:
        """The keyword arguments of ``chat.completions.create`` for this request."""
        params = self._base_params(request, _CREATE_PARAMS, stream)
        params["messages"] = list(request.messages)
        if request.tools:  # the same objects for every request of a run: the same bytes (prompt caching)
            params.setdefault("tools", self._tools.get(request.tools))
        if request.answer_format is not None:
            params.setdefault("response_format", self._formats.get(request.answer_format))
        elif not request.tools and request.output_schema is not None and self.json_schema_mode:
            params.setdefault("response_format", {"type": "json_schema", "json_schema": {
                "name": "step", "schema": compact_schema(request.output_schema)}})
        if stream:
            params.setdefault("stream_options", {"include_usage": True})
        return params

    async def _create(self, client: openai.AsyncOpenAI, params: Params) -> ChatCompletion:
        return await client.chat.completions.create(**without_stream(params), stream=openai.omit)

    async def _create_stream(self, client: openai.AsyncOpenAI, params: Params) -> EventStream[ChatCompletionChunk]:
        return await client.chat.completions.create(**without_stream(params), stream=True)

    def _secrets(self, client: openai.AsyncOpenAI) -> tuple[str | None, ...]:
        return (client.api_key,)

    def _redact_message(self, error: BaseException, clean: Callable[[str], str]) -> None:
        if isinstance(error, openai.APIError):
            error.message = clean(error.message)

    def _mapped(self, exc: Exception) -> Exception:
        return _mapped(exc)

    async def request(self, request: ModelRequest) -> ModelResponse:
        completion = await self._call(self.build_params(request))
        return _typed(lambda: _parse_completion(completion))

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        """Yield ModelDeltas as they arrive, then the complete ModelResponse.

        Failures before the first chunk are retried; after it they are raised (mapped).
        """
        acc = _StreamAccumulator()
        async for chunk in self._events(self.build_params(request, stream=True)):
            for delta in _typed(partial(acc.feed, chunk)):
                yield delta
        yield _typed(acc.response)


# ------------------------------------------------------------------ requests
def _wire_tools(tools: list[FunctionDefinition]) -> list[dict[str, object]]:
    """The ``tools`` entries: name, description (when there is one) and compact parameters."""
    out: list[dict[str, object]] = []
    for d in tools:
        fn: dict[str, object] = {"name": d.func_name}
        if d.func_desc:
            fn["description"] = d.func_desc
        fn["parameters"] = compact_schema(d.func_parameters or {"type": "object", "properties": {}})
        out.append({"type": "function", "function": fn})
    return out


def _response_format(fmt: AnswerFormat) -> dict[str, object]:
    spec: dict[str, object] = {"name": fmt.name, "schema": fmt.schema}
    if _strict_ok(fmt.schema):
        spec["strict"] = True
    return {"type": "json_schema", "json_schema": spec}


def _strict_ok(schema: JsonValue) -> bool:
    """Whether OpenAI's strict structured outputs accept ``schema`` as it is: every object closed
    (``additionalProperties: false``) with every property required, no defaults."""
    if isinstance(schema, list):
        return all(_strict_ok(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    s = schema
    if "default" in s:
        return False
    props = s.get("properties")
    if s.get("type") == "object" or isinstance(props, dict):
        if s.get("additionalProperties") is not False:
            return False
        required = s.get("required")
        if isinstance(props, dict) and set(props) != set(required if isinstance(required, list) else ()):
            return False
    for k, v in s.items():
        if k in ("properties", "$defs") and isinstance(v, dict):
            if not all(_strict_ok(x) for x in v.values()):
                return False
        elif k in ("items", "anyOf", "prefixItems") and not _strict_ok(v):
            return False
    return True


# ------------------------------------------------------------------ errors
def _mapped(exc: Exception) -> Exception:
    """The ModelError for an SDK (or transport) exception; other exceptions unchanged."""
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return timed_out(PROVIDER)
    if isinstance(exc, openai.APIConnectionError):
        return connection_failed(PROVIDER, exc)
    if isinstance(exc, openai.APIResponseValidationError):
        return invalid_response(PROVIDER, exc, exc.status_code)
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc)
    if isinstance(exc, openai.APIError):
        return _stream_error(exc)
    return other_error(exc, openai.OpenAIError, PROVIDER)


def _status_error(exc: openai.APIStatusError) -> Exception:
    code, etype = exc.code, exc.type
    if exc.status_code == 429 and code == "insufficient_quota":
        # the account is out of credits: waiting will not help, another provider might
        return ModelAuthenticationError(f"{PROVIDER} error 429: {exc.message}", status_code=429, provider=PROVIDER)
    return error_for_status(exc.status_code, exc.message, provider=PROVIDER,
                            retry_after=parse_retry_after(exc.response.headers),
                            context_too_long=code in CONTEXT_TOO_LONG_CODES or etype in CONTEXT_TOO_LONG_CODES)


def _stream_error(exc: openai.APIError) -> Exception:
    """An error event inside a stream: no HTTP status, only the body's code and type."""
    code, etype = exc.code, exc.type
    if code in CONTEXT_TOO_LONG_CODES or etype in CONTEXT_TOO_LONG_CODES:
        return error_for_type("context_length_exceeded", exc.message, provider=PROVIDER)
    if code is not None and code.isdigit() and int(code) >= 400:  # llama.cpp puts the status in "code"
        return error_for_status(int(code), exc.message, provider=PROVIDER)
    return error_for_type(etype or code, exc.message, provider=PROVIDER)


# ------------------------------------------------------------------ responses
# The SDK builds replies without validating them (``construct``): a field holds whatever the
# server sent, whatever its annotation says. So each value is read as an ``object`` and checked.
def _decode_arguments(raw: str | None) -> str | dict[str, JsonValue]:
    """Arguments as a dict when they are a JSON object, else the raw string (the planner repairs it)."""
    if raw is None or not raw.strip():
        return {}
    try:
        value: JsonValue = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, dict) else raw


def _reasoning(obj: BaseModel) -> str | None:
    extra = obj.model_extra or {}
    for key in REASONING_FIELDS:
        value: object = extra.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _usage(u: object) -> Usage:
    """Token counts; a missing, null or odd ``usage`` counts as zero tokens (never an error)."""
    if not isinstance(u, CompletionUsage):
        return Usage(requests=1)
    return Usage(input_tokens=count(u.prompt_tokens), output_tokens=count(u.completion_tokens), requests=1)


def _malformed(what: str) -> ModelResponseError:
    return malformed(PROVIDER, what)


def _text(value: object, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _malformed(f"{what} is a {type(value).__name__}, not a string")


def _list(value: object, what: str) -> list[object]:
    if not is_list(value):
        raise _malformed(f"{what} is a {type(value).__name__}, not a list")
    return value


def _typed(fn: Callable[[], T]) -> T:
    return read_reply(PROVIDER, fn)


def _parse_completion(completion: ChatCompletion) -> ModelResponse:
    """The ModelResponse of a ``chat.completion``; a reply of the wrong shape (no ``choices``,
    a null ``message``, a tool call without a function or name…) is a ModelResponseError."""
    raw_choices = unchecked(completion.choices)
    if not raw_choices:
        raise ModelResponseError(f"{PROVIDER}: the response has no choices", provider=PROVIDER)
    choice = _list(raw_choices, "choices")[0]
    if not isinstance(choice, Choice):
        raise _malformed(f"choices[0] is a {type(choice).__name__}, not an object")
    msg = unchecked(choice.message)
    if not isinstance(msg, ChatCompletionMessage):
        raise _malformed("choices[0].message is missing or null")
    calls: list[Function] = []
    for i, tc in enumerate(_list(msg.tool_calls or [], "tool_calls")):
        calls.append(_tool_call(i, tc))
    legacy = unchecked(msg.function_call)
    if not calls and legacy is not None:  # the legacy single function call
        if not isinstance(legacy, FunctionCall) or not _name(legacy.name):
            raise _malformed("function_call has no name")
        calls.append(raw_call(None, _name(legacy.name), _decode_arguments(_text(legacy.arguments, "arguments"))))
    content = _text(msg.content, "content")
    text = content if content else (_text(msg.refusal, "refusal") or None)
    return ModelResponse(text=text, tool_calls=calls, thinking=_reasoning(msg), usage=_usage(completion.usage),
                         raw=completion, model_name=_text(completion.model, "model"),
                         finish_reason=_text(choice.finish_reason, "finish_reason"))

def _name(value: object) -> str:
    return value if isinstance(value, str) else ""


def _tool_call(i: int, tc: object) -> Function:
    """A ``tool_calls`` entry: a function call, or a custom (free-text) tool's call."""
    if isinstance(tc, ChatCompletionMessageFunctionToolCall):
        fn = unchecked(tc.function)
        if isinstance(fn, FunctionToolCallFunction) and _name(fn.name):
            return raw_call(_text(tc.id, "a tool call's id"), _name(fn.name),
                            _decode_arguments(_text(fn.arguments, "arguments")))
    elif isinstance(tc, ChatCompletionMessageCustomToolCall):
        custom = unchecked(tc.custom)
        if isinstance(custom, CustomToolCallCustom) and _name(custom.name):
            return Function(id=_text(tc.id, "a tool call's id"), name=_name(custom.name),
                            kwargs={"input": custom.input})
    raise _malformed(f"tool call {i} has no function name")


@dataclass
class _CallSlot:
    """A streamed tool call as its pieces arrive."""

    id: str | None = None
    name: str | None = None
    args: list[str] = field(default_factory=new_list)


class _StreamAccumulator:
    """Turns chat.completion.chunk objects into ModelDeltas and, at the end, a ModelResponse."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.calls: dict[int, _CallSlot] = {}
        self.finish_reason: str | None = None
        self.usage: CompletionUsage | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.chunks = 0

    def feed(self, chunk: ChatCompletionChunk) -> list[ModelDelta]:
        self.chunks += 1
        self.model = self.model or _text(chunk.model, "model")
        self.id = self.id or _text(chunk.id, "id")
        usage = unchecked(chunk.usage)
        if isinstance(usage, CompletionUsage):
            self.usage = usage
        out: list[ModelDelta] = []
        for choice in _list(chunk.choices or [], "choices"):
            if not isinstance(choice, ChunkChoice):
                raise _malformed(f"a chunk's choice is a {type(choice).__name__}, not an object")
            if choice.index != 0:
                continue
            finish = _text(choice.finish_reason, "finish_reason")
            if finish:
                self.finish_reason = finish
            delta = unchecked(choice.delta)
            if not isinstance(delta, ChoiceDelta):
                continue
            thinking = _reasoning(delta)
            if thinking:
                self.thinking.append(thinking)
                out.append(ModelDelta(thinking=thinking, raw=chunk))
            content = _text(delta.content, "content")
            if content:
                self.text.append(content)
                out.append(ModelDelta(text=content, raw=chunk))
            for tc in _list(delta.tool_calls or [], "tool_calls"):
                out.append(self._call_delta(tc, chunk))
        return out

    def _call_delta(self, tc: object, chunk: ChatCompletionChunk) -> ModelDelta:
        if not isinstance(tc, ChoiceDeltaToolCall):
            raise _malformed(f"a streamed tool call is a {type(tc).__name__}, not an object")
        index = unchecked(tc.index)
        if not isinstance(index, int):
            raise _malformed(f"a streamed tool call has no index ({index!r})")
        slot = self.calls.setdefault(index, _CallSlot())
        fn = unchecked(tc.function)
        name = _text(fn.name, "a tool call's name") if isinstance(fn, ChoiceDeltaToolCallFunction) else None
        args = _text(fn.arguments, "arguments") if isinstance(fn, ChoiceDeltaToolCallFunction) else None
        call_id = _text(tc.id, "a tool call's id")
        if call_id:
            slot.id = call_id
        if name:
            slot.name = name
        if args:
            slot.args.append(args)
        return ModelDelta(tool_call_index=index, tool_call_id=call_id or None, tool_name=name or None,
                          arguments_delta=args or None, raw=chunk)

    def response(self) -> ModelResponse:
        if self.chunks == 0:
            raise ModelResponseError(f"{PROVIDER}: the stream ended before any chunk", provider=PROVIDER)
        if self.finish_reason is None:  # cut off: a partial reply must not pass for a whole one
            raise ModelResponseError(f"{PROVIDER}: the stream ended before the reply was complete",
                                     provider=PROVIDER)
        calls: list[Function] = []
        for index in sorted(self.calls):
            slot = self.calls[index]
            if not slot.name:
                raise ModelResponseError(f"{PROVIDER}: streamed tool call {index} has no name", provider=PROVIDER)
            calls.append(raw_call(slot.id, slot.name, _decode_arguments("".join(slot.args))))
        raw = {"id": self.id, "model": self.model, "finish_reason": self.finish_reason,
               "usage": self.usage.model_dump() if self.usage is not None else None}
        return ModelResponse(text="".join(self.text) or None, tool_calls=calls,
                             thinking="".join(self.thinking) or None, usage=_usage(self.usage), raw=raw,
                             model_name=self.model, finish_reason=self.finish_reason)
