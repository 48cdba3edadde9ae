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
from functools import partial
from typing import AsyncIterator, Callable, TypeVar

try:
    import anthropic
    from anthropic.types import (
        InputJSONDelta,
        Message,
        MessageDeltaUsage,
        RawContentBlockDeltaEvent,
        RawContentBlockStartEvent,
        RawContentBlockStopEvent,
        RawMessageDeltaEvent,
        RawMessageStartEvent,
        RawMessageStreamEvent,
        SignatureDelta,
        TextDelta,
        ThinkingDelta,
    )
    from anthropic.types import Usage as AnthropicUsage
    from pydantic import BaseModel, JsonValue
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("AnthropicModel needs the Anthropic SDK: pip install 'treadle[anthropic]'") from e

from ..errors import ModelError, ModelResponseError
from ..types import Function, Usage
from ._anthropic_wire import to_anthropic_messages, to_anthropic_tools
from ._guards import is_dict, is_list
from ._retry import (
    CONTEXT_TOO_LONG_CODES,
    RetryPolicy,
    error_for_status,
    error_for_type,
    parse_retry_after,
)
from ._schema import WireCache
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

__all__ = ["AnthropicModel", "RetryPolicy", "to_anthropic_messages", "to_anthropic_tools"]

PROVIDER = "anthropic"
THINKING_CACHE_SIZE = 512
# models without structured outputs (output_config.format): Claude 2 and 3, Sonnet 4 and Opus 4
_NO_STRUCTURED = re.compile(r"claude-(instant|2|3)|claude-(sonnet|opus)-4(-0)?(-\d{8})?$")
T = TypeVar("T")
Block = dict[str, JsonValue]  # a content block as the API's JSON (kept, and sent back, as such)


def _create_params() -> frozenset[str]:
    from anthropic.resources.messages import AsyncMessages

    return create_params(AsyncMessages.create)


_CREATE_PARAMS = _create_params()


class AnthropicModel(SDKModel[anthropic.AsyncAnthropic, Message, RawMessageStreamEvent]):
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
                 client: anthropic.AsyncAnthropic | None = None, max_tokens: int = 1024,
                 thinking: dict[str, JsonValue] | None = None, max_retries: int | None = None,
                 timeout: float | None = 60.0, model_kwargs: dict[str, object] | None = None,
                 name: str | None = None, retry_policy: RetryPolicy | None = None,
                 structured_output: bool | None = None) -> None:
        self.max_tokens = max_tokens
        if structured_output is None:  # the Anthropic API, for models that have structured outputs
            url = base_url or (str(client.base_url) if client is not None else None)
            structured_output = (not url or "//api.anthropic.com" in url) and not _NO_STRUCTURED.match(model)
        self.structured_output = structured_output
        self._tools = WireCache(to_anthropic_tools)
        self._formats = WireCache(_output_format)
        self.thinking = thinking
        self._thinking_cache: OrderedDict[str, list[Block]] = OrderedDict()
        self._cache_lock = threading.Lock()
        make: Callable[[], anthropic.AsyncAnthropic] | None = None
        if client is None:
            # no key at all: the SDK may still find credentials of its own (auth token, profiles)
            key = api_key or os.environ.get("ANTHROPIC_API_KEY") or (PLACEHOLDER_KEY if base_url else None)

            def make_anthropic() -> anthropic.AsyncAnthropic:
                return anthropic.AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0)

            make = make_anthropic

        self._setup(model, label="AnthropicModel", max_retries=max_retries, timeout=timeout,
                    model_kwargs=model_kwargs, name=name, retry_policy=retry_policy, base_url=base_url,
                    client=client, make_client=make)

    def __repr__(self) -> str:
        return f"AnthropicModel({self.model!r}, base_url={self.base_url!r})"

    # -------------------------------------------------------------- requests
    def build_params(self, request: ModelRequest, *, stream: bool = False) -> Params:
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
            config: object = params.get("output_config")
            fmt = self._formats.get(request.answer_format)
            if not is_dict(config):
                params["output_config"] = {"format": fmt}
            elif "format" not in config:
                params["output_config"] = {**config, "format": fmt}
        if self.thinking is not None:
            params.setdefault("thinking", self.thinking)
        return params

    async def _create(self, client: anthropic.AsyncAnthropic, params: Params) -> Message:
        return await client.messages.create(**without_stream(params), stream=anthropic.omit)

    async def _create_stream(self, client: anthropic.AsyncAnthropic, params: Params
                             ) -> EventStream[RawMessageStreamEvent]:
        return await client.messages.create(**without_stream(params), stream=True)

    def _secrets(self, client: anthropic.AsyncAnthropic) -> tuple[str | None, ...]:
        return client.api_key, client.auth_token

    def _redact_message(self, error: BaseException, clean: Callable[[str], str]) -> None:
        if isinstance(error, anthropic.APIError):
            error.message = clean(error.message)

    def _mapped(self, exc: Exception) -> Exception:
        return _mapped(exc)

    async def request(self, request: ModelRequest) -> ModelResponse:
        message = await self._call(self.build_params(request))
        blocks, resp = _typed(lambda: _to_response(message))
        self._remember_thinking(blocks)
        return resp

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        """Yield ModelDeltas from the event stream, then the complete ModelResponse.

        Failures before the first event are retried; after it they are raised (mapped).
        """
        acc = _StreamAccumulator()
        async for event in self._events(self.build_params(request, stream=True)):
            for delta in _typed(partial(acc.feed, event)):
                yield delta
        resp = _typed(acc.response)
        self._remember_thinking(acc.blocks())
        yield resp

    # -------------------------------------------------------------- thinking blocks
    def _remember_thinking(self, blocks: list[Block]) -> None:
        thinking = [b for b in blocks if b.get("type") in ("thinking", "redacted_thinking")]
        tool_ids = [i for b in blocks if b.get("type") == "tool_use" and isinstance(i := b.get("id"), str) and i]
        if not thinking or not tool_ids:
            return
        with self._cache_lock:
            self._thinking_cache[tool_ids[0]] = thinking
            while len(self._thinking_cache) > THINKING_CACHE_SIZE:
                self._thinking_cache.popitem(last=False)

    def _cached_thinking(self, tool_call_id: str) -> list[Block] | None:
        with self._cache_lock:
            return self._thinking_cache.get(tool_call_id)


