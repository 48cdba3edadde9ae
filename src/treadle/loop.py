"""The one step loop. ``call``, ``acall`` and ``astream`` are thin faces over ``drive``.

A run is a ``RunState``; the driver emits typed events through ``RunState.emit``, and
everything else — ``step_history``, the ``RunnerResult``, the stream consumer, user
event handlers — is built from those events. The per-step decision (is this the final
answer? an error to feed back? tools to run?) is the pure function ``decide``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from . import events as ev
from . import guardrails as _guards
from ._approval import SuspendedForApproval, approve
from ._context import ask
from ._plugs import fits
from ._run import NestedRunTool, RunState, Sink, current_run
from ._turns import end_memory, start_memory
from .errors import (
    AnswerConversionError,
    GuardrailTripwireTriggered,
    JournalError,
    MaxStepsExceeded,
    ModelError,
    ToolRetriesExceededError,
    UsageLimitExceeded,
)
from .events import (
    FinalOutputItem,
    RawResponsesStreamEvent,
    StepRunItem,
    ToolCallActivityRunItem,
    ToolCallRunItem,
    ToolOutputRunItem,
)
from .handoffs import switch_to
from .models.base import ModelRequest, ModelResponse, StreamingModelClient
from .permissions import current_channel_id, current_run_id
from .planner import convert_answer, render_observation
from .protocols import ModelClient, NamedProvider, RunObserver, StepPlanner
from .tools.manager import ToolResult
from .types import (
    Function,
    FunctionOutput,
    GeneratorOutput,
    RunContext,
    RunnerResult,
    StepOutput,
    Usage,
    new_id,
)
from .usage import price_usd

__all__ = ["CANCEL_MESSAGE", "RunState", "Sink", "StepPlan", "decide", "drive", "finish"]

logger = logging.getLogger("treadle")

CANCEL_MESSAGE = "Execution cancelled by user"


# ---------------------------------------------------------------------------- the decision
Decision = Literal["final", "tools", "retry"]


@dataclass(slots=True)
class StepPlan:
    kind: Decision
    calls: list[Function]
    answer: Any = None
    error: str | None = None


def decide(out: GeneratorOutput[Any], answer_type: Any) -> StepPlan:
    """Pure: what to do with one planner output."""
    calls = out.data
    if not calls:
        return StepPlan("retry", [], error=out.error or "Error: the reply held no action")
    final = next((f for f in calls if f.is_final), None)
    if final is None:
        return StepPlan("tools", calls)
    try:
        answer = convert_answer(final.final_answer, answer_type)
    except AnswerConversionError as e:
        return StepPlan("retry", [final], error=f"Error: {e}. Give the final answer again.")
    return StepPlan("final", [final], answer=answer)


# ---------------------------------------------------------------------------- the driver
async def drive(run: RunState) -> RunnerResult[Any]:
    """Run to the end. Never raises, except when the caller's task is cancelled from outside."""
    progress, cancellation, durability = run.progress, run.cancellation, run.durability
    cancellation.attach(asyncio.get_running_loop(), asyncio.current_task())
    progress.started_at = time.time()
    run_token = current_run_id.set(run.run_id)
    state_token = current_run.set(run)
    channel_token = current_channel_id.set(run.outermost().run_id)
    external_cancel = False
    for sink in run.sinks:  # observers that want the start (tracing: the run's span opens here)
        if _observes(sink):
            try:
                sink.on_run_start(run)
            except Exception:
                logger.exception("on_run_start failed")
    try:
        if durability.barrier is not None:  # the run is in the journal before anything happens
            await durability.barrier(run)
        run.check_cancel()
        agent = run.driven()
        agent.tool_manager.refresh()  # e.g. an MCP server whose tool list changed (nothing without toolsets)
        model = agent.model
        planner = agent.planner
        mode = planner.mode(model)
        style = planner.final_style(model)
        if run.recovery.pending_step is not None or progress.step:  # resumed: messages rebuilt from the journal
            progress.set_messages(progress.messages or planner.initial_messages(mode, run.prompt_kwargs, style),
                                  style)
        else:
            await start_memory(run)
            progress.set_messages(planner.initial_messages(mode, run.prompt_kwargs, style), style)
            checks = agent.input_guardrails
            if checks:  # before the first model call; the parallel ones beside it (see _call_model)
                await _guards.check_input(run, [g for g in checks if not g.parallel])
                beside = [g for g in checks if g.parallel]
                if beside:
                    run.guards.start_input_check(asyncio.ensure_future(_guards.check_input(run, beside)))
        pending = run.recovery.take_pending()
        if pending is not None:
            step, calls, usage = pending
            await _tool_step(run, planner, mode, step, calls, usage)
            run.check_cancel()
        while progress.result is None:
            if run.agent is not agent:  # a handoff: the next agent carries on
                agent = run.driven()
                model, planner = agent.model, agent.planner
                mode = planner.mode(model)
            if progress.step >= run.max_steps:
                finish(run, "max_steps", error=f"No final answer after {progress.step} steps (max_steps: "
                                                f"{run.max_steps}).", error_type=MaxStepsExceeded.__name__)
                break
            await _step(run, model, planner, mode)
            run.check_cancel()
    except asyncio.CancelledError:
        cancellation.stop()
        external_cancel = cancellation.uncancel()
        if progress.result is None:
            run.emit_item(ev.CANCELLED, FinalOutputItem(data={"status": "cancelled", "message": CANCEL_MESSAGE,
                                                              "step_count": progress.step}))
            finish(run, "cancelled", error=CANCEL_MESSAGE, error_type="RunCancelled")
    except SuspendedForApproval as e:
        cancellation.stop()
        run.recovery.suspended = (e.run_id or run.run_id, e.call_id)
        where = f" of run {e.run_id}" if e.run_id and e.run_id != run.run_id else ""
        finish(run, "waiting_for_approval", error=f"waiting for a decision on tool call {e.call_id}{where}",
                error_type="SuspendedForApproval")
    except GuardrailTripwireTriggered as e:
        cancellation.stop()
        if progress.result is None:
            finish(run, "error", error=str(e), error_type=type(e).__name__)
    except Exception as e:  # a bug, or a user component (memory, approver) that raised
        cancellation.stop()
        logger.exception("run %s failed", run.run_id)
        if progress.result is None:
            finish(run, "error", error=f"Error in step {progress.step}: {type(e).__name__}: {e}",
                    error_type=type(e).__name__)
    cancellation.stop()  # from here on, a late cancel request changes nothing
    check = run.guards.take_input_check()
    if check is not None:  # the run ended before its parallel input check did
        check.cancel()
    try:
        await end_memory(run)
    except asyncio.CancelledError:
        external_cancel = cancellation.uncancel() or external_cancel
    except Exception:
        logger.exception("memory failed at the end of run %s", run.run_id)
    if durability.barrier is not None:
        external_cancel = await _last_barrier(run, durability.barrier) or external_cancel
    current_channel_id.reset(channel_token)
    current_run_id.reset(run_token)
    current_run.reset(state_token)
    run.mark_done()
    result = progress.result
    assert result is not None
    if external_cancel:
        raise asyncio.CancelledError
    return result


