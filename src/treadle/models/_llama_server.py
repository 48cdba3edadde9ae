"""The llama.cpp servers LocalModel runs on: one per (weights, settings) in the process, on a
private unix socket, shared by every LocalModel and run (a part of ``treadle.models.local``)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from typing import Any

from ..errors import UserError
from ._prefix_cache import PrefixCache

__all__ = ["count_prompt", "count_tokens", "default_threads", "drop_server", "load_server", "prefix_cache_of",
           "unload_all"]

_servers: dict[tuple[Any, ...], Any] = {}
_prefix_caches: dict[int, PrefixCache] = {}  # id(server) -> its disk cache of evaluated prompt prefixes
_servers_lock = threading.Lock()
_sock_dirs: list[str] = []


def unload_all() -> int:
    """Release every loaded llama.cpp server (each frees its memory once no request holds it).
    Returns how many were loaded; later requests load again on demand."""
    with _servers_lock:
        n = len(_servers)
        _servers.clear()
        _prefix_caches.clear()
    return n


@atexit.register
def _cleanup() -> None:
    _servers.clear()  # the servers shut down as their last reference goes
    for d in _sock_dirs:
        shutil.rmtree(d, ignore_errors=True)


def default_threads() -> int:
    """Threads for llama.cpp: ``TREADLE_LOCAL_THREADS``, else half the cores (at least 1).

    llama.cpp's OpenMP workers spin while they wait; with as many threads as cores on a
    machine that is busy with anything else (the event loop, a second request), they
    fight for the CPU and a step can get tens of times slower. Half the cores leaves
    room for the rest of the process.
    """
    env = os.environ.get("TREADLE_LOCAL_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise UserError(f"TREADLE_LOCAL_THREADS must be a whole number, not {env!r}") from None
    return max(1, (os.cpu_count() or 2) // 2)


def _import_xllamacpp() -> Any:
    try:
        import xllamacpp
    except ImportError:
        raise UserError("the local model needs llama.cpp: pip install 'treadle[local]' (the xllamacpp wheel)") \
            from None
    return xllamacpp


def load_server(path: str, n_ctx: int, threads: int, n_parallel: int, cache_dir: str | None = None) -> Any:
    key = (path, n_ctx, threads, n_parallel, cache_dir)
    with _servers_lock:
        srv = _servers.get(key)
        if srv is not None:
            return srv
        xlc = _import_xllamacpp()
        if not os.path.isfile(path):
            raise UserError(f"no GGUF model file at {path}")
        p = xlc.CommonParams()
        p.model.path = path
        p.n_ctx = n_ctx
        p.n_parallel = n_parallel
        p.cpuparams.n_threads = threads
        p.cpuparams_batch.n_threads = threads
        p.use_jinja = True
        p.verbosity = 1  # errors only
        p.warmup = False
        # llama.cpp always starts its HTTP server: keep it off the network on a private socket
        sock_dir = tempfile.mkdtemp(prefix="treadle-llama-")
        p.hostnames = [os.path.join(sock_dir, "llama.sock")]
        p.model_alias = {os.path.splitext(os.path.basename(path))[0]}
        if cache_dir and n_parallel == 1:
            try:
                os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            except OSError:
                cache_dir = None
            else:
                p.slot_save_path = os.path.join(cache_dir, "")  # llama.cpp appends the file name as it is
        try:
            srv = xlc.Server(p)
        except (RuntimeError, ValueError) as e:
            shutil.rmtree(sock_dir, ignore_errors=True)
            raise UserError(f"llama.cpp could not load {path}: {e}") from None
        _servers[key] = srv
        _sock_dirs.append(sock_dir)
        if cache_dir and n_parallel == 1:
            _prefix_caches[id(srv)] = PrefixCache(p.hostnames[0], cache_dir, path)
        return srv


def drop_server(key: tuple[Any, ...]) -> bool:
    """Release the server loaded with these settings (``load_server``'s arguments); False if none was."""
    with _servers_lock:
        srv = _servers.pop(key, None)
        if srv is not None:
            _prefix_caches.pop(id(srv), None)
        return srv is not None


def prefix_cache_of(server: Any) -> PrefixCache | None:
    """The disk cache of evaluated prompt prefixes kept for this server (None: not cached)."""
    return _prefix_caches.get(id(server))


def count_prompt(server: Any, messages: list[dict[str, Any]]) -> int:
    """The tokens of ``messages`` as the server's chat template renders them, by its own
    tokenizer (``/apply-template`` then ``/tokenize`` on its private socket)."""
    import json

    from ._prefix_cache import _UnixHTTP  # pyright: ignore[reportPrivateUsage]

    address = str(server.listening_address)
    path = address[len("unix://"):] if address.startswith("unix://") else address

    def post(route: str, body: dict[str, Any]) -> Any:
        conn = _UnixHTTP(path, timeout=30)
        try:
            conn.request("POST", route, json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise OSError(f"llama.cpp {route}: HTTP {resp.status}")
        return json.loads(data)

    prompt = post("/apply-template", {"messages": messages})["prompt"]
    return len(post("/tokenize", {"content": prompt, "add_special": True})["tokens"])


def count_tokens(model: Any, request: Any) -> int:
    """``LocalModel.count_tokens``: the prompt tokens llama.cpp would evaluate for ``request``
    (its chat template, its few-shot examples), counted by its tokenizer before any fitting."""
    return count_prompt(model.server(), model._payload(request, budget=1 << 30)[0]["messages"])
