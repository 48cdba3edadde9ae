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
from typing import Any, AsyncIterator

from ..errors import ModelResponseError
from ..types import Function, GeneratorOutput, ModelType, Usage
from .base import ModelDelta, ModelRequest, ModelResponse

__all__ = ["AdalFlowModel", "SeedModelClient", "is_adalflow_client", "render_prompt"]


class SeedModelClient:
    """The seed's ``ModelClient`` base: subclass it and implement ``call``/``acall``,
    ``convert_inputs_to_api_kwargs`` and ``parse_chat_completion``, as in AdalFlow.

    The defaults are lenient: ``convert_inputs_to_api_kwargs`` returns the model kwargs plus
    ``input``, ``parse_chat_completion`` puts the completion in ``raw_response``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sync_client: Any = None
        self.async_client: Any = None

    def init_sync_client(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement init_sync_client")

    def init_async_client(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement init_async_client")

    def call(self, api_kwargs: dict[str, Any] | None = None, model_type: ModelType = ModelType.UNDEFINED) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement call")

    async def acall(self, api_kwargs: dict[str, Any] | None = None,
                    model_type: ModelType = ModelType.UNDEFINED) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement acall")

    def convert_inputs_to_api_kwargs(self, input: Any = None, model_kwargs: dict[str, Any] | None = None,
                                     model_type: ModelType = ModelType.UNDEFINED) -> dict[str, Any]:
        return {**(model_kwargs or {}), "input": input}

    def parse_chat_completion(self, completion: Any) -> GeneratorOutput[Any]:
        return GeneratorOutput(data=None, raw_response=completion)

    def track_completion_usage(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement track_completion_usage")

    def parse_embedding_response(self, response: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement parse_embedding_response")

    def list_models(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement list_models")


def is_adalflow_client(obj: Any) -> bool:
    """True for an object in AdalFlow's ModelClient shape (not already a treadle model)."""
    if obj is None or isinstance(obj, (str, AdalFlowModel)):
        return False
    if isinstance(obj, SeedModelClient):
        return True
    if callable(getattr(obj, "convert_inputs_to_api_kwargs", None)) or \
            callable(getattr(obj, "parse_chat_completion", None)):
        return True
    return callable(getattr(obj, "call", None)) and not callable(getattr(obj, "request", None))


def render_prompt(messages: list[dict[str, Any]]) -> str:
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


def _usage(u: Any) -> Usage | None:
    if u is None:
        return None
    if isinstance(u, Usage):
        return u.copy()

    def get(*names: str) -> int:
        for n in names:
            v = u.get(n) if isinstance(u, dict) else getattr(u, n, None)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return int(v)
        return 0

    return Usage(input_tokens=get("prompt_tokens", "input_tokens"),
                 output_tokens=get("completion_tokens", "output_tokens"), requests=1)


def _chunk_text(event: Any) -> str | None:
    """The text a streamed event carries (plain strings, OpenAI chat chunks, Responses deltas)."""
    if isinstance(event, str):
        return event
    if isinstance(event, dict):
        for key in ("text", "content", "delta"):
            if isinstance(event.get(key), str):
                return event[key]
        return None
    kind = getattr(event, "type", None)
    delta = getattr(event, "delta", None)
    if isinstance(delta, str) and (not isinstance(kind, str) or kind.endswith("output_text.delta")):
        return delta
    choices = getattr(event, "choices", None)
    if choices:
        content = getattr(getattr(choices[0], "delta", None), "content", None)
        if isinstance(content, str):
            return content
    return None


def _completed_text(event: Any) -> str | None:
    """The whole text of an OpenAI Responses ``response.completed`` event."""
    if getattr(event, "type", None) == "response.completed":
        text = getattr(getattr(event, "response", None), "output_text", None)
        return text if isinstance(text, str) else None
    return None


def _is_stream(raw: Any) -> bool:
    if isinstance(raw, (str, bytes, bytearray, dict, list, tuple)) or raw is None:
        return False
    return hasattr(raw, "__aiter__") or inspect.isgenerator(raw) or (
        hasattr(raw, "__iter__") and hasattr(raw, "__next__"))


class AdalFlowModel:
    """A treadle model driving an AdalFlow-style ModelClient (see the module docstring)."""

    native_tools = False
    provider = "adalflow"

    def __init__(self, client: Any, model_type: ModelType = ModelType.LLM, name: str | None = None) -> None:
        self.client = client
        self.model_type = model_type
        self.name = name or type(client).__name__

    def __repr__(self) -> str:
        return f"AdalFlowModel({type(self.client).__name__})"

    # ------------------------------------------------------------ the seed's Generator pipeline
    def _api_kwargs(self, request: ModelRequest) -> dict[str, Any]:
        prompt = render_prompt(request.messages)
        convert = getattr(self.client, "convert_inputs_to_api_kwargs", None)
        if convert is None:
            return {**request.model_kwargs, "input": prompt}
        return convert(input=prompt, model_kwargs=dict(request.model_kwargs), model_type=self.model_type)

    async def _complete(self, api_kwargs: dict[str, Any]) -> Any:
        acall = getattr(self.client, "acall", None)
        if callable(acall):
            try:
                result = acall(api_kwargs=api_kwargs, model_type=self.model_type)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except NotImplementedError:
                pass
        call = getattr(self.client, "call", None)
        if not callable(call):
            raise ModelResponseError(f"{type(self.client).__name__} implements neither call nor acall")
        return await asyncio.to_thread(call, api_kwargs=api_kwargs, model_type=self.model_type)

    async def _parse(self, completion: Any) -> Any:
        parse = getattr(self.client, "parse_chat_completion", None)
        out = parse(completion) if callable(parse) else GeneratorOutput(raw_response=completion)
        if inspect.isawaitable(out):
            out = await out
        return out

    def _response(self, out: Any, completion: Any, request: ModelRequest, streamed: str | None) -> ModelResponse:
        raw = getattr(out, "raw_response", out)
        data = getattr(out, "data", None)
        error = getattr(out, "error", None)
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
        if not text and not tool_calls and error:
            raise ModelResponseError(str(error))
        thinking = getattr(out, "thinking", None)
        model = request.model_kwargs.get("model")
        return ModelResponse(text=text, tool_calls=tool_calls, thinking=thinking if isinstance(thinking, str) else None,
                             usage=_usage(getattr(out, "usage", None)), raw=completion,
                             model_name=model if isinstance(model, str) else self.name)

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
        raw: Any = getattr(out, "raw_response", None)
        streamed: str | None = None
        if _is_stream(raw):
            pieces: list[str] = []
            completed: str | None = None
            if hasattr(raw, "__aiter__"):
                async for event in raw:
                    text = _chunk_text(event)
                    completed = _completed_text(event) or completed
                    if text:
                        pieces.append(text)
                    yield ModelDelta(text=text, raw=event)
            else:
                for event in raw:
                    text = _chunk_text(event)
                    completed = _completed_text(event) or completed
                    if text:
                        pieces.append(text)
                    yield ModelDelta(text=text, raw=event)
            streamed = "".join(pieces) if pieces else completed
            if streamed is None and isinstance(getattr(out, "data", None), str):
                streamed = out.data
        yield self._response(out, completion, request, streamed)