def _observes(sink: Sink) -> TypeGuard[RunObserver]:
    """A sink that wants the start of each run (``RunObserver``): asked for every sink of every run."""
    return fits(sink, RunObserver)


async def _last_barrier(run: RunState, barrier: Callable[[RunState], Awaitable[None]]) -> bool:
    """The run's ending is durable before the run returns (even when its caller is cancelled:
    True then). A refused ending (the run was taken over) makes the result an error."""
    cancelled, err = False, None
    while True:  # the barrier may be awaited again: it waits for the same commit, until it is made
        try:
            await barrier(run)
            break
        except asyncio.CancelledError:  # the caller's: the ending is written first, then it wins
            cancelled = True
        except JournalError as e:
            err = e
            break
    if err is not None and run.result is not None and run.result.status != "error":
        res = run.result
        res.status, res.error, res.error_type = "error", f"the journal refused the run's end: {err}", type(err).__name__
    return cancelled


def finish(run: RunState, status: str, answer: Any = None, error: str | None = None,
            error_type: str | None = None) -> None:
    if run.decide_ending(status):  # a cancel accepted before wins, one after is refused
        run.announce_cancel()
        run.emit_item(ev.CANCELLED, FinalOutputItem(data={"status": "cancelled", "message": CANCEL_MESSAGE,
                                                          "step_count": run.step}))
        status, answer, error, error_type = "cancelled", None, CANCEL_MESSAGE, "RunCancelled"
    result: RunnerResult[Any] = RunnerResult(step_history=list(run.step_history), answer=answer, error=error,
                                             ctx=run.config.ctx, usage=run.usage, status=status,  # type: ignore[arg-type]
                                             run_id=run.run_id, error_type=error_type)
    run.emit_item(ev.EXECUTION_COMPLETE, FinalOutputItem(data=result, error=error))


