"""The run journal: `treadle runs`, `show`, `resume`, `replay`, `fork`, `approve`, `deny`."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Optional

from .. import Runner
from ..errors import TreadleError, UserError
from ._common import (
    StoreOpt,
    YesOpt,
    _fail,
    build_agent,
    console,
    escape,
    load_run,
    open_journal,
    typer,
)
from ._live import _print_result, _run_live

AgentOpt = typer.Option(None, "--agent", help="The agent that made the run, as module:attribute (an Agent, a list or "
                                              "dict of Agents, or a function returning one; as for `treadle serve`): "
                                              "for runs of your own programs. Default: the agent of `treadle run`, "
                                              "rebuilt from the run's options.")


def runs(status: Optional[str] = typer.Option(None, help="Only runs with this status."),
         limit: int = typer.Option(20, help="How many, newest first."),
         nested: bool = typer.Option(False, "--nested", "--all", help="Include child runs (an agent called as "
                                     "a tool or used as a guardrail); they are marked ↳ and name their parent."),
         store: Optional[str] = StoreOpt) -> None:
    """List journaled runs with their status. Child runs (agents called by another run) are
    left out unless --nested; `treadle show` shows them under their parent's step."""
    from rich.table import Table

    from ..store.links import is_child, top_level_runs

    journal = open_journal(store)
    rows = []
    now = time.time()
    records = journal.list_runs(status=status, limit=limit) if nested else \
        top_level_runs(journal, status=status, limit=limit)
    for r in records:
        u = r.usage or {}
        age = now - r.created_at
        age_s = f"{age:.0f} s" if age < 120 else f"{age / 60:.0f} min" if age < 7200 else f"{age / 3600:.0f} h"
        mark = "↳ " if is_child(r) and console.is_terminal else ""  # piped: the parent column says it
        row = (mark + r.run_id, r.status, str(r.config.get("model", "")), str(r.steps),
               str(u.get("input_tokens", 0) + u.get("output_tokens", 0)), age_s,
               str(r.prompt_kwargs.get("input_str", ""))[:60])
        if nested:
            row = (*row, str(r.config.get("parent_run_id") or ""))
        rows.append(row)
    header = ("run id", "status", "model", "steps", "tokens", "age", "question") + (("parent",) if nested else ())
    if not console.is_terminal:  # piped: tab-separated, one run per line
        for row in (header, *rows):
            print("\t".join(row))
        return
    table = Table(*header, box=None)
    for row in rows:
        table.add_row(*(escape(c) for c in row))
    console.print(table)


MAX_NESTING = 16  # child runs shown this deep (a deeper one is named, not expanded)


def show(run_id: str, store: Optional[str] = StoreOpt) -> None:
    """Show one journaled run: its steps, timings, tokens and answer. A step whose tool call
    ran another agent (a child run) shows that run's timeline indented under it, and so on
    down; handoffs (→ handed to AGENT) and guardrail decisions are shown where they happened."""
    journal, record = load_run(store, run_id)
    parent = (record.config or {}).get("parent_run_id")
    of = f"  [dim](child of {escape(str(parent))}, call {escape(str(record.config.get('parent_call_id')))})[/]"
    console.print(f"[bold]{escape(run_id)}[/] {record.status}  model {record.config.get('model', '')}  "
                  f"question: {escape(str(record.prompt_kwargs.get('input_str', '')))}" + (of if parent else ""))
    _timeline(journal, record, "  ", {run_id})
    if record.result:
        res = record.result
        what = f"answer: {res.get('answer')}" if record.status == "success" else f"error: {res.get('error')}"
        console.print(f"[bold]{escape(what)}[/]")
    if record.usage:
        console.print(f"[dim]{record.usage.get('requests', 0)} model calls, {record.usage.get('input_tokens', 0)}+"
                      f"{record.usage.get('output_tokens', 0)} tokens[/]")


