"""AdalFlow-style model clients as treadle models.

A client written for AdalFlow implements ``convert_inputs_to_api_kwargs(input, model_kwargs,
model_type)``, ``call(api_kwargs, model_type)`` / ``async acall(api_kwargs, model_type)`` and
``parse_chat_completion(completion)`` (returning something shaped like a ``GeneratorOutput``:
``raw_response``, ``data``, ``thinking``, ``usage``, ``error``). ``AdalFlowModel`` drives such a
client the way the seed's Generator did: the run's messages are rendered into one prompt string,
converted to API kwargs with the request's ``model_kwargs`` (the agent's merged with the call's),
sent with ``acall`` when the client implements it (else ``call``, in a worker thread), and parsed.
A ``raw_response`` that is an (async) iterable is a stream: its chunks become ``ModelDelta``s in
``astream`` and are joined into the reply text otherwise.

``Agent(model_client=...)`` wraps such a client automatically (``is_adalflow_client``).
``SeedModelClient`` is the seed's ``ModelClient`` base class for clients ported from AdalFlow.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import AsyncIterator, Protocol, runtime_checkable

from pydantic import JsonValue

from ..errors import ModelResponseError
from ..types import Function, GeneratorOutput, ModelType, Usage
from ._guards import is_async_iterable, is_dict, is_iterator, is_list
from .base import ModelDelta, ModelRequest, ModelResponse

__all__ = ["AdalFlowModel", "OutputFields", "SeedModelClient", "is_adalflow_client", "render_prompt", "usage_of"]

# The client, its replies and its usage are the user's objects, of AdalFlow's shapes: each
# shape the adapter reads is a Protocol below (checked with isinstance), so nothing is probed.


@runtime_checkable
class ConvertsInputs(Protocol):
    """A client that turns the prompt into its API kwargs."""

    def convert_inputs_to_api_kwargs(self, input: object = None, model_kwargs: dict[str, object] | None = None,
                                     model_type: ModelType = ModelType.UNDEFINED) -> dict[str, object]: ...


@runtime_checkable
class CallsAsync(Protocol):
    """A client with ``acall`` (a coroutine, or a function returning the completion)."""

    def acall(self, api_kwargs: dict[str, object] | None = None,
              model_type: ModelType = ModelType.UNDEFINED) -> object: ...


@runtime_checkable
class CallsSync(Protocol):
    """A client with ``call``."""

    def call(self, api_kwargs: dict[str, object] | None = None,
             model_type: ModelType = ModelType.UNDEFINED) -> object: ...


@runtime_checkable
class ParsesCompletion(Protocol):
    """A client that parses its completion (into a ``GeneratorOutput``, or an object like one)."""

    def parse_chat_completion(self, completion: object) -> object: ...


@runtime_checkable
class _Requests(Protocol):
    def request(self, request: ModelRequest) -> object: ...


# what ``parse_chat_completion`` returns: AdalFlow's ``GeneratorOutput`` or treadle's, or any
# object with some of its fields (each read when it is there)
@runtime_checkable
class _RawResponse(Protocol):
    @property
    def raw_response(self) -> object: ...


@runtime_checkable
class _Data(Protocol):
    @property
    def data(self) -> object: ...


@runtime_checkable
class _Error(Protocol):
    @property
    def error(self) -> object: ...


@runtime_checkable
class _Usage(Protocol):
    @property
    def usage(self) -> object: ...


@runtime_checkable
class _Thinks(Protocol):
    @property
    def thinking(self) -> object: ...


@runtime_checkable
class PromptCounts(Protocol):
    """Usage counted as OpenAI's ``CompletionUsage`` counts it."""

    @property
    def prompt_tokens(self) -> object: ...
    @property
    def completion_tokens(self) -> object: ...


@runtime_checkable
class InputCounts(Protocol):
    """Usage counted as Anthropic's ``Usage`` counts it."""

    @property
    def input_tokens(self) -> object: ...
    @property
    def output_tokens(self) -> object: ...


@runtime_checkable
class _Typed(Protocol):
    @property
    def type(self) -> object: ...


@runtime_checkable
class _Delta(Protocol):
    @property
    def delta(self) -> object: ...


@runtime_checkable
class _Content(Protocol):
    @property
    def content(self) -> object: ...


@runtime_checkable
class _Choices(Protocol):
    @property
    def choices(self) -> object: ...


@runtime_checkable
class _Completed(Protocol):
    @property
    def response(self) -> object: ...


@runtime_checkable
class _OutputText(Protocol):
    @property
    def output_text(self) -> object: ...