async def _call_model(run: RunState, model: ModelClient, request: ModelRequest) -> tuple[ModelResponse, bool]:
    check = run.guards.take_input_check()  # beside the first model call; cancelled if its tripwire fires first
    if check is None:
        return await _model_reply(run, model, request)
    call = asyncio.ensure_future(_model_reply(run, model, request))
    try:
        await asyncio.wait((call, check), return_when=asyncio.FIRST_COMPLETED)
        if check.done() and check.exception() is not None:
            raise check.exception()  # type: ignore[misc]
        reply = await call
        await check
        return reply
    finally:
        for t in (call, check):
            if not t.done():
                t.cancel()
            elif not t.cancelled():
                t.exception()  # retrieved: never "exception was never retrieved"


async def _model_reply(run: RunState, model: ModelClient, request: ModelRequest) -> tuple[ModelResponse, bool]:
    memo = run.streaming
    if memo is None or memo[0] is not model:  # once per run and model
        memo = run.streaming = (model, model if run.stream_deltas and fits(model, StreamingModelClient) else None)
    streaming = memo[1]
    if streaming is not None:
        final: ModelResponse | None = None
        async for chunk in streaming.stream(request):
            if isinstance(chunk, ModelResponse):
                final = chunk
            else:
                run.emit(RawResponsesStreamEvent(input=request.step, data=chunk))
        if final is None:
            raise ModelError("the model's stream ended without a complete response")
        return final, True
    return await model.request(request), False


