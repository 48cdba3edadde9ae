"""The loop's side of context compaction (the policy and its pure parts: ``treadle.compaction``).

``ask`` builds a step's request, counts its tokens (``treadle.tokens``), compacts the run's
messages when the policy says so, sends it, and — when the provider refuses it as too long —
compacts and sends it once more. A compaction is an ``agent.compaction`` event, journaled and
made durable before the next model call, so a run resumed after a crash rebuilds the
compacted messages from the journal (``_resume``) and asks for no second summary. A
conversation memory's history is folded into a summary the memory store keeps
(``treadle.memory._fold``), so a reopened session does not summarise again either.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from . import events as ev
from ._plugs import fits
from .compaction import (
    COMPACTION_INFO,
    ClearToolResults,
    Compaction,
    CompactionInfo,
    Message,
    SlidingWindow,
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
from .memory._fold import CHAT_SUMMARY_INSTRUCTIONS, fold_history
from .models.base import ModelClient, ModelRequest, ModelResponse
from .tokens import (
    REPLY_PRIMING,
    Calibration,
    Tokenizing,
    context_window,
    count_request,
    estimate_text,
    message_tokens,
    tools_tokens,
)
from .types import Usage
from .usage import price_usd

if TYPE_CHECKING:
    from ._run import RunState
    from .protocols import DrivenAgent, StepPlanner
    from .types import FunctionDefinition

__all__ = ["ContextState", "JournaledCompactions", "ask", "journaled", "policy_for", "refused", "relearn"]

Call = Callable[["RunState", ModelClient, ModelRequest], Awaitable[tuple[ModelResponse, bool]]]
Reason = Literal["threshold", "overflow", "refused"]
AUTO = "auto"
MAX_FOLDS = 8  # summary requests of a conversation's history in one compaction, at most
# "auto" for the embedded model: short summaries (a small model writes slowly, and rambles to its limit), the
# newest turn kept beside them (the most room before the next compaction: a 2 k window holds little history)
AUTO_LOCAL = Compaction(threshold=0.75, target=0.5,
                        strategies=(ClearToolResults(), Summarize(max_tokens=64, keep_last=2), SlidingWindow()))
AUTO_OTHER = Compaction(threshold=1.0, target=0.6)  # "auto" for any other model


@runtime_checkable
class _Configured(Protocol):
    """An agent with a context policy (``Agent.context``)."""

    context: object


@runtime_checkable
class _Provider(Protocol):
    provider: str


def _setting(agent: object) -> object:
    """The agent's ``context`` ("auto" for an agent that has none)."""
    return agent.context if fits(agent, _Configured) else AUTO


@dataclass(slots=True)
class ContextState:
    """One run's token accounting: the calibration of its estimates, the last request's count."""

    calibration: Calibration = field(default_factory=Calibration)
    counted: int = 0
    refused_at: int | None = None  # the smallest request the provider refused as too long (an unknown window)
    # the estimate kept up to date as the run's message list grows (it is only appended to between compactions)
    seen: list[Message] | None = None
    seen_n: int = 0
    seen_sum: int = 0
    tools: tuple[list[FunctionDefinition] | None, int] = (None, 0)
    models: dict[str, ModelClient] = field(default_factory=dict[str, ModelClient])  # summary models, by string
    # what the run's agent and model say, read once per pair (a context window is looked up by model name)
    against: tuple[object, object] | None = None
    setting: object = None
    policy: Compaction | None = None
    window: int | None = None
    tokenizing: bool = False

    def settle(self, agent: object, model: object) -> None:
        """Read the policy, window and tokenizer of ``agent`` against ``model`` (when not read yet)."""
        if self.against is not None and self.against[0] is agent and self.against[1] is model:
            return
        self.against = (agent, model)
        self.setting = setting = _setting(agent)
        self.policy = None if isinstance(setting, JournaledCompactions) else _policy(setting, model)
        self.window = context_window(model)
        self.tokenizing = fits(model, Tokenizing)

    def count(self, model: object, request: ModelRequest) -> tuple[int, bool]:
        """``count_request``, incrementally for an estimate: only the messages new since the last count."""
        if (self.tokenizing if self.against is not None and self.against[1] is model
                else fits(model, Tokenizing)):
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


