"""The worker threads that sync tools run in.

One pool per process, shared by every run and every loop: at most ``max_workers`` daemon
threads (``TREADLE_TOOL_THREADS``, default 32), started on demand and kept. It is not
asyncio's default executor, on purpose:

- tools that block for long would otherwise starve what uses that executor (the server's
  store reads, ``asyncio.to_thread`` in user code, the local model's generation);
- ``asyncio.run`` (and interpreter exit, for a ``ThreadPoolExecutor``) waits for every thread
  of the default executor, so a cancelled tool still blocking would hold the program open.
  These threads are daemons: a cancelled call's thread finishes in the background, or dies
  with the process (for the journal that is the same as a crash inside the tool).

``run_in_thread(fn, *args)`` returns an asyncio future on the running loop; cancelling it
(the run was cancelled, or the tool's timeout passed) does not stop a call already running:
the thread carries on and its result is dropped. A call still queued when cancelled never
starts. The copy of the caller's contextvars made at submission is what ``fn`` runs in.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import queue
import threading
import weakref
from typing import Callable, Generic, Protocol, TypeVar

__all__ = ["ToolThreads", "default_pool", "run_in_thread", "set_tool_threads"]

DEFAULT_THREADS = 32

R = TypeVar("R")


class _Work(Protocol):
    """One call queued for a worker thread, whatever it returns."""

    def run(self, idle: list[None]) -> None: ...  # in a worker thread

    def settle(self) -> None: ...  # on the loop


class _Job(Generic[R]):
    """``fn(*args)`` run in a copy of the submitter's context; its outcome handed to ``fut``."""

    __slots__ = ("args", "ctx", "done", "fn", "fut", "outcome")

    def __init__(self, done: _Done, fut: asyncio.Future[R], fn: Callable[..., R], args: tuple[object, ...]) -> None:
        self.done, self.fut, self.fn, self.args = done, fut, fn, args
        self.ctx = contextvars.copy_context()
        self.outcome: tuple[R] | BaseException | None = None  # (the result,) or what it raised

    def run(self, idle: list[None]) -> None:
        """One call (in a worker thread; its own frame: nothing of it stays referenced while
        the thread waits). The thread says it is free (``idle``) before the loop is woken: the
        next call the loop submits goes to it, rather than to a thread started for it."""
        if self.fut.cancelled():  # cancelled while queued: never started
            idle.append(None)
            return
        try:
            self.outcome = (self.ctx.run(self.fn, *self.args),)
        except BaseException as e:  # handed to the awaiting task
            self.outcome = e
        idle.append(None)
        self.done.post(self)

    def settle(self) -> None:
        fut, outcome = self.fut, self.outcome
        if fut.done() or outcome is None:  # cancelled meanwhile: the result is dropped
            return
        if isinstance(outcome, tuple):
            fut.set_result(outcome[0])
        elif isinstance(outcome, StopIteration):  # a future cannot hold it
            fut.set_exception(RuntimeError(f"the tool raised StopIteration: {outcome}"))
        else:
            fut.set_exception(outcome)


class ToolThreads:
    """A bounded pool of daemon threads that resolves asyncio futures."""

    def __init__(self, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError("a tool thread pool needs at least one thread")
        self.max_workers = max_workers
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        # one token per thread done with its call (about to wait for the next): list.append and
        # list.pop are atomic, and cheaper than a threading.Semaphore (a Python-level Condition)
        self._idle: list[None] = []
        self._lock = threading.Lock()
        self._threads = 0

    @property
    def threads(self) -> int:
        """How many threads were started (they are kept)."""
        return self._threads

    def submit(self, fn: Callable[..., R], *args: object) -> asyncio.Future[R]:
        """Run ``fn(*args)`` in a worker thread, in a copy of the current context."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._work.put(_Job(_done_for(loop), fut, fn, args))
        try:
            self._idle.pop()  # a thread waiting (or about to): it takes this call
        except IndexError:  # none: start one, if allowed
            with self._lock:
                n = self._threads + 1 if self._threads < self.max_workers else 0
                if n:
                    self._threads = n
            if n:
                threading.Thread(target=self._serve, name=f"treadle-tool-{n}", daemon=True).start()
        return fut

    def _serve(self) -> None:
        get, idle = self._work.get, self._idle
        while True:
            get().run(idle)


class _Done:
    """The calls of one loop that finished, handed to it in batches: one wake-up of the loop
    for all the calls that finished since its last turn (many runs at once), not one each."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)  # weak: this is the loop's value in _dones, keyed weakly by the loop
        self.items: list[_Work] = []
        self.lock = threading.Lock()
        self.scheduled = False

    def post(self, job: _Work) -> None:  # in a worker thread
        with self.lock:
            self.items.append(job)
            if self.scheduled:
                return
            self.scheduled = True
        loop = self.loop()
        try:
            if loop is None:
                raise RuntimeError("the loop is gone")
            loop.call_soon_threadsafe(self.flush)
        except RuntimeError:  # the loop is closed: nobody waits for these results any more
            with self.lock:
                self.items.clear()

    def flush(self) -> None:  # on the loop
        with self.lock:
            items, self.items = self.items, []
            self.scheduled = False
        for job in items:
            job.settle()


_dones: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Done] = weakref.WeakKeyDictionary()
_dones_lock = threading.Lock()


def _done_for(loop: asyncio.AbstractEventLoop) -> _Done:
    done = _dones.get(loop)
    if done is None:
        with _dones_lock:  # loops in other threads may add theirs at the same time
            done = _dones.setdefault(loop, _Done(loop))
    return done


_pool: ToolThreads | None = None
_pool_lock = threading.Lock()


def _size_from_env() -> int:
    raw = os.environ.get("TREADLE_TOOL_THREADS", "").strip()
    if not raw:
        return DEFAULT_THREADS
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"TREADLE_TOOL_THREADS must be a positive integer, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"TREADLE_TOOL_THREADS must be a positive integer, got {raw!r}")
    return n


def default_pool() -> ToolThreads:
    """The process's pool (made on first use)."""
    global _pool
    pool = _pool
    if pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ToolThreads(_size_from_env())
            pool = _pool
    return pool


def set_tool_threads(max_workers: int) -> None:
    """Bound the sync tools' threads from now on (a new pool; calls running in the old one finish there)."""
    global _pool
    pool = ToolThreads(max_workers)
    with _pool_lock:
        _pool = pool


def run_in_thread(fn: Callable[..., R], *args: object) -> asyncio.Future[R]:
    """``fn(*args)`` in the shared tool pool; await the returned future on the running loop."""
    return (_pool or default_pool()).submit(fn, *args)


def _forget_pool() -> None:  # a forked child has none of its parent's threads (nor its locks' holders)
    global _pool, _pool_lock, _dones, _dones_lock
    _pool, _pool_lock = None, threading.Lock()
    _dones, _dones_lock = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Done](), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
