"""`treadle mcp serve`: agents served to an MCP host over stdio (docs/mcp-serve.md)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Optional

from ..errors import TreadleError, UserError
from ._common import (
    ConfigOpt,
    McpOpt,
    ModelOpt,
    StepsOpt,
    StoreOpt,
    ToolOpt,
    _fail,
    open_journal,
    typer,
)
from ._serve import served_agents

mcp_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                      help="Serve agents over the Model Context Protocol.")


@mcp_app.command("serve")
def mcp_serve(target: Optional[str] = typer.Argument(None, help="What to serve: module:attribute (an MCPApp, an "
                                                     "Agent, a dict or list of Agents, or a function returning "
                                                     "one). Default: the "
                                                     "demo agent, built from --model/--tool/--config."),
              model: str = ModelOpt, tool: Optional[list[str]] = ToolOpt, max_steps: int = StepsOpt,
              require_approval: Optional[list[str]] = typer.Option(
                  None, "--require-approval", help="A tool name that needs approval before each call (repeatable); "
                  "the MCP host is asked (elicitation)."), mcp: Optional[list[str]] = McpOpt,
              config: Optional[Path] = ConfigOpt, store: Optional[str] = StoreOpt,
              max_runs: int = typer.Option(64, "--max-runs", help="Live runs allowed at once.")) -> None:
    """Serve agents to an MCP host (an IDE, a desktop assistant, another agent) over stdio:
    each agent is a tool whose call runs it, journaled; its steps are progress notifications,
    its tool approvals are asked of the host (elicitation). Nothing but MCP goes to stdout."""
    try:
        if importlib.util.find_spec("mcp") is None:
            raise UserError("treadle mcp serve needs the MCP SDK: pip install 'treadle[mcp]'")
        from ..server.hub import RunHub
        from ..server.mcp import serve_stdio
        from ..server.mcp_app import as_app

        agents = served_agents(target, model, tool, max_steps, require_approval, mcp, config)
        hub = RunHub(agents, open_journal(store), max_live_runs=max_runs)
        asyncio.run(serve_stdio(hub, as_app(agents), store_hint=f" --store {store}" if store else ""))
    except TreadleError as e:
        _fail(e)
    except KeyboardInterrupt:
        pass