def _timeline(journal: Any, record: Any, pad: str, seen: set[str]) -> None:
    """One run's steps, handoffs and guardrail decisions, each child run nested under its step."""
    from pydantic import BaseModel

    from .. import events as ev
    from ..store.links import child_links
    from ..store.records import ItemEvent, PermissionRequest, Step, StepComplete, UsageRecord

    entries = journal.events(record.run_id)
    links = child_links(journal, record.run_id, entries)
    by_call = {(link["kind"], link["call_id"]): link for link in links}
    shown: set[str] = set()

    def nest(link: dict[str, Any]) -> None:
        shown.add(link["run_id"])
        child = journal.get_run(link["run_id"])
        if child is None:
            return
        console.print(f"{pad}  [cyan]↳ {escape(str(link['agent'] or child.agent_name))}[/] run "
                      f"{escape(link['run_id'])} {child.status}  "
                      f"question: {escape(str(child.prompt_kwargs.get('input_str', ''))[:120])}")
        if link["run_id"] in seen or len(seen) > MAX_NESTING * 64 or pad.count("    ") >= MAX_NESTING:
            console.print(f"{pad}      [dim](not expanded)[/]")
            return
        _timeline(journal, child, pad + "    ", seen | {link["run_id"]})
        res = child.result or {}
        what = f"answer: {res.get('answer')}" if child.status == "success" else f"error: {res.get('error')}"
        console.print(f"{pad}      [dim]{escape(what[:200])}[/]")

    t_prev = record.created_at
    for e in entries:
        r = e.record
        item = r.item if isinstance(r, ItemEvent) else None
        d = item.data.model_dump() if item is not None and isinstance(item.data, BaseModel) else {}
        if isinstance(r, StepComplete):
            s = r.item.data or Step()
            fn, u = s.function, s.usage or UsageRecord()
            call = f"{fn.name}({json.dumps(fn.kwargs, ensure_ascii=False)})" if fn else "(no call)"
            obs = escape(str(s.observation)[:200])
            console.print(f"{pad}step {s.step + 1}: {escape(call)} → {obs}"
                          f"  [dim]{e.created_at - t_prev:.2f} s, {u.input_tokens}+{u.output_tokens} tokens[/]")
            t_prev = e.created_at
            link = by_call.get(("tool", fn.id if fn else None))
            if link is not None and link["run_id"] not in shown:
                nest(link)
        elif isinstance(r, PermissionRequest):
            console.print(f"{pad}[yellow]waiting for approval[/] of call {escape(str(r.item.id))}")
        elif e.name == ev.HANDOFF:
            msg = f": {d.get('message')}" if d.get("message") else ""
            console.print(f"{pad}[magenta]→ handed to {escape(str(d.get('to_agent')))}[/] "
                          f"[dim](from {escape(str(d.get('from_agent')))}){escape(msg)}[/]")
        elif e.name == ev.GUARDRAIL:
            verdict = "[red]tripped[/]" if d.get("tripped") else "[green]passed[/]"
            where = f" on {d.get('tool')}" if d.get("tool") else ""
            msg = f": {d.get('message')}" if d.get("message") else ""
            console.print(f"{pad}guardrail {escape(str(d.get('guardrail')))} ({escape(str(d.get('kind')))}"
                          f"{escape(where)}) {verdict} → {escape(str(d.get('action')))}{escape(msg)}")
            link = by_call.get(("guardrail", d.get("call_id")))
            if link is not None and link["run_id"] not in shown and link["step"] == (d.get("step") or 0):
                nest(link)
    for link in links:  # a call still running (or cut off): its child has no step line yet
        if link["run_id"] not in shown:
            nest(link)


