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
from typing import Any, AsyncIterator, Awaitable, Callable, Generic, NoReturn, Protocol, TypeVar

from pydantic import JsonValue
from typing_extensions import Self

from ..errors import (
    ModelConnectionError,
    ModelResponseError,
    ModelServerError,
    ModelTimeoutError,
    UserError,
)
from ..types import Function
from ._retry import LoopLocal, RetryPolicy, call_with_retries, error_for_transport, split_kwargs
from .base import ModelRequest

PLACEHOLDER_KEY = "not-needed"

T = TypeVar("T")
E_co = TypeVar("E_co", covariant=True)


class SDKClient(Protocol):
    """What the models need of an SDK's async client (``openai.AsyncOpenAI``, ``anthropic.AsyncAnthropic``)."""

    def with_options(self, *, max_retries: int) -> Self: ...

    async def close(self) -> None: ...


class EventStream(Protocol[E_co]):
    """An SDK's async event stream (``openai.AsyncStream``, ``anthropic.AsyncStream``)."""

    async def __anext__(self) -> E_co: ...

    async def close(self) -> None: ...


C = TypeVar("C", bound=SDKClient)
R = TypeVar("R")  # a provider's reply (``ChatCompletion``, ``Message``)
E = TypeVar("E")  # a provider's stream event (``ChatCompletionChunk``, ``RawMessageStreamEvent``)
# the keyword arguments of an SDK's ``create``: splatted into its typed signature, so Any-valued
Params = dict[str, Any]


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


def create_params(method: Callable[..., object]) -> frozenset[str]:
    """The keyword parameters an SDK's ``create`` method knows (others go in ``extra_body``)."""
    names = set(inspect.signature(method).parameters) - {"self"}
    return frozenset(names | {"extra_headers", "extra_query", "extra_body", "timeout"})


class SDKModel(Generic[C, R, E]):
    """Base of the SDK-backed model clients, for a client type ``C``, replies ``R`` and stream events ``E``.

    A subclass sets ``provider`` and implements ``_create(client, params)`` and
    ``_create_stream(client, params)`` (the SDK calls), ``_secrets(client)`` (its credentials),
    ``_mapped(exc)`` (an SDK exception to its ModelError, or ``exc`` unchanged) and
    ``build_params(request, stream=...)``.
    """

    provider = "sdk"

    def _setup(self, model: str, *, label: str, max_retries: int | None, timeout: float | None,
               model_kwargs: dict[str, object] | None, name: str | None, retry_policy: RetryPolicy | None,
               base_url: str | None, client: C | None, make_client: Callable[[], C] | None) -> None:
        if not model:
            raise UserError(f"{label} needs a model name")
        if max_retries is not None and max_retries < 0:
            raise UserError("max_retries must be >= 0")
        self.model = model
        self.timeout = timeout
        self.model_kwargs: dict[str, object] = dict(model_kwargs or {})
        self.name = name or f"{self.provider}:{model}"
        policy = retry_policy or RetryPolicy()
        if max_retries is None:
            max_retries = policy.max_retries if retry_policy is not None else 4
        self.retry_policy = RetryPolicy(max_retries=max_retries, initial_delay=policy.initial_delay,
                                        max_delay=policy.max_delay, max_retry_after=policy.max_retry_after,
                                        sleep=policy.sleep)
        self.base_url = base_url
        # one retry layer: ours (the SDK's own retries are switched off)
        self._shared: C | None = client.with_options(max_retries=0) if client is not None else None
        self._clients: LoopLocal[C] | None = LoopLocal(make_client) if make_client is not None else None

    @property
    def client(self) -> C:
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

    def _base_params(self, request: ModelRequest, known: frozenset[str] | set[str], stream: bool) -> Params:
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
    async def _create(self, client: C, params: Params) -> R:
        raise NotImplementedError

    async def _create_stream(self, client: C, params: Params) -> EventStream[E]:
        raise NotImplementedError

    def _secrets(self, client: C) -> tuple[str | None, ...]:
        """The credentials ``client`` sends (its API key, a bearer token)."""
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
        secrets = [v for v in self._secrets(client) if v is not None and len(v) >= 8 and v != PLACEHOLDER_KEY]
        if not secrets:
            return

        def clean(value: str) -> str:
            for secret in secrets:
                value = value.replace(secret, "[REDACTED]")
            return value

        for e in errors:
            e.args = tuple(clean(a) if isinstance(a, str) else a for a in e.args)
            self._redact_message(e, clean)

    def _redact_message(self, error: BaseException, clean: Callable[[str], str]) -> None:
        """Clean the message an SDK exception keeps beside its ``args`` (``APIError.message``)."""

    # -------------------------------------------------------------- calling
    def _budget(self, params: Params) -> Budget:
        """A fresh budget for one attempt: the request's own ``timeout`` when it is a number
        (``model_kwargs={"timeout": ...}``), else the model's."""
        seconds = params.get("timeout", self.timeout)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            seconds = self.timeout  # e.g. an httpx.Timeout object: the SDK applies it per read
        return Budget(None if seconds is None else float(seconds), self.provider)

    async def _call(self, params: Params) -> R:
        client = self.client

        async def once() -> R:
            try:
                return await self._budget(params).wait(lambda: self._create(client, params))
            except Exception as e:
                self._raise_mapped(e)

        return await call_with_retries(once, self.retry_policy, describe=f"{self.name} request")

    async def _events(self, params: Params) -> AsyncIterator[E]:
        """The raw stream events. Failures before the first are retried; after it, raised mapped."""
        client = self.client

        budget: Budget | None = None

        async def open_stream() -> tuple[EventStream[E], E | None]:
            nonlocal budget
            budget = self._budget(params)  # each attempt has the whole budget
            st: EventStream[E] | None = None
            try:
                st = await budget.wait(lambda: self._create_stream(client, params))
                first: E | None
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


