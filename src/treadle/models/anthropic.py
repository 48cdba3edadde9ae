"""AnthropicModel: the Anthropic Messages API with native tool calling.

The run's OpenAI-shaped chat messages are converted on each request: system messages
become the ``system`` parameter, assistant ``tool_calls`` become ``tool_use`` blocks, and
``tool`` messages become ``tool_result`` blocks in a user turn (consecutive ones merged).
Replies' ``tool_use`` blocks become Functions, ``thinking`` blocks the thinking text.
Thinking blocks that came with tool calls are kept (a bounded cache keyed by the tool
call id) and sent back with those calls, as extended thinking with tools requires.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from typing import Any, AsyncIterator, Callable, TypeVar, cast

try:
    import anthropic
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("AnthropicModel needs the Anthropic SDK: pip install 'treadle[anthropic]'") from e

from ..errors import ModelResponseError
from ..types import Function, Usage
from ._anthropic_wire import to_anthropic_messages, to_anthropic_tools
from ._retry import (
    CONTEXT_TOO_LONG_CODES,
    RetryPolicy,
    error_for_status,
    error_for_type,
    parse_retry_after,
)
from ._schema import WireCache
from ._sdk import PLACEHOLDER_KEY, SDKModel, count, create_params, malformed, map_sdk_error, read_reply
from .base import AnswerFormat, ModelDelta, ModelRequest, ModelResponse

__all__ = ["AnthropicModel", "RetryPolicy", "to_anthropic_messages", "to_anthropic_tools"]

PROVIDER = "anthropic"
THINKING_CACHE_SIZE = 512
# models without structured outputs (output_config.format): Claude 2 and 3, Sonnet 4 and Opus 4
_NO_STRUCTURED = re.compile(r"claude-(instant|2|3)|claude-(sonnet|opus)-4(-0)?(-\d{8})?$")
T = TypeVar("T")
Message = dict[str, Any]


def _create_params() -> frozenset[str]:
    from anthropic.resources.messages import AsyncMessages

    return create_params(AsyncMessages.create)


_CREATE_PARAMS = _create_params()


class AnthropicModel(SDKModel):
    """A ModelClient for the Anthropic Messages API (or a server that speaks it).

    Args:
        model: the model name, e.g. ``claude-sonnet-4-5``.
        base_url: the API root of a compatible server (without ``/v1``).
        api_key: default ``$ANTHROPIC_API_KEY``; a placeholder when ``base_url`` is given without one.
        client: an ``anthropic.AsyncAnthropic`` to reuse (a copy with ``max_retries=0`` is used).
        max_tokens: the reply's token limit (``model_kwargs["max_tokens"]`` overrides it).
        thinking: extended thinking, e.g. ``{"type": "enabled", "budget_tokens": 2048}``.
        max_retries: retries of rate limits, 5xx/529, timeouts and connection failures.
        timeout: seconds one request attempt may wait for the provider in all, an overall deadline
            (the SDK's own timeout is only per read): for a streamed request, the waits for the
            response and for every event add up against it, so it bounds the whole stream but not
            the time the consumer takes between events. Running out of it is a ``ModelTimeoutError``,
            retried like any timeout (a stream only before its first event). None: the client's default
            per-read timeout and no overall deadline.
        model_kwargs: default request parameters (``temperature``, ``top_k``, ``stop_sequences``…);
            ``ModelRequest.model_kwargs`` override them; keys the SDK does not know go in ``extra_body``.
        name: a label for logs (default ``anthropic:<model>``).
        retry_policy: backoff settings (its ``max_retries`` is replaced by ``max_retries``).
        structured_output: a structured answer type (a pydantic model, a list…) goes out as
            ``output_config={"format": {"type": "json_schema", ...}}`` beside the tools and the reply
            text is the answer; False: the planner adds one output tool instead. Default: True for
            the Anthropic API's models that have structured outputs (not Claude 3 and earlier, nor
            Sonnet 4 / Opus 4), False for another server (a ``base_url``, or a given client's).
    """

    provider = PROVIDER
    native_tools = True

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 client: Any = None, max_tokens: int = 1024, thinking: dict[str, Any] | None = None,
                 max_retries: int | None = None, timeout: float | None = 60.0,
                 model_kwargs: dict[str, Any] | None = None,
                 name: str | None = None, retry_policy: RetryPolicy | None = None,
                 structured_output: bool | None = None) -> None:
        self.max_tokens = max_tokens
        if structured_output is None:  # the Anthropic API, for models that have structured outputs
            url = base_url or (str(getattr(client, "base_url", "")) if client is not None else None)
            structured_output = (not url or "//api.anthropic.com" in url) and not _NO_STRUCTURED.match(model)
        self.structured_output = structured_output
        self._tools = WireCache(to_anthropic_tools)
        self._formats = WireCache(_output_format)
        self.thinking = thinking
        self._thinking_cache: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._cache_lock = threading.Lock()
        make: Callable[[], Any] | None = None
        if client is None:
            # no key at all: the SDK may still find credentials of its own (auth token, profiles)
            key = api_key or os.environ.get("ANTHROPIC_API_KEY") or (PLACEHOLDER_KEY if base_url else None)

            def make_anthropic() -> Any:
                return anthropic.AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0)

            make = make_anthropic

        self._setup(model, label="AnthropicModel", max_retries=max_retries, timeout=timeout,
                    model_kwargs=model_kwargs, name=name, retry_policy=retry_policy, base_url=base_url,
                    client=client, make_client=make)

    def __repr__(self) -> str:
        return f"AnthropicModel({self.model!r}, base_url={self.base_url!r})"

    # -------------------------------------------------------------- requests
    def build_params(self, request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for this request."""
        params = self._base_params(request, _CREATE_PARAMS, stream)
        params.setdefault("max_tokens", self.max_tokens)
        system, messages = to_anthropic_messages(request.messages, self._cached_thinking)
        if system and "system" not in params:
            params["system"] = system
        params["messages"] = messages
        if request.tools:  # the same objects for every request of a run: the same bytes (prompt caching)
            params.setdefault("tools", self._tools.get(request.tools))
        if request.answer_format is not None:
            config = params.get("output_config")
            fmt = self._formats.get(request.answer_format)
            if not isinstance(config, dict):
                params["output_config"] = {"format": fmt}
            elif "format" not in config:
                params["output_config"] = {**cast("dict[str, Any]", config), "format": fmt}
        if self.thinking is not None:
            params.setdefault("thinking", self.thinking)
        return params

    async def _create(self, client: Any, params: dict[str, Any]) -> Any:
        return await client.messages.create(**params)

    def _mapped(self, exc: Exception) -> Exception:
        return _mapped(exc)

    async def request(self, request: ModelRequest) -> ModelResponse:
        message = await self._call(self.build_params(request))
        blocks, resp = _typed(_to_response, message)
        self._remember_thinking(blocks)
        return resp

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        """Yield ModelDeltas from the event stream, then the complete ModelResponse.

        Failures before the first event are retried; after it they are raised (mapped).
        """
        acc = _StreamAccumulator()
        async for event in self._events(self.build_params(request, stream=True)):
            for delta in _typed(acc.feed, event):
                yield delta
        resp = _typed(acc.response)
        self._remember_thinking(acc.blocks())
        yield resp

    # -------------------------------------------------------------- thinking blocks
    def _remember_thinking(self, blocks: list[dict[str, Any]]) -> None:
        thinking = [b for b in blocks if b.get("type") in ("thinking", "redacted_thinking")]
        tool_ids = [b["id"] for b in blocks if b.get("type") == "tool_use" and b.get("id")]
        if not thinking or not tool_ids:
            return
        with self._cache_lock:
            self._thinking_cache[tool_ids[0]] = thinking
            while len(self._thinking_cache) > THINKING_CACHE_SIZE:
                self._thinking_cache.popitem(last=False)

    def _cached_thinking(self, tool_call_id: str) -> list[dict[str, Any]] | None:
        with self._cache_lock:
            return self._thinking_cache.get(tool_call_id)


def _output_format(fmt: AnswerFormat) -> dict[str, Any]:
    """``output_config.format`` for an answer format: its schema as the SDK's ``transform_schema``
    makes it acceptable to the API (closed objects; unsupported keywords moved into descriptions)."""
    transform = getattr(anthropic, "transform_schema", None)
    schema = fmt.schema
    if transform is not None:
        try:
            schema = transform(schema)
        except Exception:  # a schema it cannot read (no type): sent as it is
            schema = fmt.schema
    return {"type": "json_schema", "schema": schema}


# ------------------------------------------------------------------ errors
def _mapped(exc: Exception) -> Exception:
    """The ModelError for an SDK (or transport) exception; other exceptions unchanged."""
    return map_sdk_error(exc, anthropic, anthropic.AnthropicError, PROVIDER, status=_status_error)


def _status_error(exc: anthropic.APIStatusError) -> Exception:
    etype = getattr(exc, "type", None) or _body_error_type(exc.body)  # older SDKs lack ``type``
    message = getattr(exc, "api_message", None) or exc.message
    if exc.status_code < 400:
        # an ``error`` event inside a 200 stream: only the error type tells what happened
        return error_for_type(etype, message, provider=PROVIDER)
    return error_for_status(exc.status_code, message, provider=PROVIDER,
                            retry_after=parse_retry_after(exc.response.headers),
                            context_too_long=etype in CONTEXT_TOO_LONG_CODES or (
                                # Anthropic's documented form: 400 invalid_request_error "prompt is too long: …"
                                exc.status_code == 400 and str(message).lower().startswith("prompt is too long")))


def _body_error_type(body: Any) -> str | None:
    err = body.get("error", body) if isinstance(body, dict) else None
    value = err.get("type") if isinstance(err, dict) else None
    return value if isinstance(value, str) else None


# ------------------------------------------------------------------ responses
def _usage(u: dict[str, Any] | None) -> Usage:
    """Token counts; a missing, null or odd ``usage`` counts as zero tokens (never an error)."""
    if not isinstance(u, dict) or not u:
        return Usage(requests=1)
    total_in = count(u.get("input_tokens")) + count(u.get("cache_read_input_tokens")) \
        + count(u.get("cache_creation_input_tokens"))
    return Usage(input_tokens=total_in, output_tokens=count(u.get("output_tokens")), requests=1)


def _malformed(what: str) -> ModelResponseError:
    return malformed(PROVIDER, what)


def _typed(fn: Callable[..., T], *args: Any) -> T:
    return read_reply(PROVIDER, fn, *args)


def _to_response(message: Any) -> tuple[list[dict[str, Any]], ModelResponse]:
    """The content blocks and ModelResponse of a ``message``; a reply of the wrong shape (no
    ``content`` list, a block that is not an object…) is a ModelResponseError."""
    content = getattr(message, "content", None)
    if not isinstance(content, list):
        raise _malformed("content is missing or not a list" if content is None
                         else f"content is a {type(content).__name__}, not a list")
    blocks = []
    for i, b in enumerate(content):
        if not hasattr(b, "model_dump"):
            raise _malformed(f"content block {i} is a {type(b).__name__}, not an object")
        blocks.append(b.model_dump(exclude_none=True))
    usage = getattr(message, "usage", None)
    dump = getattr(usage, "model_dump", None)
    usage_dict = cast("dict[str, Any]", dump()) if callable(dump) else None
    resp = _response_from_blocks(blocks, usage=usage_dict, stop_reason=getattr(message, "stop_reason", None),
                                 model=getattr(message, "model", None), raw=message)
    return blocks, resp


def _response_from_blocks(blocks: list[dict[str, Any]], *, usage: dict[str, Any] | None, stop_reason: str | None,
                          model: str | None, raw: Any) -> ModelResponse:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[Function] = []
    for b in blocks:
        kind = b.get("type")
        if kind == "text":
            texts.append(b.get("text") or "")
        elif kind == "thinking":
            thinking.append(b.get("thinking") or "")
        elif kind == "tool_use":
            value = b.get("input")
            kwargs = value if isinstance(value, (dict, str)) else {"input": value}
            # a str is the arguments' JSON (a streamed block): the planner decodes it (normalise_call)
            calls.append(Function(id=b.get("id"), name=b.get("name") or "",
                                  kwargs=kwargs))  # pyright: ignore[reportArgumentType]
    return ModelResponse(text="".join(texts) or None, tool_calls=calls, thinking="\n".join(t for t in thinking if t)
                         or None, usage=_usage(usage), raw=raw, model_name=model, finish_reason=stop_reason)


class _StreamAccumulator:
    """Turns Messages API stream events into ModelDeltas and, at the end, a ModelResponse."""

    def __init__(self) -> None:
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}
        self._tool_index: dict[int, int] = {}
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.started = False

    def feed(self, event: Any) -> list[ModelDelta]:
        kind = getattr(event, "type", None)
        out: list[ModelDelta] = []
        if kind == "message_start":
            self.started = True
            msg = event.message
            self.model, self.id = msg.model, msg.id
            if msg.usage is not None:
                self.usage = msg.usage.model_dump(exclude_none=True)
        elif kind == "content_block_start":
            i = event.index
            block = event.content_block.model_dump(exclude_none=True)
            self._blocks[i] = block
            btype = block.get("type")
            if btype == "tool_use":
                n = self._tool_index[i] = len(self._tool_index)
                self._json[i] = []
                out.append(ModelDelta(tool_call_index=n, tool_call_id=block.get("id"), tool_name=block.get("name"),
                                      raw=event))
            elif btype == "text" and block.get("text"):
                out.append(ModelDelta(text=block["text"], raw=event))
            elif btype == "thinking" and block.get("thinking"):
                out.append(ModelDelta(thinking=block["thinking"], raw=event))
        elif kind == "content_block_delta":
            i = event.index
            block = self._blocks.setdefault(i, {"type": "text", "text": ""})
            d = event.delta
            dtype = getattr(d, "type", None)
            if dtype == "text_delta":
                block["text"] = (block.get("text") or "") + d.text
                out.append(ModelDelta(text=d.text, raw=event))
            elif dtype == "thinking_delta":
                block["thinking"] = (block.get("thinking") or "") + d.thinking
                out.append(ModelDelta(thinking=d.thinking, raw=event))
            elif dtype == "signature_delta":
                block["signature"] = (block.get("signature") or "") + d.signature
            elif dtype == "input_json_delta":
                self._json.setdefault(i, []).append(d.partial_json)
                if d.partial_json:
                    out.append(ModelDelta(tool_call_index=self._tool_index.get(i), arguments_delta=d.partial_json,
                                          raw=event))
        elif kind == "content_block_stop":
            self._finish_tool(event.index)
        elif kind == "message_delta":
            if event.delta.stop_reason:
                self.stop_reason = event.delta.stop_reason
            if event.usage is not None:
                self.usage.update(event.usage.model_dump(exclude_none=True))
        return out

    def _finish_tool(self, i: int) -> None:
        block = self._blocks.get(i)
        parts = self._json.pop(i, None)
        if block is None or block.get("type") != "tool_use" or parts is None:
            return
        raw = "".join(parts)
        if raw.strip():
            try:
                block["input"] = json.loads(raw)
            except ValueError:
                block["input"] = raw  # the planner repairs or reports it
        else:
            block.setdefault("input", {})

    def blocks(self) -> list[dict[str, Any]]:
        return [self._blocks[i] for i in sorted(self._blocks)]

    def response(self) -> ModelResponse:
        if not self.started:
            raise ModelResponseError(f"{PROVIDER}: the stream ended without a message_start event",
                                     provider=PROVIDER)
        if self.stop_reason is None:  # cut off: a partial reply must not pass for a whole one
            raise ModelResponseError(f"{PROVIDER}: the stream ended before the reply was complete",
                                     provider=PROVIDER)
        for i in list(self._json):  # a stream cut short of content_block_stop
            self._finish_tool(i)
        blocks = self.blocks()
        raw = {"id": self.id, "model": self.model, "content": blocks, "stop_reason": self.stop_reason,
               "usage": dict(self.usage)}
        return _response_from_blocks(blocks, usage=self.usage, stop_reason=self.stop_reason, model=self.model,
                                     raw=raw)
