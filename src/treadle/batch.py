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

import dataclasses
import os
import time
from typing import Any, AsyncIterator, Iterable, Literal

from ._batch_ray import iter_ray, start_ray, stop_ray
from ._batch_tasks import (
    DEFAULT_CONCURRENCY,
    BatchProgress,
    BatchResult,
    ProgressCallback,
    build_runner,
    is_runner,
    iter_local,
    rich_progress,
    run_task,
)
from .errors import UserError
from .types import RunnerResult, new_id

__all__ = ["BatchProgress", "BatchResult", "abatch", "aiter_batch", "batch", "build_runner", "is_runner",
           "rich_progress", "run_task", "start_ray", "stop_ray"]

Backend = Literal["local", "ray"]


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
        gen = iter_local(runner_factory_or_runner, inputs, concurrency=concurrency, store=store, batch_id=bid,
                          policy=resume_policy, stats=stats)
    else:
        gen = iter_ray(runner_factory_or_runner, inputs, concurrency=concurrency, store=store, batch_id=bid,
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
