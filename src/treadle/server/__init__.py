"""``treadle serve``: an HTTP API streaming runs' events (SSE), taking approvals and
cancels, and a web UI on top of it. Needs the ``[server]`` extra (FastAPI, uvicorn,
sse-starlette); importing ``treadle`` does not import this package."""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import os
import sys
from typing import Any

from ..agent import Agent
from ..errors import UserError

__all__ = ["create_app", "load_agents", "serve"]

TOKEN_ENV = "TREADLE_SERVER_TOKEN"


SERVER_MODULES = ("fastapi", "uvicorn", "sse_starlette")


def require_server_extra() -> None:
    """A UserError naming the extra when FastAPI, uvicorn or sse-starlette is missing."""
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"treadle serve needs the server extra ({', '.join(missing)} missing): "
                        "pip install 'treadle[server]'")


def __getattr__(name: str) -> Any:
    if name == "create_app":
        require_server_extra()
        from .app import create_app

        return create_app
    raise AttributeError(name)


def load_agents(spec: str) -> dict[str, Agent[Any]]:
    """Agents from ``module:attribute`` (or ``path/to/file.py:attribute``): an Agent, a
    ``{name: Agent}`` dict, a list of Agents, an ``MCPApp``, or a callable returning one of these."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"expected module:attribute, got {spec!r}")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            path = os.path.abspath(module_name)
            mspec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
            if mspec is None or mspec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
        obj = getattr(module, attr)
    except (ImportError, AttributeError, OSError) as e:
        raise UserError(f"cannot load {spec!r}: {e}") from None
    if callable(obj) and not isinstance(obj, Agent):
        obj = obj()
    from .mcp_app import MCPApp

    if isinstance(obj, MCPApp):  # agents, tools, resources and prompts for MCP (docs/mcp-serve.md)
        return obj.hub_agents()
    if isinstance(obj, Agent):
        return {obj.name or attr: obj}
    if isinstance(obj, (list, tuple)) and all(isinstance(a, Agent) for a in obj):
        return {a.name: a for a in obj}
    if isinstance(obj, dict) and all(isinstance(a, Agent) for a in obj.values()):
        return dict(obj)
    raise UserError(f"{spec!r} is a {type(obj).__name__}, not an Agent, a list or dict of Agents, "
                    "an MCPApp, or a function returning one")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(agents: dict[str, Agent[Any]], *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          store: Any = None, allow_hosts: tuple[str, ...] = (), cors_origins: tuple[str, ...] = (),
          max_live_runs: int = 64, log_level: str = "warning", on_ready: Any = None) -> None:
    """Run the server until Ctrl-C (uvicorn). Off loopback a token is required."""
    require_server_extra()
    import uvicorn

    from .app import create_app
    from .guard import LOOPBACK_HOSTS

    token = token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        raise UserError(f"serving on {host} lets anyone on the network run tools: set --token or {TOKEN_ENV}")
    allowed: tuple[str, ...] | None = (*LOOPBACK_HOSTS, *allow_hosts) if is_loopback(host) else None
    if allowed is not None and allow_hosts == ("*",):
        allowed = None
    app = create_app(agents, store=store, token=token, allowed_hosts=allowed, cors_origins=cors_origins,
                     max_live_runs=max_live_runs)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(app)
    server.run()
