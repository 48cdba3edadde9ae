"""Batches: run one agent over many inputs, in this process (asyncio) or on a Ray cluster.

``abatch(runner_or_factory, inputs)`` returns one ``RunnerResult`` per input, in input order,
as a ``BatchResult`` (a list that also counts done / failed / retried tasks).

* ``backend="local"``: bounded asyncio concurrency in this process. Inputs are read lazily
  from any iterable, so at most ``concurrency`` runs exist at once.
* ``backend="ray"`` (extra ``[ray]``): a pool of ``workers`` Ray actors. Each actor builds the
  Runner once from a picklable factory (a top-level function or a ``"module:function"`` string)
  and runs up to ``ceil(concurrency / workers)`` tasks at once on its event loop. At most
  ``concurrency + workers`` tasks are in flight; results are collected as they finish.

Every task has a deterministic run id, ``f"{batch_id}-{index}"``. With a ``store`` the runs are
journaled: a task whose actor dies is sent to another actor and resumes from its journal
(finished steps are not run again), and running the same ``batch_id`` again reuses the runs that
already ended and resumes the unfinished ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import logging
import math
import os
import time
from collections import Counter
from contextlib import contextmanager
from typing import Any, AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Literal

from ._plugs import missing_methods
from .errors import RunLeasedError, UserError
from .types import RunnerResult, new_id

__all__ = ["BatchProgress", "BatchResult", "abatch", "aiter_batch", "batch", "rich_progress"]

logger = logging.getLogger("treadle.batch")

Backend = Literal["local", "ray"]
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


def _store_url(store: Any) -> str | None:
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


def _failed(run_id: str, exc: BaseException) -> RunnerResult[Any]:
    return RunnerResult(status="error", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__,
                        run_id=run_id)


def _from_record(record: Any, runner: Any) -> RunnerResult[Any]:
    """A finished run's result rebuilt from the store (steps from the journal, typed answer)."""
    from .store.journal import recorded_result
    from .store.resume import answer_type_of

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
        return _failed(run_id, exc), how


