"""The run journal: `treadle runs`, `show`, `resume`, `replay`, `fork`, `approve`, `deny`."""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Optional

from .. import Runner
from ..errors import TreadleError, UserError
from ._common import (
    StoreOpt,
    YesOpt,
    _fail,
    build_agent,
    build_tools,
    console,
    load_run,
    open_journal,
    say,
    typer,
)
from ._live import _print_result, _run_live

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..agent import Agent
    from ..store.base import RunRecord, RunStore

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
        table.add_row(*row)  # the console reads no markup: cells are shown as they are
    console.print(table)


MAX_NESTING = 16  # child runs shown this deep (a deeper one is named, not expanded)


def show(run_id: str, store: Optional[str] = StoreOpt) -> None:
    """Show one journaled run: its steps, timings, tokens and answer. A step whose tool call
    ran another agent (a child run) shows that run's timeline indented under it, and so on
    down; handoffs (→ handed to AGENT) and guardrail decisions are shown where they happened."""
    journal, record = load_run(store, run_id)
    parent = (record.config or {}).get("parent_run_id")
    of = ("  ", (f"(child of {parent}, call {record.config.get('parent_call_id')})", "dim")) if parent else ()
    say((run_id, "bold"), f" {record.status}  model {record.config.get('model', '')}  "
        f"question: {record.prompt_kwargs.get('input_str', '')}", *of)
    _timeline(journal, record, "  ", {run_id})
    if record.result:
        res = record.result
        what = f"answer: {res.get('answer')}" if record.status == "success" else f"error: {res.get('error')}"
        say((what, "bold"))
    if record.usage:
        say((f"{record.usage.get('requests', 0)} model calls, {record.usage.get('input_tokens', 0)}+"
             f"{record.usage.get('output_tokens', 0)} tokens", "dim"))


def _timeline(journal: RunStore, record: RunRecord, pad: str, seen: set[str]) -> None:
    """One run's steps, handoffs and guardrail decisions, each child run nested under its step."""
    from .._json import is_list
    from ..store.links import child_links
    from ..store.records import (
        Compaction,
        Guardrail,
        Handoff,
        PermissionRequest,
        Request,
        Step,
        StepComplete,
        UsageRecord,
    )

    entries = journal.events(record.run_id)
    links = child_links(journal, record.run_id, entries)
    by_call = {(link["kind"], link["call_id"]): link for link in links}
    shown: set[str] = set()

    def nest(link: dict[str, Any]) -> None:
        shown.add(link["run_id"])
        child = journal.get_run(link["run_id"])
        if child is None:
            return
        say(f"{pad}  ", (f"↳ {link['agent'] or child.agent_name}", "cyan"), f" run {link['run_id']} {child.status}  "
            f"question: {str(child.prompt_kwargs.get('input_str', ''))[:120]}")
        if link["run_id"] in seen or len(seen) > MAX_NESTING * 64 or pad.count("    ") >= MAX_NESTING:
            say(f"{pad}      ", ("(not expanded)", "dim"))
            return
        _timeline(journal, child, pad + "    ", seen | {link["run_id"]})
        res = child.result or {}
        what = f"answer: {res.get('answer')}" if child.status == "success" else f"error: {res.get('error')}"
        say(f"{pad}      ", (what[:200], "dim"))

    t_prev = record.created_at
    for e in entries:
        r = e.record
        if isinstance(r, StepComplete):
            s = r.item.data or Step()
            fn, u = s.function, s.usage or UsageRecord()
            call = f"{fn.name}({json.dumps(fn.kwargs, ensure_ascii=False)})" if fn else "(no call)"
            obs = str(s.observation)[:200]
            say(f"{pad}step {s.step + 1}: {call} → {obs}  ",
                (f"{e.created_at - t_prev:.2f} s, {u.input_tokens}+{u.output_tokens} tokens", "dim"))
            t_prev = e.created_at
            link = by_call.get(("tool", fn.id if fn else None))
            if link is not None and link["run_id"] not in shown:
                nest(link)
        elif isinstance(r, PermissionRequest):
            req = r.item.data or Request()
            kwargs = json.dumps(req.tool.kwargs if req.tool else {}, ensure_ascii=False, default=str)
            say(pad, ("waiting for approval:", "yellow"), f" {req.tool_name}({kwargs}), call {r.item.id}")
            details = req.confirmation_details
            if isinstance(details, dict) and details.get("kind") == "mcp_elicitation":  # a question a tool call asks
                say(pad, ("  the server asks: ", "yellow"), str(details.get("message") or ""), "  ",
                    (f"(answer: treadle approve {{run}} {r.item.id} --args '{{...}}')", "dim"))
        elif isinstance(r, Compaction):
            d: dict[str, object] = r.item.data.model_dump() if r.item.data is not None else {}
            step = d.get("step")
            replaced = d.get("replaced")
            say(pad, ("context compacted", "yellow"),
                f" ({d.get('reason')}) before step {(step if isinstance(step, int) else 0) + 1}: "
                f"{d.get('tokens_before')} -> {d.get('tokens_after')} tokens of {d.get('window')}; ",
                ("; ".join(str(x) for x in replaced) if is_list(replaced) else "", "dim"))
        elif isinstance(r, Handoff) and r.item.data is not None:
            h = r.item.data
            message = _extra(h, "message")
            msg = f": {message}" if message else ""
            say(pad, (f"→ handed to {h.to_agent}", "magenta"), " ", (f"(from {h.from_agent}){msg}", "dim"))
        elif isinstance(r, Guardrail) and r.item.data is not None:
            g = r.item.data
            verdict = ("tripped", "red") if _extra(g, "tripped") else ("passed", "green")
            tool, message = _extra(g, "tool"), _extra(g, "message")
            where = f" on {tool}" if tool else ""
            msg = f": {message}" if message else ""
            say(f"{pad}guardrail {g.guardrail} ({g.kind}{where}) ", verdict, f" → {g.action}{msg}")
            link = by_call.get(("guardrail", g.call_id))
            if link is not None and link["run_id"] not in shown and link["step"] == (g.step or 0):
                nest(link)
    for link in links:  # a call still running (or cut off): its child has no step line yet
        if link["run_id"] not in shown:
            nest(link)


