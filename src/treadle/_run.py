"""``RunState``: everything one run owns, and the events it emits.

The driver (``treadle.loop``) advances a RunState; the approval step (``treadle._approval``),
the journal and the stream read and extend it. It lives in a module of its own so that they
all import it from below the driver.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from . import events as ev
from ._factories import new_dict, new_list
from .events import FinalOutputItem, RunItemStreamEvent, StreamEvent
from .protocols import DrivenAgent, MemoryProtocol, PermissionManagerProtocol
from .tools.manager import ToolResult
from .types import Function, RunnerResult, StepOutput, Usage
from .usage import UsageLimits

__all__ = ["RunState", "Sink", "current_run"]

logger = logging.getLogger("treadle")

Sink = Callable[[StreamEvent], None]

current_run: contextvars.ContextVar[RunState | None] = contextvars.ContextVar("treadle_run", default=None)
"""The run whose task is executing (set by the driver): what a tool call asks its questions through."""


@dataclass(eq=False)
class RunState:
    """Everything one run owns. Nothing per-run lives on the Runner or the Agent."""

    run_id: str
    agent: DrivenAgent | None  # None: a stand-in for a run that ended before (it only replays its end)
    prompt_kwargs: dict[str, Any]
    model_kwargs: dict[str, Any]
    max_steps: int
    ctx: Any = None
    permission_manager: PermissionManagerProtocol | None = None
    memory: MemoryProtocol | None = None
    stream_deltas: bool = False
    limits: UsageLimits | None = None
    sinks: list[Sink] = field(default_factory=new_list)
    on_done: Callable[[RunState], None] | None = None
    final_style: str = "seed"
    started_at: float = 0.0
    # progress
    step: int = 0
    seq: int = 0
    messages: list[dict[str, Any]] = field(default_factory=new_list)
    step_history: list[StepOutput] = field(default_factory=new_list)
    usage: Usage = field(default_factory=Usage)
    steps_token_history: list[int] = field(default_factory=new_list)
    retries: dict[str, int] = field(default_factory=new_dict)
    # resuming from a journal: the step cut short, and what its calls already produced
    pending_step: tuple[int, list[Function], Usage | None] | None = None
    recovered: dict[str, ToolResult] = field(default_factory=new_dict)
    # durability: the journal's lease on the run (owner, epoch) when resumed, and the awaitable
    # that returns once the run's journal writes so far are committed (set by the journal)
    lease: tuple[str, int] | None = None
    barrier: Callable[[RunState], Awaitable[None]] | None = None
    # approvals: suspend instead of denying when nobody can decide now; decisions recorded meanwhile
    suspend_for_approval: bool = False
    decisions: dict[str, dict[str, Any]] = field(default_factory=new_dict)
    result: RunnerResult[Any] | None = None
    # the seed faces: how the run was called (face, use_cache, id), for a seed-protocol planner
    seed_call: dict[str, Any] = field(default_factory=new_dict)
    # a stand-in for a run that ended before: its recorded result, replayed by a stream
    recorded: RunnerResult[Any] | None = None
    # cancellation (see RunState.request_cancel)
    loop: asyncio.AbstractEventLoop | None = None
    task: asyncio.Task[Any] | None = None
    cancel_requested: bool = False
    cancel_announced: bool = False
    interrupted: bool = False
    consumer_waiting: bool = False  # a stream consumer was woken: yield to it at the next chance
    own_cancels: int = 0
    done: bool = False
    # nesting (treadle.nesting): the run whose tool call this run serves, and the outermost run
    parent: RunState | None = None
    parent_call_id: str | None = None
    depth: int = 0
    root: RunState | None = None
    spawn: Callable[..., Awaitable[Any]] | None = None  # (run, agent, text, key) -> a child's RunnerResult
    journal: Any = None  # the Journal writing this run (set by it), for child runs
    suspended: tuple[str, str] | None = None  # (run id, call id) that waits for a decision
    # guardrails: the parallel input check still running; output retries used, by guardrail
    input_check: asyncio.Future[None] | None = None
    guard_retries: dict[str, int] = field(default_factory=new_dict)
    # resumed: the journaled decisions of before-call tool guardrails, by "guardrail:call id" (reused, not re-made)
    guard_decisions: dict[str, dict[str, Any]] = field(default_factory=new_dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # the ending vs a cancel (treadle.loop)
    context: Any = None  # token accounting for compaction (treadle._context.ContextState), made at the first step

    def lineage(self) -> list[RunState]:
        """This run and the runs it is nested in, innermost first (usage adds to all of them)."""
        out: list[RunState] = [self]
        parent = self.parent
        while parent is not None:
            out.append(parent)
            parent = parent.parent
        return out

    # ---------------------------------------------------------------- events
    def driven(self) -> DrivenAgent:
        """The agent being run (every RunState the driver runs has one)."""
        agent = self.agent
        if agent is None:
            raise RuntimeError(f"run {self.run_id} has no agent")
        return agent

    def emit(self, event: StreamEvent) -> None:
        if self.result is not None:  # the terminal event was the last one: late events are dropped
            return
        self.seq += 1
        event.seq = self.seq
        event.run_id = self.run_id
        agent = self.agent  # who is speaking: after a handoff, the agent handed to
        if agent is not None:
            event.agent = agent.name
        parent = self.parent
        if parent is not None:  # a child run's event, for its callers' consumers too
            event.depth = self.depth
            event.parent_run_id = parent.run_id
        if type(event) is RunItemStreamEvent:
            name = event.name
            if name == ev.STEP_COMPLETE:
                self.step_history.append(event.item.data)
            elif name == ev.EXECUTION_COMPLETE:
                self.result = event.item.data
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # a consumer's bug must not break the run
                logger.exception("event handler failed on %s", getattr(event, "name", event.type))

    def emit_item(self, name: str, item: Any) -> None:
        self.emit(RunItemStreamEvent(name=name, item=item))

    # ---------------------------------------------------------------- cancellation
    def request_cancel(self) -> bool:
        """Thread-safe. Returns False when the run has already ended."""
        with self.lock:
            if self.done or self.result is not None or self.interrupted:
                return False
            if self.cancel_requested:
                return True
            self.cancel_requested = True
            loop = self.loop
        if loop is None:
            return True  # not started: drive() sees the flag first thing
        # Always from a fresh loop callback, even on the run's own loop: the caller may be the
        # run's own task (a tool, an event handler), which cannot be interrupted at an await it
        # has not reached yet, or an event handler in the middle of delivering another event.
        try:
            loop.call_soon_threadsafe(self._deliver_cancel)
        except RuntimeError:  # loop closed: the run is over
            return False
        return True

    def announce_cancel(self) -> None:
        if not self.cancel_announced:
            self.cancel_announced = True
            self.emit_item(ev.CANCEL_RECEIVED, FinalOutputItem(data={"status": "cancel_received",
                                                                    "message": "Cancel request received"}))

    def _deliver_cancel(self) -> None:
        """On the run's loop: announce, and interrupt the task at its current await."""
        if self.done or self.interrupted or self.result is not None:
            return
        self.announce_cancel()
        task = self.task
        if task is not None and not task.done() and asyncio.current_task() is not task:
            self.own_cancels += 1
            task.cancel()

    def check_cancel(self) -> None:
        """At step boundaries: a run whose awaits never suspend still stops."""
        if self.cancel_requested and self.result is None:
            self.announce_cancel()
            raise asyncio.CancelledError