def resume(run_id: str, store: Optional[str] = StoreOpt, yes: bool = YesOpt,
           policy: str = typer.Option("interrupt-observation", help="For a call that was cut off: "
                                      "interrupt-observation, retry or fail."),
           as_json: bool = typer.Option(False, "--json", help="Print the RunnerResult as JSON."),
           agent: Optional[str] = AgentOpt) -> None:
    """Continue an unfinished journaled run (finished steps are not run again). A run that
    called other agents (child runs) continues them where they were."""
    journal, record = load_run(store, run_id)
    try:
        runner = _runner_for(record, journal, agent_spec=agent)
        t0 = time.perf_counter()
        result = asyncio.run(_run_live(runner, None, show=not as_json, auto_approve=yes, resume=run_id))
    except TreadleError as e:
        _fail(e)
        return
    _print_result(result, as_json, t0)


def _runner_for(record: Any, journal: Any, model: Optional[str] = None, agent_spec: Optional[str] = None
                ) -> Runner[Any]:
    if agent_spec:
        return Runner(_program_agent(agent_spec, record, model), store=journal)
    cfg = dict(record.config.get("cli") or {})
    if model:
        cfg["model"] = model
    agent = build_agent(cfg.get("model", "local"), cfg.get("tools") or None, int(cfg.get("max_steps", 6)),
                        cfg.get("require_approval") or None, cfg.get("mcp") or None)
    return Runner(agent, store=journal, run_metadata={"cli": cfg}, suspend_for_approval=bool(cfg.get("suspend")))


def _program_agent(spec: str, record: Any, model: Optional[str]) -> Any:
    """The agent named by ``--agent`` that made ``record`` (by name when the spec gives several)."""
    from ..models import resolve_model
    from ..server import load_agents

    agents = load_agents(spec)
    agent = agents.get(record.agent_name) or (next(iter(agents.values())) if len(agents) == 1 else None)
    if agent is None:
        raise UserError(f"{spec!r} has no agent named {record.agent_name!r} (the run's); it has: "
                        f"{', '.join(sorted(agents))}")
    if model:
        agent.model = resolve_model(model)
    return agent


def replay(run_id: str, store: Optional[str] = StoreOpt, agent: Optional[str] = AgentOpt) -> None:
    """Re-run a journaled run with its journaled model replies (no model calls) and report
    every tool observation that differs now (inside inner agents' runs too: `agent/tool`).
    Exit 1 when something differs."""
    journal, record = load_run(store, run_id)
    try:
        report = asyncio.run(_runner_for(record, journal, agent_spec=agent).areplay(run_id))
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


def fork(run_id: str, at_step: int = typer.Option(..., "--at-step", help="Start again at this step (1-based): "
                                                   "steps 1..N-1 are kept from the journal."),
         model: Optional[str] = typer.Option(None, "--model", "-m", help="Continue with another model."),
         store: Optional[str] = StoreOpt, yes: bool = YesOpt,
         as_json: bool = typer.Option(False, "--json", help="Print the RunnerResult as JSON."),
         agent: Optional[str] = AgentOpt) -> None:
    """Start a new run with RUN_ID's history up to step N, continued live."""
    journal, record = load_run(store, run_id)
    try:
        from ..store import fork_run

        runner = _runner_for(record, journal, model, agent_spec=agent)
        fork_id = fork_run(journal, run_id, max(0, at_step - 1))
        if not as_json:
            console.print(f"[dim]forked {run_id} at step {at_step} as {fork_id}[/]")
        t0 = time.perf_counter()
        result = asyncio.run(_run_live(runner, None, show=not as_json, auto_approve=yes, resume=fork_id))
    except TreadleError as e:
        _fail(e)
        return
    _print_result(result, as_json, t0)


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


def deny(run_id: str, call_id: str, store: Optional[str] = StoreOpt,
         reason: Optional[str] = typer.Option(None, "--reason", help="Shown to the model.")) -> None:
    """Deny a call a suspended run waits for (then `treadle resume RUN_ID`)."""
    _decide(run_id, call_id, store, approve=False, reason=reason)


def _decide(run_id: str, call_id: str, store: Optional[str], **decision: Any) -> None:
    from ..store import record_decision

    try:
        record_decision(open_journal(store), run_id, call_id, **decision)
    except TreadleError as e:
        _fail(e)
    console.print(f"recorded; continue with `treadle resume {run_id}`")
