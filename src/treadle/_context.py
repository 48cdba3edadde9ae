"""The loop's side of context compaction (the policy and its pure parts: ``treadle.compaction``).

``ask`` builds a step's request, counts its tokens (``treadle.tokens``), compacts the run's
messages when the policy says so, sends it, and — when the provider refuses it as too long —
compacts and sends it once more. A compaction is an ``agent.compaction`` event, journaled and
made durable before the next model call, so a run resumed after a crash rebuilds the
compacted messages from the journal (``store.resume``) and asks for no second summary.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from . import events as ev
from .compaction import (
    ClearToolResults,
    Compaction,
    CompactionInfo,
    Summarize,
    apply_layout,
    clear_results,
    layout_of,
    slide,
    slide_history,
    summary_messages,
    summary_span,
    with_summary,
)
from .errors import ModelContextTooLongError, ModelError, UsageLimitExceeded
from .events import CompactionRunItem
from .models.base import ModelRequest, ModelResponse
from .tokens import (
    REPLY_PRIMING,
    Calibration,
    context_window,
    count_request,
    estimate_text,
    message_tokens,
    tools_tokens,
)
from .types import Usage
from .usage import price_usd

__all__ = ["ContextState", "JournaledCompactions", "ask", "policy_for", "refused", "relearn"]

Call = Callable[[Any, Any, ModelRequest], Awaitable[tuple[ModelResponse, bool]]]
AUTO = "auto"
AUTO_LOCAL = Compaction(threshold=0.75, target=0.5)  # "auto" for the embedded model
AUTO_OTHER = Compaction(threshold=1.0, target=0.6)  # "auto" for any other model


@dataclass(slots=True)
class ContextState:
    """One run's token accounting: the calibration of its estimates, the last request's count."""

    calibration: Calibration = field(default_factory=Calibration)
    counted: int = 0
    refused_at: int | None = None  # the smallest request the provider refused as too long (an unknown window)
    # the estimate kept up to date as the run's message list grows (it is only appended to between compactions)
    seen: Any = None
    seen_n: int = 0
    seen_sum: int = 0
    tools: tuple[Any, int] = (None, 0)

    def count(self, model: Any, request: ModelRequest) -> tuple[int, bool]:
        """``count_request``, incrementally for an estimate: only the messages new since the last count."""
        if callable(getattr(model, "count_tokens", None)):
            return count_request(model, request)
        msgs = request.messages
        if self.seen is not msgs or self.seen_n > len(msgs):
            self.seen, self.seen_n, self.seen_sum = msgs, 0, 0
        for m in msgs[self.seen_n:]:
            self.seen_sum += message_tokens(m)
        self.seen_n = len(msgs)
        if self.tools[0] is not request.tools:
            self.tools = (request.tools, tools_tokens(request.tools))
        return self.seen_sum + REPLY_PRIMING + self.tools[1], False
    models: dict[str, Any] = field(default_factory=dict[str, Any])  # summary models resolved from strings


class JournaledCompactions:
    """A replayed run's context policy: the compactions its journal holds, made again at the
    same steps from their journaled layouts (no summary call)."""

    def __init__(self, infos: list[dict[str, Any]]) -> None:
        self.by_step: dict[int, list[dict[str, Any]]] = {}
        for d in infos:
            self.by_step.setdefault(int(d.get("step", 0)), []).append(d)


def policy_for(agent: Any, model: Any) -> Compaction | None:
    """The agent's compaction policy against ``model`` (None: off)."""
    ctx = getattr(agent, "context", AUTO)
    if ctx is None:
        return None
    if isinstance(ctx, Compaction):
        return ctx
    if getattr(model, "provider", None) == "local":  # the embedded model: a small window, on by default
        return AUTO_LOCAL
    return AUTO_OTHER  # any other: only when a request would not fit


def _state(run: Any) -> ContextState:
    state = run.context
    if state is None:
        state = run.context = ContextState()
    return state


