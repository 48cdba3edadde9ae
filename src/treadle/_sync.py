"""Run a coroutine to completion from synchronous code.

Without a running loop in this thread, the coroutine runs on a private, reused loop
owned by the thread. With one (Jupyter, or sync code called from async code), it runs
on a private loop in a helper thread while this thread waits. No ``asyncio.run`` inside
a running loop, no nest_asyncio.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")

_local = threading.local()
_helper_lock = threading.Lock()
_helper_loop: asyncio.AbstractEventLoop | None = None


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop


def _helper() -> asyncio.AbstractEventLoop:
    global _helper_loop
    with _helper_lock:
        if _helper_loop is None or _helper_loop.is_closed():
            loop = asyncio.new_event_loop()
            t = threading.Thread(target=_serve, args=(loop,), name="treadle-sync", daemon=True)
            t.start()
            _helper_loop = loop
            atexit.register(_stop_helper, loop)
        return _helper_loop


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    _local.is_helper = True
    asyncio.set_event_loop(loop)
    loop.run_forever()


def _stop_helper(loop: asyncio.AbstractEventLoop) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` and return its result, whatever the calling thread is doing."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = _thread_loop()
        if not loop.is_running():
            task = loop.create_task(coro)
            try:
                return loop.run_until_complete(task)
            except BaseException:  # e.g. Ctrl-C: do not leave the run pending in the reused loop
                task.cancel()
                try:
                    loop.run_until_complete(task)
                except BaseException:
                    pass
                raise
    # a loop is running in this thread: hand the coroutine to the helper thread,
    # or, if this *is* the helper thread (a sync tool calling a runner), to a new one
    if getattr(_local, "is_helper", False):
        return _run_in_new_thread(coro)
    fut = asyncio.run_coroutine_threadsafe(_in_context(coro, contextvars.copy_context()), _helper())
    try:
        return fut.result()
    except BaseException:  # e.g. Ctrl-C in Jupyter: stop the run on the helper thread too
        fut.cancel()
        raise


async def _in_context(coro: Coroutine[Any, Any, T], ctx: contextvars.Context) -> T:
    """Run ``coro`` as a task in the caller's context (tracing spans, run ids carry over)."""
    return await ctx.run(asyncio.get_running_loop().create_task, coro)  # the task copies ctx


def _run_in_new_thread(coro: Coroutine[Any, Any, T]) -> T:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="treadle-sync-nested", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