def read_reply(provider: str, fn: Callable[[], T]) -> T:
    """``fn(*args)``, with the errors an odd reply shape raises while it is read turned into a
    ModelResponseError (the SDK builds replies without validating them)."""
    try:
        return fn()
    except ModelResponseError:
        raise
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
        raise malformed(provider, f"{type(e).__name__}: {e}") from e


def raw_call(call_id: str | None, name: str, arguments: str | dict[str, JsonValue]) -> Function:
    """A tool call as the provider sent it: its arguments a JSON object, or the raw text when they
    are not one (``Function.kwargs`` then holds the string, which the planner repairs or reports:
    ``normalise_call``)."""
    return Function(id=call_id, name=name, kwargs=arguments)  # pyright: ignore[reportArgumentType]


def unchecked(value: object) -> object:
    """A field of an SDK reply as what it may be: the SDKs build replies without validating them
    (pydantic ``construct``), so a field holds whatever the server sent, whatever its annotation
    says. The caller checks it with ``isinstance``."""
    return value


def without_stream(params: Params) -> Params:
    """``params`` without its ``stream`` flag (the SDK call gives it as a literal, for its overloads)."""
    return {k: v for k, v in params.items() if k != "stream"}


def count(value: object) -> int:
    """A token count from a reply: a positive int, else 0 (missing, null or odd counts are no error)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def timed_out(provider: str) -> ModelTimeoutError:
    """The error of an SDK's ``APITimeoutError``."""
    return ModelTimeoutError(f"{provider}: request timed out", provider=provider)


def connection_failed(provider: str, exc: Exception) -> ModelConnectionError:
    """The error of an SDK's ``APIConnectionError``."""
    return ModelConnectionError(f"{provider}: connection failed: {exc}", provider=provider)


def invalid_response(provider: str, exc: Exception, status_code: int) -> ModelResponseError:
    """The error of an SDK's ``APIResponseValidationError``."""
    return ModelResponseError(f"{provider}: invalid response: {exc}", status_code=status_code, provider=provider)


def other_error(exc: Exception, base: type[Exception], provider: str) -> Exception:
    """The error of an exception no SDK class above matched: another of the SDK's (``base``),
    or of the transport; others unchanged. (Each provider's ``_mapped`` first returns a
    ModelError as it is and maps its SDK's ``APITimeoutError``, ``APIConnectionError``,
    ``APIResponseValidationError``, ``APIStatusError`` and ``APIError``, in that order.)"""
    if isinstance(exc, base):
        return ModelResponseError(f"{provider}: {type(exc).__name__}: {exc}", provider=provider)
    return error_for_transport(exc, provider=provider) or exc
