"""A batch's tasks: results and progress, the runner factory, one task run (new, resumed or reused
from the journal), and the local (asyncio) backend. ``treadle.batch`` is the public face."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import logging
import os
import time
from collections import Counter
from contextlib import contextmanager
from typing import Any, AsyncGenerator, Callable, Iterable, Iterator

from ._plugs import missing_methods
from .errors import RunLeasedError, UserError
from .types import RunnerResult

logger = logging.getLogger("treadle.batch")

ENDED = frozenset({"success", "max_steps", "error", "cancelled"})
DEFAULT_CONCURRENCY = 32


# ---------------------------------------------------------------------------------------- results
class BatchResult(list):  # type: ignore[type-arg]
    """The batch's ``RunnerResult``s in input order, plus counts.

    ``done``: tasks whose run ended with status "success"; ``failed``: the others (error,
    max_steps, cancelled, or a task given up after ``max_retries`` worker deaths);
    ``retried``: how many times a task was sent again after its worker died;
    ``reused``: tasks found already ended in the store (a batch run again with its batch_id);
    ``resumed``: tasks continued from an unfinished journal.
    """

    def __init__(self, results: Iterable[RunnerResult[Any]] = (), *, batch_id: str = "", retried: int = 0,
                 resumed: int = 0, reused: int = 0, elapsed: float = 0.0, backend: str = "local",
                 startup: float = 0.0, teardown: float = 0.0) -> None:
        super().__init__(results)
        self.batch_id = batch_id
        self.retried = retried
        self.resumed = resumed
        self.reused = reused
        self.elapsed = elapsed
        self.backend = backend
        self.startup = startup  # seconds spent starting Ray and the actors (0 for local)
        self.teardown = teardown  # seconds spent stopping the actors (and Ray, when started here)

    @property
    def done(self) -> int:
        return sum(1 for r in self if r.status == "success")

    @property
    def failed(self) -> int:
        return len(self) - self.done

    @property
    def by_status(self) -> dict[str, int]:
        return dict(Counter(r.status for r in self))

    def summary(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "backend": self.backend, "total": len(self), "done": self.done,
                "failed": self.failed, "retried": self.retried, "resumed": self.resumed, "reused": self.reused,
                "elapsed": round(self.elapsed, 3), "startup": round(self.startup, 3),
                "teardown": round(self.teardown, 3)}

    def __repr__(self) -> str:
        return f"BatchResult({self.summary()})"


@dataclasses.dataclass
class BatchProgress:
    """What the progress callback receives after each finished task (and once at the start)."""

    total: int | None
    done: int = 0
    failed: int = 0
    retried: int = 0
    in_flight: int = 0
    started_at: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at


ProgressCallback = Callable[[BatchProgress], Any]


@contextmanager
def rich_progress(total: int | None = None, description: str = "batch") -> Iterator[ProgressCallback]:
    """A rich progress bar; yields the callback to pass as ``progress=``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("failed {task.fields[failed]} · retried {task.fields[retried]}"),
                   TimeElapsedColumn(), transient=False)
    task = bar.add_task(description, total=total, failed=0, retried=0)

    def update(p: BatchProgress) -> None:
        bar.update(task, completed=p.finished, total=p.total, failed=p.failed, retried=p.retried)

    with bar:
        yield update