async def _step(run: RunState, model: ModelClient, planner: StepPlanner, mode: str) -> None:
    progress = run.progress
    step = progress.step
    limits = run.limits
    total = run.outermost().usage  # the limits count the nested runs too
    if limits is not None and (why := limits.before_request(total)):
        finish(run, "error", error=f"Usage limit: {why}", error_type=UsageLimitExceeded.__name__)
        return
    try:  # the request is built, and compacted when the context nears the window, by treadle._context
        resp = await ask(run, model, planner, mode, step, _call_model)
    except GuardrailTripwireTriggered:
        raise
    except Exception as e:  # a ModelError, or something untyped: either way not safe to loop on
        _unrecoverable(run, step, e)
        return
    usage = resp.usage
    ran = resp.model_ran  # False: the request left one possible reply, returned without a model call
    if not ran and (usage is None or not usage.determined_replies):
        usage = Usage() if usage is None else usage.copy()
        usage.determined_replies = 1
    chain = run.lineage() if run.parent is not None else None  # a nested run's usage is its callers' too
    for r in chain or (run,):
        if usage is not None:
            r.usage.add(usage)
            if usage.requests == 0 and ran:  # a provider that does not count its calls
                r.usage.requests += 1
        else:
            r.usage.requests += 1
    progress.count_tokens(usage.total_tokens if usage is not None else 0)
    if limits is not None:
        if usage is not None and limits.cost_limit_usd is not None:
            cost = price_usd(usage, resp.model_name, model.provider if fits(model, NamedProvider) else None)
            if cost is None:
                finish(run, "error", error=f"Usage limit: no price is known for model {resp.model_name!r}, so "
                                            "the cost limit cannot be enforced", error_type=UsageLimitExceeded.__name__)
                return
            usage.cost_usd = cost
            for r in chain or (run,):
                r.usage.cost_usd += cost
        if why := limits.after_response(total):
            finish(run, "error", error=f"Usage limit: {why}", error_type=UsageLimitExceeded.__name__)
            return
    out = planner.parse_response(mode, resp)
    calls = out.data
    if calls:
        for fn in calls:
            if not fn.id:
                fn.id = new_id()
    # the parsed reply, streamed or not: what the model chose, journaled before any tool runs
    run.emit(RawResponsesStreamEvent(input=step, data=calls, error=out.error, model_name=resp.model_name,
                                     usage=usage, text=resp.text if out.error else None,
                                     finish_reason=resp.finish_reason, model_ran=ran))
    if run.cancellation.take_consumer_wake():  # deliver it now, not after the tools (time to first event)
        await asyncio.sleep(0)
    plan = decide(out, run.driven().answer_data_type)
    if plan.kind == "final":
        checks = run.driven().output_guardrails
        if checks:  # raises the tripwire, or returns why the model should answer again
            why = await _guards.check_output(run, plan.answer, checks)
            if why is not None:
                plan = StepPlan("retry", plan.calls, error=why)
        if plan.kind == "final":
            finish(run, "success", answer=plan.answer)
            return
    if plan.kind == "retry":
        planner.add_error_messages(mode, run.messages, out.raw_response, plan.calls, plan.error or "")
        action = plan.calls[0] if plan.calls else None
        run.emit_item(ev.STEP_COMPLETE, StepRunItem(data=StepOutput(
            step=step, action=action, function=action, observation=plan.error, status="error", usage=usage)))
        progress.step_done(step)
        return
    await _tool_step(run, planner, mode, step, plan.calls, usage)


async def _tool_step(run: RunState, planner: StepPlanner, mode: str, step: int, calls: list[Function],
                     usage: Usage | None) -> None:
    """Run the step's tool calls, feed the observations back, record the steps."""
    limits = run.limits
    if limits is not None and (why := limits.before_tools(run.outermost().usage, len(calls))):
        finish(run, "error", error=f"Usage limit: {why}", error_type=UsageLimitExceeded.__name__)
        return
    if len(calls) == 1:
        results = [await _run_call(run, calls[0], step)]
    else:
        results = await _run_concurrently(run, calls, step)
    agent = run.driven()
    limit = agent.max_observation_chars
    planner.add_step_messages(mode, run.messages, calls, [render_observation(r.observation, limit) for r in results],
                              [r.status != "success" for r in results])
    for fn, r in zip(calls, results):
        run.emit_item(ev.STEP_COMPLETE, StepRunItem(data=StepOutput(
            step=step, action=fn, function=fn, observation=r.observation, output=r.output,
            status=r.status, usage=usage)))  # type: ignore[arg-type]
    run.progress.step_done(step)
    spent = next((r for r in results if r.error_type == UsageLimitExceeded.__name__), None)
    if spent is not None:  # an inner agent used up the limits the runs share: this run ends too
        finish(run, "error", error=spent.error, error_type=UsageLimitExceeded.__name__)
        return
    tm = agent.tool_manager
    if agent.handoffs:
        targets = {h.tool_name: h for h in agent.handoffs}
        for fn, r in zip(calls, results):
            target = targets.get(fn.name)
            if target is not None and r.status == "success":  # the first handoff of the step wins
                switch_to(run, target, fn, step, mode)
                break
    for fn, r in zip(calls, results):
        if r.retry:
            n = run.progress.count_retry(fn.name)
            tool = tm.get(fn.name)
            allowed = tool.max_retries if tool is not None else 0
            if n > allowed:
                finish(run, "error", error=f"Tool {fn.name} asked for a retry {n} times (max_retries: {allowed}): "
                                            f"{r.error}", error_type=ToolRetriesExceededError.__name__)
                return


