"""Group commit: one writer thread per store commits the journal writes of every run.

Runs hand their commits to the store's writer and go on; a run that must not go on until
its writes are durable (a tool call's start, an approval request, the run's end) awaits its
``Ticket``. The writer thread — the only place a Runner's commits are made, off the event
loops — takes everything queued, from every run, loop and thread of the process, and hands
it to ``RunStore.commit`` as one transaction, so N concurrent runs pay about one commit
where they would pay N.

The writer also renews the leases of the runs this process owns (see ``base``): every
``ttl / 3`` seconds, in one transaction; a lease found lost marks its run fenced.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable

from ..errors import JournalError, RunOwnershipLostError
from .base import Commit, RunStore

__all__ = ["GroupCommitter", "Ticket", "committer_for"]

logger = logging.getLogger("treadle")
IDLE_EXIT = 5.0  # seconds a writer thread with nothing to do and no lease to renew waits before it ends


class Ticket:
    """The outcome of one queued commit: ``error`` is None once it is durable (``done``)."""

    __slots__ = ("done", "error", "waiters")

    def __init__(self) -> None:
        self.done = False
        self.error: BaseException | None = None
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    async def wait(self) -> None:
        """Until the commit is durable (or refused: then ``error`` is set; this never raises)."""
        if self.done:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with _waiters_lock:
            if self.done:
                return
            self.waiters.append((loop, fut))
        await fut  # this waiter's own future: cancelling the waiter cancels nothing else

    def wait_sync(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:  # rare path (no loop): poll
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the journal write did not finish in time")
            time.sleep(0.0005)


_waiters_lock = threading.Lock()


def _wake(futures: list[asyncio.Future[None]]) -> None:
    for f in futures:
        if not f.done():
            f.set_result(None)


class GroupCommitter:
    """The writer of one store (see the module's docstring)."""

    def __init__(self, store: RunStore) -> None:
        # weakly (where the store allows it): a store nobody holds any more is collected and its
        # connections closed, though this writer lives on in ``_committers`` and its thread
        try:
            ref: Callable[[], RunStore | None] = weakref.ref(store)
        except TypeError:
            ref = lambda: store  # noqa: E731
        self._store = ref
        self._lock = threading.Lock()
        self._queue: list[tuple[Commit, Ticket]] = []
        # the writer thread sleeps on this queue (C code: cheaper than a Condition). True: commit what is
        # queued; False: look at the lease renewals again
        self._bell: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._rung = False  # a True is in the bell, not taken yet
        self._kicking: set[asyncio.AbstractEventLoop] = set()  # loops with a kick_soon callback queued
        self._thread: threading.Thread | None = None
        self._closed = False
        # leases this process holds on the store: run id -> (epoch, ttl, called with the error when lost)
        self._leases: dict[str, tuple[int, float, Callable[[BaseException], None]]] = {}
        self._next_renewal = float("inf")
        self.batches = 0  # commits made (for tests and benchmarks)
        self.commits = 0  # commits carried by them

    # ------------------------------------------------------------------ the runs' side
    def submit(self, commit: Commit, *, wake: bool = True) -> Ticket:
        """Queue ``commit``. ``wake=False``: the caller will ``kick`` soon (its next barrier)."""
        ticket = Ticket()
        with self._lock:
            if self._closed:
                ticket.error, ticket.done = JournalError("the journal writer is closed"), True
                return ticket
            self._queue.append((commit, ticket))
            if wake:
                self._ring(True)
        return ticket

    def kick(self) -> None:
        """Have the writer thread commit what is queued."""
        with self._lock:
            if self._queue:
                self._ring(True)

    def kick_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """``kick`` once the callbacks ready on ``loop`` now have run: the other runs that reach a
        durable point in this turn of the loop queue their commits first, and share the transaction."""
        if loop not in self._kicking:
            self._kicking.add(loop)
            loop.call_soon(self._kick_from, loop)

    def _kick_from(self, loop: asyncio.AbstractEventLoop) -> None:
        self._kicking.discard(loop)
        self.kick()

    def _ring(self, commit: bool) -> None:  # with self._lock held
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="treadle-journal-writer", daemon=True)
            self._thread.start()
        if not (commit and self._rung):
            self._rung = self._rung or commit
            self._bell.put(commit)

    @property
    def live_runs(self) -> int:
        """Runs of this process journaling to the store now."""
        return len(self._leases)

    def hold(self, run_id: str, epoch: int, ttl: float, on_lost: Callable[[BaseException], None]) -> None:
        """Renew ``run_id``'s lease while the run lives (until ``release``)."""
        with self._lock:
            self._leases[run_id] = (epoch, ttl, on_lost)
            due = time.monotonic() + ttl / 3
            if due < self._next_renewal or self._thread is None:  # sooner than the writer thread waits for
                self._next_renewal = min(self._next_renewal, due)
                self._ring(False)  # the writer thread renews (and is started for that if it was not yet)

    def release(self, run_id: str) -> None:
        with self._lock:
            self._leases.pop(run_id, None)

    def flush(self, timeout: float = 30) -> None:
        """Until everything queued so far is committed (from any thread, no loop needed)."""
        with self._lock:
            last = self._queue[-1][1] if self._queue else None
            if last is not None:
                self._ring(True)
        if last is not None:
            last.wait_sync(timeout)

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._closed = True
            if self._thread is not None:
                self._bell.put(True)

    def forked(self) -> None:
        """In a forked child: the parent's thread, locks, queue and leases are not this process's."""
        self._lock = threading.Lock()
        self._bell = queue.SimpleQueue()
        self._thread, self._queue, self._rung, self._kicking = None, [], False, set()
        self._leases.clear()
        self._next_renewal = float("inf")

    # ------------------------------------------------------------------ the writer thread
    def _work(self) -> None:
        # commit when asked to (a True in the bell), not merely because something is queued: what a run
        # queues without waking the writer goes with its next awaited write
        while True:
            wait = self._renewal_wait()
            try:
                commit = self._bell.get(timeout=IDLE_EXIT if wait is None else wait)
            except queue.Empty:
                commit = False
                with self._lock:
                    if wait is None and not self._queue and not self._leases:
                        self._thread = None  # idle, no lease to renew: the thread ends (_ring starts another)
                        return
            with self._lock:
                batch: list[tuple[Commit, Ticket]] = []
                if commit or self._closed:
                    batch, self._queue, self._rung = self._queue, [], False
                closed = self._closed
                renew = self._renewal_due()
            if batch:
                self._commit(batch)
            if renew:
                self._renew()
            if closed:
                return

    def _commit(self, batch: list[tuple[Commit, Ticket]]) -> None:
        try:
            store = self._store()
            if store is None:  # (a run that queues holds its store: not expected)
                raise JournalError("the store of these journal writes was closed")
            results = store.commit([c for c, _ in batch])
        except BaseException as e:  # the database failed the whole transaction
            logger.error("journal commit failed: %s: %s", type(e).__name__, e)
            err = e if isinstance(e, JournalError) else JournalError(f"the journal write failed: "
                                                                     f"{type(e).__name__}: {e}")
            results = [err] * len(batch)
        self.batches += 1
        self.commits += len(batch)
        wake: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        with _waiters_lock:
            for (_, t), r in zip(batch, results):
                t.error, t.done = r, True
                for loop, fut in t.waiters:
                    wake.setdefault(loop, []).append(fut)
        for loop, futs in wake.items():  # one wake-up per event loop, whatever the number of runs
            try:
                loop.call_soon_threadsafe(_wake, futs)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass

    def _renewal_wait(self) -> float | None:
        if not self._leases:
            return None
        return max(0.0, self._next_renewal - time.monotonic())

    def _renewal_due(self) -> bool:
        return bool(self._leases) and time.monotonic() >= self._next_renewal

    def _renew(self) -> None:
        with self._lock:
            leases = dict(self._leases)
            self._next_renewal = time.monotonic() + min(t for _, t, _ in leases.values()) / 3 if leases else \
                float("inf")
        by_ttl: dict[float, list[tuple[str, int]]] = {}
        for run_id, (epoch, ttl, _) in leases.items():
            by_ttl.setdefault(ttl, []).append((run_id, epoch))
        store = self._store()
        if store is None:
            return
        for ttl, group in by_ttl.items():
            try:
                lost = store.renew(group, ttl)
            except Exception as e:  # the database is unreachable: try again at the next renewal
                logger.warning("lease renewal failed: %s: %s", type(e).__name__, e)
                continue
            for run_id in lost:
                entry = leases[run_id]
                self.release(run_id)
                entry[2](RunOwnershipLostError(f"run {run_id!r}: its lease was taken over by another process"))


_committers: weakref.WeakKeyDictionary[RunStore, GroupCommitter] = weakref.WeakKeyDictionary()
_by_id: dict[int, GroupCommitter] = {}  # stores that cannot be weakly referenced
_committers_lock = threading.Lock()


def committer_for(store: RunStore) -> GroupCommitter:
    """The one writer of ``store`` in this process."""
    with _committers_lock:
        try:
            c = _committers.get(store)
            if c is None:
                c = _committers[store] = GroupCommitter(store)
        except TypeError:
            c = _by_id.get(id(store))
            if c is None:
                c = _by_id[id(store)] = GroupCommitter(store)
        return c


def _after_fork() -> None:
    """In a forked child: the parent's writer threads, locks and queued commits are not its own."""
    global _committers_lock
    _committers_lock = threading.Lock()
    for c in list(_committers.values()) + list(_by_id.values()):
        c.forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


@atexit.register
def _flush_all() -> None:
    for c in list(_committers.values()) + list(_by_id.values()):
        try:
            c.flush(timeout=5)
        except Exception:
            pass
