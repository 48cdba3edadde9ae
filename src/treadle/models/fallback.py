"""FallbackModel: try several model clients in order until one answers."""

from __future__ import annotations

import logging
from typing import AsyncIterator, Awaitable, Protocol, Sequence, runtime_checkable

from ..errors import (
    ModelAuthenticationError,
    ModelConnectionError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelResponseError,
    ModelServerError,
    ModelTimeoutError,
    UserError,
)
from .base import ModelDelta, ModelRequest, ModelResponse

__all__ = ["DEFAULT_FALLBACK_ON", "FallbackModel"]

log = logging.getLogger("treadle.models")


@runtime_checkable
class _Requests(Protocol):
    """What a model must have to be one of the fallbacks (``native_tools`` and the rest are optional)."""

    async def request(self, request: ModelRequest) -> ModelResponse: ...


@runtime_checkable
class _Streams(Protocol):
    def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]: ...


@runtime_checkable
class _NativeTools(Protocol):
    @property
    def native_tools(self) -> object: ...


@runtime_checkable
class _Structured(Protocol):
    @property
    def structured_output(self) -> object: ...


@runtime_checkable
class _FinalStyle(Protocol):
    @property
    def final_style(self) -> object: ...


@runtime_checkable
class _Named(Protocol):
    @property
    def name(self) -> object: ...


@runtime_checkable
class _Closable(Protocol):
    def aclose(self) -> Awaitable[object]: ...

# failures that say "this provider cannot answer now", not "this request is wrong"
DEFAULT_FALLBACK_ON: tuple[type[BaseException], ...] = (
    ModelConnectionError,
    ModelTimeoutError,
    ModelRateLimitError,
    ModelServerError,
    ModelNotFoundError,
    ModelAuthenticationError,
)


class FallbackModel:
    """A ModelClient that asks ``models[0]``, then the next one when it fails, and so on.

    A model is skipped when it raises one of ``fallback_on`` (by default: connection,
    timeout, rate limit, server, not found and authentication errors) — after its own
    retries. Any other error (a bad request, a too long prompt) is raised at once, since
    the next model would get the same request. When every model fails, the last error
    is raised. ``native_tools`` (and ``final_style``) are the first model's: give models
    of the same kind, as the planner builds one request (native tools or a JSON schema)
    for all of them.

    ``stream`` falls back only until the first chunk: once a model has started to
    answer, its failure is raised.
    """

    def __init__(self, models: Sequence[object], *,
                 fallback_on: tuple[type[BaseException], ...] = DEFAULT_FALLBACK_ON, name: str | None = None) -> None:
        self.models: list[_Requests] = []
        for m in models:
            if not isinstance(m, _Requests) or not callable(m.request):
                raise UserError(f"FallbackModel: {m!r} is not a ModelClient (it has no request method)")
            self.models.append(m)
        if not self.models:
            raise UserError("FallbackModel needs at least one model")
        self.fallback_on = tuple(fallback_on)
        first = self.models[0]
        self.native_tools = bool(first.native_tools) if isinstance(first, _NativeTools) else False
        # a structured answer as the provider's structured output only when every model can take it
        self.structured_output = all(isinstance(m, _Structured) and bool(m.structured_output) for m in self.models)
        # how the planner spells the JSON-mode final answer for these models
        style = first.final_style if isinstance(first, _FinalStyle) else "seed"
        self.final_style = style if isinstance(style, str) else "seed"
        self.name = name or "fallback(" + ", ".join(_label(m) for m in self.models) + ")"

    def __repr__(self) -> str:
        return f"FallbackModel({self.models!r})"

    def _skip(self, i: int, model: object, error: BaseException) -> None:
        nxt = self.models[i + 1] if i + 1 < len(self.models) else None
        if nxt is not None:
            log.warning("%s failed (%s: %s); falling back to %s", _label(model), type(error).__name__, error,
                        _label(nxt))

    async def request(self, request: ModelRequest) -> ModelResponse:
        last: BaseException | None = None
        for i, model in enumerate(self.models):
            try:
                return await model.request(request)
            except self.fallback_on as e:
                last = e
                self._skip(i, model, e)
        assert last is not None
        raise last

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        last: BaseException | None = None
        for i, model in enumerate(self.models):
            if not isinstance(model, _Streams) or not callable(model.stream):
                try:
                    resp = await model.request(request)
                except self.fallback_on as e:
                    last = e
                    self._skip(i, model, e)
                    continue
                yield resp
                return
            chunks = model.stream(request)
            try:
                first = await chunks.__anext__()
            except StopAsyncIteration:
                await _aclose(chunks)
                raise ModelResponseError(f"{_label(model)}: the stream ended without a response") from None
            except self.fallback_on as e:
                await _aclose(chunks)
                last = e
                self._skip(i, model, e)
                continue
            try:
                yield first
                async for chunk in chunks:
                    yield chunk
            finally:
                await _aclose(chunks)
            return
        assert last is not None
        raise last


def _label(model: object) -> str:
    name = model.name if isinstance(model, _Named) else None
    return str(name or type(model).__name__)


async def _aclose(it: object) -> None:
    if isinstance(it, _Closable):
        await it.aclose()
