"""The Ray backend of ``treadle.batch``: the worker actor, a local cluster kept on loopback with
token authentication, and the task pool over the actors."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import math
import os
import time
from contextlib import contextmanager
from typing import Any, AsyncGenerator, Iterable, Iterator

from ._batch_tasks import (
    build_runner,
    failed_result,
    is_runner,
    run_task,
    store_url_of,
)
from .errors import UserError
from .types import RunnerResult

logger = logging.getLogger("treadle.batch")

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


async def iter_ray(factory: Any, inputs: Iterable[Any], *, concurrency: int, store: Any, batch_id: str,
                    policy: str, stats: dict[str, Any], workers: int, ray_address: str | None,
                    max_retries: int, worker_cpus: float, runtime_env: dict[str, Any] | None,
                    ray_init_kwargs: dict[str, Any] | None, keep_ray: bool,
                    actors_out: list[Any] | None) -> AsyncGenerator[tuple[int, RunnerResult[Any]], None]:
    ray = _ray()
    if is_runner(factory):
        raise UserError("backend='ray' needs a picklable factory (a top-level function or 'module:function') "
                        "so that each actor builds its own Runner")
    store_url = store_url_of(store)
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
                    res, how = failed_result(run_id, exc), "new"
                except ray.exceptions.RayError as exc:
                    res, how = failed_result(run_id, exc), "new"
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