class JournaledCompactions:
    """A replayed run's context policy: the compactions its journal holds, made again at the
    same steps from their journaled layouts (no summary call)."""

    def __init__(self, infos: Iterable[CompactionInfo]) -> None:
        self.by_step: dict[int, list[CompactionInfo]] = {}
        for info in infos:
            self.by_step.setdefault(info.step, []).append(info)


def policy_for(agent: object, model: object) -> Compaction | None:
    """The agent's compaction policy against ``model`` (None: off)."""
    return _policy(_setting(agent), model)


def _policy(ctx: object, model: object) -> Compaction | None:
    if ctx is None:
        return None
    if isinstance(ctx, Compaction):
        return ctx
    if fits(model, _Provider) and model.provider == "local":  # the embedded model: a small window
        return AUTO_LOCAL
    return AUTO_OTHER  # any other: only when a request would not fit


def _state(run: RunState) -> ContextState:
    state = run.context
    if not isinstance(state, ContextState):
        state = run.context = ContextState()
    return state


def _count_refused(run: RunState) -> None:
    """A request the provider refused was still a request: it counts in the usage (and its limits)."""
    for r in run.lineage():
        r.usage.requests += 1


async def ask(run: RunState, model: ModelClient, planner: StepPlanner, mode: str, step: int,
              call: Call) -> ModelResponse:
    """The step's model reply, its request compacted first when the policy says so."""
    request = planner.build_request(mode, run.messages, run.model_kwargs, run.run_id, step, run.final_style)
    state = _state(run)
    state.settle(run.driven(), model)
    ctx, policy = state.setting, state.policy
    if isinstance(ctx, JournaledCompactions):
        request = _replay(run, ctx, planner, mode, step, request)
    if policy is None:
        try:
            return (await call(run, model, request))[0]
        except ModelContextTooLongError:
            _count_refused(run)
            raise
    counted, exact = state.count(model, request)
    tokens = state.calibration.apply(counted)
    window = policy.window or state.window or state.refused_at
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
        _count_refused(run)
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
        try:
            resp, _ = await call(run, model, request)
        except ModelContextTooLongError:
            _count_refused(run)
            raise
    usage = resp.usage
    if usage is not None and resp.model_ran and usage.input_tokens > 0:
        state.calibration.learn(state.counted, usage.input_tokens)
    return resp


@dataclass(slots=True)
class _Progress:
    """What one compaction did so far (the event's data is made of it)."""

    msgs: list[Message]
    applied: list[str] = field(default_factory=list[str])
    replaced: list[str] = field(default_factory=list[str])
    summary: str | None = None
    summary_model: str | None = None
    summary_error: str | None = None
    usage: Usage | None = None
    history_upto: int | None = None

    def did(self, strategy: str, what: str) -> None:
        self.applied.append(strategy)
        self.replaced.append(what)