# ---------------------------------------------------------------------------------------- factories
def _load(spec: str) -> Any:
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr:
        raise UserError(f"a runner factory string must look like 'package.module:function', not {spec!r}")
    obj: Any = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _accepts_store(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "store" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def is_runner(obj: Any) -> bool:
    """A Runner, known by its shape (``acall``, ``aresume``, ``with_store``): the batch sits below
    ``treadle.runner`` in the import graph, so it never imports the class."""
    return not isinstance(obj, type) and not missing_methods(obj, ("acall", "aresume", "with_store"))


def build_runner(factory: Any, store: Any = None) -> Any:
    """A Runner from a Runner, a callable returning one, or a ``"module:function"`` string.

    With ``store``: a factory that takes a ``store`` keyword gets it; otherwise the Runner is
    copied with the store attached (a Runner that already has a store keeps its own).
    """
    if isinstance(factory, str):
        factory = _load(factory)
    runner: Any
    if is_runner(factory):
        runner = factory
    elif callable(factory):
        runner = factory(store=store) if store is not None and _accepts_store(factory) else factory()
    else:
        raise UserError(f"batch needs a Runner, a factory returning one or 'module:function', got {factory!r}")
    if not is_runner(runner):
        raise UserError(f"the runner factory returned {type(runner).__name__}, not a Runner")
    if store is not None and runner.store is None:
        runner = runner.with_store(store)
    return runner


def store_url_of(store: Any) -> str | None:
    """A store every Ray actor can open itself: a URL (SQLite file on one node, or PostgreSQL)."""
    if store is None:
        return None
    if isinstance(store, str):
        if store.startswith("sqlite://"):
            path = store[len("sqlite://"):]
            path = path[1:] if path.startswith("/") and not path.startswith("//") else path
            if path == ":memory:":
                raise UserError("a Ray batch cannot share an in-memory SQLite store")
            return f"sqlite:///{os.path.abspath(path)}"
        return store
    from .store import SQLiteRunStore

    if isinstance(store, SQLiteRunStore):
        if store.path == ":memory:":
            raise UserError("a Ray batch cannot share an in-memory SQLite store")
        return f"sqlite:///{os.path.abspath(store.path)}"
    url = getattr(store, "url", None) or getattr(store, "dsn", None)
    if isinstance(url, str) and url:
        return url
    raise UserError("for backend='ray' pass the store as a URL (sqlite:///path.db or postgresql://…)")


# ---------------------------------------------------------------------------------------- one task
def _prompt(item: Any) -> dict[str, Any] | str:
    if isinstance(item, (str, dict)):
        return item
    raise UserError(f"a batch input must be a prompt_kwargs dict or a string, got {type(item).__name__}")


LEASE_POLL = 0.1  # seconds between looks at a run another process owns
LEASE_GRACE = 2.0  # seconds past its lease's end before the batch gives up on it


def failed_result(run_id: str, exc: BaseException) -> RunnerResult[Any]:
    return RunnerResult(status="error", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__,
                        run_id=run_id)


def _from_record(record: Any, runner: Any) -> RunnerResult[Any]:
    """A finished run's result rebuilt from the store (steps from the journal, typed answer)."""
    from ._resume import answer_type_of, recorded_result

    entries = runner.store.events(record.run_id)
    return recorded_result(record, entries, answer_type_of(runner.agent, entries))


async def run_task(runner: Any, item: Any, run_id: str, *, policy: str = "interrupt-observation"
                   ) -> tuple[RunnerResult[Any], str]:
    """Run one batch task; returns (result, how): how is "new", "resumed" or "reused".

    With a store, an ended run is reused and an unfinished one resumed from its journal.
    A run another process still owns (a worker given up for dead that is still finishing it)
    is waited for until that process ends it or its lease ends, then reused or resumed.
    Errors raised by the runner become a result with status "error".
    """
    how = "new"
    deadline: float | None = None
    try:
        store = runner.store
        while True:
            record = store.get_run(run_id) if store is not None else None
            if record is not None and record.status in ENDED:
                return _from_record(record, runner), "reused"
            try:
                if record is not None:
                    how = "resumed"
                    return await runner.aresume(run_id, policy=policy), how
                res = await runner.acall(_prompt(item), id=run_id)
            except RunLeasedError as e:
                now = time.time()
                if deadline is None:  # up to its lease's end, and a little more for the clocks
                    deadline = max(now, e.lease_until or now) + LEASE_GRACE
                if now >= deadline:
                    raise
                await asyncio.sleep(min(LEASE_POLL, deadline - now))
                continue
            if res.error_type == "JournalConflictError" and store is not None and store.get_run(run_id) is not None:
                continue  # created meanwhile by another process (nothing ran here): follow that run
            return res, how
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a task's own failure is its result, not the batch's
        return failed_result(run_id, exc), how


# ---------------------------------------------------------------------------------------- local
async def iter_local(factory: Any, inputs: Iterable[Any], *, concurrency: int, store: Any, batch_id: str,
                      policy: str, stats: dict[str, Any]) -> AsyncGenerator[tuple[int, RunnerResult[Any]], None]:
    runner = build_runner(factory, store)
    source = enumerate(inputs)
    running: dict[asyncio.Task[Any], int] = {}

    def submit() -> bool:
        try:
            i, item = next(source)
        except StopIteration:
            return False
        running[asyncio.ensure_future(run_task(runner, item, f"{batch_id}-{i}", policy=policy))] = i
        return True

    try:
        while len(running) < concurrency and submit():
            pass
        while running:
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for t in finished:
                i = running.pop(t)
                res, how = t.result()
                stats[how] += 1
                stats["in_flight"] = len(running)
                yield i, res
            while len(running) < concurrency and submit():
                pass
    finally:
        for t in running:
            t.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


# ---------------------------------------------------------------------------------------- ray
