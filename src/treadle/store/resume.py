"""Rebuilding a run from its journal: an unfinished one to continue, a finished one's result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

from .. import events as ev
from .._context import relearn
from ..errors import UserError
from ..handoffs import find_agent, switch_messages
from ..tools.manager import ToolResult
from ..types import Function, RunnerResult, RunStatus, StepOutput, Usage
from .base import JournalEntry, RunRecord

if TYPE_CHECKING:
    from .._run import RunState

__all__ = ["answer_type_of", "journaled_steps", "open_requests", "recorded_result", "restore"]

RAW = "raw"
DECISION = "treadle.approval_decision"
SEQ_EPOCH = 1_000_000  # a resumed run numbers its events from the next multiple of this
InterruptPolicy = Literal["interrupt-observation", "retry", "fail"]


def _function(d: dict[str, Any] | None) -> Function | None:
    return Function.from_dict(d) if d else None


def _usage(d: dict[str, Any] | None) -> Usage | None:
    if not d:
        return None
    return Usage(input_tokens=d.get("input_tokens", 0), output_tokens=d.get("output_tokens", 0),
                 requests=d.get("requests", 0), tool_calls=d.get("tool_calls", 0), cost_usd=d.get("cost_usd", 0.0),
                 determined_replies=d.get("determined_replies", 0))


def _step(d: dict[str, Any]) -> StepOutput:
    fn = _function(d.get("function"))
    return StepOutput(step=d.get("step", 0), action=fn, function=fn, observation=d.get("observation"),
                      output=d.get("output"), status=d.get("status", "success"), usage=_usage(d.get("usage")))


def journaled_steps(entries: list[JournalEntry]) -> list[StepOutput]:
    """The recorded steps of a run, from its journal."""
    return [_step((e.payload.get("item") or {}).get("data") or {}) for e in entries if e.name == ev.STEP_COMPLETE]


def open_requests(entries: list[JournalEntry]) -> list[dict[str, Any]]:
    """The approval requests of one run's journal that nothing answered yet: not started,
    not decided (a recorded decision), not ended (a denied call's step): as journaled,
    ``{"id", "tool_name", "tool": {"name", "kwargs", "thought", …}, …}``."""
    answered: set[Any] = set()
    asked: dict[Any, dict[str, Any]] = {}
    for e in entries:
        item = (e.payload if isinstance(e.payload, dict) else {}).get("item") or {}
        if e.name == ev.TOOL_PERMISSION_REQUEST:
            data = item.get("data") or {}
            asked.setdefault(data.get("id") or item.get("id"), data)
        elif e.name in (ev.TOOL_CALL_START, ev.TOOL_CALL_COMPLETE):
            answered.add(item.get("id"))
        elif e.name == ev.STEP_COMPLETE:
            answered.add(((item.get("data") or {}).get("function") or {}).get("id"))
        elif e.name == DECISION and isinstance(e.payload, dict):
            answered.add(e.payload.get("call_id"))
    return [r for cid, r in asked.items() if cid not in answered]


def restore(run: RunState, entries: list[JournalEntry], policy: InterruptPolicy = "interrupt-observation") -> None:
    """Load an unfinished run's progress into ``run`` (a fresh RunState with the same id).

    Finished steps become ``step_history`` and messages; the step cut short becomes
    ``run.pending_step`` with what its calls already produced in ``run.recovered``.
    """
    agent = run.driven()
    planner = agent.planner
    model = agent.model
    mode, style = planner.mode(model), planner.final_style(model)
    run.final_style = style
    run.messages = planner.initial_messages(mode, run.prompt_kwargs, style)
    steps: dict[int, list[StepOutput]] = {}
    last_reply: tuple[int, list[Function], Usage | None] | None = None
    error_texts: dict[int, str] = {}  # step -> the unparseable reply's text
    started: dict[str | None, Function] = {}  # by call id, as journaled
    completed: dict[str | None, dict[str, Any]] = {}
    handoffs: dict[int, dict[str, Any]] = {}  # step -> the handoff after it
    asking: set[Any] = set()  # calls that asked a question while running (they run again, answered from the journal)
    compactions: dict[int, list[dict[str, Any]]] = {}  # step -> the compactions before its model call
    reported: dict[int, int] = {}  # step -> its model call's reported prompt tokens (the estimate's calibration)
    for e in entries:
        p = e.payload
        run.seq = max(run.seq, e.seq)
        if e.name == RAW:
            data = p.get("data")
            u = p.get("usage") or {}
            if p.get("model_ran", True) and isinstance(u, dict) and u.get("input_tokens"):
                reported[int(p.get("input") or 0)] = int(u["input_tokens"])  # the prompt tokens the provider counted
            if isinstance(data, list) and data and isinstance(data[0], dict) and "name" in data[0]:
                last_reply = (int(p.get("input") or 0), [Function.from_dict(x) for x in data], _usage(p.get("usage")))
            elif p.get("text"):
                error_texts[int(p.get("input") or 0)] = p["text"]
            continue
        item = p.get("item") or {}
        if e.name == ev.STEP_COMPLETE:
            s = _step(item.get("data") or {})
            steps.setdefault(s.step, []).append(s)
            if s.usage is not None and (not steps[s.step][:-1]):
                run.usage.add(s.usage)
        elif e.name == ev.TOOL_CALL_START:
            started[item.get("id")] = Function.from_dict(item.get("data") or {})
        elif e.name == ev.TOOL_CALL_COMPLETE:
            completed[item.get("id")] = item
            raw = (item.get("data") or {}).get("output")
            meta = raw.get("metadata") if isinstance(raw, dict) else None
            if isinstance(meta, dict) and meta.get("child_run_id"):  # an agent called as a tool: its usage
                run.usage.add(_usage(meta.get("usage")))
        elif e.name == ev.COMPACTION:  # the messages as compacted before step N's model call (with its summary)
            d = item.get("data") or {}
            compactions.setdefault(int(d.get("step", 0)), []).append(d)
            run.usage.add(_usage(d.get("usage")))  # the summary call's usage
        elif e.name == DECISION:
            run.decisions[p["call_id"]] = p
        elif e.name == ev.TOOL_PERMISSION_REQUEST:
            details = (item.get("data") or {}).get("confirmation_details")
            if isinstance(details, dict) and details.get("kind") == "mcp_elicitation":
                asking.add(details.get("call_id"))
        elif e.name == ev.HANDOFF:
            handoffs[int((item.get("data") or {}).get("step", 0))] = item.get("data") or {}
        elif e.name == ev.GUARDRAIL:  # an output guardrail's retries count against its bound after a resume too
            d = item.get("data") or {}
            if d.get("kind") == "output" and d.get("action") == "retry":
                run.guard_retries[d.get("guardrail", "")] = run.guard_retries.get(d.get("guardrail", ""), 0) + 1
            elif d.get("kind") == "tool_input" and d.get("call_id"):  # a pending call's check is not made again
                run.guard_decisions[f"{d.get('guardrail')}:{d['call_id']}"] = d
    from ..planner import render_observation

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
            target = find_agent(first, handoffs[n].get("to_agent", ""))
            h = next((x for x in getattr(agent, "handoffs", ()) if x.agent is target), None)
            model = target.model
            new_mode, style = target.planner.mode(model), target.planner.final_style(model)
            run.messages = switch_messages(run.messages, mode, target, new_mode, run.prompt_kwargs, style, h)
            agent, planner, mode, run.final_style = target, target.planner, new_mode, style
    for n in sorted(compactions):  # after the last step: before the model call that comes next
        _compact(run, compactions[n])
    run.agent = agent
    run.step = max(steps) + 1 if steps else 0
    relearn(run, agent, mode, run.step, reported.get(run.step))  # a reply journaled for the step cut short
    # the resumed run's events are numbered from the next epoch: streamed deltas and events not yet
    # committed at the crash were seen by stream readers with seqs the journal does not have, and a
    # reader that reconnects with Last-Event-ID must not have new events mistaken for those
    run.seq = (run.seq // SEQ_EPOCH + 1) * SEQ_EPOCH
    if last_reply is None or last_reply[0] < run.step:
        return  # the cut came between steps: the next model call simply happens
    step, calls, _ = last_reply
    for fn in calls:
        if fn.is_final:
            return  # the answer was given but not recorded: ask again
    run.pending_step = (step, calls, last_reply[2])
    if last_reply[2] is not None:  # the cut step's model call happened: count it
        run.usage.add(last_reply[2])
    for fn in calls:
        done = completed.get(fn.id)
        if done is not None:
            out = done.get("data") or {}
            err = out.get("error")
            raw = out.get("output")
            obs = raw.get("observation") if isinstance(raw, dict) and "observation" in raw else raw
            run.recovered[fn.id or ""] = ToolResult(output=raw, observation=err if err else obs,
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
            run.recovered[fn.id or ""] = ToolResult(observation=msg, status="error", error=msg,
                                                    error_type="Interrupted")


def _compact(run: RunState, infos: Any) -> None:
    """Apply journaled compactions to the rebuilt messages, as the run applied them (no summary call)."""
    from ..compaction import apply_layout

    for d in infos:
        run.messages = apply_layout(run.messages, d.get("layout") or [], int(d.get("messages_before", -1)))
        if d.get("reason") == "refused":  # the provider's refusal bounded an unknown window
            from .._context import refused

            refused(run, int(d.get("tokens_before") or 0))


def answer_type_of(agent: Any, entries: list[JournalEntry]) -> Any:
    """The answer type of the agent that had the conversation at the end of a journaled run:
    ``agent``'s, or the type of the last agent it was handed to."""
    last = None
    for e in entries:
        if e.name == ev.HANDOFF:
            last = ((e.payload.get("item") or {}).get("data") or {}).get("to_agent")
    if last is not None and getattr(agent, "handoffs", None):
        try:
            return find_agent(agent, last).answer_data_type
        except UserError:  # the agent was renamed since: the first one's type
            pass
    return getattr(agent, "answer_data_type", None) or str


def recorded_result(record: RunRecord, entries: list[JournalEntry], answer_type: Any) -> RunnerResult[Any]:
    """A finished run's result rebuilt from the store: its steps from the journal, the answer
    converted back to the agent's answer type (kept as JSON when it no longer converts)."""
    from ..planner import convert_answer

    res = dict(record.result or {})
    usage_d = record.usage or {}
    for e in reversed(entries):  # the terminal event is the last word, even if the row lags
        if e.name == ev.EXECUTION_COMPLETE:
            data = (e.payload.get("item") or {}).get("data") or {}
            res = {k: data.get(k) for k in ("answer", "error", "error_type", "status")}
            usage_d = data.get("usage") or usage_d
            break
    status = res.get("status") or record.status
    answer = res.get("answer")
    if status == "success":
        try:
            answer = convert_answer(answer, answer_type)
        except Exception:
            pass
    usage = Usage(**{k: v for k, v in usage_d.items() if k in Usage.__dataclass_fields__})
    return RunnerResult(answer=answer, error=res.get("error"), error_type=res.get("error_type"),
                        status=cast("RunStatus", status),
                        run_id=record.run_id, usage=usage, step_history=journaled_steps(entries))
