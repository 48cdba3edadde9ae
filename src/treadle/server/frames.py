"""A live run's stream, as its SSE readers and its trace view get it: the frames (each event's
envelope as JSON, clipped when too big), where a reader resumes, and the light typed records
(``store.records``) a live run keeps of its events for the trace view."""

from __future__ import annotations

import json
from typing import NamedTuple, TypedDict

from pydantic import JsonValue

from .. import events as ev
from ..store.base import JournalEntry
from ..store.records import (
    Call,
    CallComplete,
    CallStart,
    Compaction,
    CompactionData,
    End,
    Ending,
    Item,
    Output,
    PermissionRequest,
    Record,
    Reply,
    Request,
    Step,
    StepComplete,
)
from ..types import to_jsonable

__all__ = ["MAX_FRAME_BYTES", "MAX_ITEMS", "MAX_TEXT", "Envelope", "Frame", "clip", "clipped", "envelope_from_entry",
           "event_key", "frame", "light", "suspended", "suspension"]

MAX_FRAME_BYTES = 256 * 1024  # an event bigger than this is sent with its long texts clipped
MAX_TEXT = 16 * 1024  # characters of one text kept in a clipped event
MAX_ITEMS = 500  # items of one list kept in a clipped event


def clip(value: JsonValue) -> JsonValue:
    """A JSON value with long texts and lists cut (for the event stream: a browser showing a
    10 MB tool output helps nobody; the journal keeps the whole value)."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else f"{value[:MAX_TEXT]}… [clipped {len(value) - MAX_TEXT} characters]"
    if isinstance(value, dict):
        return {k: clip(v) for k, v in value.items()}
    if isinstance(value, list):
        kept = [clip(v) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            kept.append(f"… [clipped {len(value) - MAX_ITEMS} items]")
        return kept
    return value


def frame(seq: int, ts: float, name: str, body: bytes | None, event: JsonValue) -> bytes:
    """One SSE data line: the envelope ``{"seq", "ts", "name", "event"}`` as JSON, where
    ``body`` is the event's JSON (or ``event`` a JSON-ready value) — clipped when too big."""
    if body is None:
        body = json.dumps(event, separators=(",", ":")).encode()
    body = clipped(body)
    return b'{"seq":%d,"ts":%r,"name":%s,"event":%s}' % (seq, ts, json.dumps(name).encode(), body)


def clipped(body: bytes) -> bytes:
    if len(body) > MAX_FRAME_BYTES:
        return json.dumps(clip(json.loads(body)), separators=(",", ":")).encode()
    return body


class Envelope(TypedDict):
    """One event as the SSE stream sends it: ``{"seq", "ts", "name", "event"}`` (the event's JSON)."""

    seq: int
    ts: float
    name: str
    event: JsonValue


def envelope_from_entry(entry: JournalEntry) -> Envelope:
    payload: JsonValue = entry.payload  # read back: the event's JSON, parsed or as text
    if isinstance(payload, str):
        payload = json.loads(payload)
    elif isinstance(entry.payload, bytes):
        payload = json.loads(entry.payload)
    return {"seq": entry.seq, "ts": entry.created_at, "name": entry.name, "event": payload}


def suspension(entry: JournalEntry) -> bool:
    """The end of a run that stopped to wait for an approval (not its real end: the run
    goes on once decided), which readers of the stream are not shown."""
    return entry.name == ev.EXECUTION_COMPLETE and suspended(entry.record)


def suspended(record: Record) -> bool:
    """A run's ending that is a suspension: it waits for an approval in the journal."""
    return isinstance(record, End) and record.name == ev.EXECUTION_COMPLETE and record.item.data is not None \
        and record.item.data.status == "waiting_for_approval"


class Frame(NamedTuple):
    """One SSE message of a live run's stream. ``key`` orders them: ``(seq, 0)`` for the run's
    own event ``seq``; ``(seq, k)`` for the k-th event of a child run (an agent called as a
    tool) that came after it, whose SSE id is ``"seq.k"``."""

    key: tuple[int, int]
    id: str
    name: str
    data: bytes
    run_id: str | None = None  # a child's event: the child run (its own seq is ``child_seq``)
    child_seq: int = 0
    depth: int = 0


def event_key(last_event_id: str | None, after: int = 0) -> tuple[int, int]:
    """Where a reader resumes: after ``Last-Event-ID`` (``"7"`` or ``"7.2"``) or ``after``."""
    key = (after, 0)
    if last_event_id:
        seq, _, sub = last_event_id.partition(".")
        key = max(key, (int(seq), int(sub or 0)))
    return key


def _call(name: str, call_id: str | None) -> Call:
    return Call.model_validate({"name": name, "id": call_id})


def light(record: Record) -> Record:
    """What the trace view needs of an event's record, without the prompts, histories and
    outputs (a live run's are kept in memory while it is among the last ``KEEP_FINISHED``)."""
    if isinstance(record, Reply):
        calls = record.calls
        return Reply(input=record.input, error=record.error, usage=record.usage,
                     data=[{"name": c.name, "id": c.id} for c in calls] if calls is not None else None)
    if isinstance(record, CallStart):
        c = record.item.data
        return CallStart(name=record.name, item=Item[Call](id=record.item.id, error=record.item.error,
                                         data=_call(c.name, c.id) if c is not None else None))
    if isinstance(record, CallComplete):
        o = record.item.data
        fn = o.input if o is not None else None
        return CallComplete(name=record.name, item=Item[Output](id=record.item.id, error=record.item.error, data=Output(
            name=o.name, error=o.error, input=_call(fn.name, fn.id) if fn is not None else None)
            if o is not None else None))
    if isinstance(record, PermissionRequest):
        r = record.item.data
        return PermissionRequest(name=record.name, item=Item[Request](
            id=record.item.id, error=record.item.error,
            data=Request(id=r.id, tool_name=r.tool_name) if r is not None else None))
    if isinstance(record, StepComplete):
        st = record.item.data
        fn = st.function if st is not None else None
        return StepComplete(name=record.name, item=Item[Step](id=record.item.id, error=record.item.error, data=Step(
            step=st.step, status=st.status, usage=st.usage,
            function=_call(fn.name, fn.id) if fn is not None else None) if st is not None else None))
    if isinstance(record, End):
        e = record.item.data
        return End(name=record.name, item=Item[Ending](id=record.item.id, error=record.item.error, data=Ending(
            status=e.status, error=e.error, error_type=e.error_type, usage=e.usage) if e is not None else None))
    if isinstance(record, Compaction) and record.item.data is not None:  # what was replaced by what, not
        kept = {k: clip(to_jsonable(v)) for k, v in record.item.data.model_dump().items() if k != "layout"}  # the
        return Compaction(name=record.name, item=Item[CompactionData](  # new messages themselves
            id=record.item.id, error=record.item.error, data=CompactionData.model_validate(kept)))
    return record  # a guardrail's or a handoff's decision: small