class SeedModelClient:
    """The seed's ``ModelClient`` base: subclass it and implement ``call``/``acall``,
    ``convert_inputs_to_api_kwargs`` and ``parse_chat_completion``, as in AdalFlow.

    The defaults are lenient: ``convert_inputs_to_api_kwargs`` returns the model kwargs plus
    ``input``, ``parse_chat_completion`` puts the completion in ``raw_response``.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.sync_client: object = None
        self.async_client: object = None

    def init_sync_client(self) -> object:
        raise NotImplementedError(f"{type(self).__name__} must implement init_sync_client")

    def init_async_client(self) -> object:
        raise NotImplementedError(f"{type(self).__name__} must implement init_async_client")

    def call(self, api_kwargs: dict[str, object] | None = None, model_type: ModelType = ModelType.UNDEFINED) -> object:
        raise NotImplementedError(f"{type(self).__name__} must implement call")

    async def acall(self, api_kwargs: dict[str, object] | None = None,
                    model_type: ModelType = ModelType.UNDEFINED) -> object:
        raise NotImplementedError(f"{type(self).__name__} must implement acall")

    def convert_inputs_to_api_kwargs(self, input: object = None, model_kwargs: dict[str, object] | None = None,
                                     model_type: ModelType = ModelType.UNDEFINED) -> dict[str, object]:
        return {**(model_kwargs or {}), "input": input}

    def parse_chat_completion(self, completion: object) -> GeneratorOutput[object]:
        return GeneratorOutput(data=None, raw_response=completion)

    def track_completion_usage(self, *args: object, **kwargs: object) -> object:
        raise NotImplementedError(f"{type(self).__name__} must implement track_completion_usage")

    def parse_embedding_response(self, response: object) -> object:
        raise NotImplementedError(f"{type(self).__name__} must implement parse_embedding_response")

    def list_models(self) -> object:
        raise NotImplementedError(f"{type(self).__name__} must implement list_models")


def is_adalflow_client(obj: object) -> bool:
    """True for an object in AdalFlow's ModelClient shape (not already a treadle model)."""
    if obj is None or isinstance(obj, (str, AdalFlowModel)):
        return False
    if isinstance(obj, SeedModelClient):
        return True
    if isinstance(obj, (ConvertsInputs, ParsesCompletion)):
        return True
    return isinstance(obj, CallsSync) and not isinstance(obj, _Requests)


def render_prompt(messages: list[dict[str, JsonValue]]) -> str:
    """The run's chat messages as the one prompt string an AdalFlow client expects."""
    parts: list[str] = []
    seen_user = False
    for m in messages:
        role, content = m.get("role"), m.get("content")
        text = content if isinstance(content, str) else ("" if content is None else json.dumps(content))
        if role == "system":
            parts.append(text)
        elif role == "user":
            parts.append(text if seen_user else f"User: {text}")
            seen_user = True
        elif role == "assistant":
            parts.append(f"Assistant: {text}")
        else:
            parts.append(f"Observation: {text}")
    return "\n\n".join(p for p in parts if p)


def _first_count(*values: object) -> int:
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return int(v)
    return 0


def usage_of(u: object) -> Usage | None:
    """A client's usage as treadle's: a ``Usage``, a dict or an object with OpenAI's or
    Anthropic's counts (``prompt_tokens``/``completion_tokens``, ``input_tokens``/``output_tokens``)."""
    if u is None:
        return None
    if isinstance(u, Usage):
        return u.copy()
    if is_dict(u):
        prompt = (u.get("prompt_tokens"), u.get("input_tokens"))
        completion = (u.get("completion_tokens"), u.get("output_tokens"))
    else:
        prompt = (u.prompt_tokens if isinstance(u, PromptCounts) else None,
                  u.input_tokens if isinstance(u, InputCounts) else None)
        completion = (u.completion_tokens if isinstance(u, PromptCounts) else None,
                      u.output_tokens if isinstance(u, InputCounts) else None)
    return Usage(input_tokens=_first_count(*prompt), output_tokens=_first_count(*completion), requests=1)


def _chunk_text(event: object) -> str | None:
    """The text a streamed event carries (plain strings, OpenAI chat chunks, Responses deltas)."""
    if isinstance(event, str):
        return event
    if is_dict(event):
        for key in ("text", "content", "delta"):
            value = event.get(key)
            if isinstance(value, str):
                return value
        return None
    kind = event.type if isinstance(event, _Typed) else None
    delta = event.delta if isinstance(event, _Delta) else None
    if isinstance(delta, str) and (not isinstance(kind, str) or kind.endswith("output_text.delta")):
        return delta
    choices = event.choices if isinstance(event, _Choices) else None
    if is_list(choices) and choices:
        first = choices[0]
        delta = first.delta if isinstance(first, _Delta) else None
        content = delta.content if isinstance(delta, _Content) else None
        if isinstance(content, str):
            return content
    return None


def _completed_text(event: object) -> str | None:
    """The whole text of an OpenAI Responses ``response.completed`` event."""
    if isinstance(event, _Typed) and event.type == "response.completed" and isinstance(event, _Completed):
        response = event.response
        text = response.output_text if isinstance(response, _OutputText) else None
        return text if isinstance(text, str) else None
    return None


