"""What every command shares: the typer app, the consoles, the options, building the agent."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Optional, Union

try:
    import typer
    from rich.console import Console
    from rich.text import Text
except ImportError as _e:  # pragma: no cover - a broken install: both are base dependencies
    sys.stderr.write(f"the treadle command needs typer and rich ({_e}): pip install --force-reinstall treadle\n")
    raise SystemExit(2) from None

from .. import Agent
from ..errors import TreadleError, UserError
from ..models import resolve_model
from ..types import RunnerResult, to_jsonable

if TYPE_CHECKING:
    from ..store.base import RunRecord, RunStore

# no markup anywhere: help texts, questions, tool arguments, answers and ids are shown as typed
# ("[y]es", "treadle[mcp]", "[[mcp]]"); styles are given as (text, style) parts, never as markup
app = typer.Typer(add_completion=False, no_args_is_help=True, help="treadle: run tool-using agents.",
                  rich_markup_mode=None)
console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

Part = Union[str, tuple[str, str]]


def styled(*parts: Part) -> Text:
    """Text from plain strings and ``(text, style)`` pairs; nothing in them is read as markup."""
    return Text.assemble(*((str(p[0]), p[1]) if isinstance(p, tuple) else str(p) for p in parts))


def say(*parts: Part, end: str = "\n", err: bool = False) -> None:
    """Print one line made of plain strings and ``(text, style)`` pairs."""
    (err_console if err else console).print(styled(*parts), end=end)


def ask(*parts: Part) -> str:
    """Read one line after a prompt, with line editing and history when readline is there
    (the prompt goes to ``input()``, so readline knows how wide it is when it redraws)."""
    prompt = styled(*parts)
    if not (console.is_terminal and sys.stdin.isatty()):
        console.print(prompt, end="")
        return input()
    enable_line_editing()
    with console.capture() as cap:
        console.print(prompt, end="")
    text = cap.get()
    if "readline" in sys.modules:  # invisible escape sequences, bracketed so readline does not count them
        import re

        text = re.sub(r"(\x1b\[[0-9;]*m)", "\x01\\1\x02", text)
    return input(text)


def enable_line_editing() -> bool:
    """Load readline (where the platform has it): ``input()`` then gets arrow keys, editing
    and a history of the lines typed. False where there is none (Windows without pyreadline)."""
    try:
        import readline  # noqa: F401  # importing it is what turns editing on for input()
    except ImportError:
        return False
    return True

ModelOpt = typer.Option("local", "--model", "-m", help="Model string: local, local:/path.gguf, openai:MODEL, "
                                                       "anthropic:MODEL, openai-compatible:URL#MODEL.")
ToolOpt = typer.Option(None, "--tool", "-t", help="A tool as module:function (repeatable). Default: the demo tools "
                                                  "(calculator, current_time, read_file).")
StepsOpt = typer.Option(6, "--max-steps", help="Planner calls allowed per run.")
ApproveOpt = typer.Option(None, "--require-approval", help="A tool name that needs your approval before each call "
                                                          "(repeatable); you are asked in the terminal.")
YesOpt = typer.Option(False, "--yes", "-y", help="Approve every tool call without asking.")
McpOpt = typer.Option(None, "--mcp", help="An MCP server's command line (stdio) or http(s) URL (streamable "
                                          "HTTP); its tools join the agent's (repeatable; needs treadle[mcp]).")
StoreOpt = typer.Option(None, "--store", help="The run journal: a SQLite file, or a store URL (sqlite:///runs.db, "
                                              "postgresql://… with treadle[postgres]). Default: runs.db under the "
                                              "user data dir (TREADLE_HOME overrides the folder).")
NoStoreOpt = typer.Option(False, "--no-store", help="Do not journal the run (it cannot be resumed).")
SuspendOpt = typer.Option(False, "--suspend", help="When a call needs approval, stop and keep the run in the "
                                                   "journal; decide later with `treadle approve/deny`, then "
                                                   "`treadle resume`.")


def load_run(store: Optional[str], run_id: str) -> tuple[RunStore, RunRecord]:
    """The journal and one run's record; exit 2 with a message when there is no such run."""
    from ..store import SQLiteRunStore

    journal = open_journal(store)
    record = journal.get_run(run_id)
    if record is None:
        where = journal.path if isinstance(journal, SQLiteRunStore) else "the store"
        _fail(UserError(f"no run {run_id!r} in {where}"))
    return journal, record