async def ask(run: Any, model: Any, planner: Any, mode: str, step: int, call: Call) -> ModelResponse:
    """The step's model reply, its request compacted first when the policy says so."""
    request = planner.build_request(mode, run.messages, run.model_kwargs, run.run_id, step, run.final_style)
    agent = run.driven()
    ctx = getattr(agent, "context", AUTO)
    if isinstance(ctx, JournaledCompactions):
        request = _replay(run, ctx, planner, mode, step, request)
        ctx = None
    policy = policy_for(agent, model) if ctx is not None else None
    if policy is None:
        return (await call(run, model, request))[0]
    state = _state(run)
    counted, exact = state.count(model, request)
    tokens = state.calibration.apply(counted)
    window = policy.window or context_window(model) or state.refused_at
    if window is not None:
        limit = window - policy.reserve_for(window, request.model_kwargs)
        if tokens > policy.threshold * limit:
            request, counted = await _compact(run, model, planner, mode, step, request, policy, window, limit,
                                              "overflow" if tokens > limit else "threshold", tokens, exact)
    state.counted = counted
    try:
        resp, _ = await call(run, model, request)
    except ModelContextTooLongError:
        # refused as too long: the window is smaller than thought (or unknown); compact below what was refused
        sent = state.calibration.apply(state.counted)
        refused(run, sent)
        window = min(window or sent, sent)
        limit = window - (policy.reserve_for(window, request.model_kwargs) if policy.window else 0)
        before = request.messages
        request, counted = await _compact(run, model, planner, mode, step, request, policy, window, limit,
                                          "refused", sent, exact, force=True)
        if request.messages is before:
            raise
        state.counted = counted
        resp, _ = await call(run, model, request)
    usage = resp.usage
    if usage is not None and resp.model_ran and usage.input_tokens > 0:
        state.calibration.learn(state.counted, usage.input_tokens)
    return resp


async def _compact(run: Any, model: Any, planner: Any, mode: str, step: int, request: ModelRequest,
                   policy: Compaction, window: int, limit: int, reason: Any, tokens: int, exact: bool,
                   force: bool = False) -> tuple[ModelRequest, int]:
    """Apply the policy's strategies until the request is under its target; emit the event."""
    state = _state(run)
    began = time.time()
    old: list[dict[str, Any]] = run.messages

    def count(msgs: list[dict[str, Any]]) -> int:
        return state.calibration.apply(count_request(model, dataclasses.replace(request, messages=msgs))[0])

    budget = int(policy.target * limit)
    msgs = old
    applied: list[str] = []
    replaced: list[str] = []
    summary = summary_model = summary_error = None
    usage: Usage | None = None
    for s in policy.strategies:
        if count(msgs) <= budget and not (force and not applied):
            break
        if isinstance(s, ClearToolResults):
            msgs, n = clear_results(msgs, s)
            if n:
                applied.append("clear_tool_results")
                replaced.append(f"{n} old tool result{'s' if n != 1 else ''} -> short stubs")
        elif isinstance(s, Summarize):
            span = summary_span(msgs, s.keep_last)
            if span is None:
                continue
            text, usage, summary_model, summary_error = await _summarize(run, model, s, msgs, span, step, window)
            if text:
                summary = text
                msgs = with_summary(msgs, span, text)
                applied.append("summarize")
                replaced.append(f"messages {span[0]}-{span[1] - 1} ({span[1] - span[0]}) -> a summary of "
                                f"{len(text)} characters, joined to the question")
        else:
            msgs, n = slide(msgs, count, budget, s)
            if n:
                applied.append("sliding_window")
                replaced.append(f"the {n} oldest messages after the question -> dropped")
            if count(msgs) > budget:  # the conversation memory's turns in the system prompt: the oldest go
                msgs, n = slide_history(msgs, count, budget)
                if n:
                    applied.append("sliding_window")
                    replaced.append(f"the {n} oldest turns of the chat history -> dropped")
    if msgs is old or (len(msgs) == len(old) and all(a is b for a, b in zip(msgs, old))):  # nothing to compact
        return request, state.counted if reason == "refused" else count_request(model, request)[0]
    after = count(msgs)
    info = CompactionInfo(step=step, reason=reason, strategies=list(dict.fromkeys(applied)), tokens_before=tokens,
                          tokens_after=after, window=window, messages_before=len(old), messages_after=len(msgs),
                          layout=layout_of(old, msgs), replaced=replaced, summary=summary,
                          summary_model=summary_model, summary_error=summary_error, usage=usage, exact=exact,
                          started_at=began)
    run.progress.set_messages(msgs)
    run.emit_item(ev.COMPACTION, CompactionRunItem(data=info))
    if run.barrier is not None:  # durable before the next model call: a crash after it asks for no second summary
        await run.barrier(run)
    new = planner.build_request(mode, run.messages, run.model_kwargs, run.run_id, step, run.final_style)
    return new, count_request(model, new)[0]