class _Stream:
    """A ``raw_response`` that is a stream of events: an async iterable, a generator or an iterator."""

    def __init__(self, raw: object) -> None:
        self.raw = raw

    @staticmethod
    def of(raw: object) -> _Stream | None:
        if isinstance(raw, (str, bytes, bytearray, dict, list, tuple)) or raw is None:
            return None
        if is_async_iterable(raw) or is_iterator(raw):
            return _Stream(raw)
        return None

    async def events(self) -> AsyncIterator[object]:
        raw = self.raw
        if is_async_iterable(raw):
            async for event in raw:
                yield event
        elif is_iterator(raw):
            for event in raw:
                yield event


class OutputFields:
    """What ``parse_chat_completion`` returned, read once: the fields of a ``GeneratorOutput``
    it has (the object itself is the raw response when it has no ``raw_response``)."""

    __slots__ = ("data", "error", "has_data", "raw", "raw_response", "thinking", "usage")

    def __init__(self, out: object) -> None:
        self.raw_response = out.raw_response if isinstance(out, _RawResponse) else None
        self.raw = self.raw_response if isinstance(out, _RawResponse) else out
        self.has_data = isinstance(out, _Data)
        self.data = out.data if isinstance(out, _Data) else None
        self.error = out.error if isinstance(out, _Error) else None
        self.usage = out.usage if isinstance(out, _Usage) else None
        thinking = out.thinking if isinstance(out, _Thinks) else None
        self.thinking = thinking if isinstance(thinking, str) else None


class AdalFlowModel:
    """A treadle model driving an AdalFlow-style ModelClient (see the module docstring)."""

    native_tools = False
    provider = "adalflow"

    def __init__(self, client: object, model_type: ModelType = ModelType.LLM, name: str | None = None) -> None:
        self.client = client
        self.model_type = model_type
        self.name = name or type(client).__name__

    def __repr__(self) -> str:
        return f"AdalFlowModel({type(self.client).__name__})"

    # ------------------------------------------------------------ the seed's Generator pipeline
    def _api_kwargs(self, request: ModelRequest) -> dict[str, object]:
        prompt = render_prompt(request.messages)
        if not isinstance(self.client, ConvertsInputs):
            return {**request.model_kwargs, "input": prompt}
        return self.client.convert_inputs_to_api_kwargs(input=prompt, model_kwargs=dict(request.model_kwargs),
                                                        model_type=self.model_type)

    async def _complete(self, api_kwargs: dict[str, object]) -> object:
        client = self.client
        if isinstance(client, CallsAsync):
            try:
                result = client.acall(api_kwargs=api_kwargs, model_type=self.model_type)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except NotImplementedError:
                pass
        if not isinstance(client, CallsSync):
            raise ModelResponseError(f"{type(client).__name__} implements neither call nor acall")
        return await asyncio.to_thread(client.call, api_kwargs=api_kwargs, model_type=self.model_type)

    async def _parse(self, completion: object) -> OutputFields:
        client = self.client
        if not isinstance(client, ParsesCompletion):
            return OutputFields(GeneratorOutput[object](raw_response=completion))
        out = client.parse_chat_completion(completion)
        if inspect.isawaitable(out):
            out = await out
        return OutputFields(out)

    def _response(self, out: OutputFields, completion: object, request: ModelRequest,
                  streamed: str | None) -> ModelResponse:
        raw, data = out.raw, out.data
        text: str | None = streamed
        tool_calls: list[Function] = []
        if text is None:
            if isinstance(raw, str):
                text = raw
            elif isinstance(data, str):
                text = data
            elif isinstance(raw, (dict, list)):
                text = json.dumps(raw)
        if isinstance(data, Function):  # a native tool call (AdalFlow's Ollama client)
            tool_calls = [data]
        elif text is None and isinstance(data, (dict, list)):
            text = json.dumps(data)
        if not text and not tool_calls and out.error:
            raise ModelResponseError(str(out.error))
        model = request.model_kwargs.get("model")
        return ModelResponse(text=text, tool_calls=tool_calls, thinking=out.thinking, usage=usage_of(out.usage),
                             raw=completion, model_name=model if isinstance(model, str) else self.name)

    # ------------------------------------------------------------ treadle's model interface
    async def request(self, request: ModelRequest) -> ModelResponse:
        final: ModelResponse | None = None
        async for item in self.stream(request):
            if isinstance(item, ModelResponse):
                final = item
        assert final is not None
        return final

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        completion = await self._complete(self._api_kwargs(request))
        out = await self._parse(completion)
        streamed: str | None = None
        stream = _Stream.of(out.raw_response)
        if stream is not None:
            pieces: list[str] = []
            completed: str | None = None
            async for event in stream.events():
                text = _chunk_text(event)
                completed = _completed_text(event) or completed
                if text:
                    pieces.append(text)
                yield ModelDelta(text=text, raw=event)
            streamed = "".join(pieces) if pieces else completed
            if streamed is None and isinstance(out.data, str):
                streamed = out.data
        yield self._response(out, completion, request, streamed)
