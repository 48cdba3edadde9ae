"""The journal's records, typed: what a reader gets for each row of a run's journal.

A row's payload is the event's JSON exactly as it was streamed (``agent.step_complete``,
a model reply, …) or, for an approval decision, the decision. ``RECORD`` — one pydantic
``TypeAdapter`` over a union discriminated by the event's name — decodes a payload into its
record (``JournalEntry.record``) and ``encode`` gives a record back as the same JSON. Fields
the readers do not name are kept (``extra="allow"``): nothing is lost by decoding and
encoding again. The live events are written by ``event_json`` (pydantic-core's ``to_json``
of the event dataclass: the same serializer, the text the stream carries).
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Generic, Literal, TypeGuard, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, JsonValue, Tag, TypeAdapter
from pydantic_core import to_json

from .. import events as ev
from .._factories import new_dict, new_list
from ..types import MAX_INT_DIGITS, Function, StepOutput, ToolStatus, Usage, to_jsonable

__all__ = ["DECISION", "RAW", "RECORD", "Call", "CallComplete", "CallStart", "Compaction", "Decision", "End",
           "Guardrail",
           "Handoff", "ItemEvent", "OtherRecord", "PermissionRequest", "Record", "Reply", "Step", "StepComplete",
           "decode", "encode", "event_json"]

T = TypeVar("T")
RAW = "raw"
DECISION = "treadle.approval_decision"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Call(_Open):
    """A ``Function`` as journaled: a tool call the model chose, or its answer."""

    id: str | None = None
    thought: str | None = None
    name: str = ""
    args: list[JsonValue] = Field(default_factory=new_list)
    kwargs: dict[str, JsonValue] = Field(default_factory=new_dict)
    is_answer_final: bool | None = Field(None, alias="_is_answer_final")
    answer: JsonValue = Field(None, alias="_answer")

    def function(self) -> Function:
        return Function(id=self.id, thought=self.thought, name=self.name, args=list(self.args),
                        kwargs=dict(self.kwargs), _is_answer_final=self.is_answer_final, _answer=self.answer)


class UsageRecord(_Open):
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    tool_calls: int = 0
    cost_usd: float = 0.0
    determined_replies: int = 0

    def usage(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.requests, self.tool_calls, self.cost_usd,
                     self.determined_replies)


def _usage(u: UsageRecord | None) -> Usage | None:
    return None if u is None else u.usage()


class Step(_Open):
    """A ``StepOutput`` as journaled."""

    step: int = 0
    action: Call | None = None
    function: Call | None = None
    observation: JsonValue = None
    output: JsonValue = None
    status: ToolStatus = "success"
    usage: UsageRecord | None = None
    planner_prompt: str | None = None
    ctx: dict[str, JsonValue] | None = None

    def step_output(self) -> StepOutput:
        fn = self.function.function() if self.function is not None else None
        return StepOutput(step=self.step, action=fn, function=fn, observation=self.observation, output=self.output,
                          status=self.status, usage=_usage(self.usage))


class Output(_Open):
    """A ``FunctionOutput`` as journaled: a finished call."""

    name: str = ""
    input: Call | None = None
    parsed_input: JsonValue = None
    output: JsonValue = None
    error: str | None = None

    def _meta(self) -> dict[str, JsonValue]:
        meta = self.output.get("metadata") if isinstance(self.output, dict) else None
        return meta if isinstance(meta, dict) else {}

    @property
    def child_run_id(self) -> str | None:
        """The child run an agent called as a tool ran in (None for a plain tool)."""
        child = self._meta().get("child_run_id")
        return child if isinstance(child, str) else None

    @property
    def child_usage(self) -> Usage | None:
        u = self._meta().get("usage") if self.child_run_id else None
        return UsageRecord.model_validate(u).usage() if isinstance(u, dict) else None


class Request(_Open):
    """A ``FunctionRequest`` as journaled: a call waiting for approval."""

    id: str | None = None
    tool_name: str = ""
    tool: Call | None = None
    confirmation_details: JsonValue = None
    run_id: str | None = None


class Ending(_Open):
    """A run's ending: a ``RunnerResult`` (or a cancel's status) as journaled."""

    answer: JsonValue = None
    error: str | None = None
    error_type: str | None = None
    status: str | None = None
    usage: UsageRecord | None = None
    step_history: list[Step] | None = None
    run_id: str | None = None


class HandoffData(_Open):
    from_agent: str = ""
    to_agent: str = ""
    call_id: str | None = None
    step: int = 0


class GuardrailData(_Open):
    guardrail: str = ""
    kind: str = ""
    action: str = ""
    call_id: str | None = None
    step: int = 0


class CompactionData(_Open):
    """A ``treadle.compaction.CompactionInfo`` as journaled: how step N's messages were compacted."""

    step: int = 0
    reason: str | None = None
    tokens_before: int | None = 0
    messages_before: int = -1
    layout: list[JsonValue] = Field(default_factory=new_list)
    usage: UsageRecord | None = None