async def _summarize(run: Any, agent_model: Any, s: Summarize, msgs: list[dict[str, Any]], span: tuple[int, int],
                     step: int, window: int) -> tuple[str | None, Usage | None, str | None, str | None]:
    """(summary text, the call's usage, the model's name, why there is none). Counted in the run's usage and
    limits; a model error leaves the messages to the next strategy."""
    model = s.model if s.model is not None else agent_model
    if isinstance(model, str):
        state = _state(run)
        if model not in state.models:
            from .models import resolve_model

            state.models[model] = resolve_model(model)
        model = state.models[model]
    name = getattr(model, "name", None) or type(model).__name__
    limits = run.limits
    total = (run.root or run).usage
    if limits is not None and (why := limits.before_request(total)):
        raise UsageLimitExceeded(f"Usage limit: {why}")
    messages = summary_messages(msgs, span, s)
    own = context_window(model) or window  # the transcript must fit the summarizer's window too
    room = max(own - s.max_tokens - estimate_text(str(messages[0]["content"])) - 64, 64)
    text = str(messages[1]["content"])
    if estimate_text(text) > room:
        keep = room * 3  # characters, cautiously (about 3 a token); the newest part is kept
        messages[1] = {"role": "user", "content": "[…the oldest part is cut…]\n" + text[len(text) - keep:]}
    req = ModelRequest(messages=messages, model_kwargs={"max_tokens": s.max_tokens}, run_id=run.run_id, step=step)
    try:
        resp = await model.request(req)
    except ModelError as e:
        return None, None, name, f"{type(e).__name__}: {e}"
    usage = resp.usage.copy() if resp.usage is not None else Usage()
    if usage.requests == 0:
        usage.requests = 1
    if limits is not None and limits.cost_limit_usd is not None:
        cost = price_usd(usage, resp.model_name, getattr(model, "provider", None))
        usage.cost_usd = cost or 0.0
    for r in run.lineage():
        r.usage.add(usage)
    if limits is not None and (why := limits.after_response(total)):
        raise UsageLimitExceeded(f"Usage limit: {why}")
    text = (resp.text or "").strip()
    return (text or None), usage, resp.model_name or name, None if text else "the summary model replied nothing"


def _replay(run: Any, ctx: JournaledCompactions, planner: Any, mode: str, step: int,
            request: ModelRequest) -> ModelRequest:
    """A replayed run's journaled compactions at this step, applied as journaled."""
    done = False
    for d in ctx.by_step.pop(step, ()):
        expected = int(d.get("messages_before", -1))
        if len(run.messages) != expected:  # replayed in another planner mode: its context differs
            continue
        run.progress.set_messages(apply_layout(run.messages, d.get("layout") or [], expected))
        info = CompactionInfo(**{k: v for k, v in d.items() if k in CompactionInfo.__dataclass_fields__
                                 and k != "usage"})
        run.emit_item(ev.COMPACTION, CompactionRunItem(data=info))
        done = True
    if not done:
        return request
    return planner.build_request(mode, run.messages, run.model_kwargs, run.run_id, step, run.final_style)


def journaled(entries: list[Any]) -> list[dict[str, Any]]:
    """The compaction events' data of a run's journal, in order."""
    out: list[dict[str, Any]] = []
    for e in entries:
        if e.name == ev.COMPACTION:
            item: Any = e.payload.get("item") or {}
            out.append(item.get("data") or {})
    return out


def relearn(run: Any, agent: Any, mode: str, step: int, reported: int | None) -> None:
    """Resuming: the calibration the run learned from step ``step``'s reply, learned again from its
    journaled prompt tokens against the rebuilt request (so the resumed run compacts where the
    original would have). Not for a model with its own tokenizer: its count is exact."""
    if reported is None or getattr(agent, "context", AUTO) is None:
        return
    model = agent.model
    if callable(getattr(model, "count_tokens", None)):
        return
    request = agent.planner.build_request(mode, run.messages, run.model_kwargs, run.run_id, step, run.final_style)
    state = _state(run)
    state.calibration.learn(state.count(model, request)[0], reported)


def refused(run: Any, tokens: int) -> None:
    """Resuming: a journaled refusal bounds the window again."""
    if tokens > 0:
        state = _state(run)
        state.refused_at = min(state.refused_at or tokens, tokens)
