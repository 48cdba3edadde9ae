"""What the OpenAI and Anthropic clients share: client per event loop, one retry layer,
error mapping, an overall deadline per request attempt, and streaming that retries only
before the first chunk.

The deadline: the SDKs' (httpx) timeout bounds each read, so a server that sends a byte
now and then keeps a request alive forever. ``timeout`` is therefore also enforced here
as a budget for one attempt, as :class:`Budget` describes, and running out of it raises
``ModelTimeoutError`` (retried like any timeout, by the retry policy).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from typing import Any, AsyncIterator, Awaitable, Callable, NoReturn, TypeVar, cast

from ..errors import (
    ModelConnectionError,
    ModelError,
    ModelResponseError,
    ModelServerError,
    ModelTimeoutError,
    UserError,
)
from ._retry import LoopLocal, RetryPolicy, call_with_retries, error_for_transport, split_kwargs

PLACEHOLDER_KEY = "not-needed"

T = TypeVar("T")


class Budget:
    """The time one request attempt may spend waiting for the provider.

    A non-streamed attempt waits once (the request, until its reply is read and parsed by
    the SDK), so the budget is its overall deadline. A streamed attempt waits for the
    response and its first event, then for each next event: the time of all those waits
    adds up against one budget, so the whole stream, from sending the request to its last
    event, gets ``seconds`` of waiting on the provider. The time the consumer spends between
    two events (handlers, a slow reader of ``Runner.astream``) does not count. ``None``:
    no deadline beyond the SDK's own per-read timeout.
    """

    __slots__ = ("left", "provider", "seconds")

    def __init__(self, seconds: float | None, provider: str) -> None:
        self.seconds = seconds
        self.left = seconds
        self.provider = provider

    async def wait(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` within what is left of the budget, or raise ModelTimeoutError."""
        if self.left is None:
            return await fn()
        if self.left <= 0:
            raise self._error()
        loop = asyncio.get_running_loop()
        start = loop.time()
        if sys.version_info < (3, 11):  # no asyncio.timeout: wait_for runs fn() in a task of its own
            try:
                return await asyncio.wait_for(fn(), self.left)
            except asyncio.TimeoutError as e:
                raise self._error() from e
            finally:
                self.left -= loop.time() - start
        cm = asyncio.timeout(self.left)
        try:
            async with cm:
                return await fn()
        except TimeoutError as e:
            if cm.expired():
                raise self._error() from e
            raise
        finally:
            self.left -= loop.time() - start

    def _error(self) -> ModelTimeoutError:
        return ModelTimeoutError(f"{self.provider}: request timed out (no complete reply within the "
                                 f"{self.seconds:g} s timeout)", provider=self.provider)


def create_params(method: Any) -> frozenset[str]:
    """The keyword parameters an SDK's ``create`` method knows (others go in ``extra_body``)."""
    names = set(inspect.signature(method).parameters) - {"self"}
    return frozenset(names | {"extra_headers", "extra_query", "extra_body", "timeout"})