def _extra(model: BaseModel, key: str) -> object:
    """A field of a journaled record that its class does not name (kept: ``extra="allow"``)."""
    extra = model.model_extra
    return extra.get(key) if extra else None


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
    _print_result(result, as_json, t0, runner, store)


def _runner_for(record: RunRecord, journal: RunStore, model: Optional[str] = None, agent_spec: Optional[str] = None
                ) -> Runner[Any]:
    if agent_spec:
        return Runner(_program_agent(agent_spec, record, model), store=journal)
    cfg = dict(record.config.get("cli") or {})
    if model:
        cfg["model"] = model
    agent = build_agent(cfg.get("model", "local"), cfg.get("tools") or None, int(cfg.get("max_steps", 6)),
                        cfg.get("require_approval") or None, cfg.get("mcp") or None)
    return Runner(agent, store=journal, run_metadata={"cli": cfg}, suspend_for_approval=bool(cfg.get("suspend")))


def _program_agent(spec: str, record: RunRecord, model: Optional[str]) -> Agent[Any]:
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
        say("  ", (f"step {d.step + 1} {d.tool}", "red"), f": journaled {d.journaled!r}, now {d.replayed!r}")
    if report.journaled_answer != report.replayed_answer:
        say("  ", ("answer", "red"), f": journaled {report.journaled_answer!r}, now {report.replayed_answer!r}")
    verdict = ("same", "green") if report.same else (f"{len(report.differences)} difference(s)", "red")
    say(f"replayed {report.steps} steps of {run_id}: ", verdict)
    raise typer.Exit(0 if report.same else 1)


