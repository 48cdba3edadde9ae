"""`treadle run` and `treadle chat`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Optional

from .. import ConversationMemory, Runner
from ..errors import TreadleError, UserError
from ._common import (
    ApproveOpt,
    ConfigOpt,
    McpOpt,
    ModelOpt,
    NoStoreOpt,
    StepsOpt,
    StoreOpt,
    SuspendOpt,
    ToolOpt,
    YesOpt,
    _fail,
    ask,
    build_agent,
    enable_line_editing,
    open_journal,
    read_config,
    say,
    typer,
)
from ._live import _print_result, _run_live


def run(question: str = typer.Argument(..., help="What to ask."), model: str = ModelOpt,
        tool: Optional[list[str]] = ToolOpt, max_steps: int = StepsOpt,
        as_json: bool = typer.Option(False, "--json", help="Print the RunnerResult as JSON (for scripts)."),
        context: Optional[str] = typer.Option(None, "--context", help="Extra context for the prompt."),
        require_approval: Optional[list[str]] = ApproveOpt, yes: bool = YesOpt,
        store: Optional[str] = StoreOpt, no_store: bool = NoStoreOpt, suspend: bool = SuspendOpt,
        mcp: Optional[list[str]] = McpOpt, config: Optional[Path] = ConfigOpt) -> None:
    """Run an agent once and show each step live, then the answer. The run is journaled
    (see `treadle runs`) unless --no-store."""
    if suspend and no_store:
        _fail(UserError("--suspend keeps the run in the journal: it cannot go with --no-store"))
    if as_json and require_approval and not yes:
        _fail(UserError("--json cannot ask for approvals: add --yes, or drop --require-approval"))
    try:
        cfg = read_config(config)
        if cfg:  # the file gives defaults; options given on the command line win
            model = model if model != "local" or "model" not in cfg else cfg["model"]
            tool = tool or cfg.get("tools")
            max_steps = max_steps if max_steps != 6 or "max_steps" not in cfg else int(cfg["max_steps"])
            mcp = [*(mcp or []), *cfg.get("mcp", [])]
        agent = build_agent(model, tool, max_steps, require_approval, mcp)
        cli_config = {"model": model, "tools": tool or [], "max_steps": max_steps,
                      "require_approval": require_approval or [], "suspend": suspend, "mcp": mcp or []}
        runner: Runner[Any] = Runner(agent, store=None if no_store else open_journal(store),
                                     run_metadata={"cli": cli_config}, suspend_for_approval=suspend)
        prompt = {"input_str": question, "context_str": context}
        if not as_json:
            say((question, "bold"), "  ", (f"({getattr(agent.model, 'name', model)})", "dim"))
        t0 = time.perf_counter()
        result = asyncio.run(_run_live(runner, prompt, show=not as_json, auto_approve=yes))
    except TreadleError as e:
        _fail(e)
        return
    _print_result(result, as_json, t0, runner, store)


def chat(model: str = ModelOpt, tool: Optional[list[str]] = ToolOpt, max_steps: int = StepsOpt,
         max_turns: int = typer.Option(20, help="Turns of history given to the model."),
         session: Optional[str] = typer.Option(None, "--session", help="Continue this chat session (its id is "
                                               "printed at the start); default: a new one."),
         require_approval: Optional[list[str]] = ApproveOpt, yes: bool = YesOpt,
         store: Optional[str] = StoreOpt, no_store: bool = NoStoreOpt) -> None:
    """A multi-turn session with conversation memory kept in SQLite (type 'exit' or Ctrl-D to leave)."""
    from ..memory import SQLiteMemoryStore

    try:
        agent = build_agent(model, tool, max_steps, require_approval)
        memory = ConversationMemory(SQLiteMemoryStore(), session_id=session, max_turns=max_turns)
    except TreadleError as e:
        _fail(e)
        return
    cli_config = {"model": model, "tools": tool or [], "max_steps": max_steps,
                  "require_approval": require_approval or [], "session": memory.session_id}
    runner: Runner[Any] = Runner(agent, conversation_memory=memory, store=None if no_store else open_journal(store),
                                 run_metadata={"cli": cli_config})
    say((f"chatting with {getattr(agent.model, 'name', model)}; session {memory.session_id} (continue it with "
         f"--session {memory.session_id}); 'exit' to leave", "dim"))
    enable_line_editing()  # arrows, editing and the history of what was typed (where readline exists)
    while True:
        try:
            line = ask(("you>", "bold"), " ")
        except (EOFError, KeyboardInterrupt):
            say()
            break
        if line.strip() in ("exit", "quit"):
            break
        if not line.strip():
            continue
        try:
            result = asyncio.run(_run_live(runner, {"input_str": line}, show=True, auto_approve=yes))
        except TreadleError as e:
            say(("error:", "red"), f" {e}", err=True)
            continue
        if result.ok:
            say(("agent>", "bold green"), f" {result.answer}")
        else:
            say((f"agent ({result.status})>", "bold red"), f" {result.error}")