class SDKModel:
    """Base of the SDK-backed model clients.

    A subclass sets ``provider`` and implements ``_create(client, params)`` (the SDK call),
    ``_mapped(exc)`` (an SDK exception to its ModelError, or ``exc`` unchanged) and
    ``build_params(request, stream=...)``.
    """

    provider = "sdk"

    def _setup(self, model: str, *, label: str, max_retries: int | None, timeout: float | None,
               model_kwargs: dict[str, Any] | None, name: str | None, retry_policy: RetryPolicy | None,
               base_url: str | None, client: Any, make_client: Callable[[], Any] | None) -> None:
        if not model:
            raise UserError(f"{label} needs a model name")
        if max_retries is not None and max_retries < 0:
            raise UserError("max_retries must be >= 0")
        self.model = model
        self.timeout = timeout
        self.model_kwargs = dict(model_kwargs or {})
        self.name = name or f"{self.provider}:{model}"
        policy = retry_policy or RetryPolicy()
        if max_retries is None:
            max_retries = policy.max_retries if retry_policy is not None else 4
        self.retry_policy = RetryPolicy(max_retries=max_retries, initial_delay=policy.initial_delay,
                                        max_delay=policy.max_delay, max_retry_after=policy.max_retry_after,
                                        sleep=policy.sleep)
        self.base_url = base_url
        # one retry layer: ours (the SDK's own retries are switched off)
        self._shared: Any = client.with_options(max_retries=0) if client is not None else None
        self._clients: LoopLocal[Any] | None = LoopLocal(make_client) if make_client is not None else None

    @property
    def client(self) -> Any:
        """The SDK client in use (one per event loop unless a client was given)."""
        if self._shared is not None:
            return self._shared
        assert self._clients is not None
        return self._clients.get()

    async def aclose(self) -> None:
        """Close the HTTP client this model created for the running loop (not a given one)."""
        if self._clients is not None:
            c = self._clients.pop_current()
            if c is not None:
                await c.close()

    def _base_params(self, request: Any, known: frozenset[str] | set[str], stream: bool) -> dict[str, Any]:
        """Model kwargs (the model's, then the request's) split into the SDK's own parameters
        and ``extra_body``; the model name, the timeout and the stream flag set."""
        merged = {**self.model_kwargs, **(request.model_kwargs or {})}
        merged.pop("stream", None)
        params = split_kwargs(merged, known)
        params.setdefault("model", self.model)
        if self.timeout is not None:
            params.setdefault("timeout", self.timeout)
        if stream:
            params["stream"] = True
        return params

    # -------------------------------------------------------------- hooks
    async def _create(self, client: Any, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _mapped(self, exc: Exception) -> Exception:
        raise NotImplementedError

    def _raise_mapped(self, exc: Exception) -> NoReturn:
        """Raise the ModelError for ``exc`` (chained to it), or ``exc`` when it maps to nothing."""
        if isinstance(exc, json.JSONDecodeError):  # a 200 whose body was cut off: like a dropped connection
            raise ModelServerError(f"{self.provider}: the reply's body is not complete JSON ({exc})",
                                   provider=self.provider) from exc
        mapped = self._mapped(exc)
        self._redact(exc, mapped)
        if mapped is exc:
            raise exc
        raise mapped from exc

    def _redact(self, *errors: BaseException) -> None:
        """Replace the client's credentials in the errors' messages (a server may echo the key it was
        given, e.g. ``401 Incorrect API key provided: sk-…``): they end up in results, journals and logs."""
        try:
            client = self.client
        except Exception:  # no running loop: nothing was sent
            return
        secrets = [v for v in (getattr(client, "api_key", None), getattr(client, "auth_token", None))
                   if isinstance(v, str) and len(v) >= 8 and v != PLACEHOLDER_KEY]
        if not secrets:
            return

        def clean(value: Any) -> Any:
            if isinstance(value, str):
                for secret in secrets:
                    value = value.replace(secret, "[REDACTED]")
            return value

        for e in errors:
            e.args = tuple(clean(a) for a in e.args)
            if isinstance(getattr(e, "message", None), str):
                e.message = clean(e.message)  # type: ignore[attr-defined]

    # -------------------------------------------------------------- calling
    def _budget(self, params: dict[str, Any]) -> Budget:
        """A fresh budget for one attempt: the request's own ``timeout`` when it is a number
        (``model_kwargs={"timeout": ...}``), else the model's."""
        seconds = params.get("timeout", self.timeout)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            seconds = self.timeout  # e.g. an httpx.Timeout object: the SDK applies it per read
        return Budget(None if seconds is None else float(seconds), self.provider)

    async def _call(self, params: dict[str, Any]) -> Any:
        client = self.client

        async def once() -> Any:
            try:
                return await self._budget(params).wait(lambda: self._create(client, params))
            except Exception as e:
                self._raise_mapped(e)

        return await call_with_retries(once, self.retry_policy, describe=f"{self.name} request")

    async def _events(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        """The raw stream events. Failures before the first are retried; after it, raised mapped."""
        client = self.client

        budget: Budget | None = None

        async def open_stream() -> tuple[Any, Any]:
            nonlocal budget
            budget = self._budget(params)  # each attempt has the whole budget
            st: Any = None
            try:
                st = await budget.wait(lambda: self._create(client, params))
                try:
                    first = await budget.wait(st.__anext__)
                except StopAsyncIteration:
                    first = None
                return st, first
            except BaseException as e:
                if st is not None:
                    await st.close()
                if isinstance(e, Exception):
                    self._raise_mapped(e)
                raise

        st, event = await call_with_retries(open_stream, self.retry_policy, describe=f"{self.name} stream")
        assert budget is not None
        try:
            while event is not None:
                yield event
                try:
                    event = await budget.wait(st.__anext__)
                except StopAsyncIteration:
                    break
                except Exception as e:
                    self._raise_mapped(e)
        finally:
            await st.close()


def malformed(provider: str, what: str) -> ModelResponseError:
    return ModelResponseError(f"{provider}: malformed response: {what}", provider=provider)


def read_reply(provider: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, with the errors an odd reply shape raises while it is read turned into a
    ModelResponseError (the SDK builds replies without validating them)."""
    try:
        return fn(*args)
    except ModelResponseError:
        raise
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
        raise malformed(provider, f"{type(e).__name__}: {e}") from e


def count(value: Any) -> int:
    """A token count from a reply: a positive int, else 0 (missing, null or odd counts are no error)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def map_sdk_error(exc: Exception, sdk: Any, base: type[Exception], provider: str, *,
                  status: Callable[[Any], Exception], api_error: Callable[[Any], Exception] | None = None
                  ) -> Exception:
    """The ModelError for an exception of an SDK generated the same way as ``openai`` and
    ``anthropic`` (their ``APITimeoutError``, ``APIConnectionError``, ``APIResponseValidationError``,
    ``APIStatusError``, ``APIError`` and ``base``), or of the transport; others unchanged.
    ``status`` maps an ``APIStatusError`` (the provider's own status and body conventions),
    ``api_error`` an ``APIError`` without a status (an error event inside a stream)."""
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, sdk.APITimeoutError):
        return ModelTimeoutError(f"{provider}: request timed out", provider=provider)
    if isinstance(exc, sdk.APIConnectionError):
        return ModelConnectionError(f"{provider}: connection failed: {exc}", provider=provider)
    if isinstance(exc, sdk.APIResponseValidationError):
        return ModelResponseError(f"{provider}: invalid response: {exc}",
                                  status_code=cast(Any, exc).status_code, provider=provider)
    if isinstance(exc, sdk.APIStatusError):
        return status(exc)
    if api_error is not None and isinstance(exc, sdk.APIError):
        return api_error(exc)
    if isinstance(exc, base):
        return ModelResponseError(f"{provider}: {type(exc).__name__}: {exc}", provider=provider)
    return error_for_transport(exc, provider=provider) or exc