async def _compact(run: RunState, model: ModelClient, planner: StepPlanner, mode: str, step: int,
                   request: ModelRequest, policy: Compaction, window: int, limit: int, reason: Reason, tokens: int,
                   exact: bool, force: bool = False) -> tuple[ModelRequest, int]:
    """Apply the policy's strategies until the request is under its target; emit the event."""
    state = _state(run)
    began = time.time()
    old = run.messages

    def count(msgs: list[Message]) -> int:
        return state.calibration.apply(count_request(model, dataclasses.replace(request, messages=msgs))[0])

    budget = int(policy.target * limit)
    p = _Progress(old)
    for s in policy.strategies:
        if count(p.msgs) <= budget and not (force and not p.applied):
            break
        if isinstance(s, ClearToolResults):
            p.msgs, n = clear_results(p.msgs, s)
            if n:
                p.did("clear_tool_results", f"{n} old tool result{'s' if n != 1 else ''} -> short stubs")
        elif isinstance(s, Summarize):
            await _summarize_history(run, model, s, p, step, window, count, budget)
            span = summary_span(p.msgs, s.keep_last)
            if span is None or (p.applied and count(p.msgs) <= budget):
                continue
            text, usage, name, error = await _summarize(run, model, s, summary_messages(p.msgs, span, s), step,
                                                        window)
            p.summary_model, p.summary_error = name, error
            p.usage = usage if p.usage is None or usage is None else _sum(p.usage, usage)
            if text:
                p.summary = text
                p.msgs = with_summary(p.msgs, span, text)
                p.did("summarize", f"messages {span[0]}-{span[1] - 1} ({span[1] - span[0]}) -> a summary of "
                                   f"{len(text)} characters, joined to the question")
        else:
            p.msgs, n = slide(p.msgs, count, budget, s)
            if n:
                p.did("sliding_window", f"the {n} oldest messages after the question -> dropped")
            if count(p.msgs) > budget:  # the conversation memory's turns in the system prompt: the oldest go
                p.msgs, n = slide_history(p.msgs, count, budget)
                if n:
                    p.did("sliding_window", f"the {n} oldest turns of the chat history -> dropped")
    msgs = p.msgs
    if msgs is old or (len(msgs) == len(old) and all(a is b for a, b in zip(msgs, old))):  # nothing to compact
        return request, state.counted if reason == "refused" else count_request(model, request)[0]
    info = CompactionInfo(step=step, reason=reason, strategies=list(dict.fromkeys(p.applied)), tokens_before=tokens,
                          tokens_after=count(msgs), window=window, messages_before=len(old),
                          messages_after=len(msgs), layout=layout_of(old, msgs), replaced=p.replaced,
                          summary=p.summary, summary_model=p.summary_model, summary_error=p.summary_error,
                          usage=p.usage, exact=exact, started_at=began, history_upto=p.history_upto)
    run.progress.set_messages(msgs)
    run.emit_item(ev.COMPACTION, CompactionRunItem(data=info))
    if run.barrier is not None:  # durable before the next model call: a crash after it asks for no second summary
        await run.barrier(run)
    new = planner.build_request(mode, run.messages, run.model_kwargs, run.run_id, step, run.final_style)
    return new, count_request(model, new)[0]


def _sum(a: Usage, b: Usage) -> Usage:
    out = a.copy()
    out.add(b)
    return out


async def _summarize_history(run: RunState, model: ModelClient, s: Summarize, p: _Progress, step: int, window: int,
                             count: Callable[[list[Message]], int], budget: int) -> None:
    """The conversation memory's older turns folded into the session's summary (kept by its store),
    a summary request at a time (each within the summarizer's window), until the request fits."""
    async def summarize(messages: list[Message]) -> tuple[str | None, Usage | None, str | None, str | None]:
        return await _summarize(run, model, s, messages, step, window)

    own = context_window(_summary_model(run, s, model)) or window  # the turns must fit the summarizer's window
    room = max(own - s.max_tokens - estimate_text(CHAT_SUMMARY_INSTRUCTIONS) - 64, 64)
    for _ in range(MAX_FOLDS):
        folded = await fold_history(run.memory, p.msgs, s, summarize, room)
        if folded is None:
            return
        p.msgs = folded.messages
        if folded.called:
            p.summary_model, p.summary_error = folded.model, folded.error
            p.usage = folded.usage if p.usage is None or folded.usage is None else _sum(p.usage, folded.usage)
        if folded.text is None or folded.upto is None:
            return
        p.summary, p.history_upto = folded.text, folded.upto
        how = "a summary of" if folded.called else "the summary the session's store holds, of"
        p.did("summarize", f"turns {folded.first}-{folded.upto - 1} of the chat history -> {how} "
                           f"{len(folded.text)} characters")
        if count(p.msgs) <= budget:
            return


def _summary_model(run: RunState, s: Summarize, agent_model: ModelClient) -> ModelClient:
    model = s.model if s.model is not None else agent_model
    if not isinstance(model, str):
        return model
    state = _state(run)
    if model not in state.models:
        from .models import resolve_model

        state.models[model] = resolve_model(model)
    return state.models[model]


def _model_name(model: ModelClient) -> str:
    name = model.name if fits(model, _Named) else None
    return name or type(model).__name__


@runtime_checkable
class _Named(Protocol):
    name: str


