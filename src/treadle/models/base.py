"""The ModelClient plug point: what a model provider must implement.

A client gets a ``ModelRequest`` (chat messages in the OpenAI shape, plus either native
tool definitions or a JSON schema the reply must follow) and answers a ``ModelResponse``
(text and/or tool calls, thinking, usage). Streaming is optional: a client with a
``stream`` method yields ``ModelDelta`` chunks and, last, the complete ``ModelResponse``.
Provider failures are raised as ``treadle.errors.ModelError`` subclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, runtime_checkable

from .._factories import new_dict, new_list
from ..types import Function, FunctionDefinition, Usage

__all__ = ["AnswerFormat", "ModelClient", "ModelDelta", "ModelRequest", "ModelResponse", "StreamingModelClient"]

Message = dict[str, Any]


@dataclass(slots=True, frozen=True, eq=False)
class AnswerFormat:
    """The final answer's shape, for a model that can constrain its text reply to a JSON schema
    (OpenAI ``response_format``, Anthropic ``output_config.format``).

    ``schema`` has an object root: an answer type whose schema is not an object (``list[int]``,
    a union…) is wrapped as ``{"answer": <schema>}`` (``wrapped``), and the planner unwraps the
    reply. ``name`` is a short identifier (``[A-Za-z0-9_-]``). Shared between requests: do not mutate.
    """

    name: str
    schema: dict[str, Any]
    wrapped: bool = False


@dataclass(slots=True)
class ModelRequest:
    """One call to the model.

    ``tools`` is set in native tool-calling mode; ``output_schema`` (a JSON schema
    the reply text must satisfy) in JSON mode when the planner can build one.
    ``answer_format`` (native mode, a model with ``structured_output``, a structured answer
    type): the schema a final text reply must follow; the client sends it as the provider's
    structured-output parameter.
    ``step`` is the planner call's index within the run. ``messages`` is the run's
    live list: a client must neither change it nor keep it past the call.
    """

    messages: list[Message]
    tools: list[FunctionDefinition] | None = None
    output_schema: dict[str, Any] | None = None
    model_kwargs: dict[str, Any] = field(default_factory=new_dict)
    run_id: str | None = None
    step: int = 0
    answer_format: AnswerFormat | None = None


@dataclass(slots=True)
class ModelResponse:
    """The model's complete reply."""

    text: str | None = None
    tool_calls: list[Function] = field(default_factory=new_list)
    thinking: str | None = None
    usage: Usage | None = None
    raw: object = None
    model_name: str | None = None
    finish_reason: str | None = None
    model_ran: bool = True
    """False when no model ran: the request admitted exactly one reply (the local model's
    grammar fully determined it), so the client returned it without a model call. Such a
    reply is no request (``Usage.requests``) and has no tokens; it counts in
    ``Usage.determined_replies``."""


@dataclass(slots=True)
class ModelDelta:
    """A streamed piece of a reply: text, thinking, or a tool call's argument delta."""

    text: str | None = None
    thinking: str | None = None
    tool_call_index: int | None = None
    tool_call_id: str | None = None
    tool_name: str | None = None
    arguments_delta: str | None = None
    raw: object = None


@runtime_checkable
class ModelClient(Protocol):
    """A model provider. ``native_tools`` says whether it does native tool calling."""

    native_tools: bool

    async def request(self, request: ModelRequest) -> ModelResponse: ...


@runtime_checkable
class StreamingModelClient(ModelClient, Protocol):
    """A provider that can stream: ``stream`` yields deltas, then the ModelResponse."""

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]: ...
