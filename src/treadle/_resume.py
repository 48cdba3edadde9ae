"""Rebuilding a run from its journal: an unfinished one to continue, a finished one's result."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import ValidationError

from . import events as ev
from ._context import relearn
from .errors import UserError
from .handoffs import find_agent, switch_messages
from .store.base import JournalEntry, RunRecord
from .store.links import journaled_steps, step_of
from .store.records import (
    CallComplete,
    CallStart,
    Compaction,
    CompactionData,
    Decision,
    End,
    Ending,
    Guardrail,
    Handoff,
    HandoffData,
    PermissionRequest,
    Reply,
    StepComplete,
)
from .tools.manager import ToolResult
from .types import Function, RunnerResult, RunStatus, StepOutput, Usage

if TYPE_CHECKING:
    from ._run import RunState
    from .protocols import DrivenAgent

__all__ = ["InterruptPolicy", "answer_type_of", "recorded_result", "restore"]

SEQ_EPOCH = 1_000_000  # a resumed run numbers its events from the next multiple of this
InterruptPolicy = Literal["interrupt-observation", "retry", "fail"]


def restore(run: RunState, entries: list[JournalEntry], policy: InterruptPolicy = "interrupt-observation") -> None:
    """Load an unfinished run's progress into ``run`` (a fresh RunState with the same id).

    Finished steps become ``step_history`` and messages; the step cut short becomes
    ``run.recovery.pending_step`` with what its calls already produced in ``run.recovery.recovered``.
    """
    agent = run.driven()
    planner = agent.planner
    model = agent.model
    mode, style = planner.mode(model), planner.final_style(model)
    progress = run.progress
    progress.set_messages(planner.initial_messages(mode, run.prompt_kwargs, style), style)
    steps: dict[int, list[StepOutput]] = {}
    last_reply: tuple[int, list[Function], Usage | None] | None = None
    error_texts: dict[int, str] = {}  # step -> the unparseable reply's text
    started: dict[str | None, Function] = {}  # by call id, as journaled
    completed: dict[str | None, CallComplete] = {}
    handoffs: dict[int, HandoffData] = {}  # step -> the handoff after it
    asking: set[str | None] = set()  # calls that asked a question while running (run again, answered from the journal)
    compactions: dict[int, list[CompactionData]] = {}  # step -> the compactions before its model call
    reported: dict[int, int] = {}  # step -> its model call's reported prompt tokens (the estimate's calibration)
    for e in entries:
        progress.skip_seq_to(e.seq)
        r = e.record
        if isinstance(r, Reply):
            calls = r.calls
            if r.model_ran and r.usage is not None and r.usage.input_tokens:
                reported[r.step] = r.usage.input_tokens  # the prompt tokens the provider counted
            if calls is not None:
                last_reply = (r.step, [c.function() for c in calls], r.usage.usage() if r.usage else None)
            elif r.text:
                error_texts[r.step] = r.text
        elif isinstance(r, StepComplete):
            s = step_of(r)
            steps.setdefault(s.step, []).append(s)
            if s.usage is not None and (not steps[s.step][:-1]):
                run.usage.add(s.usage)
        elif isinstance(r, CallStart):
            started[r.item.id] = r.item.data.function() if r.item.data is not None else Function()
        elif isinstance(r, CallComplete):
            completed[r.item.id] = r
            if r.item.data is not None:  # an agent called as a tool: its usage
                run.usage.add(r.item.data.child_usage)
        elif isinstance(r, Compaction) and r.item.data is not None:
            c = r.item.data  # the messages as compacted before step N's model call
            compactions.setdefault(c.step, []).append(c)
            run.usage.add(c.usage.usage() if c.usage is not None else None)  # the summary's
        elif isinstance(r, Decision):
            run.recovery.restore(decisions={r.call_id: r})
        elif isinstance(r, PermissionRequest):
            details = r.item.data.confirmation_details if r.item.data is not None else None
            if isinstance(details, dict) and details.get("kind") in ("mcp_elicitation", "mcp_host_sampling"):
                call = details.get("call_id")
                asking.add(call if isinstance(call, str) else None)
        elif isinstance(r, Handoff):
            if r.item.data is not None:
                handoffs[r.item.data.step] = r.item.data
        elif isinstance(r, Guardrail) and r.item.data is not None:
            d = r.item.data  # an output guardrail's retries count against its bound after a resume too
            if d.kind == "output" and d.action == "retry":
                run.guards.count_retry(d.guardrail)
            elif d.kind == "tool_input" and d.call_id:  # a pending call's check is not made again
                run.guards.decisions[f"{d.guardrail}:{d.call_id}"] = d.model_dump(by_alias=True)
    from .planner import render_observation

    first = agent
    for n in sorted(steps):
        _compact(run, compactions.pop(n, ()))
        relearn(run, agent, mode, n, reported.get(n))
        limit = agent.max_observation_chars
        group = steps[n]
        run.step_history.extend(group)
        calls = [s.function for s in group if s.function is not None]
        if calls and all(s.status != "error" or (s.function is not None and s.function.id in completed)
                         for s in group):
            planner.add_step_messages(mode, run.messages, calls,
                                      [render_observation(s.observation, limit) for s in group],
                                      [s.status != "success" for s in group])
        else:
            planner.add_error_messages(mode, run.messages, error_texts.get(n, ""), calls or None,
                                       str(group[0].observation))
        run.usage.tool_calls += len(calls)
        if n in handoffs:  # the conversation passed to another agent after this step
            target = find_agent(first, handoffs[n].to_agent)
            h = next((x for x in getattr(agent, "handoffs", ()) if x.agent is target), None)
            model = target.model
            new_mode, style = target.planner.mode(model), target.planner.final_style(model)
            progress.set_messages(switch_messages(run.messages, mode, target, new_mode, run.prompt_kwargs, style, h),
                                  style)
            agent, planner, mode = target, target.planner, new_mode
    for n in sorted(compactions):  # after the last step: before the model call that comes next
        _compact(run, compactions[n])
    run.hand_to(agent)
    progress.step = max(steps) + 1 if steps else 0
    relearn(run, agent, mode, run.step, reported.get(run.step))  # a reply journaled for the step cut short
    # the resumed run's events are numbered from the next epoch: streamed deltas and events not yet
    # committed at the crash were seen by stream readers with seqs the journal does not have, and a
    # reader that reconnects with Last-Event-ID must not have new events mistaken for those
    progress.seq = (progress.seq // SEQ_EPOCH + 1) * SEQ_EPOCH
    if last_reply is None or last_reply[0] < run.step:
        return  # the cut came between steps: the next model call simply happens
    step, calls, _ = last_reply
    for fn in calls:
        if fn.is_final:
            return  # the answer was given but not recorded: ask again
    run.recovery.restore(pending=(step, calls, last_reply[2]))
    if last_reply[2] is not None:  # the cut step's model call happened: count it
        run.usage.add(last_reply[2])
    for fn in calls:
        done = completed.get(fn.id)
        if done is not None:
            out = done.item.data
            err = out.error if out is not None else None
            raw = out.output if out is not None else None
            obs = raw.get("observation") if isinstance(raw, dict) and "observation" in raw else raw
            run.recovery.recovered[fn.id or ""] = ToolResult(output=raw, observation=err if err else obs,
                                              status="error" if err else "success", error=err)
            run.usage.tool_calls += 1
        elif fn.id in started:
            tool = agent.tool_manager.get(fn.name)
            if (tool is not None and getattr(tool, "idempotent", False)) or policy == "retry":
                continue  # runs again
            if fn.id in asking:  # it stopped at a question: it runs again, with the same arguments, and the
                continue  # journaled answers are given to the same questions (the call is not cut off)
            if policy == "fail":
                raise UserError(f"call {fn.id} of {fn.name} was interrupted and the policy is 'fail'")
            msg = (f"The call to {fn.name} was interrupted (the process stopped) and may or may not have taken "
                   "effect. Check before repeating it.")
            run.recovery.recovered[fn.id or ""] = ToolResult(observation=msg, status="error", error=msg,
                                                    error_type="Interrupted")


def _compact(run: RunState, infos: Iterable[CompactionData]) -> None:
    """Apply journaled compactions to the rebuilt messages, as the run applied them (no summary call)."""
    from ._context import refused
    from .compaction import apply_layout

    for c in infos:
        run.progress.set_messages(apply_layout(run.messages, c.layout, c.messages_before))
        if c.reason == "refused":  # the provider's refusal bounded an unknown window
            refused(run, c.tokens_before or 0)


def answer_type_of(agent: DrivenAgent, entries: list[JournalEntry]) -> object:
    """The answer type of the agent that had the conversation at the end of a journaled run:
    ``agent``'s, or the type of the last agent it was handed to."""
    last = None
    for e in entries:
        r = e.record if e.name == ev.HANDOFF else None
        if isinstance(r, Handoff) and r.item.data is not None:
            last = r.item.data.to_agent
    if last is not None and agent.handoffs:
        try:
            return find_agent(agent, last).answer_data_type
        except UserError:  # the agent was renamed since: the first one's type
            pass
    return agent.answer_data_type or str


_STATUSES: dict[str, RunStatus] = {s: s for s in get_args(RunStatus)}


def recorded_result(record: RunRecord, entries: list[JournalEntry], answer_type: object) -> RunnerResult[Any]:
    """A finished run's result rebuilt from the store: its steps from the journal, the answer
    converted back to the agent's answer type (kept as JSON when it no longer converts)."""
    from .planner import convert_answer

    try:
        end = Ending.model_validate({**(record.result or {}), "usage": record.usage})
    except ValidationError:
        end = Ending()
    for e in reversed(entries):  # the terminal event is the last word, even if the row lags
        r = e.record if e.name == ev.EXECUTION_COMPLETE else None
        if isinstance(r, End):
            data = r.item.data
            end = Ending(usage=end.usage) if data is None else \
                data.model_copy(update={"usage": data.usage or end.usage})
            break
    status = _STATUSES.get(end.status or record.status, "error")
    answer: object = end.answer
    if status == "success":
        try:
            answer = convert_answer(answer, answer_type)
        except Exception:
            pass
    return RunnerResult(answer=answer, error=end.error, error_type=end.error_type, status=status,
                        run_id=record.run_id, usage=end.usage.usage() if end.usage is not None else Usage(),
                        step_history=journaled_steps(entries))