async def _summarize(run: RunState, agent_model: ModelClient, s: Summarize, messages: list[Message], step: int,
                     window: int) -> tuple[str | None, Usage | None, str | None, str | None]:
    """(summary text, the call's usage, the model's name, why there is none). Counted in the run's usage and
    limits; a model error leaves the messages to the next strategy."""
    model = _summary_model(run, s, agent_model)
    name = _model_name(model)
    limits = run.limits
    total = (run.root or run).usage
    if limits is not None and (why := limits.before_request(total)):
        raise UsageLimitExceeded(f"Usage limit: {why}")
    own = context_window(model) or window  # the transcript must fit the summarizer's window too
    room = max(own - s.max_tokens - estimate_text(str(messages[0]["content"])) - 64, 64)
    text = str(messages[1]["content"])
    if estimate_text(text) > room:
        keep = room * 3  # characters, cautiously (about 3 a token); the newest part is kept
        messages = [messages[0], {"role": "user", "content": "[…the oldest part is cut…]\n" + text[len(text) - keep:]}]
    req = ModelRequest(messages=messages, model_kwargs={"max_tokens": s.max_tokens}, run_id=run.run_id, step=step)
    try:
        resp = await model.request(req)
    except ModelError as e:
        if isinstance(e, ModelContextTooLongError):
            _count_refused(run)
        return None, None, name, f"{type(e).__name__}: {e}"
    usage = resp.usage.copy() if resp.usage is not None else Usage()
    if usage.requests == 0:
        usage.requests = 1
    if limits is not None and limits.cost_limit_usd is not None:
        cost = price_usd(usage, resp.model_name, model.provider if fits(model, _Provider) else None)
        usage.cost_usd = cost or 0.0
    for r in run.lineage():
        r.usage.add(usage)
    if limits is not None and (why := limits.after_response(total)):
        raise UsageLimitExceeded(f"Usage limit: {why}")
    out = (resp.text or "").strip()
    return (out or None), usage, resp.model_name or name, None if out else "the summary model replied nothing"


def _replay(run: RunState, ctx: JournaledCompactions, planner: StepPlanner, mode: str, step: int,
            request: ModelRequest) -> ModelRequest:
    """A replayed run's journaled compactions at this step, applied as journaled."""
    done = False
    for info in ctx.by_step.pop(step, ()):
        if len(run.messages) != info.messages_before:  # replayed in another planner mode: its context differs
            continue
        run.progress.set_messages(apply_layout(run.messages, info.layout, info.messages_before))
        run.emit_item(ev.COMPACTION, CompactionRunItem(data=dataclasses.replace(info, usage=None)))
        done = True
    if not done:
        return request
    return planner.build_request(mode, run.messages, run.model_kwargs, run.run_id, step, run.final_style)


class _Journaled(Protocol):
    """A journal entry as ``journaled`` reads it (``treadle.store.base.JournalEntry``)."""

    @property
    def name(self) -> str: ...

    @property
    def record(self) -> object: ...


def journaled(entries: Iterable[_Journaled]) -> list[CompactionInfo]:
    """The compaction events of a run's journal, in order, typed."""
    from .store.records import Compaction

    out: list[CompactionInfo] = []
    for e in entries:
        r = e.record
        if isinstance(r, Compaction) and r.item.data is not None:
            out.append(COMPACTION_INFO.validate_python(r.item.data.model_dump()))
    return out


def relearn(run: RunState, agent: DrivenAgent, mode: str, step: int, reported: int | None) -> None:
    """Resuming: the calibration the run learned from step ``step``'s reply, learned again from its
    journaled prompt tokens against the rebuilt request (so the resumed run compacts where the
    original would have). Not for a model with its own tokenizer: its count is exact."""
    if reported is None or _setting(agent) is None:
        return
    model = agent.model
    if fits(model, Tokenizing):
        return
    request = agent.planner.build_request(mode, run.messages, run.model_kwargs, run.run_id, step, run.final_style)
    state = _state(run)
    state.calibration.learn(state.count(model, request)[0], reported)


def refused(run: RunState, tokens: int) -> None:
    """Resuming: a journaled refusal bounds the window again."""
    if tokens > 0:
        state = _state(run)
        state.refused_at = min(state.refused_at or tokens, tokens)
