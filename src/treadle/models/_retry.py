"""Retry and error-mapping helpers shared by the OpenAI and Anthropic clients.

Nothing here imports a provider SDK: each client turns its SDK's exceptions into
``treadle.errors.ModelError`` subclasses (with :func:`error_for_status` and
:func:`error_for_type`), and :func:`call_with_retries` retries the retryable ones
(``ModelError.retryable``: rate limits, 5xx, timeouts, connection failures) with
exponential backoff and jitter, waiting what a ``Retry-After`` header asks for.
The SDKs' own retries are switched off so there is exactly one retry layer.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import weakref
from dataclasses import dataclass
from typing import AbstractSet, Any, Awaitable, Callable, Generic, Mapping, TypeVar

from ..errors import (
    ModelAuthenticationError,
    ModelBadRequestError,
    ModelConnectionError,
    ModelContextTooLongError,
    ModelError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelResponseError,
    ModelServerError,
    ModelTimeoutError,
)

__all__ = [
    "CONTEXT_TOO_LONG_CODES",
    "LoopLocal",
    "RetryPolicy",
    "call_with_retries",
    "error_for_status",
    "error_for_transport",
    "error_for_type",
    "parse_retry_after",
    "split_kwargs",
]

log = logging.getLogger("treadle.models")

T = TypeVar("T")

# error ``code`` / ``type`` values that mean "the prompt does not fit the context window":
# OpenAI's code, and llama.cpp server's error type.
CONTEXT_TOO_LONG_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})

# error ``type`` values (Anthropic's documented ones, OpenAI's and llama.cpp's usual ones)
_TYPE_TO_ERROR: dict[str, type[ModelError]] = {
    "invalid_request_error": ModelBadRequestError,
    "authentication_error": ModelAuthenticationError,
    "permission_error": ModelAuthenticationError,
    "billing_error": ModelAuthenticationError,
    "not_found_error": ModelNotFoundError,
    "rate_limit_error": ModelRateLimitError,
    "rate_limit_exceeded": ModelRateLimitError,
    "insufficient_quota": ModelAuthenticationError,  # out of credits: retrying will not help
    "timeout_error": ModelTimeoutError,
    "api_error": ModelServerError,
    "server_error": ModelServerError,
    "overloaded_error": ModelServerError,
    "request_too_large": ModelContextTooLongError,
}


@dataclass(slots=True)
class RetryPolicy:
    """How a client retries retryable failures.

    Args:
        max_retries: retries after the first attempt (0 = try once).
        initial_delay: the first backoff in seconds; it doubles per retry.
        max_delay: the longest backoff.
        max_retry_after: a ``Retry-After`` longer than this is not waited for: the error
            is raised at once (so a ``FallbackModel`` can move on).
        sleep: the sleep coroutine (tests may record the waits).
    """

    max_retries: int = 4
    initial_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0
    sleep: Callable[[float], Awaitable[Any]] | None = None

    def backoff(self, retry_number: int) -> float:
        """Exponential backoff with "equal jitter" for the n-th retry (1-based)."""
        base = min(self.max_delay, self.initial_delay * (2 ** max(0, retry_number - 1)))
        return base / 2 + random.uniform(0, base / 2)

    def wait_for(self, error: BaseException | None, retry_number: int) -> float:
        """Seconds to wait before the n-th retry after ``error``."""
        ra = error.retry_after if isinstance(error, ModelError) else None
        if ra is not None and ra > 0:
            # the server said how long; add a little jitter so many clients do not stampede back
            return float(ra) + random.uniform(0, min(0.05 * ra, 1.0))
        return self.backoff(retry_number)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ModelError) and exc.retryable


async def call_with_retries(fn: Callable[[], Awaitable[T]], policy: RetryPolicy, *,
                            describe: str = "model request") -> T:
    """Await ``fn()``; retry it while it raises a retryable ModelError.

    ``fn`` must raise ModelErrors (map the SDK's exceptions inside it). Non-retryable
    errors, and the last error once the retries are used up, propagate unchanged.
    """
    import tenacity

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number > policy.max_retries:
            return True
        exc = state.outcome.exception() if state.outcome is not None else None
        ra = exc.retry_after if isinstance(exc, ModelError) else None
        return ra is not None and ra > policy.max_retry_after

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return policy.wait_for(exc, state.attempt_number)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.upcoming_sleep
        log.info("%s failed (%s: %s); retry %d/%d in %.2fs", describe, type(exc).__name__, exc,
                 state.attempt_number, policy.max_retries, delay)

    retrying = tenacity.AsyncRetrying(
        sleep=policy.sleep or asyncio.sleep,
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception(_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(fn)


# ----------------------------------------------------------------- error mapping
def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date), or None."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # a date it cannot parse raises (ValueError; TypeError on some Pythons)
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def error_for_status(status: int, message: str, *, provider: str, retry_after: float | None = None,
                     context_too_long: bool = False) -> ModelError:
    """The ModelError for an HTTP error status.

    400/422 bad request (or context too long when the provider's error code says so),
    401/402/403 authentication (402: the account cannot pay), 404 not found, 408 timeout,
    413 context too long (the request is too large), 429 rate limit, 5xx (and 529
    overloaded) server error; any other 4xx is a bad request.
    """
    cls: type[ModelError]
    if context_too_long or status == 413:
        cls = ModelContextTooLongError
    elif status in (401, 402, 403):
        cls = ModelAuthenticationError
    elif status == 404:
        cls = ModelNotFoundError
    elif status == 408:
        cls = ModelTimeoutError
    elif status == 429:
        cls = ModelRateLimitError
    elif status >= 500:
        cls = ModelServerError
    elif 400 <= status < 500:
        cls = ModelBadRequestError
    else:
        cls = ModelResponseError
    return cls(f"{provider} error {status}: {message}", status_code=status, retry_after=retry_after,
               provider=provider)


def error_for_type(error_type: str | None, message: str, *, provider: str,
                   status: int | None = None) -> ModelError:
    """The ModelError for an error reported without a usable HTTP status (e.g. mid-stream)."""
    t = (error_type or "").lower()
    if t in CONTEXT_TOO_LONG_CODES:
        cls: type[ModelError] = ModelContextTooLongError
    else:
        cls = _TYPE_TO_ERROR.get(t, ModelResponseError)
    label = f" ({error_type})" if error_type else ""
    return cls(f"{provider} error{label}: {message}", status_code=status, provider=provider)


def error_for_transport(exc: BaseException, *, provider: str) -> ModelError | None:
    """Map an ``httpx2`` transport failure (raised while reading a stream) or None."""
    try:
        import httpx2
    except ImportError:  # pragma: no cover - both SDKs depend on it
        return None
    if isinstance(exc, httpx2.TimeoutException):
        return ModelTimeoutError(f"{provider}: timed out ({type(exc).__name__}: {exc})", provider=provider)
    if isinstance(exc, (httpx2.TransportError, httpx2.StreamError)):
        return ModelConnectionError(f"{provider}: connection failed ({type(exc).__name__}: {exc})",
                                    provider=provider)
    return None


# ----------------------------------------------------------------- request kwargs
def split_kwargs(kwargs: Mapping[str, Any], known: AbstractSet[str]) -> dict[str, Any]:
    """Keep SDK parameters as they are; move the rest into ``extra_body``.

    So ``model_kwargs`` may hold provider extensions (``top_k``, ``min_p``…) next to the
    SDK's own parameters, and an explicit ``extra_body`` is merged, not replaced.
    """
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key == "extra_body":
            extra.update(value or {})
        elif key in known:
            out[key] = value
        else:
            extra[key] = value
    if extra:
        out["extra_body"] = extra
    return out


# ----------------------------------------------------------------- per-loop clients
class LoopLocal(Generic[T]):
    """One object per running event loop, made by ``factory`` on first use.

    SDK clients pool connections that belong to the loop that opened them, and a Runner's
    sync face may run different loops (one per thread); each loop gets its own client.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        obj = self._by_loop.get(loop)
        if obj is None:
            # a client's connections refer to their loop, so the weak key alone would never
            # let go: forget the clients of loops that have been closed (asyncio.run per call)
            for old in [lp for lp in list(self._by_loop.keys()) if lp.is_closed()]:
                self._by_loop.pop(old, None)
            obj = self._factory()
            self._by_loop[loop] = obj
        return obj

    def __len__(self) -> int:
        return len(self._by_loop)

    def pop_current(self) -> T | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._by_loop.pop(loop, None)
