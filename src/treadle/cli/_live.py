"""A run shown live in the terminal: steps as they come, approval prompts, the result."""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .. import RunItemStreamEvent, Runner
from .._edits import InvalidEdit, check_edit
from .._json import is_object
from ..types import RunnerResult
from ._common import _result_json, ask, say, typer

if TYPE_CHECKING:
    from ..agent import Agent
    from ..events import FunctionRequest
    from ..store.base import RunStore
    from ..streaming import RunnerStreamingResult


def _args(kwargs: object) -> str:
    return json.dumps(kwargs, ensure_ascii=False, default=str)


async def _ask_approval(stream: RunnerStreamingResult, request: FunctionRequest, auto: bool, pad: str = "  ",
                        agent: Agent[Any] | None = None) -> None:
    """The terminal prompt for one tool call that needs approval (an inner agent's too: the
    same human decides, in the same terminal). An edit is checked against the tool's schema
    before it is given: arguments that do not fit are shown refused and asked again."""
    call = f" {request.tool_name}({_args(request.tool.kwargs)})"
    if auto:
        say(pad, ("approved", "yellow"), call, " ", ("(--yes)", "dim"))
        stream.approve(request.id)
        return
    while True:
        try:
            answer = (await asyncio.to_thread(ask, pad, ("allow", "yellow"), f"{call}? ", ("[y]", "bold"), "es / ",
                                              ("[n]", "bold"), "o / ", ("[a]", "bold"), "lways / ",
                                              ("[e]", "bold"), "dit: ")).strip().lower()
        except (EOFError, KeyboardInterrupt):
            answer = "n"
        if answer in ("y", "yes"):
            stream.approve(request.id)
        elif answer in ("a", "always"):
            stream.approve(request.id, always=True)
        elif answer in ("e", "edit"):
            try:
                raw = await asyncio.to_thread(ask, pad, "new arguments as JSON: ")
            except (EOFError, KeyboardInterrupt):
                stream.deny(request.id, "the user gave no arguments")
                return
            try:
                kwargs: object = json.loads(raw)
                check_edit(agent, request.tool_name, kwargs)  # InvalidEdit unless a JSON object that fits
                if not is_object(kwargs):
                    raise InvalidEdit("the edited arguments must be a JSON object")
            except (ValueError, InvalidEdit) as e:  # nothing is decided: the call is asked again
                why = str(e) if isinstance(e, InvalidEdit) else f"not JSON: {e}"
                say(pad, ("refused:", "red"), f" {why}")
                continue
            stream.edit(request.id, kwargs)
        else:
            stream.deny(request.id, "the user said no")
        return


@dataclass
class _Clock:
    """When one run's current step began and its last step event came (event times: the
    times the events were made, not when this loop got to read them)."""

    begin: float
    step: Optional[int] = None
    end: float = 0.0

    def step_done(self, step: int, at: float) -> float:
        """The wall time of ``step`` (its calls' events share the step's start)."""
        if self.step is not None and step != self.step:
            self.begin = self.end
        self.step, self.end = step, at
        return max(0.0, at - self.begin)


