"""A run shown live in the terminal: steps as they come, approval prompts, the result."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from .. import RunItemStreamEvent, Runner
from ..types import RunnerResult
from ._common import (
    _result_json,
    console,
    escape,
    typer,
)


async def _ask_approval(stream: Any, request: Any, auto: bool, pad: str = "  ") -> None:
    """The terminal prompt for one tool call that needs approval (an inner agent's too: the
    same human decides, in the same terminal)."""
    args = json.dumps(request.tool.kwargs, ensure_ascii=False)
    if auto:
        console.print(f"{pad}[yellow]approved[/] {escape(request.tool_name)}({escape(args)}) [dim](--yes)[/]")
        stream.approve(request.id)
        return
    question = (f"{pad}[yellow]allow[/] {escape(request.tool_name)}({escape(args)})? "
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
            raw = await asyncio.to_thread(console.input, f"{pad}new arguments as JSON: ")
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
    t_step: dict[str, float] = {}  # per run: when its last step ended
    tool_t0: dict[str, float] = {}
    async for event in stream.stream_events():
        if not isinstance(event, RunItemStreamEvent):
            continue
        name, data = event.name, event.item.data
        depth = getattr(event, "depth", 0) or 0
        pad = "  " * (depth + 1)  # an inner agent's run (depth 1, 2…) is shown indented under its caller's call
        if name == "agent.tool_permission_request":
            if runner.suspend_for_approval:
                console.print(f"{pad}[yellow]waiting for approval[/] of {escape(data.tool_name)} call {data.id}")
            else:
                await _ask_approval(stream, data, auto_approve or not show, pad)
            continue
        if not show:
            continue
        run_id = event.run_id or ""
        if run_id not in t_step:
            t_step[run_id] = time.perf_counter()
            if depth:
                who = f"{escape(event.agent)} " if event.agent else ""
                console.print(f"{'  ' * depth}[magenta]↳[/] {who}run {escape(run_id)} [dim](inner agent)[/]")
        if name == "agent.tool_call_start":
            tool_t0[event.item.id] = time.perf_counter()
            if data.thought:
                console.print(f"{pad}[dim]thought:[/] {escape(data.thought)}")
            args = ", ".join(f"{k}={v!r}" for k, v in data.kwargs.items())
            console.print(f"{pad}[cyan]call[/] {escape(data.name)}({escape(args)})")
        elif name == "agent.step_complete":
            now = time.perf_counter()
            tool_ms = (now - tool_t0.pop(data.function.id, now)) * 1e3 if data.function else 0.0
            tokens = f"{data.usage.input_tokens}+{data.usage.output_tokens} tokens" if data.usage else ""
            obs = str(data.observation)
            obs = obs if len(obs) < 300 else obs[:300] + "…"
            style = "green" if data.status == "success" else "red"
            console.print(f"{pad}[{style}]→[/] {escape(obs)}")
            console.print(f"{pad}[dim]step {data.step + 1}: {now - t_step[run_id]:.2f} s (tool {tool_ms:.0f} ms), "
                          f"{tokens}[/]")
            t_step[run_id] = now
        elif name == "agent.handoff":
            console.print(f"{pad}[magenta]→ handed to {escape(data.to_agent)}[/] (from {escape(data.from_agent)})"
                          + (f": {escape(data.message)}" if data.message else ""))
        elif name == "agent.guardrail" and data.tripped:
            console.print(f"{pad}[yellow]guardrail {escape(data.guardrail)}[/] ({data.kind}) {data.action}"
                          + (f": {escape(str(data.message))}" if data.message else ""))
        elif name == "agent.execution_complete" and depth:
            res = data
            text = res.answer if res.status == "success" else f"{res.status}: {res.error}"
            console.print(f"{pad}[dim]inner answer:[/] {escape(str(text))}")
    return await stream.wait_for_completion()


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