def open_journal(path: Optional[str]) -> RunStore:
    """The run journal: a SQLite file (default: the user's runs.db), or a store URL
    (``sqlite:///…``; ``postgresql://…`` needs the extra ``[postgres]``: exit 2 naming it)."""
    from ..store import SQLiteRunStore, default_store_path, open_store

    if path and "://" in path:
        try:
            return open_store(path)
        except (ImportError, TreadleError) as e:
            _fail(e)
    return SQLiteRunStore(path or default_store_path())


def load_tool(spec: str) -> Any:
    """Import ``module:function`` (the current directory is importable)."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise UserError(f"a tool is given as module:function, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"cannot import {module!r} for tool {spec!r}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"{module!r} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


ConfigOpt = typer.Option(None, "--config", help="A TOML file with defaults: model, max_steps, tools = [...], "
                                                 "and [[mcp]] servers (command/args/env or url/headers).")


def read_config(path: Optional[Path]) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        import tomllib  # pyright: ignore[reportMissingImports]  # 3.11+; the fallback below
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise UserError("--config needs Python 3.11 or the tomli package") from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the config {path}: {e}") from None


def mcp_server(spec: Any) -> Any:
    """An MCP server from a command line, an http(s) URL, or a config table
    (``{command, args, env}`` or ``{url, headers}``)."""
    import shlex

    if importlib.util.find_spec("mcp") is None:
        raise UserError("--mcp needs the MCP SDK: pip install 'treadle[mcp]'")
    from ..tools.mcp import MCPServerStdio, MCPServerStreamableHTTP

    if isinstance(spec, dict):
        options = {k: spec[k] for k in ("include", "exclude", "require_approval", "timeout", "prefix", "name",
                                        "roots", "sampling", "connect_timeout") if k in spec}
        if "url" in spec:
            return MCPServerStreamableHTTP(spec["url"], spec.get("headers"), **options)
        if "command" in spec:
            return MCPServerStdio(spec["command"], spec.get("args", []), spec.get("env"), **options)
        raise UserError(f"an [[mcp]] entry needs a command or a url: {spec!r}")
    if spec.startswith(("http://", "https://")):
        return MCPServerStreamableHTTP(spec)
    argv = shlex.split(spec)
    if not argv:
        raise UserError("--mcp needs a command line")
    return MCPServerStdio(argv[0], argv[1:])


def build_agent(model: str, tools: Optional[list[str]], max_steps: int,
                approval: Optional[list[str]] = None, mcp: Optional[list[str]] = None) -> Agent[str]:
    return Agent(name="cli", tools=build_tools(tools, approval, mcp), model=resolve_model(model), max_steps=max_steps,
                 instructions="You are a helpful assistant. Use a tool when it helps, then give the final answer.")


def build_tools(tools: Optional[list[str]], approval: Optional[list[str]] = None,
                mcp: Optional[list[str]] = None) -> list[Any]:
    """The tools of the CLI's agent: ``--tool``s (else the demo tools), the MCP servers',
    those named by ``--require-approval`` marked so."""
    from ..tools import FunctionTool
    from ..tools.builtin import DEMO_TOOLS

    tool_objs = [load_tool(t) for t in tools] if tools else list(DEMO_TOOLS)
    for spec in mcp or ():
        server = mcp_server(spec)
        tool_objs.extend(server.tools())
        if isinstance(spec, dict) and spec.get("resources"):  # [[mcp]] resources = true: browse and read them
            tool_objs.extend(server.resource_tools())
    if approval:  # copies: the demo tools are shared objects
        wrapped = [copy.copy(t) if isinstance(t, FunctionTool) else FunctionTool(t) for t in tool_objs]
        unknown = set(approval) - {t.name for t in wrapped}
        if unknown:
            raise UserError(f"--require-approval names unknown tools: {', '.join(sorted(unknown))}")
        for t in wrapped:
            t.require_approval = t.require_approval or t.name in approval
        tool_objs = wrapped
    return tool_objs


def _result_json(result: RunnerResult[Any]) -> str:
    return json.dumps(to_jsonable(result), indent=2, ensure_ascii=False)


def _fail(e: BaseException) -> NoReturn:
    say(("error:", "red"), f" {e}", err=True)
    raise typer.Exit(2)