def _output_format(fmt: AnswerFormat) -> dict[str, object]:
    """``output_config.format`` for an answer format: its schema as the SDK's ``transform_schema``
    makes it acceptable to the API (closed objects; unsupported keywords moved into descriptions)."""
    schema: dict[str, object]
    try:
        schema = anthropic.transform_schema(fmt.schema)
    except Exception:  # a schema it cannot read (no type): sent as it is
        schema = fmt.schema
    return {"type": "json_schema", "schema": schema}


# ------------------------------------------------------------------ errors
def _mapped(exc: Exception) -> Exception:
    """The ModelError for an SDK (or transport) exception; other exceptions unchanged."""
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, anthropic.APITimeoutError):
        return timed_out(PROVIDER)
    if isinstance(exc, anthropic.APIConnectionError):
        return connection_failed(PROVIDER, exc)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return invalid_response(PROVIDER, exc, exc.status_code)
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc)
    return other_error(exc, anthropic.AnthropicError, PROVIDER)


def _status_error(exc: anthropic.APIStatusError) -> Exception:
    etype = _body_error(exc.body, "type")
    message = _body_error(exc.body, "message") or exc.message
    if exc.status_code < 400:
        # an ``error`` event inside a 200 stream: only the error type tells what happened
        return error_for_type(etype, message, provider=PROVIDER)
    return error_for_status(exc.status_code, message, provider=PROVIDER,
                            retry_after=parse_retry_after(exc.response.headers),
                            context_too_long=etype in CONTEXT_TOO_LONG_CODES or (
                                # Anthropic's documented form: 400 invalid_request_error "prompt is too long: …"
                                exc.status_code == 400 and str(message).lower().startswith("prompt is too long")))


def _body_error(body: object, key: str) -> str | None:
    """``error.<key>`` of an error reply's body (or ``<key>`` of a body that is the error itself)."""
    err = body.get("error", body) if is_dict(body) else None
    value = err.get(key) if is_dict(err) else None
    return value if isinstance(value, str) else None


# ------------------------------------------------------------------ responses
# The SDK builds replies without validating them (``construct``): a field holds whatever the
# server sent, whatever its annotation says, so each one the parsing relies on is checked.
def _usage(u: dict[str, object] | None) -> Usage:
    """Token counts; a missing, null or odd ``usage`` counts as zero tokens (never an error)."""
    if not u:
        return Usage(requests=1)
    total_in = count(u.get("input_tokens")) + count(u.get("cache_read_input_tokens")) \
        + count(u.get("cache_creation_input_tokens"))
    return Usage(input_tokens=total_in, output_tokens=count(u.get("output_tokens")), requests=1)


def _usage_dict(u: object) -> dict[str, object] | None:
    return u.model_dump(exclude_none=True) if isinstance(u, (AnthropicUsage, MessageDeltaUsage)) else None


def _malformed(what: str) -> ModelResponseError:
    return malformed(PROVIDER, what)


def _typed(fn: Callable[[], T]) -> T:
    return read_reply(PROVIDER, fn)


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _block(b: object, what: str) -> Block:
    """A content block as JSON."""
    if not isinstance(b, BaseModel):
        raise _malformed(f"{what} is a {type(b).__name__}, not an object")
    return b.model_dump(exclude_none=True)


