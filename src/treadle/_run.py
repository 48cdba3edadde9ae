"""``RunState``: everything one run owns, and the events it emits.

A run is a frozen ``RunConfig`` (what it was asked to do) and a few small parts (``treadle._run_parts``), each with the
operations that change it:

* ``Progress`` — the steps, messages, usage and event numbers (the driver advances it);
* ``Cancellation`` — the run's task and loop, and the flags that settle a cancel against the ending;
* ``Nesting`` — the run whose tool call this run serves, and the outermost run (fixed at the start);
* ``Durability`` — the journal's lease and write-ahead barrier (attached by the journal);
* ``Recovery`` — what a resumed run takes over from its journal (the step cut short, its calls'
  results, the decisions recorded meanwhile);
* ``GuardState`` — the parallel input check and the output guardrails' retries.

The driver (``treadle.loop``) advances a RunState; the approval step (``treadle._approval``),
the journal and the stream read and extend it. It lives in a module of its own so that they
all import it from below the driver.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import events as ev
from ._driven import DrivenAgent
from ._run_parts import (
    Cancellation,
    DecisionDict,
    GuardState,
    Message,
    PendingStep,
    Progress,
    Recovery,
    SeedCall,
)
from .events import FinalOutputItem, RunItemStreamEvent, StreamEvent
from .memory._core import MemoryProtocol
from .models.base import StreamingModelClient
from .permissions import PermissionManagerProtocol
from .tools.manager import ToolResult
from .types import Function, RunnerResult, StepOutput, Usage
from .usage import UsageLimits

__all__ = ["Cancellation", "ChildJournal", "DecisionDict", "Durability", "GuardState", "Message", "NestedRunTool",
           "Nesting", "PendingStep", "Progress", "Recovery", "RunConfig", "RunState", "SeedCall", "Sink", "Spawn",
           "current_run"]

logger = logging.getLogger("treadle")

Sink = Callable[[StreamEvent], None]

current_run: contextvars.ContextVar[RunState | None] = contextvars.ContextVar("treadle_run", default=None)
"""The run whose task is executing (set by the driver): what a tool call asks its questions through."""


# ---------------------------------------------------------------------------- the parts that link runs
SEED_ACALL = SeedCall()  # a run started by acall, with no use_cache or id


class Spawn(Protocol):
    """Runs an agent as a child of a run (``treadle.nesting.spawn``): ``(run, agent, text, key)``."""

    def __call__(self, parent: RunState, agent: DrivenAgent, text: str, key: str, /
                 ) -> Awaitable[RunnerResult[Any]]: ...


class ChildJournal(Protocol):
    """What a run asks of the journal that writes it (``treadle.store.Journal``), for its child runs."""

    def resume_child(self, run: RunState) -> RunnerResult[Any] | None: ...


class NestedRunTool:
    """A tool whose call is a child run (``treadle.nesting.AgentTool``): the loop calls
    ``run_nested`` instead of executing the tool."""

    __slots__ = ()

    async def run_nested(self, run: RunState, fn: Function, step: int) -> ToolResult:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class RunConfig:
    """What the run was asked to do: fixed before it starts."""

    run_id: str
    prompt_kwargs: dict[str, Any]
    model_kwargs: dict[str, Any]
    max_steps: int
    ctx: object = None
    permission_manager: PermissionManagerProtocol | None = None
    memory: MemoryProtocol | None = None
    stream_deltas: bool = False
    limits: UsageLimits | None = None
    suspend_for_approval: bool = False  # suspend instead of denying when nobody can decide now
    seed_call: SeedCall = SEED_ACALL
    spawn: Spawn | None = None


@dataclass(frozen=True, slots=True)
class Nesting:
    """Where a run sits in a tree of runs (``treadle.nesting``): fixed when it is made."""

    parent: RunState | None = None
    call_id: str | None = None  # the parent's call this run serves
    depth: int = 0
    root: RunState | None = None  # the outermost run (None: this one)


@dataclass(slots=True)
class Durability:
    """The journal's hold on the run: its lease when resumed, the write-ahead barrier, the journal."""

    lease: tuple[str, int] | None = None  # (owner, epoch)
    barrier: Callable[[RunState], Awaitable[None]] | None = None
    journal: ChildJournal | None = None

    def attach(self, barrier: Callable[[RunState], Awaitable[None]], journal: ChildJournal) -> None:
        self.barrier, self.journal = barrier, journal

    def hold(self, owner: str, epoch: int) -> None:
        self.lease = (owner, epoch)


# ---------------------------------------------------------------------------- the run