class Item(_Open, Generic[T]):
    """A ``RunItem`` as journaled; ``data`` typed by the event."""

    id: str | None = None
    type: str = ""
    data: T | None = None
    error: str | None = None
    created_at: float = 0.0


class ItemEvent(_Open, Generic[T]):
    """A ``RunItemStreamEvent`` as journaled; ``item.data`` typed by the subclass (the event's
    name tells which: ``Record``'s discriminator)."""

    TAG: ClassVar[str] = "other"
    name: str
    type: str = "run_item_stream_event"
    run_id: str | None = None
    seq: int = 0
    depth: int = 0
    parent_run_id: str | None = None
    agent: str | None = None
    item: Item[T]


class CallStart(ItemEvent[Call]):
    TAG = ev.TOOL_CALL_START


class CallComplete(ItemEvent[Output]):
    TAG = ev.TOOL_CALL_COMPLETE


class StepComplete(ItemEvent[Step]):
    TAG = ev.STEP_COMPLETE


class PermissionRequest(ItemEvent[Request]):
    TAG = ev.TOOL_PERMISSION_REQUEST


class End(ItemEvent[Ending]):
    """``agent.execution_complete`` (and ``runner.cancelled``): how the run ended."""

    TAG = "end"


class Handoff(ItemEvent[HandoffData]):
    TAG = ev.HANDOFF


class Guardrail(ItemEvent[GuardrailData]):
    TAG = ev.GUARDRAIL


class Compaction(ItemEvent[CompactionData]):
    TAG = ev.COMPACTION


class OtherEvent(ItemEvent[JsonValue]):
    """Any other run event (activity, cancel received, a plug-in's own)."""


class Reply(_Open):
    """The model's parsed reply of a step (a ``RawResponsesStreamEvent``, journal name ``raw``)."""

    TAG: ClassVar[str] = RAW
    type: Literal["raw_response_event"] = "raw_response_event"
    input: JsonValue = None  # the step
    data: JsonValue = None  # the calls (a list of Call) when the reply parsed
    error: str | None = None
    run_id: str | None = None
    seq: int = 0
    model_name: str | None = None
    usage: UsageRecord | None = None
    text: str | None = None
    depth: int = 0
    parent_run_id: str | None = None
    agent: str | None = None
    finish_reason: str | None = None
    model_ran: bool = True  # False: the request admitted one reply, no model ran (``ModelResponse.model_ran``)

    @property
    def step(self) -> int:
        return self.input if isinstance(self.input, int) else 0

    @property
    def calls(self) -> list[Call] | None:
        """The calls the model chose, or None when the reply did not parse into calls."""
        d = self.data
        if isinstance(d, list) and d and all(isinstance(x, dict) and "name" in x for x in d):
            return [Call.model_validate(x) for x in d]
        return None


class Decision(_Open):
    """An approval decision recorded for a suspended run (journal name ``treadle.approval_decision``)."""

    TAG: ClassVar[str] = DECISION
    call_id: str
    approve: bool
    always: bool = False
    kwargs: dict[str, JsonValue] | None = None
    reason: str | None = None


