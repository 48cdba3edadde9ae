"""FallbackModel: try several model clients in order until one answers."""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Sequence

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

    def __init__(self, models: Sequence[Any], *,
                 fallback_on: tuple[type[BaseException], ...] = DEFAULT_FALLBACK_ON, name: str | None = None) -> None:
        self.models = list(models)
        if not self.models:
            raise UserError("FallbackModel needs at least one model")
        for m in self.models:
            if not callable(getattr(m, "request", None)):
                raise UserError(f"FallbackModel: {m!r} is not a ModelClient (it has no request method)")
        self.fallback_on = tuple(fallback_on)
        self.native_tools = bool(getattr(self.models[0], "native_tools", False))
        # a structured answer as the provider's structured output only when every model can take it
        self.structured_output = all(bool(getattr(m, "structured_output", False)) for m in self.models)
        # how the planner spells the JSON-mode final answer for these models
        self.final_style = getattr(self.models[0], "final_style", "seed")
        self.name = name or "fallback(" + ", ".join(_label(m) for m in self.models) + ")"

    def __repr__(self) -> str:
        return f"FallbackModel({self.models!r})"

    def _skip(self, i: int, model: Any, error: BaseException) -> None:
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
            if not callable(getattr(model, "stream", None)):
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


def _label(model: Any) -> str:
    return str(getattr(model, "name", None) or type(model).__name__)


async def _aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        await close()
