"""Typed stream events, with the seed's class and event names.

Every run emits one ordered stream of these. ``RunnerResult``, ``step_history``,
memory, tracing and the streaming API are all consumers of that one stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Union

from .types import Function, new_id

__all__ = [
    "EVENT_NAMES",
    "EXECUTION_COMPLETE",
    "CANCEL_RECEIVED",
    "CANCELLED",
    "COMPACTION",
    "CompactionRunItem",
    "FinalOutputItem",
    "FunctionRequest",
    "GUARDRAIL",
    "GuardrailRunItem",
    "HANDOFF",
    "HandoffRunItem",
    "QueueCompleteSentinel",
    "RawResponsesStreamEvent",
    "RunItem",
    "RunItemStreamEvent",
    "STEP_COMPLETE",
    "StepRunItem",
    "StreamEvent",
    "TOOL_CALL_ACTIVITY",
    "TOOL_CALL_COMPLETE",
    "TOOL_CALL_START",
    "TOOL_PERMISSION_REQUEST",
    "ToolCallActivityRunItem",
    "ToolCallPermissionRequest",
    "ToolCallQuestion",
    "ToolCallRunItem",
    "ToolOutputRunItem",
]

TOOL_CALL_START: Final = "agent.tool_call_start"
TOOL_CALL_ACTIVITY: Final = "agent.tool_call_activity"
TOOL_CALL_COMPLETE: Final = "agent.tool_call_complete"
TOOL_PERMISSION_REQUEST: Final = "agent.tool_permission_request"
STEP_COMPLETE: Final = "agent.step_complete"
EXECUTION_COMPLETE: Final = "agent.execution_complete"
CANCEL_RECEIVED: Final = "runner.cancel_received"
CANCELLED: Final = "runner.cancelled"
HANDOFF: Final = "agent.handoff"
GUARDRAIL: Final = "agent.guardrail"
COMPACTION: Final = "agent.compaction"

EventName = Literal[
    "agent.tool_call_start",
    "agent.tool_call_activity",
    "agent.tool_call_complete",
    "agent.tool_permission_request",
    "agent.step_complete",
    "agent.execution_complete",
    "runner.cancel_received",
    "runner.cancelled",
    "agent.handoff",
    "agent.guardrail",
    "agent.compaction",
]
EVENT_NAMES: Final = (TOOL_CALL_START, TOOL_CALL_ACTIVITY, TOOL_CALL_COMPLETE, TOOL_PERMISSION_REQUEST,
                      STEP_COMPLETE, EXECUTION_COMPLETE, CANCEL_RECEIVED, CANCELLED, HANDOFF, GUARDRAIL, COMPACTION)


@dataclass(slots=True)
class RunItem:
    """Payload of a ``RunItemStreamEvent``. ``data`` depends on the subclass."""

    id: str = field(default_factory=new_id)
    type: str = "base"
    data: Any = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)

    @property
    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.created_at)


@dataclass(slots=True)
class ToolCallRunItem(RunItem):
    """A tool is about to run; ``data`` is the Function."""

    type: str = "tool_call_start"


@dataclass(slots=True)
class ToolCallActivityRunItem(RunItem):
    """Progress from a running tool; a generator tool yields these."""

    type: str = "tool_call_activity"


@dataclass(slots=True)
class FunctionRequest:
    """An approval request for one tool call (``id`` is the tool call id)."""

    id: str
    tool_name: str
    tool: Function
    confirmation_details: Any = None
    run_id: str | None = None


@dataclass(slots=True)
class ToolCallPermissionRequest(RunItem):
    """A tool call waits for a human decision; ``data`` is a FunctionRequest."""

    type: str = "tool_call_permission_request"


@dataclass(slots=True)
class ToolCallQuestion(ToolCallPermissionRequest):
    """A running tool call asks the user something (an MCP server's elicitation): answered like an
    approval — approve with ``kwargs`` (the answer's fields), approve as is (the proposed answer:
    the form's defaults) or deny (decline). ``data`` is a FunctionRequest whose ``id`` is the
    question's (``<call id>:q<n>:<fingerprint>``) and whose ``confirmation_details`` hold the
    question (``kind``, ``call_id``, ``message``, ``schema``, ...)."""


@dataclass(slots=True)
class ToolOutputRunItem(RunItem):
    """A tool call finished; ``data`` is the FunctionOutput (``error`` set on failure)."""

    type: str = "tool_output"


@dataclass(slots=True)
class StepRunItem(RunItem):
    """A step was recorded; ``data`` is the StepOutput."""

    type: str = "step"


@dataclass(slots=True)
class FinalOutputItem(RunItem):
    """The run ended; ``data`` is the RunnerResult (a status dict for cancel events)."""

    type: str = "final_output"


@dataclass(slots=True)
class HandoffRunItem(RunItem):
    """The conversation passed to another agent; ``data`` is a ``treadle.handoffs.HandoffInfo``."""

    type: str = "handoff"


@dataclass(slots=True)
class GuardrailRunItem(RunItem):
    """A guardrail decided; ``data`` is a ``treadle.guardrails.GuardrailDecision``."""

    type: str = "guardrail"


@dataclass(slots=True)
class CompactionRunItem(RunItem):
    """The run's context was compacted before a model call; ``data`` is a
    ``treadle.compaction.CompactionInfo`` (what was replaced by what, tokens before and after)."""

    type: str = "compaction"


@dataclass(slots=True)
class RawResponsesStreamEvent:
    """A raw model event: a streamed delta, or the parsed planner output of a step."""

    input: Any = None
    data: Any = None
    type: str = "raw_response_event"
    error: str | None = None
    run_id: str | None = None
    seq: int = 0
    model_name: str | None = None
    usage: Any = None  # the model call's Usage (on the parsed reply)
    text: str | None = None  # the reply's text when it could not be parsed
    depth: int = 0  # 0: the run itself; 1: a run of an agent it called as a tool; …
    parent_run_id: str | None = None  # the calling run, for depth > 0
    agent: str | None = None  # the name of the agent speaking (after a handoff: the one handed to)
    finish_reason: str | None = None  # why the model stopped, as it said (on the parsed reply)
    model_ran: bool = True  # False: no model ran, the request left one possible reply (see ModelResponse)


@dataclass(slots=True)
class RunItemStreamEvent:
    """A named run event (``agent.step_complete``, …) carrying a RunItem."""

    name: str
    item: RunItem
    type: str = "run_item_stream_event"
    run_id: str | None = None
    seq: int = 0
    depth: int = 0  # 0: the run itself; 1: a run of an agent it called as a tool; …
    parent_run_id: str | None = None  # the calling run, for depth > 0
    agent: str | None = None  # the name of the agent speaking (after a handoff: the one handed to)


@dataclass(slots=True)
class QueueCompleteSentinel:
    """Marks the end of a stream (kept for seed compatibility)."""


StreamEvent = Union[RawResponsesStreamEvent, RunItemStreamEvent]