def fork(run_id: str, at_step: int = typer.Option(..., "--at-step", help="Start again at this step (1-based, as "
                                                   "`treadle show` numbers them): steps 1..N-1 are kept from the "
                                                   "journal; N is at most the run's steps + 1 (keep them all)."),
         model: Optional[str] = typer.Option(None, "--model", "-m", help="Continue with another model."),
         store: Optional[str] = StoreOpt, yes: bool = YesOpt,
         as_json: bool = typer.Option(False, "--json", help="Print the RunnerResult as JSON."),
         agent: Optional[str] = AgentOpt) -> None:
    """Start a new run with RUN_ID's history up to step N, continued live."""
    from ..store import fork_run
    from ..store.replay import fork_steps

    journal, record = load_run(store, run_id)
    steps = fork_steps(journal.events(run_id))
    if not 1 <= at_step <= steps + 1:  # the library counts from 0: its at_step is N - 1
        _fail(UserError(f"--at-step {at_step} is out of range: run {run_id} has {steps} step"
                        f"{'s' if steps != 1 else ''}, so N must be between 1 and {steps + 1} "
                        f"(N starts again at step N, keeping steps 1..N-1)"))
    try:
        runner = _runner_for(record, journal, model, agent_spec=agent)
        fork_id = fork_run(journal, run_id, at_step - 1)
        if not as_json:
            say((f"forked {run_id} at step {at_step} as {fork_id}", "dim"))
        t0 = time.perf_counter()
        result = asyncio.run(_run_live(runner, None, show=not as_json, auto_approve=yes, resume=fork_id))
    except TreadleError as e:
        _fail(e)
        return
    _print_result(result, as_json, t0, runner, store)


def approve(run_id: str, call_id: str, store: Optional[str] = StoreOpt,
            always: bool = typer.Option(False, "--always", help="Also allow this tool for the rest of the run."),
            args: Optional[str] = typer.Option(None, "--args", help="Approve with these arguments (a JSON object, "
                                               "checked against the tool's schema before it is recorded)."),
            agent: Optional[str] = AgentOpt) -> None:
    """Approve a call a suspended run waits for (then `treadle resume RUN_ID`)."""
    kwargs = None
    if args is not None:
        try:
            kwargs = json.loads(args)
        except ValueError as e:
            _fail(UserError(f"--args is not JSON: {e}"))
        if not isinstance(kwargs, dict):
            _fail(UserError("--args must be a JSON object"))
    _decide(run_id, call_id, store, agent, approve=True, always=always, kwargs=kwargs)


def deny(run_id: str, call_id: str, store: Optional[str] = StoreOpt,
         reason: Optional[str] = typer.Option(None, "--reason", help="Shown to the model.")) -> None:
    """Deny a call a suspended run waits for (then `treadle resume RUN_ID`)."""
    _decide(run_id, call_id, store, None, approve=False, reason=reason)


def _decide(run_id: str, call_id: str, store: Optional[str], agent_spec: Optional[str], **decision: Any) -> None:
    """Record a decision; edited arguments are checked against the tool first (the same
    check as the terminal prompt, the HTTP API and ``Runner.record_decision``): arguments
    that do not fit exit 2 and leave the call waiting."""
    from .._journal import record_decision

    journal, record = load_run(store, run_id)
    try:
        tools = _decision_tools(record, agent_spec) if decision.get("kwargs") is not None else None
        record_decision(journal, run_id, call_id, agent=tools, **decision)
    except TreadleError as e:
        _fail(e)
    where = f" --store {shlex.quote(store)}" if store else ""
    say(f"recorded; continue with `treadle resume {shlex.quote(run_id)}{where}`")


def _decision_tools(record: RunRecord, agent_spec: Optional[str]) -> Agent[Any] | SimpleNamespace | None:
    """What edited arguments are checked against: the ``--agent`` program's agent, or the
    tools `treadle run` was given (no model is loaded for this); None when unknown."""
    if agent_spec:
        return _program_agent(agent_spec, record, None)
    cfg = (record.config or {}).get("cli")
    if cfg is None:
        return None
    from ..tools.manager import ToolManager

    tools = build_tools(cfg.get("tools") or None, cfg.get("require_approval") or None, cfg.get("mcp") or None)
    return SimpleNamespace(tool_manager=ToolManager(tools), handoffs=())
