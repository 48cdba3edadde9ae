"""The parts of a ``RunState`` (``treadle._run``) that know nothing of other runs: progress,
cancellation, recovery and the guardrails' share, each with the operations that change it."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._factories import new_dict, new_list
from .tools.manager import ToolResult
from .types import Function, RunnerResult, StepOutput, Usage

if TYPE_CHECKING:
    from .store.records import Decision

__all__ = ["Cancellation", "DecisionDict", "GuardState", "Message", "PendingStep", "Progress", "Recovery", "SeedCall"]

Message = dict[str, Any]
PendingStep = tuple[int, list[Function], Usage | None]
DecisionDict = dict[str, object]
"""A journaled guardrail decision's fields (``store.records.GuardrailData`` dumped)."""


@dataclass(frozen=True, slots=True)
class SeedCall:
    """How a seed-protocol planner was called: the face, ``use_cache`` and the caller's id."""

    face: str = "acall"
    use_cache: bool | None = None
    id: str | None = None


# ---------------------------------------------------------------------------- the parts
@dataclass(slots=True)
class Progress:
    """How far the run got: its steps, messages, usage and event numbers."""

    step: int = 0
    seq: int = 0
    messages: list[Message] = field(default_factory=new_list)
    step_history: list[StepOutput] = field(default_factory=new_list)
    usage: Usage = field(default_factory=Usage)
    steps_token_history: list[int] = field(default_factory=new_list)
    retries: dict[str, int] = field(default_factory=new_dict)
    final_style: str = "seed"
    started_at: float = 0.0
    result: RunnerResult[Any] | None = None

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def skip_seq_to(self, seq: int) -> None:
        """Number the next events after ``seq`` (a resumed run carries on after its journal's)."""
        self.seq = max(self.seq, seq)

    def step_done(self, step: int) -> None:
        self.step = step + 1

    def set_messages(self, messages: list[Message], final_style: str | None = None) -> None:
        """The model's context, replaced (a handoff, a compaction, a resume); with its answer style."""
        self.messages = messages
        if final_style is not None:
            self.final_style = final_style

    def count_tokens(self, tokens: int) -> None:
        self.steps_token_history.append(tokens)

    def count_retry(self, tool: str) -> int:
        """One more retry asked by ``tool``; returns how many so far."""
        n = self.retries[tool] = self.retries.get(tool, 0) + 1
        return n


@dataclass(slots=True)
class Cancellation:
    """The run's task and loop, and where it stands against a cancel request (see ``RunState.request_cancel``)."""

    loop: asyncio.AbstractEventLoop | None = None
    task: asyncio.Task[Any] | None = None
    requested: bool = False
    announced: bool = False
    interrupted: bool = False  # the ending is decided: a later cancel request changes nothing
    consumer_waiting: bool = False  # a stream consumer was woken: yield to it at the next chance
    own_cancels: int = 0
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)  # the ending vs a cancel (treadle.loop)

    def attach(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> None:
        self.loop, self.task = loop, task

    def stop(self) -> None:
        self.interrupted = True

    def wake_consumer(self) -> None:
        self.consumer_waiting = True

    def take_consumer_wake(self) -> bool:
        """True once after ``wake_consumer``: the driver yields to the stream's consumer then."""
        if self.consumer_waiting:
            self.consumer_waiting = False
            return True
        return False

    def uncancel(self) -> bool:
        """Undo the cancels this run made on its task; True when someone else cancelled it too."""
        task = self.task
        if task is None or sys.version_info < (3, 11):  # Python 3.10: no cancel counting
            return not self.requested
        while self.own_cancels and task.cancelling():
            task.uncancel()
            self.own_cancels -= 1
        self.own_cancels = 0
        return task.cancelling() > 0 or not self.requested


@dataclass(slots=True)
class Recovery:
    """What a run resumed from its journal takes over, and what it left waiting."""

    pending_step: PendingStep | None = None  # the step cut short: (step, its calls, the reply's usage)
    recovered: dict[str, ToolResult] = field(default_factory=new_dict)  # what its calls already produced
    decisions: dict[str, Decision] = field(default_factory=new_dict)  # approvals recorded meanwhile
    recorded: RunnerResult[Any] | None = None  # a stand-in for a run that ended before: its result
    suspended: tuple[str, str] | None = None  # (run id, call id) that waits for a decision

    def take_pending(self) -> PendingStep | None:
        pending, self.pending_step = self.pending_step, None
        return pending

    def take_result(self, call_id: str) -> ToolResult | None:
        """A call's journaled result, once (None: the call runs)."""
        if not self.recovered:
            return None
        return self.recovered.pop(call_id, None)

    def take_decision(self, call_id: str) -> Decision | None:
        if not self.decisions:
            return None
        return self.decisions.pop(call_id, None)

    def restore(self, pending: PendingStep | None = None, results: Mapping[str, ToolResult] | None = None,
                decisions: Mapping[str, Decision] | None = None) -> None:
        if pending is not None:
            self.pending_step = pending
        if results:
            self.recovered.update(results)
        if decisions:
            self.decisions.update(decisions)


@dataclass(slots=True)
class GuardState:
    """The guardrails' share of a run (``treadle.guardrails``)."""

    input_check: asyncio.Future[None] | None = None  # the parallel input check still running
    retries: dict[str, int] = field(default_factory=new_dict)  # output retries used, by guardrail
    # resumed: the journaled decisions of before-call tool guardrails, by "guardrail:call id" (reused)
    decisions: dict[str, DecisionDict] = field(default_factory=new_dict)

    def start_input_check(self, check: asyncio.Future[None]) -> None:
        self.input_check = check

    def take_input_check(self) -> asyncio.Future[None] | None:
        check, self.input_check = self.input_check, None
        return check

    def count_retry(self, guardrail: str) -> int:
        """One more output retry asked by ``guardrail``; returns how many so far."""
        n = self.retries[guardrail] = self.retries.get(guardrail, 0) + 1
        return n

    def take_decision(self, key: str) -> DecisionDict | None:
        if not self.decisions:
            return None
        return self.decisions.pop(key, None)