class RunState:
    """Everything one run owns. Nothing per-run lives on the Runner or the Agent."""

    __slots__ = (
        "__weakref__",
        "agent",
        "cancellation",
        "config",
        "context",
        "durability",
        "guards",
        "nesting",
        "on_done",
        "progress",
        "recovery",
        "sinks",
        "streaming",
    )

    def __init__(self, config: RunConfig, agent: DrivenAgent | None, *, sinks: list[Sink] | None = None,
                 on_done: Callable[[RunState], None] | None = None, nesting: Nesting | None = None) -> None:
        self.config = config
        self.agent = agent  # None: a stand-in for a run that ended before (it only replays its end)
        self.sinks: list[Sink] = sinks if sinks is not None else []
        self.on_done = on_done
        self.nesting = nesting if nesting is not None else Nesting()
        self.progress = Progress()
        self.cancellation = Cancellation()
        self.durability = Durability()
        self.recovery = Recovery()
        self.guards = GuardState()
        self.context: object = None  # token accounting for compaction (treadle._context), made at the first step
        # the model last asked, and it again when it streams deltas to this run (treadle.loop)
        self.streaming: tuple[object, StreamingModelClient | None] | None = None

    def __repr__(self) -> str:
        return f"RunState({self.config.run_id!r}, step={self.progress.step})"

    # ------------------------------------------------------------ read-only views (the config and progress)
    @property
    def run_id(self) -> str:
        return self.config.run_id

    @property
    def prompt_kwargs(self) -> dict[str, Any]:
        return self.config.prompt_kwargs

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return self.config.model_kwargs

    @property
    def max_steps(self) -> int:
        return self.config.max_steps

    @property
    def memory(self) -> MemoryProtocol | None:
        return self.config.memory

    @property
    def limits(self) -> UsageLimits | None:
        return self.config.limits

    @property
    def stream_deltas(self) -> bool:
        return self.config.stream_deltas

    @property
    def messages(self) -> list[Message]:
        return self.progress.messages

    @property
    def step(self) -> int:
        return self.progress.step

    @property
    def usage(self) -> Usage:
        return self.progress.usage

    @property
    def step_history(self) -> list[StepOutput]:
        return self.progress.step_history

    @property
    def result(self) -> RunnerResult[Any] | None:
        return self.progress.result

    @property
    def started_at(self) -> float:
        return self.progress.started_at

    @property
    def final_style(self) -> str:
        return self.progress.final_style

    @property
    def parent(self) -> RunState | None:
        return self.nesting.parent

    @property
    def root(self) -> RunState | None:
        return self.nesting.root

    @property
    def parent_call_id(self) -> str | None:
        return self.nesting.call_id

    @property
    def depth(self) -> int:
        return self.nesting.depth

    @property
    def barrier(self) -> Callable[[RunState], Awaitable[None]] | None:
        return self.durability.barrier

    @property
    def done(self) -> bool:
        return self.cancellation.done

    # ------------------------------------------------------------ the tree
    def lineage(self) -> list[RunState]:
        """This run and the runs it is nested in, innermost first (usage adds to all of them)."""
        out: list[RunState] = [self]
        parent = self.nesting.parent
        while parent is not None:
            out.append(parent)
            parent = parent.nesting.parent
        return out

    def outermost(self) -> RunState:
        root = self.nesting.root
        return self if root is None else root

    def hand_to(self, agent: DrivenAgent) -> None:
        """The agent that carries on (a handoff, or the one a resumed run was handed to)."""
        self.agent = agent

    # ------------------------------------------------------------ events
    def driven(self) -> DrivenAgent:
        """The agent being run (every RunState the driver runs has one)."""
        agent = self.agent
        if agent is None:
            raise RuntimeError(f"run {self.config.run_id} has no agent")
        return agent

    def emit(self, event: StreamEvent) -> None:
        progress = self.progress
        if progress.result is not None:  # the terminal event was the last one: late events are dropped
            return
        progress.seq += 1
        event.seq = progress.seq
        event.run_id = self.config.run_id
        agent = self.agent  # who is speaking: after a handoff, the agent handed to
        if agent is not None:
            event.agent = agent.name
        parent = self.nesting.parent
        if parent is not None:  # a child run's event, for its callers' consumers too
            event.depth = self.nesting.depth
            event.parent_run_id = parent.config.run_id
        if type(event) is RunItemStreamEvent:
            name = event.name
            if name == ev.STEP_COMPLETE:
                progress.step_history.append(event.item.data)
            elif name == ev.EXECUTION_COMPLETE:
                progress.result = event.item.data
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # a consumer's bug must not break the run
                name = event.name if isinstance(event, RunItemStreamEvent) else event.type
                logger.exception("event handler failed on %s", name)

    def emit_item(self, name: str, item: Any) -> None:
        self.emit(RunItemStreamEvent(name=name, item=item))

    def mark_done(self) -> bool:
        """The run is over (its task returned, or its stream closed); False when it already was."""
        c = self.cancellation
        with c.lock:
            if c.done:
                return False
            c.done = True
        if self.on_done is not None:
            self.on_done(self)
        return True

    # ------------------------------------------------------------ cancellation
    def request_cancel(self) -> bool:
        """Thread-safe. Returns False when the run has already ended."""
        c = self.cancellation
        with c.lock:
            if c.done or self.progress.result is not None or c.interrupted:
                return False
            if c.requested:
                return True
            c.requested = True
            loop = c.loop
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

    def decide_ending(self, status: str) -> bool:
        """The ending is decided now (under the lock: a cancel accepted before wins, one after is
        refused). True when a cancel request overrules ``status``."""
        c = self.cancellation
        with c.lock:
            overruled = c.requested and status != "cancelled"
            c.interrupted = True
        return overruled

    def announce_cancel(self) -> None:
        c = self.cancellation
        if not c.announced:
            c.announced = True
            self.emit_item(ev.CANCEL_RECEIVED, FinalOutputItem(data={"status": "cancel_received",
                                                                    "message": "Cancel request received"}))

    def _deliver_cancel(self) -> None:
        """On the run's loop: announce, and interrupt the task at its current await."""
        c = self.cancellation
        if c.done or c.interrupted or self.progress.result is not None:
            return
        self.announce_cancel()
        task = c.task
        if task is not None and not task.done() and asyncio.current_task() is not task:
            c.own_cancels += 1
            task.cancel()

    def check_cancel(self) -> None:
        """At step boundaries: a run whose awaits never suspend still stops."""
        if self.cancellation.requested and self.progress.result is None:
            self.announce_cancel()
            raise asyncio.CancelledError