class OtherRecord(_Open):
    """A payload of no known shape (a store's own writer's)."""

    TAG: ClassVar[str] = "payload"


_ITEM_TAGS = {ev.TOOL_CALL_START: ev.TOOL_CALL_START, ev.TOOL_CALL_COMPLETE: ev.TOOL_CALL_COMPLETE,
              ev.STEP_COMPLETE: ev.STEP_COMPLETE, ev.TOOL_PERMISSION_REQUEST: ev.TOOL_PERMISSION_REQUEST,
              ev.EXECUTION_COMPLETE: "end", ev.CANCELLED: "end", ev.HANDOFF: ev.HANDOFF, ev.GUARDRAIL: ev.GUARDRAIL,
              ev.COMPACTION: ev.COMPACTION}


def _tag(v: object) -> str:
    """The discriminator: a run event's name, else what the payload is."""
    if isinstance(v, (ItemEvent, Reply, Decision, OtherRecord)):
        return v.TAG
    if not _is_object(v):
        return "payload"
    name = v.get("name")
    if isinstance(name, str) and isinstance(v.get("item"), dict):
        return _ITEM_TAGS.get(name, "other")
    if v.get("type") == "raw_response_event":
        return RAW
    if "call_id" in v and "approve" in v:
        return DECISION
    return "payload"


def _is_object(v: object) -> TypeGuard[dict[str, object]]:
    return isinstance(v, dict)


Record = Annotated[Union[
    Annotated[CallStart, Tag(ev.TOOL_CALL_START)], Annotated[CallComplete, Tag(ev.TOOL_CALL_COMPLETE)],
    Annotated[StepComplete, Tag(ev.STEP_COMPLETE)], Annotated[PermissionRequest, Tag(ev.TOOL_PERMISSION_REQUEST)],
    Annotated[End, Tag("end")], Annotated[Handoff, Tag(ev.HANDOFF)], Annotated[Guardrail, Tag(ev.GUARDRAIL)],
    Annotated[Compaction, Tag(ev.COMPACTION)],
    Annotated[OtherEvent, Tag("other")], Annotated[Reply, Tag(RAW)], Annotated[Decision, Tag(DECISION)],
    Annotated[OtherRecord, Tag("payload")]], Discriminator(_tag)]
RECORD: TypeAdapter[Record] = TypeAdapter(Record)


def decode(payload: object) -> Record:
    """The record of a payload (JSON bytes or text, or parsed); a payload of no known shape,
    or one that does not fit its shape, is an ``OtherRecord`` holding it as it is."""
    try:
        if isinstance(payload, (bytes, str)):
            return RECORD.validate_json(payload)
        return RECORD.validate_python(payload)
    except ValueError:
        return OtherRecord.model_validate(payload if isinstance(payload, dict) else {"value": payload})


def encode(record: Record) -> bytes:
    """A record as its JSON (the payload it was decoded from, key for key: a field the payload
    did not carry is left out, as when a journal written before the field existed is read)."""
    return RECORD.dump_json(record, by_alias=True, exclude_unset=True)


# an integer literal json.loads refuses to read back (longer than CPython's int <-> str limit)
_LONG_INT = re.compile(rb"(?<![0-9])[0-9]{%d}" % (MAX_INT_DIGITS + 1))


def event_json(event: object) -> bytes:
    """A live event as strict JSON (UTF-8, no NaN, readable back by json.loads). Never raises."""
    try:
        data = to_json(event, fallback=to_jsonable, serialize_unknown=True, inf_nan_mode="strings")
    except Exception:  # a cycle, too deep, bytes that are not UTF-8, a lone surrogate, a failing __repr__...
        data = None
    if data is None or (len(data) > MAX_INT_DIGITS and _LONG_INT.search(data) is not None):
        data = to_json(to_jsonable(event))  # the careful path: every such value made JSON-safe
    return data