async def _run_concurrently(run: RunState, calls: list[Function], step: int) -> list[ToolResult]:
    """Run several calls at once; if one fails or the run is cancelled, none outlives it."""
    tasks = [asyncio.ensure_future(_run_call(run, fn, step)) for fn in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _unrecoverable(run: RunState, step: int, e: BaseException) -> None:
    kind = type(e).__name__
    msg = f"{kind}: {e}" if str(e) else kind
    run.emit(RawResponsesStreamEvent(input=step, data=None, error=msg))
    run.emit_item(ev.STEP_COMPLETE, StepRunItem(data=StepOutput(
        step=step, observation=f"Unrecoverable error: {msg}", status="error")))
    run.progress.step_done(step)
    finish(run, "error", error=msg, error_type=kind)


# ---------------------------------------------------------------------------- one tool call
async def _run_call(run: RunState, fn: Function, step: int) -> ToolResult:
    if fn.id is None:  # given in _step (and journaled with it); a call from elsewhere gets one here
        fn.id = new_id()
    call_id = fn.id
    recovered = run.recovery.take_result(call_id)
    if recovered is not None:  # resumed: this call already finished, or was cut off
        return _recovered(run, fn, call_id, recovered)
    tm = run.driven().tool_manager
    tool = tm.get(fn.name)
    to_run: Function | None = fn
    result: ToolResult | None = None
    checks = run.driven().tool_guardrails if tool is not None else None
    if checks:  # on the arguments, before anyone is asked to approve them
        result = await _guards.check_call(run, fn, checks)
    if tool is not None and result is None:
        to_run, result = await approve(run, fn, tool)
    if result is None:
        assert to_run is not None
        run.emit_item(ev.TOOL_CALL_START, ToolCallRunItem(id=call_id, data=to_run))
        barrier = run.durability.barrier
        if barrier is not None:  # write-ahead: the start is durable before the tool runs
            await barrier(run)
        # counted as it starts: an agent's call is one while its child run calls tools (UsageLimits)
        if run.parent is None:
            run.usage.tool_calls += 1
        else:
            for r in run.lineage():
                r.usage.tool_calls += 1
        ran: ToolResult
        if isinstance(tool, NestedRunTool):  # an agent as a tool: a child run (treadle.nesting)
            ran = await tool.run_nested(run, to_run, step)
        else:
            def make_ctx() -> RunContext[Any]:  # called only for a tool that takes a RunContext
                return RunContext(context=run.config.ctx, run_id=run.run_id, step=step, usage=run.usage,
                                  tool_call_id=fn.id)

            ran = await tm.execute(to_run, make_ctx, _activity_sink(run))
        if checks and ran.status == "success":
            ran = await _guards.check_result(run, to_run, ran, checks)
        result = ran
    output = result.tool_output if result.tool_output is not None else result.output
    run.emit_item(ev.TOOL_CALL_COMPLETE, ToolOutputRunItem(
        id=call_id, data=FunctionOutput(name=fn.name, input=to_run or fn, output=output, error=result.error),
        error=result.error))
    return result


def _recovered(run: RunState, fn: Function, call_id: str, result: ToolResult) -> ToolResult:
    if result.error_type == "Interrupted":  # journaled as started, never as finished
        run.emit_item(ev.TOOL_CALL_COMPLETE, ToolOutputRunItem(
            id=call_id, data=FunctionOutput(name=fn.name, input=fn, output=None, error=result.error),
            error=result.error))
    return result


def _activity_sink(run: RunState) -> Callable[[ToolCallActivityRunItem], None]:
    def sink(item: ToolCallActivityRunItem) -> None:
        run.emit_item(ev.TOOL_CALL_ACTIVITY, item)
    return sink
