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
from typing import Any, AsyncIterator, Callable, TypeVar

try:
    import openai
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("OpenAIModel needs the OpenAI SDK: pip install 'treadle[openai]'") from e

from ..errors import (
    ModelAuthenticationError,
    ModelResponseError,
    UserError,
)
from ..types import Function, Usage
from ._retry import (
    CONTEXT_TOO_LONG_CODES,
    RetryPolicy,
    error_for_status,
    error_for_type,
    parse_retry_after,
)
from ._schema import WireCache, compact_schema
from ._sdk import PLACEHOLDER_KEY, SDKModel, count, create_params, malformed, map_sdk_error, read_reply
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


class OpenAIModel(SDKModel):
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
                 client: Any = None, native_tools: bool = True, json_schema_mode: bool = False,
                 max_retries: int | None = None, timeout: float | None = 60.0,
                 model_kwargs: dict[str, Any] | None = None,
                 name: str | None = None, retry_policy: RetryPolicy | None = None,
                 structured_output: bool | None = None) -> None:
        self.native_tools = native_tools
        self.json_schema_mode = json_schema_mode
        if structured_output is None:  # OpenAI's own API, for models that have json_schema
            url = base_url or (str(getattr(client, "base_url", "")) if client is not None else None)
            structured_output = (not url or "//api.openai.com" in url) and not _NO_STRUCTURED.match(model)
        self.structured_output = structured_output
        self._tools = WireCache(_wire_tools)
        self._formats = WireCache(_response_format)
        make: Callable[[], Any] | None = None
        if client is None:
            key = api_key or os.environ.get("OPENAI_API_KEY") or (PLACEHOLDER_KEY if base_url else None)
            if not key:
                raise UserError("OpenAIModel needs an API key: pass api_key=..., set OPENAI_API_KEY, "
                                "or give the base_url of a server that needs none")

            def make_openai() -> Any:
                return openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0)

            make = make_openai

        self._setup(model, label="OpenAIModel", max_retries=max_retries, timeout=timeout,
                    model_kwargs=model_kwargs, name=name, retry_policy=retry_policy, base_url=base_url,
                    client=client, make_client=make)

    def __repr__(self) -> str:
        return f"OpenAIModel({self.model!r}, base_url={self.base_url!r}, native_tools={self.native_tools})"

    # -------------------------------------------------------------- requests
    def build_params(self, request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
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

    async def _create(self, client: Any, params: dict[str, Any]) -> Any:
        return await client.chat.completions.create(**params)

    def _mapped(self, exc: Exception) -> Exception:
        return _mapped(exc)

    async def request(self, request: ModelRequest) -> ModelResponse:
        return _to_response(await self._call(self.build_params(request)))

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        """Yield ModelDeltas as they arrive, then the complete ModelResponse.

        Failures before the first chunk are retried; after it they are raised (mapped).
        """
        acc = _StreamAccumulator()
        async for chunk in self._events(self.build_params(request, stream=True)):
            for delta in _typed(acc.feed, chunk):
                yield delta
        yield _typed(acc.response)


# ------------------------------------------------------------------ requests
def _wire_tools(tools: list[Any]) -> list[dict[str, Any]]:
    """The ``tools`` entries: name, description (when there is one) and compact parameters."""
    out = []
    for d in tools:
        fn: dict[str, Any] = {"name": d.func_name}
        if d.func_desc:
            fn["description"] = d.func_desc
        fn["parameters"] = compact_schema(d.func_parameters or {"type": "object", "properties": {}})
        out.append({"type": "function", "function": fn})
    return out


def _response_format(fmt: AnswerFormat) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
    if _strict_ok(fmt.schema):
        spec["strict"] = True
    return {"type": "json_schema", "json_schema": spec}


def _strict_ok(schema: Any) -> bool:
    """Whether OpenAI's strict structured outputs accept ``schema`` as it is: every object closed
    (``additionalProperties: false``) with every property required, no defaults."""
    if isinstance(schema, list):
        return all(_strict_ok(s) for s in schema)  # pyright: ignore[reportUnknownVariableType]
    if not isinstance(schema, dict):
        return True
    s: dict[str, Any] = schema  # pyright: ignore[reportUnknownVariableType]
    if "default" in s:
        return False
    props = s.get("properties")
    if s.get("type") == "object" or isinstance(props, dict):
        if s.get("additionalProperties") is not False:
            return False
        if isinstance(props, dict) and set(props) != set(s.get("required") or ()):  # pyright: ignore
            return False
    for k, v in s.items():
        if k in ("properties", "$defs") and isinstance(v, dict):
            if not all(_strict_ok(x) for x in v.values()):  # pyright: ignore[reportUnknownVariableType]
                return False
        elif k in ("items", "anyOf", "prefixItems") and not _strict_ok(v):
            return False
    return True


# ------------------------------------------------------------------ errors
def _mapped(exc: Exception) -> Exception:
    """The ModelError for an SDK (or transport) exception; other exceptions unchanged."""
    return map_sdk_error(exc, openai, openai.OpenAIError, PROVIDER, status=_status_error, api_error=_stream_error)


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
def _decode_arguments(raw: str | None) -> Any:
    """Arguments as a dict when they are a JSON object, else the raw string (the planner repairs it)."""
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, dict) else raw


def _reasoning(obj: Any) -> str | None:
    extra = getattr(obj, "model_extra", None) or {}
    for key in REASONING_FIELDS:
        value = extra.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _usage(u: Any) -> Usage:
    """Token counts; a missing, null or odd ``usage`` counts as zero tokens (never an error)."""
    if u is None:
        return Usage(requests=1)
    return Usage(input_tokens=count(getattr(u, "prompt_tokens", None)),
                 output_tokens=count(getattr(u, "completion_tokens", None)), requests=1)