def _to_response(message: Message) -> tuple[list[Block], ModelResponse]:
    """The content blocks and ModelResponse of a ``message``; a reply of the wrong shape (no
    ``content`` list, a block that is not an object…) is a ModelResponseError."""
    content = unchecked(message.content)
    if not is_list(content):
        raise _malformed("content is missing or not a list" if content is None
                         else f"content is a {type(content).__name__}, not a list")
    blocks = [_block(b, f"content block {i}") for i, b in enumerate(content)]
    resp = _response_from_blocks(blocks, usage=_usage_dict(message.usage), stop_reason=_opt_str(message.stop_reason),
                                 model=_opt_str(message.model), raw=message)
    return blocks, resp


def _response_from_blocks(blocks: list[Block], *, usage: dict[str, object] | None, stop_reason: str | None,
                          model: str | None, raw: object) -> ModelResponse:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[Function] = []
    for b in blocks:
        kind = b.get("type")
        if kind == "text":
            texts.append(_opt_str(b.get("text")) or "")
        elif kind == "thinking":
            thinking.append(_opt_str(b.get("thinking")) or "")
        elif kind == "tool_use":
            value = b.get("input")
            # a str is the arguments' JSON (a streamed block): the planner decodes it (normalise_call)
            kwargs: str | dict[str, JsonValue] = value if isinstance(value, (dict, str)) else {"input": value}
            calls.append(raw_call(_opt_str(b.get("id")), _opt_str(b.get("name")) or "", kwargs))
    return ModelResponse(text="".join(texts) or None, tool_calls=calls, thinking="\n".join(t for t in thinking if t)
                         or None, usage=_usage(usage), raw=raw, model_name=model, finish_reason=stop_reason)


class _StreamAccumulator:
    """Turns Messages API stream events into ModelDeltas and, at the end, a ModelResponse."""

    def __init__(self) -> None:
        self._blocks: dict[int, Block] = {}
        self._json: dict[int, list[str]] = {}
        self._tool_index: dict[int, int] = {}
        self.usage: dict[str, object] = {}
        self.stop_reason: str | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.started = False

    def feed(self, event: RawMessageStreamEvent) -> list[ModelDelta]:
        out: list[ModelDelta] = []
        if isinstance(event, RawMessageStartEvent):
            self.started = True
            msg = event.message
            self.model, self.id = _opt_str(msg.model), _opt_str(msg.id)
            self.usage = _usage_dict(msg.usage) or self.usage
        elif isinstance(event, RawContentBlockStartEvent):
            i = event.index
            block = self._blocks[i] = _block(event.content_block, "a content block")
            btype = block.get("type")
            if btype == "tool_use":
                n = self._tool_index[i] = len(self._tool_index)
                self._json[i] = []
                out.append(ModelDelta(tool_call_index=n, tool_call_id=_opt_str(block.get("id")),
                                      tool_name=_opt_str(block.get("name")), raw=event))
            elif btype == "text" and (text := _opt_str(block.get("text"))):
                out.append(ModelDelta(text=text, raw=event))
            elif btype == "thinking" and (thought := _opt_str(block.get("thinking"))):
                out.append(ModelDelta(thinking=thought, raw=event))
        elif isinstance(event, RawContentBlockDeltaEvent):
            out.extend(self._delta(event))
        elif isinstance(event, RawContentBlockStopEvent):
            self._finish_tool(event.index)
        elif isinstance(event, RawMessageDeltaEvent):
            if event.delta.stop_reason:
                self.stop_reason = event.delta.stop_reason
            self.usage.update(_usage_dict(event.usage) or {})
        return out

    def _delta(self, event: RawContentBlockDeltaEvent) -> list[ModelDelta]:
        i = event.index
        block = self._blocks.setdefault(i, {"type": "text", "text": ""})
        d = event.delta
        if isinstance(d, TextDelta):
            block["text"] = (_opt_str(block.get("text")) or "") + d.text
            return [ModelDelta(text=d.text, raw=event)]
        if isinstance(d, ThinkingDelta):
            block["thinking"] = (_opt_str(block.get("thinking")) or "") + d.thinking
            return [ModelDelta(thinking=d.thinking, raw=event)]
        if isinstance(d, SignatureDelta):
            block["signature"] = (_opt_str(block.get("signature")) or "") + d.signature
        elif isinstance(d, InputJSONDelta):
            self._json.setdefault(i, []).append(d.partial_json)
            if d.partial_json:
                return [ModelDelta(tool_call_index=self._tool_index.get(i), arguments_delta=d.partial_json, raw=event)]
        return []
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

    def blocks(self) -> list[Block]:
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