async def _run_live(runner: Runner[Any], prompt: dict[str, Any] | None, show: bool, auto_approve: bool = False,
                    resume: str | None = None) -> RunnerResult[Any]:
    t0 = time.time()
    stream = runner.astream_resume(resume) if resume else runner.astream(prompt)
    clocks: dict[str, _Clock] = {}  # per run (an inner agent's run has its own)
    started: dict[str, float] = {}  # call id -> when its tool started
    finished: dict[str, float] = {}  # call id -> when its tool ended
    last_call: dict[int, float] = {}  # depth -> when the last tool call there started (an inner run begins then)
    async for event in stream.stream_events():
        if not isinstance(event, RunItemStreamEvent):
            continue
        name, data, at = event.name, event.item.data, event.item.created_at
        depth = getattr(event, "depth", 0) or 0
        pad = "  " * (depth + 1)  # an inner agent's run (depth 1, 2…) is shown indented under its caller's call
        if name == "agent.tool_permission_request":
            if runner.suspend_for_approval:
                say(pad, ("waiting for approval:", "yellow"), f" {data.tool_name}({_args(data.tool.kwargs)}), "
                    f"call {data.id}")
            else:
                await _ask_approval(stream, data, auto_approve or not show, pad, runner.agent)
            continue
        if not show:
            continue
        run_id = event.run_id or ""
        if run_id not in clocks:
            clocks[run_id] = _Clock(begin=t0 if not depth else last_call.get(depth - 1, at))
            if depth:
                say("  " * depth, ("↳", "magenta"), f" {event.agent + ' ' if event.agent else ''}run {run_id} ",
                    ("(inner agent)", "dim"))
        if name == "agent.tool_call_start":
            started[event.item.id] = last_call[depth] = at
            if data.thought:
                say(pad, ("thought:", "dim"), f" {data.thought}")
            args = ", ".join(f"{k}={v!r}" for k, v in data.kwargs.items())
            say(pad, ("call", "cyan"), f" {data.name}({args})")
        elif name == "agent.tool_call_complete":
            finished[event.item.id] = at
        elif name == "agent.step_complete":
            call_id = data.function.id if data.function else None
            t_start = started.pop(call_id or "", None)
            tool_ms = (finished.pop(call_id or "", at) - t_start) * 1e3 if t_start is not None else 0.0
            tokens = f"{data.usage.input_tokens}+{data.usage.output_tokens} tokens" if data.usage else ""
            obs = str(data.observation)
            obs = obs if len(obs) < 300 else obs[:300] + "…"
            say(pad, ("→", "green" if data.status == "success" else "red"), f" {obs}")
            took = clocks[run_id].step_done(data.step, at)
            say(pad, (f"step {data.step + 1}: {took:.2f} s (tool {tool_ms:.0f} ms), {tokens}", "dim"))
        elif name == "agent.handoff":
            say(pad, (f"→ handed to {data.to_agent}", "magenta"), f" (from {data.from_agent})",
                f": {data.message}" if data.message else "")
        elif name == "agent.guardrail" and data.tripped:
            say(pad, (f"guardrail {data.guardrail}", "yellow"), f" ({data.kind}) {data.action}",
                f": {data.message}" if data.message else "")
        elif name == "agent.compaction":
            say(pad, ("context compacted", "yellow"), f" ({data.reason}): {data.tokens_before} -> {data.tokens_after} "
                f"tokens of {data.window}; " + "; ".join(data.replaced))
        elif name == "agent.execution_complete" and depth:
            res = data
            text = res.answer if res.status == "success" else f"{res.status}: {res.error}"
            say(pad, ("inner answer:", "dim"), f" {text}")
    return await stream.wait_for_completion()


def _print_result(result: RunnerResult[Any], as_json: bool, t0: float, runner: Optional[Runner[Any]] = None,
                  store: Optional[str] = None) -> None:
    if as_json:
        print(_result_json(result))
    else:
        u = result.usage
        if result.ok:
            say(("answer:", "bold green"), f" {result.answer}")
        elif result.status == "waiting_for_approval":
            _print_suspended(result.run_id or "", runner.store if runner is not None else None, store)
        else:
            say((f"{result.status}:", "bold red"), f" {result.error}")
        say((f"{len(result.step_history)} steps, {u.requests} model calls, {u.input_tokens}+{u.output_tokens} "
             f"tokens, {time.perf_counter() - t0:.2f} s", "dim"))
    raise typer.Exit(0 if result.ok else 1)


def _print_suspended(run_id: str, journal: RunStore | None, store: Optional[str]) -> None:
    """What a suspended run waits for — each call's tool, arguments and id — and the exact
    commands that decide it and continue the run."""
    from ..store.links import waiting_requests
    from ..store.records import Request

    waiting = waiting_requests(journal, run_id) if journal is not None else []
    where = f" --store {shlex.quote(store)}" if store else ""
    say(("suspended:", "bold yellow"), f" run {run_id} waits for a decision on {len(waiting)} tool call"
        + ("s" if len(waiting) != 1 else ""))
    for _, payload in waiting:
        request = Request.model_validate(payload)
        call_id, kwargs = str(request.id), request.tool.kwargs if request.tool is not None else {}
        say("  ", (f"{request.tool_name}({_args(kwargs)})", "bold"), f"  call {call_id}")
        head = f"{shlex.quote(run_id)} {shlex.quote(call_id)}{where}"
        say(("    approve: ", "dim"), f"treadle approve {head}")
        say(("    edit:    ", "dim"), f"treadle approve {head} --args {shlex.quote(_args(kwargs))}")
        say(("    deny:    ", "dim"), f"treadle deny {head} --reason 'why not'")
    say(("then continue it: ", "dim"), f"treadle resume {shlex.quote(run_id)}{where}")
