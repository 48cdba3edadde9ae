"""Runner: drives an Agent. ``call`` (sync), ``acall`` (async) and ``astream`` (events)
are thin faces over the one driver in ``treadle.loop``.

A Runner holds configuration only; every run has its own state, so one Runner (and
one Agent) can serve any number of concurrent runs.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from ._plugs import check_plug, describe, fits
from ._prompt_vars import check_prompt_kwargs
from ._run import RunConfig, SeedCall, Sink
from ._strict import strict
from ._sync import run_sync
from .agent import Agent
from .compat import seed_compat as _seed_compat_on
from .errors import PlugError, UserError
from .events import StreamEvent
from .loop import RunState, drive
from .nesting import spawn
from .permissions import DecisionChannels, KnowsTools, PermissionManager, approval_tools
from .planner import Planner
from .protocols import EventSink, MemoryProtocol, PermissionManagerProtocol
from .streaming import RunnerStreamingResult
from .tracing import auto_tracer
from .types import RunnerResult, StepOutput, new_id, new_run_id
from .usage import UsageLimits

if TYPE_CHECKING:
    from ._journal import Journal
    from .store.base import RunStore
    from .store.replay import ReplayReport

__all__ = ["Runner"]

logger = logging.getLogger("treadle")
RECENT_RUNS = 64
T = TypeVar("T")
EventHandler = Callable[[StreamEvent], None]


class _CancelRequest:
    """What ``Runner.cancel()`` returns: a bool, and awaitable (waits for the run to end)."""

    __slots__ = ("_run", "accepted")

    def __init__(self, accepted: bool, run: RunState | None) -> None:
        self.accepted = accepted
        self._run = run

    def __bool__(self) -> bool:
        return self.accepted

    def __await__(self) -> Generator[object, None, bool]:
        return self._wait().__await__()

    async def _wait(self) -> bool:
        run = self._run
        deadline = asyncio.get_running_loop().time() + 1.0
        while run is not None and run.cancellation.task is not None and not run.done:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.001)
        return self.accepted


class Runner(Generic[T]):
    """Runs an Agent step by step until its final answer, max steps, an error or a cancel.

    Args:
        agent: the Agent to run.
        ctx: an object passed to tools that declare a ``RunContext`` parameter.
        max_steps: overrides ``agent.max_steps`` for this Runner (the Agent is not changed).
        permission_manager: decides on tool calls that need approval (default: a
            ``PermissionManager()`` with no callback: in ``astream`` the stream's consumer
            decides with ``approve``/``deny``/``edit``; in ``call``/``acall`` such calls are denied).
        conversation_memory: gives ``chat_history_str`` and records each turn.
        event_handlers: callables receiving every event of every run (sync, cheap).
        usage_limits: a ``UsageLimits`` bounding each run (requests, tokens, tool calls, cost).
        store: journal every run to this RunStore (or URL, ``sqlite:///runs.db``) so an
            unfinished run can be resumed with ``resume(run_id)`` after a crash.
        run_metadata: JSON-ready data saved with each journaled run (e.g. how to rebuild the agent).
        suspend_for_approval: when a call needs approval and nobody can decide now (no callback,
            no stream), end the run with status "waiting_for_approval" instead of denying; record
            the decision with ``record_decision`` (or ``treadle approve``) and ``resume`` it.
        lease_ttl: seconds a journaled run's lease lasts without renewal (renewed every third of
            it while the run lives). After a crash on another host, the run can be resumed once
            it expired; a crashed process of this host frees its runs at once.

    An argument it does not take raises ``UnknownArgumentError`` naming the closest one; so does
    a run's prompt variable that the agent's prompt does not read. AdalFlow's Runner (agents of
    any shape, its helper methods, ``seed_compat=``) is ``treadle.compat.Runner``.
    """

    seed_compat: bool | None = None  # the process-wide switch (TREADLE_SEED_COMPAT); treadle.compat.Runner sets it
    _check_prompt = True  # prompt variables no template reads are errors (treadle.compat.Runner: passed over)

    @strict(" (AdalFlow's Runner arguments are taken by treadle.compat.Runner)")
    def __init__(self, agent: Agent[T], ctx: object = None, max_steps: int | None = None,
                 permission_manager: PermissionManagerProtocol | None = None,
                 conversation_memory: MemoryProtocol | None = None, *,
                 event_handlers: Iterable[EventSink] = (), usage_limits: UsageLimits | None = None,
                 store: RunStore | str | None = None,
                 run_metadata: dict[str, object] | None = None, suspend_for_approval: bool = False,
                 lease_ttl: float = 30.0) -> None:
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(cast(object, max_steps), int)
                                      or max_steps < 1):
            raise UserError(f"max_steps must be an integer of at least 1, not {max_steps!r}")
        self.agent = agent
        self._driven: Agent[T] = self._drive_target(agent)  # the agent itself, or its seed-protocol adapter
        self.ctx = ctx
        self.max_steps = max_steps or agent.max_steps or 10
        self.answer_data_type = getattr(agent, "answer_data_type", None) or str
        if conversation_memory is not None:
            check_plug(conversation_memory, MemoryProtocol, "conversation memory")
        self.conversation_memory = conversation_memory
        self.event_handlers: list[EventSink] = list(event_handlers)
        for handler in self.event_handlers:
            check_plug(handler, EventSink, "event handler")
        tracer = auto_tracer(self.event_handlers)  # None unless an OpenTelemetry provider is configured
        if tracer is not None:
            self.event_handlers.append(tracer)
        self.usage_limits = usage_limits
        self.store: RunStore | None = None
        self._journal: Journal | None = None
        if suspend_for_approval and store is None:
            raise UserError("suspend_for_approval needs a store to keep the suspended run in")
        self.suspend_for_approval = suspend_for_approval
        if store is not None:
            from ._journal import Journal
            from .store import open_store

            self.store = open_store(store)
            self._journal = Journal(self.store, run_metadata, lease_ttl=lease_ttl)
        self.permission_manager: PermissionManagerProtocol | None = None
        self.set_permission_manager(permission_manager if permission_manager is not None else PermissionManager())
        self._active: dict[str, RunState] = {}
        self._recent: OrderedDict[str, RunState] = OrderedDict()  # finished runs, for token figures
        self._last_run: RunState | None = None
        self._cancelled = False
        self._cancel_callbacks: list[Callable[[], object]] = []

    def _drive_target(self, agent: Agent[T]) -> Agent[T]:
        if not isinstance(cast(object, agent), Agent):
            raise PlugError(f"Runner needs a treadle Agent, not {describe(agent)}; an agent in AdalFlow's shape "
                            "(planner, tool_manager, max_steps) runs on treadle.compat.Runner")
        return agent.driven_by(self)

    @property
    def tool_manager(self) -> Any:
        return self.agent.tool_manager

    @property
    def use_conversation_memory(self) -> bool:
        return self.conversation_memory is not None

    def set_permission_manager(self, permission_manager: PermissionManagerProtocol | None) -> None:
        if permission_manager is not None:
            check_plug(permission_manager, PermissionManagerProtocol, "permission manager")
        self.permission_manager = permission_manager
        if permission_manager is None:
            return
        tm = self.agent.tool_manager
        if isinstance(permission_manager, KnowsTools):  # optional
            permission_manager.set_tool_manager(tm)
        for name in approval_tools(tm):
            permission_manager.register_tool(name, True)

    # ------------------------------------------------------------------ runs
    def _new_run(self, prompt_kwargs: Mapping[str, object] | str | None, model_kwargs: Mapping[str, object] | None,
                 id: str | None, stream: bool, face: str = "acall", use_cache: bool | None = None,
                 max_steps: int | None = None) -> RunState:
        if prompt_kwargs is None:
            pk: dict[str, object] = {}
        elif isinstance(prompt_kwargs, str):
            pk = {"input_str": prompt_kwargs}
        else:
            pk = dict(prompt_kwargs)
        planner = self._driven.planner
        if self._check_prompt and isinstance(cast(object, self._driven), Agent) and isinstance(planner, Planner):
            check_prompt_kwargs(self._driven.name, planner, pk)
        pk["max_steps"] = self.max_steps
        mk = dict(self._driven.model_kwargs)
        if model_kwargs:
            mk.update(model_kwargs)
        config = RunConfig(run_id=id or new_run_id(), prompt_kwargs=pk, model_kwargs=mk,
                           max_steps=max_steps if max_steps is not None else self.max_steps, ctx=self.ctx,
                           permission_manager=self.permission_manager, memory=self.conversation_memory,
                           stream_deltas=stream, limits=self.usage_limits,
                           suspend_for_approval=self.suspend_for_approval,
                           seed_call=SeedCall(face, use_cache, id), spawn=spawn)
        sinks: list[Sink] = []
        if _seed_compat_on(self.seed_compat):  # first: it gives non-answers the seed's text before anyone reads them
            from .compat.seed_runner import seed_result_sink

            sinks.append(seed_result_sink)
        if self._journal is not None:
            sinks.append(self._journal)
        sinks.extend(self.event_handlers)
        run = RunState(config, self._driven, sinks=sinks, on_done=self._run_done)
        self._active[run.run_id] = run
        self._last_run = run
        self._cancelled = False
        return run

    def _run_done(self, run: RunState) -> None:
        self._active.pop(run.run_id, None)
        pm = run.config.permission_manager
        if fits(pm, DecisionChannels):  # optional hook
            pm.close_channel(run.run_id)
        self._recent[run.run_id] = run
        while len(self._recent) > RECENT_RUNS:
            self._recent.popitem(last=False)

    def call(self, prompt_kwargs: Mapping[str, object] | str | None = None,
             model_kwargs: Mapping[str, object] | None = None,
             use_cache: bool | None = None, id: str | None = None) -> RunnerResult[T]:
        """Run to the end from synchronous code (works inside a running event loop too)."""
        run = self._new_run(prompt_kwargs, model_kwargs, id, stream=False, face="call", use_cache=use_cache)
        return run_sync(drive(run))

    __call__ = call

    async def acall(self, prompt_kwargs: Mapping[str, object] | str | None = None,
                    model_kwargs: Mapping[str, object] | None = None, use_cache: bool | None = None,
                    id: str | None = None) -> RunnerResult[T]:
        """Run to the end. A run cancelled through ``cancel()`` returns status "cancelled"."""
        run = self._new_run(prompt_kwargs, model_kwargs, id, stream=False, use_cache=use_cache)
        return await drive(run)

    def astream(self, prompt_kwargs: Mapping[str, object] | str | None = None,
                model_kwargs: Mapping[str, object] | None = None, use_cache: bool | None = None,
                id: str | None = None) -> RunnerStreamingResult:
        """Start a run in a task and return its stream (call inside a running loop)."""
        loop = _running_loop("astream")
        return self._stream(loop, self._new_run(prompt_kwargs, model_kwargs, id, stream=True, face="astream",
                                                use_cache=use_cache))

    def _stream(self, loop: asyncio.AbstractEventLoop, run: RunState,
                body: Callable[[RunState], Coroutine[object, object, RunnerResult[Any]]] = drive
                ) -> RunnerStreamingResult:
        pm = self.permission_manager
        if fits(pm, DecisionChannels) and not self.suspend_for_approval:  # the stream's consumer decides
            pm.open_channel(run.run_id)
        return RunnerStreamingResult.launch(run, loop, body, seed_compat=_seed_compat_on(self.seed_compat))

    # ------------------------------------------------------------------ resume
    def _resumed(self, run_id: str, policy: str, stream: bool) -> RunState | RunnerResult[T]:
        """The run to continue, with its lease taken; or, for a run that ended, its recorded
        result (nothing runs). Raises ``RunLeasedError`` while a live process runs it."""
        if self.store is None or self._journal is None:
            raise UserError("resume needs a store: Runner(agent, store='sqlite:///runs.db')")
        from ._journal import restore_secrets
        from ._resume import answer_type_of, recorded_result, restore
        from .store.base import drop_owner, new_owner
        from .store.links import is_ended

        if run_id in self._active:
            raise UserError(f"run {run_id!r} is running")
        record = self.store.get_run(run_id)
        if record is None:
            raise UserError(f"no run {run_id!r} in the store")
        entries = self.store.events(run_id)
        if is_ended(record, entries):
            return recorded_result(record, entries, answer_type_of(self.agent, entries))
        parent = record.config.get("parent_run_id")
        if parent:
            raise UserError(f"run {run_id!r} is an inner agent's run, called by run {parent!r}: resume that one "
                            "(the inner run continues where it was)")
        owner = new_owner()
        try:
            record = self.store.acquire(run_id, owner, self._journal.lease_ttl)
            if record.owner != owner:  # it ended meanwhile
                drop_owner(owner)
                entries = self.store.events(run_id)
                return recorded_result(record, entries, answer_type_of(self.agent, entries))
            entries = self.store.events(run_id)  # what the previous owner wrote up to its last commit
            if is_ended(record, entries):
                self._release(run_id, record.epoch, owner)
                return recorded_result(record, entries, answer_type_of(self.agent, entries))
            run = self._new_run(record.prompt_kwargs, restore_secrets(record.model_kwargs, self.agent.model_kwargs),
                                run_id, stream, max_steps=int(record.config.get("max_steps", self.max_steps)))
            run.durability.hold(owner, record.epoch)
            restore(run, entries, policy)  # type: ignore[arg-type]
        except BaseException:
            self._active.pop(run_id, None)
            if record.owner == owner:
                self._release(run_id, record.epoch, owner)
            drop_owner(owner)
            raise
        return run

    def with_store(self, store: RunStore | str) -> Runner[T]:
        """A copy journaling to ``store``: the same agent and configuration, its own run bookkeeping
        (what a batch does with a Runner that has no store)."""
        from ._journal import Journal
        from .store import open_store

        clone = copy.copy(self)
        clone.store = open_store(store)
        clone._journal = Journal(clone.store, None)
        clone._active = {}
        clone._recent = OrderedDict()
        clone._last_run = None
        clone._cancel_callbacks = []
        return clone

    def _release(self, run_id: str, epoch: int, owner: str) -> None:
        from .store.base import Commit, drop_owner

        assert self.store is not None  # only runs resumed from the store are released
        self.store.commit([Commit(run_id, epoch, release=True)])
        drop_owner(owner)

    def record_decision(self, run_id: str, call_id: str, *, approve: bool, always: bool = False,
                        kwargs: dict[str, object] | None = None, reason: str | None = None) -> None:
        """Decide on the call a suspended run waits for (then ``resume`` it). ``kwargs``
        edits the arguments: they are checked against the schema of this agent's tool first,
        and ``InvalidEdit`` (a UserError) is raised, nothing recorded, when they do not fit."""
        if self.store is None:
            raise UserError("record_decision needs a store")
        from ._journal import record_decision

        record_decision(self.store, run_id, call_id, approve=approve, always=always, kwargs=kwargs, reason=reason,
                        agent=self.agent)

    async def abatch(self, inputs: Iterable[Any], *, factory: Any = None, **kwargs: Any) -> Any:
        """Run many inputs (prompt_kwargs dicts or strings); results in input order, with
        done/failed/retried counts. ``backend="local"`` (asyncio, bounded ``concurrency``) or
        ``"ray"`` (needs ``factory``: a picklable function or "module:function" building the
        Runner in each worker). See ``treadle.batch.abatch`` and docs/scale.md."""
        from .batch import abatch

        return await abatch(factory if factory is not None else self, inputs, **kwargs)

    def batch(self, inputs: Iterable[Any], **kwargs: Any) -> Any:
        return run_sync(self.abatch(inputs, **kwargs))

    async def areplay(self, run_id: str) -> ReplayReport:
        """Re-execute a journaled run with its journaled model replies (no model call), its
        journaled approval decisions and this runner's tools (and guardrails, handoffs, inner
        agents: the tree is replayed); returns a ``ReplayReport`` of every observation that differs."""
        from ._replay_tree import journaled_approvals, twin_agent
        from .store.replay import Difference, replay_report, replay_script

        record, entries, _ = replay_script(self.store, run_id)
        assert self.store is not None
        inner: list[Difference] = []  # differences inside agents called as tools
        twin = twin_agent(self.agent, self.store, run_id, entries, inner,
                          max_steps=int(record.config.get("max_steps", self.agent.max_steps)))
        # under the journaled id: the child runs (agent tools, agent guardrails) get their journaled ids too
        # approvals as they were given (PermissionManager: no callback is asked, no stream waits)
        approver = PermissionManager(approval_callback=journaled_approvals(self.store))
        result = await Runner(twin, permission_manager=approver).acall(record.prompt_kwargs, id=run_id)
        report = replay_report(run_id, record, entries, result)
        report.differences.extend(inner)
        return report

    def replay(self, run_id: str) -> ReplayReport:
        return run_sync(self.areplay(run_id))

    async def afork(self, run_id: str, at_step: int) -> RunnerResult[T]:
        """A new run with ``run_id``'s history before step ``at_step`` (0-based), continued
        live with this runner's agent (e.g. another model)."""
        if self.store is None:
            raise UserError("fork needs a store")
        from .store import fork_run

        return await self.aresume(fork_run(self.store, run_id, at_step))

    def fork(self, run_id: str, at_step: int) -> RunnerResult[T]:
        return run_sync(self.afork(run_id, at_step))

    def resume(self, run_id: str, *, policy: str = "interrupt-observation") -> RunnerResult[T]:
        """Continue an unfinished run from the journal: finished steps are not run again.

        A call journaled as started but not finished re-runs only when its tool is
        idempotent; otherwise ``policy`` decides: "interrupt-observation" (the model is
        told it was interrupted), "retry" (run it again) or "fail" (raise UserError).
        """
        return run_sync(self.aresume(run_id, policy=policy))

    async def aresume(self, run_id: str, *, policy: str = "interrupt-observation") -> RunnerResult[T]:
        run = self._resumed(run_id, policy, stream=False)
        if isinstance(run, RunnerResult):
            return run
        return await drive(run)

    def astream_resume(self, run_id: str, *, policy: str = "interrupt-observation") -> RunnerStreamingResult:
        """Resume with a stream of the events that follow (call inside a running loop). For a
        run that ended, the stream holds just its recorded ``agent.execution_complete``."""
        loop = _running_loop("astream_resume")
        run = self._resumed(run_id, policy, stream=True)
        if isinstance(run, RunnerResult):
            return self._stream(loop, _ended_run(run), _replay_ending)
        return self._stream(loop, run)

    # ------------------------------------------------------------------ cancellation
    def cancel(self, run_id: str | None = None) -> _CancelRequest:
        """Cancel one run: ``run_id``'s, or the most recently started one.

        Thread-safe. The run emits ``runner.cancel_received`` and ``runner.cancelled``
        and ends with status "cancelled". ``await runner.cancel()`` also works and waits
        (up to 1 s) for the run to end.
        """
        self._cancelled = True
        run = self._active.get(run_id) if run_id is not None else self._last_run
        accepted = run.request_cancel() if run is not None else False
        if accepted:
            for cb in list(self._cancel_callbacks):
                try:
                    cb()
                except Exception:
                    logger.exception("cancel callback failed")
        return _CancelRequest(accepted, run)

    def is_cancelled(self) -> bool:
        return self._cancelled

    def reset_cancellation(self) -> None:
        self._cancelled = False

    def register_cancel_callback(self, callback: Callable[[], object]) -> None:
        """``callback()`` is called each time a cancel request is accepted."""
        self._cancel_callbacks.append(callback)

    @property
    def active_runs(self) -> list[str]:
        return list(self._active)

    # ------------------------------------------------------------------ accounting
    @property
    def step_history(self) -> list[StepOutput]:
        """Steps of the most recently started run (seed compatibility)."""
        return list(self._last_run.step_history) if self._last_run is not None else []

    def get_token_consumption(self, run_id: str | None = None) -> dict[str, int | list[int]]:
        """Token figures of one run (default: the most recent), from provider usage.

        ``total_prompt_tokens``: input tokens summed over the run's model calls;
        ``current_step_tokens``: tokens (input + output) of the last call;
        ``steps_token_history``: tokens per call; ``last_total_tokens``: all tokens so far.
        """
        run = (self._active.get(run_id) or self._recent.get(run_id)) if run_id else self._last_run
        if run is None:
            return {"total_prompt_tokens": 0, "current_step_tokens": 0, "steps_token_history": [],
                    "last_total_tokens": 0, "total_output_tokens": 0, "requests": 0}
        hist = list(run.progress.steps_token_history)
        u = run.usage
        return {"total_prompt_tokens": u.input_tokens, "current_step_tokens": hist[-1] if hist else 0,
                "steps_token_history": hist, "last_total_tokens": u.total_tokens,
                "total_output_tokens": u.output_tokens, "requests": u.requests}


def _running_loop(face: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise UserError(f"runner.{face}() streams into a running event loop: call it inside `async def` "
                        f"(e.g. under asyncio.run(main())), or use runner.call() from synchronous code") from None


def _ended_run(result: RunnerResult[Any]) -> RunState:
    """A RunState standing for a run that ended before: it only replays the ending."""
    run = RunState(RunConfig(run_id=result.run_id or new_id(), prompt_kwargs={}, model_kwargs={}, max_steps=0), None)
    run.recovery.recorded = result
    return run


async def _replay_ending(run: RunState) -> RunnerResult[Any]:
    from .events import EXECUTION_COMPLETE, FinalOutputItem

    result = run.recovery.recorded
    assert result is not None
    run.emit_item(EXECUTION_COMPLETE, FinalOutputItem(data=result, error=result.error))
    run.cancellation.done = True  # nothing ran: no on_done
    return result