# ---------------------------------------------------------------------------------------- local
async def _iter_local(factory: Any, inputs: Iterable[Any], *, concurrency: int, store: Any, batch_id: str,
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
class BatchWorker:
    """The Ray actor: builds the Runner once, then runs many tasks concurrently on its loop."""

    def __init__(self, factory: Any, store_url: str | None, policy: str) -> None:
        logging.getLogger("treadle").setLevel(logging.WARNING)
        self.runner = build_runner(factory, store_url)
        self.policy = policy
        self.pid = os.getpid()

    async def ready(self) -> int:
        return self.pid

    async def run(self, item: Any, run_id: str) -> tuple[RunnerResult[Any], str]:
        res, how = await run_task(self.runner, item, run_id, policy=self.policy)
        if res.ctx is not None:  # the context stays with the actor (it may not pickle)
            res = dataclasses.replace(res, ctx=None)
        return res, how


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise UserError("backend='ray' needs Ray: pip install 'treadle[ray]'") from exc
    return ray


LOOPBACK = "127.0.0.1"
_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
_restore_env: dict[str, str | None] = {}  # what start_ray changed in os.environ for the cluster it started


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _raylet() -> Any:
    try:
        return importlib.import_module("ray._raylet")
    except ImportError:  # pragma: no cover - depends on the extra
        return None


def _token_auth_supported() -> bool:
    raylet = _raylet()
    return all(hasattr(raylet, n) for n in ("AuthenticationTokenLoader", "Config", "get_authentication_mode"))


def _refresh_ray_auth() -> None:
    """Make this process's Ray (its cached config and token) see the auth settings of os.environ."""
    if not _token_auth_supported():
        return
    raylet = _raylet()
    raylet.Config.initialize("")
    raylet.AuthenticationTokenLoader.instance().reset_cache()


def _local_auth() -> None:
    """Token authentication for a local cluster started here, unless ``RAY_AUTH_MODE`` says
    otherwise: a fresh random token in ``RAY_AUTH_TOKEN`` for this cluster (inherited by the
    processes Ray starts; no file is written), unless a token is given already."""
    if "RAY_AUTH_MODE" in os.environ or not _token_auth_supported():
        return
    import secrets

    _restore_env.update({k: os.environ.get(k) for k in _AUTH_ENV})
    os.environ["RAY_AUTH_MODE"] = "token"
    if not os.environ.get("RAY_AUTH_TOKEN") and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    _refresh_ray_auth()


def _undo_local_auth() -> None:
    if not _restore_env:
        return
    for k, v in _restore_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _restore_env.clear()
    _refresh_ray_auth()


@contextmanager
def _node_on_loopback() -> Iterator[None]:
    """While a local cluster starts: let its node address be loopback.

    ``ray.init`` replaces a loopback ``_node_ip_address`` by the machine's network address
    (``services.resolve_ip_for_localhost``) except where Ray keeps single-machine clusters on
    loopback (macOS and Windows: ``ray_constants.ENABLE_RAY_CLUSTER`` false). With a loopback
    node address Ray binds its gRPC servers (GCS, raylet, object manager, every worker's) and its
    agents to loopback; with any other, its gRPC servers listen on all interfaces.
    """
    try:
        ray_constants: Any = importlib.import_module("ray._private.ray_constants")
    except ImportError:  # pragma: no cover - depends on the Ray version
        yield
        return
    old = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old


def start_ray(*, address: str | None = None, workers: int = 2, runtime_env: dict[str, Any] | None = None,
              **init_kwargs: Any) -> bool:
    """Connect to Ray (``address``) or start a quiet local cluster with ``workers`` CPUs.

    A local cluster started here keeps every port it opens on loopback (its node address is
    127.0.0.1, or the ``_node_ip_address`` given in ``init_kwargs``; see docs/scale.md for what
    Ray binds then) and uses Ray's token authentication when the installed Ray has it, with a
    token made for this cluster, unless ``RAY_AUTH_MODE`` is set (``disabled``: no token).

    Returns True when this call started/connected Ray (so the caller should shut it down, with
    ``stop_ray``), False when Ray was already initialised.
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        kwargs["num_cpus"] = workers
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    kwargs.update(init_kwargs)
    if address is not None or os.environ.get("RAY_ADDRESS"):  # joining a cluster: its settings, not ours
        ray.init(address=address, **kwargs)
        return True
    host = str(kwargs.setdefault("_node_ip_address", LOOPBACK))
    kwargs.setdefault("dashboard_host", LOOPBACK if _is_loopback(host) else host)
    if not _is_loopback(host):
        logger.warning("a local Ray cluster with node address %s: Ray's gRPC servers listen on all interfaces "
                       "then, not on that address only (see docs/scale.md)", host)
    _local_auth()
    try:
        if _is_loopback(host):
            with _node_on_loopback():
                ray.init(address=None, **kwargs)
        else:
            ray.init(address=None, **kwargs)
    except BaseException:
        _undo_local_auth()
        raise
    return True


def stop_ray() -> None:
    """Shut down the Ray this process started or connected to (and undo the auth settings
    ``start_ray`` made for a local cluster)."""
    ray = _ray()
    try:
        ray.shutdown()
    finally:
        _undo_local_auth()


async def _iter_ray(factory: Any, inputs: Iterable[Any], *, concurrency: int, store: Any, batch_id: str,
                    policy: str, stats: dict[str, Any], workers: int, ray_address: str | None,
                    max_retries: int, worker_cpus: float, runtime_env: dict[str, Any] | None,
                    ray_init_kwargs: dict[str, Any] | None, keep_ray: bool,
                    actors_out: list[Any] | None) -> AsyncGenerator[tuple[int, RunnerResult[Any]], None]:
    ray = _ray()
    if is_runner(factory):
        raise UserError("backend='ray' needs a picklable factory (a top-level function or 'module:function') "
                        "so that each actor builds its own Runner")
    store_url = _store_url(store)
    t0 = time.monotonic()
    started = start_ray(address=ray_address, workers=workers, runtime_env=runtime_env, **(ray_init_kwargs or {}))
    per_actor = max(1, math.ceil(concurrency / workers))
    actor_cls = ray.remote(BatchWorker)

    def new_actor() -> Any:
        a = actor_cls.options(max_concurrency=per_actor, num_cpus=worker_cpus).remote(factory, store_url, policy)
        if actors_out is not None:
            actors_out.append(a)
        return a

    load: dict[Any, int] = {}  # live actor -> tasks in flight on it
    pending: dict[asyncio.Future[Any], tuple[int, Any, str, Any, int]] = {}
    retry: list[tuple[int, Any, int]] = []
    source = enumerate(inputs)
    limit = concurrency + workers  # back-pressure: never more than this many submitted tasks
    try:
        actors = [new_actor() for _ in range(workers)]
        await asyncio.gather(*(asyncio.wrap_future(a.ready.remote().future()) for a in actors))
        for a in actors:
            load[a] = 0
        stats["startup"] = time.monotonic() - t0

        def submit() -> bool:
            if retry:
                i, item, attempt = retry.pop()
            else:
                try:
                    i, item = next(source)
                except StopIteration:
                    return False
                attempt = 0
            actor = min(load, key=load.__getitem__)
            run_id = f"{batch_id}-{i}"
            fut = asyncio.wrap_future(actor.run.remote(item, run_id).future())
            load[actor] += 1
            pending[fut] = (i, item, run_id, actor, attempt)
            return True

        while len(pending) < limit and submit():
            pass
        while pending:
            finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in finished:
                i, item, run_id, actor, attempt = pending.pop(fut)
                if actor in load:
                    load[actor] -= 1
                try:
                    res, how = fut.result()
                except ray.exceptions.RayActorError as exc:
                    if actor in load:  # first news of this death: replace the actor
                        del load[actor]
                        logger.warning("batch worker died (%s); starting another", type(exc).__name__)
                        load[new_actor()] = 0
                    if attempt < max_retries:
                        stats["retried"] += 1
                        retry.append((i, item, attempt + 1))
                        continue
                    res, how = _failed(run_id, exc), "new"
                except ray.exceptions.RayError as exc:
                    res, how = _failed(run_id, exc), "new"
                stats[how] += 1
                stats["in_flight"] = len(pending)
                yield i, res
            while len(pending) < limit and submit():
                pass
    finally:
        t1 = time.monotonic()
        for a in list(load):
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass
        if started and not keep_ray:
            stop_ray()
        stats["teardown"] = time.monotonic() - t1


# ---------------------------------------------------------------------------------------- faces
async def aiter_batch(runner_factory_or_runner: Any, inputs: Iterable[Any], *, backend: Backend = "local",
                      concurrency: int = DEFAULT_CONCURRENCY, store: Any = None, batch_id: str | None = None,
                      ray_address: str | None = None, workers: int | None = None,
                      progress: ProgressCallback | None = None, total: int | None = None,
                      max_retries: int = 3, resume_policy: str = "interrupt-observation",
                      worker_cpus: float = 1, runtime_env: dict[str, Any] | None = None,
                      ray_init_kwargs: dict[str, Any] | None = None, keep_ray: bool = False,
                      _stats: dict[str, Any] | None = None, _actors: list[Any] | None = None,
                      ) -> AsyncIterator[tuple[int, RunnerResult[Any]]]:
    """Yield ``(input index, RunnerResult)`` as tasks finish (completion order).

    Use it to stream a huge batch to a file without keeping the results; ``abatch`` collects it.
    Arguments are those of ``abatch``.
    """
    if concurrency < 1:
        raise UserError("concurrency must be at least 1")
    if backend not in ("local", "ray"):
        raise UserError(f"backend must be 'local' or 'ray', not {backend!r}")
    if total is None and hasattr(inputs, "__len__"):
        total = len(inputs)  # type: ignore[arg-type]
    bid = batch_id or new_id()
    stats: dict[str, Any] = _stats if _stats is not None else {}
    stats.update({"new": 0, "resumed": 0, "reused": 0, "retried": 0, "in_flight": 0, "startup": 0.0,
                  "teardown": 0.0,
                  "batch_id": bid})
    state = BatchProgress(total=total)
    if progress is not None:
        progress(dataclasses.replace(state))
    if backend == "local":
        gen = _iter_local(runner_factory_or_runner, inputs, concurrency=concurrency, store=store, batch_id=bid,
                          policy=resume_policy, stats=stats)
    else:
        gen = _iter_ray(runner_factory_or_runner, inputs, concurrency=concurrency, store=store, batch_id=bid,
                        policy=resume_policy, stats=stats, workers=workers or os.cpu_count() or 1,
                        ray_address=ray_address, max_retries=max_retries, worker_cpus=worker_cpus,
                        runtime_env=runtime_env, ray_init_kwargs=ray_init_kwargs, keep_ray=keep_ray,
                        actors_out=_actors)
    try:
        async for i, res in gen:
            if res.status == "success":
                state.done += 1
            else:
                state.failed += 1
            state.retried = stats["retried"]
            state.in_flight = stats["in_flight"]
            if progress is not None:
                progress(dataclasses.replace(state))  # a snapshot: callers may keep it
            yield i, res
    finally:
        await gen.aclose()


async def abatch(runner_factory_or_runner: Any, inputs: Iterable[Any], *, backend: Backend = "local",
                 concurrency: int = DEFAULT_CONCURRENCY, store: Any = None, batch_id: str | None = None,
                 ray_address: str | None = None, workers: int | None = None,
                 progress: ProgressCallback | None = None, **options: Any) -> BatchResult:
    """Run every input (a prompt_kwargs dict or a string) and return the results in input order.

    Args:
        runner_factory_or_runner: a ``Runner`` (local only), a callable returning one, or a
            ``"module:function"`` string. Ray actors call the factory once each; it must be
            picklable (a top-level function of an importable module).
        inputs: any iterable; read lazily (back-pressure), so it may be a generator.
        backend: "local" (asyncio in this process) or "ray".
        concurrency: runs at once in total (Ray: split over the actors).
        store: a RunStore or URL to journal every run (Ray: a URL or SQLiteRunStore, opened by
            each actor; SQLite works when all actors are on one node, else use PostgreSQL).
        batch_id: run ids are ``f"{batch_id}-{index}"``; reuse it to continue an interrupted batch.
        ray_address: an existing cluster ("auto", "ray://host:10001", "host:6379"); default
            starts a local one with ``workers`` CPUs and shuts it down at the end.
        workers: Ray actors (default: CPU count).
        progress: called with a ``BatchProgress`` after each task (see ``rich_progress``).
        **options: max_retries (per task, after a worker death; default 3), resume_policy,
            worker_cpus (CPUs reserved per actor, default 1), runtime_env, ray_init_kwargs,
            keep_ray (leave a Ray started here running), total (for progress, when inputs
            has no len).
    """
    stats: dict[str, Any] = {}
    t0 = time.monotonic()
    slots: dict[int, RunnerResult[Any]] = {}
    async for i, res in aiter_batch(runner_factory_or_runner, inputs, backend=backend, concurrency=concurrency,
                                    store=store, batch_id=batch_id, ray_address=ray_address, workers=workers,
                                    progress=progress, _stats=stats, **options):
        slots[i] = res
    return BatchResult((slots[i] for i in range(len(slots))), batch_id=stats["batch_id"],
                       retried=stats["retried"], resumed=stats["resumed"], reused=stats["reused"],
                       elapsed=time.monotonic() - t0, backend=backend, startup=stats["startup"],
                       teardown=stats["teardown"])


def batch(runner_factory_or_runner: Any, inputs: Iterable[Any], **kwargs: Any) -> BatchResult:
    """``abatch`` from synchronous code (works inside a running event loop too)."""
    from ._sync import run_sync

    return run_sync(abatch(runner_factory_or_runner, inputs, **kwargs))