def _malformed(what: str) -> ModelResponseError:
    return malformed(PROVIDER, what)


def _text(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _malformed(f"{what} is a {type(value).__name__}, not a string")


def _typed(fn: Callable[..., T], *args: Any) -> T:
    return read_reply(PROVIDER, fn, *args)


def _to_response(completion: Any) -> ModelResponse:
    """The ModelResponse of a ``chat.completion``; a reply of the wrong shape (no ``choices``,
    a null ``message``, a tool call without a function or name…) is a ModelResponseError."""
    return _typed(_parse_completion, completion)


def _parse_completion(completion: Any) -> ModelResponse:
    choices = getattr(completion, "choices", None)
    if not choices:
        raise ModelResponseError(f"{PROVIDER}: the response has no choices", provider=PROVIDER)
    if not isinstance(choices, list):
        raise _malformed(f"choices is a {type(choices).__name__}, not a list")
    choice = choices[0]
    msg = getattr(choice, "message", None)
    if msg is None:
        raise _malformed("choices[0].message is missing or null")
    calls: list[Function] = []
    tool_calls = getattr(msg, "tool_calls", None) or []
    if not isinstance(tool_calls, list):
        raise _malformed(f"tool_calls is a {type(tool_calls).__name__}, not a list")
    for i, tc in enumerate(tool_calls):
        fn = getattr(tc, "function", None)
        custom = getattr(tc, "custom", None)
        spec = fn if fn is not None else custom  # a custom (free-text) tool call has ``custom``
        name = getattr(spec, "name", None)
        if not name or not isinstance(name, str):
            raise _malformed(f"tool call {i} has no function name")
        call_id = getattr(tc, "id", None)
        if fn is not None:
            calls.append(Function(id=call_id, name=name,
                                  kwargs=_decode_arguments(_text(getattr(fn, "arguments", None), "arguments"))))
        else:
            calls.append(Function(id=call_id, name=name, kwargs={"input": getattr(custom, "input", None)}))
    legacy = getattr(msg, "function_call", None)
    if not calls and legacy is not None:  # the legacy single function call
        name = getattr(legacy, "name", None)
        if not name or not isinstance(name, str):
            raise _malformed("function_call has no name")
        calls.append(Function(name=name, kwargs=_decode_arguments(_text(getattr(legacy, "arguments", None),
                                                                        "arguments"))))
    content = _text(getattr(msg, "content", None), "content")
    text = content if content else (_text(getattr(msg, "refusal", None), "refusal") or None)
    return ModelResponse(text=text, tool_calls=calls, thinking=_reasoning(msg),
                         usage=_usage(getattr(completion, "usage", None)), raw=completion,
                         model_name=getattr(completion, "model", None),
                         finish_reason=getattr(choice, "finish_reason", None))


class _StreamAccumulator:
    """Turns chat.completion.chunk objects into ModelDeltas and, at the end, a ModelResponse."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.model: str | None = None
        self.id: str | None = None
        self.chunks = 0

    def feed(self, chunk: Any) -> list[ModelDelta]:
        self.chunks += 1
        self.model = self.model or getattr(chunk, "model", None)
        self.id = self.id or getattr(chunk, "id", None)
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        out: list[ModelDelta] = []
        for choice in chunk.choices or []:
            if choice.index != 0:
                continue
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            thinking = _reasoning(delta)
            if thinking:
                self.thinking.append(thinking)
                out.append(ModelDelta(thinking=thinking, raw=chunk))
            content = _text(delta.content, "content")
            if content:
                self.text.append(content)
                out.append(ModelDelta(text=content, raw=chunk))
            for tc in delta.tool_calls or []:
                if not isinstance(tc.index, int):
                    raise _malformed(f"a streamed tool call has no index ({tc.index!r})")
                slot = self.calls.setdefault(tc.index, {"id": None, "name": None, "args": []})
                fn = tc.function
                name = fn.name if fn is not None else None
                args = fn.arguments if fn is not None else None
                if tc.id:
                    slot["id"] = tc.id
                if name:
                    slot["name"] = name
                if args:
                    slot["args"].append(args)
                out.append(ModelDelta(tool_call_index=tc.index, tool_call_id=tc.id or None, tool_name=name or None,
                                      arguments_delta=args or None, raw=chunk))
        return out

    def response(self) -> ModelResponse:
        if self.chunks == 0:
            raise ModelResponseError(f"{PROVIDER}: the stream ended before any chunk", provider=PROVIDER)
        if self.finish_reason is None:  # cut off: a partial reply must not pass for a whole one
            raise ModelResponseError(f"{PROVIDER}: the stream ended before the reply was complete",
                                     provider=PROVIDER)
        calls = []
        for index in sorted(self.calls):
            slot = self.calls[index]
            if not slot["name"]:
                raise ModelResponseError(f"{PROVIDER}: streamed tool call {index} has no name", provider=PROVIDER)
            calls.append(Function(id=slot["id"], name=slot["name"], kwargs=_decode_arguments("".join(slot["args"]))))
        raw = {"id": self.id, "model": self.model, "finish_reason": self.finish_reason,
               "usage": self.usage.model_dump() if hasattr(self.usage, "model_dump") else None}
        return ModelResponse(text="".join(self.text) or None, tool_calls=calls,
                             thinking="".join(self.thinking) or None, usage=_usage(self.usage), raw=raw,
                             model_name=self.model, finish_reason=self.finish_reason)
