"""The AG-UI face of ``treadle serve``: ``POST /agui`` (the first agent) or ``POST /agui/{agent}``
takes AG-UI's ``RunAgentInput`` and streams AG-UI events (SSE, ``ag_ui``'s EventEncoder) mapped
from the run's events. See docs/ag-ui.md.

- A call that needs approval ends the AG-UI run with ``RUN_FINISHED`` whose outcome is an
  ``interrupt`` (one per waiting call, id ``approval:<run>:<call>``); the next ``RunAgentInput``
  answering them in ``resume`` decides the calls and streams the same treadle run on — live, or
  from the journal after a restart.
- Every event has an SSE id (``<seq>.<k>``: the k-th AG-UI event of the run's event ``seq``);
  posting the same input again (same ``runId``, or the same ``resume``) with ``Last-Event-ID``
  sends what came after it, from memory or the journal; without it, the whole run again."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Union

from ag_ui.core import (
    AssistantMessage,
    BaseEvent,
    FunctionCall,
    Interrupt,
    Message,
    MessagesSnapshotEvent,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    StateSnapshotEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    TextPart,
    TokenUsage,
    ToolCall,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
    ToolMessage,
)
from ag_ui.core.events import RunFinishedCancelledOutcome, RunFinishedInterruptOutcome, RunFinishedSuccessOutcome
from ag_ui.encoder import EventEncoder
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import JsonValue, ValidationError

from ...store.records import CallComplete, CallStart, Output, PermissionRequest, Reply, StepComplete, decode
from ...store.records import Request as CallRequest
from ..hub import RunHub, served_by
from ._common import (
    ID_RE,
    Decided,
    Stop,
    Turn,
    answer_text,
    decide_calls,
    first_error,
    follow,
    history_text,
    start_run,
    usage_of,
    waiting_calls,
)

__all__ = ["mount_agui", "run_error_body"]

LAST_ID = re.compile(r"^([0-9]{1,15})\.([0-9]{1,9})$")
INTERRUPT = re.compile(r"^approval:([A-Za-z0-9_.\-]{1,128}):(.{1,128})$")
ANSWER_SCHEMA = {"type": "object", "properties": {"approved": {"type": "boolean"}, "reason": {"type": "string"}},
                 "required": ["approved"]}


def run_error_body(status: int, message: str, code: str | None = None) -> dict[str, JsonValue]:
    """A refused request's body: AG-UI's RUN_ERROR event, as JSON."""
    return RunErrorEvent(message=message, code=code or str(status)).model_dump(by_alias=True, mode="json")


def _refuse(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse(run_error_body(status, message, code), status_code=status)


Content = Union[str, Sequence[object], Mapping[str, object], None]  # a message's, by its kind


def _text(content: Content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(p.text for p in content if isinstance(p, TextPart))
    return ""  # an activity's structured content, or none


def conversation(input: RunAgentInput) -> tuple[str, str]:
    """The run's input (the last user message) and history (earlier messages, the context)."""
    messages = list(input.messages)
    if not messages or messages[-1].role != "user":
        raise ValueError("the last message must be the user's (or send `resume` to answer interrupts)")
    text = _text(messages[-1].content).strip()
    if not text:
        raise ValueError("the last user message is empty")
    turns = [Turn("system", f"{c.description}: {c.value}") for c in input.context or ()]
    for m in messages[:-1]:
        body = _text(m.content)
        calls = m.tool_calls if isinstance(m, AssistantMessage) else None
        if calls:
            body = f"{body} (called {', '.join(f'{c.function.name}({c.function.arguments})' for c in calls)})".strip()
        turns.append(Turn(m.role, body))
    return text, history_text(turns)


class Mapper:
    """One AG-UI run's events from the treadle run's events (deterministic: the same events
    give the same AG-UI events, with the same ids, on every replay)."""

    def __init__(self, input: RunAgentInput, run_id: str) -> None:
        self.input = input
        self.run_id = run_id
        self.started: set[str] = set()
        self.step_open: str | None = None
        self.steps = 0
        self.messages: list[Message] = list(input.messages)
        self.calls: dict[str, ToolCall] = {}

    def state(self, status: str) -> StateSnapshotEvent | None:
        base = self.input.state if isinstance(self.input.state, dict) else {} if self.input.state is None else None
        if base is None:
            return None
        return StateSnapshotEvent(snapshot={**base, "treadle": {"run_id": self.run_id, "status": status,
                                                                "steps": self.steps}})

    def _open_step(self) -> list[BaseEvent]:
        if self.step_open is not None:
            return []
        self.steps += 1
        self.step_open = f"step {self.steps}"
        return [StepStartedEvent(step_name=self.step_open)]

    def _close_step(self) -> list[BaseEvent]:
        if self.step_open is None:
            return []
        name, self.step_open = self.step_open, None
        return [StepFinishedEvent(step_name=name)]

    def _call(self, call_id: str, name: str, kwargs: object) -> list[BaseEvent]:
        if call_id in self.started:
            return []
        self.started.add(call_id)
        args = json.dumps(kwargs or {}, ensure_ascii=False)
        message_id = f"call-{call_id}"
        call = ToolCall(id=call_id, function=FunctionCall(name=name, arguments=args))
        self.calls[call_id] = call
        self.messages.append(AssistantMessage(id=message_id, tool_calls=[call]))
        return [ToolCallStartEvent(tool_call_id=call_id, tool_call_name=name, parent_message_id=message_id),
                ToolCallArgsEvent(tool_call_id=call_id, delta=args), ToolCallEndEvent(tool_call_id=call_id)]

    def event(self, env: dict[str, JsonValue]) -> list[BaseEvent]:
        r = decode(env.get("event"))
        if isinstance(r, Reply):
            return self._open_step() if isinstance(r.data, list) else []
        if isinstance(r, PermissionRequest):
            req = r.item.data or CallRequest()
            return [*self._open_step(), *self._call(str(req.id), str(req.tool_name),
                                                   req.tool.kwargs if req.tool is not None else None)]
        if isinstance(r, CallStart):
            c = r.item.data
            return [*self._open_step(), *self._call(str(r.item.id), str(c.name if c else None),
                                                   c.kwargs if c else None)]
        if isinstance(r, CallComplete):
            call_id = str(r.item.id)
            o = r.item.data or Output()
            out = [*self._open_step(), *self._call(call_id, str(o.name), o.input.kwargs if o.input else None)]
            output = o.output
            content = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, default=str)
            err = o.error or r.item.error
            message_id = f"result-{call_id}"
            self.messages.append(ToolMessage(id=message_id, tool_call_id=call_id, content=content,
                                             error=err if isinstance(err, str) else None))
            return [*out, ToolCallResultEvent(message_id=message_id, tool_call_id=call_id, content=content,
                                              role="tool")]
        if isinstance(r, StepComplete):
            return self._close_step()
        return []

    def end(self, stop: Stop) -> list[BaseEvent]:
        out = self._close_step()
        thread, run = self.input.thread_id, self.input.run_id
        if stop.status == "waiting_for_approval":
            interrupts = []
            for p in stop.pending:
                out += self._call(str(p["call_id"]), str(p["tool_name"]), p.get("kwargs"))
                interrupts.append(Interrupt(
                    id=f"approval:{self.run_id}:{p['call_id']}", reason="tool_approval", tool_call_id=str(p["call_id"]),
                    message=f"Allow {p['tool_name']}({json.dumps(p.get('kwargs') or {}, ensure_ascii=False)})?",
                    response_schema=ANSWER_SCHEMA,
                    metadata={"treadle": {"run_id": self.run_id, "tool_name": p["tool_name"],
                                          "kwargs": p.get("kwargs") or {}}}))
            out += [e for e in (self.state("waiting_for_approval"),) if e is not None]
            out.append(RunFinishedEvent(thread_id=thread, run_id=run,
                                        outcome=RunFinishedInterruptOutcome(interrupts=interrupts)))
            return out
        if stop.status in ("error", "not_live"):
            message = (f"run {self.run_id} stopped when its server did: POST /runs/{self.run_id}/resume continues it"
                       if stop.status == "not_live" else answer_text(stop.result))
            return [*out, RunErrorEvent(message=message, code=stop.status)]
        text = answer_text(stop.result)
        message_id = f"answer-{self.run_id}"
        out += [TextMessageStartEvent(message_id=message_id, role="assistant"),
                TextMessageContentEvent(message_id=message_id, delta=text or " "),
                TextMessageEndEvent(message_id=message_id)]
        self.messages.append(AssistantMessage(id=message_id, content=text))
        out.append(MessagesSnapshotEvent(messages=self.messages))
        out += [e for e in (self.state(stop.status),) if e is not None]
        tokens_in, tokens_out = usage_of(stop.result)
        usage = [TokenUsage(input_tokens=tokens_in, output_tokens=tokens_out, total_tokens=tokens_in + tokens_out)]
        if stop.status == "cancelled":
            out.append(RunFinishedEvent(thread_id=thread, run_id=run, outcome=RunFinishedCancelledOutcome(),
                                        usage=usage))
        else:
            out.append(RunFinishedEvent(thread_id=thread, run_id=run, result=stop.result.get("answer"),
                                        outcome=RunFinishedSuccessOutcome(), usage=usage))
        return out


def _resume_entries(input: RunAgentInput) -> tuple[str, list[tuple[str, bool, str | None]]]:
    """The treadle run the input's ``resume`` answers, and each call's decision (ValueError)."""
    run_ids = set()
    decisions = []
    for entry in input.resume or ():
        m = INTERRUPT.match(entry.interrupt_id)
        if m is None:
            raise ValueError(f"unknown interrupt {entry.interrupt_id!r}")
        run_ids.add(m.group(1))
        payload = entry.payload
        approved = entry.status == "resolved" and (payload is True or (isinstance(payload, dict)
                                                                      and payload.get("approved") is True))
        reason = payload.get("reason") if isinstance(payload, dict) and isinstance(payload.get("reason"), str) else None
        if not approved and reason is None:
            reason = "cancelled by the user" if entry.status == "cancelled" else "denied by the user"
        decisions.append((m.group(2), approved, reason))
    if len(run_ids) != 1:
        raise ValueError("resume must answer the interrupts of one run")
    return run_ids.pop(), decisions


def _request_key(hub: RunHub, run_id: str, call_ids: set[str]) -> tuple[int, int]:
    """Where an AG-UI run continuing ``run_id`` after these calls' approval starts: after the
    last of their approval requests (the same on every replay)."""
    live = hub.get(run_id)
    frames = live.frames if live is not None else hub.frames(run_id, 0)
    key = (0, 0)
    for f in frames:
        if f.name == "agent.tool_permission_request" and not f.depth:
            envelope: dict[str, JsonValue] = json.loads(f.data)
            r = decode(envelope.get("event"))
            if isinstance(r, PermissionRequest) and r.item.data is not None and r.item.data.id in call_ids:
                key = max(key, f.key)
    return key


def mount_agui(app: FastAPI, hub: RunHub) -> None:
    router = APIRouter(include_in_schema=False)

    async def run(request: Request, agent: str) -> Response:
        if agent not in hub.agents:
            return _refuse(404, f"no agent named {agent!r}; served: {', '.join(hub.agents)}", "unknown_agent")
        try:
            input = RunAgentInput.model_validate_json(await request.body(), strict=True)
        except ValidationError as e:
            return _refuse(422, f"not an AG-UI RunAgentInput: {first_error(e)[1]}", "invalid_input")
        last = request.headers.get("last-event-id")
        skip = (0, -1)
        if last:
            m = LAST_ID.match(last)
            if m is None:
                return _refuse(422, "Last-Event-ID is not an id of this stream (<seq>.<k>)", "invalid_input")
            skip = (int(m.group(1)), int(m.group(2)))
        try:
            run_id, origin = await _run_for(hub, agent, input)
        except ValueError as e:
            return _refuse(422, str(e), "invalid_input")
        except Decided as e:
            return _refuse(e.status, str(e), "not_continued")
        except OverflowError as e:
            return _refuse(429, str(e), "too_many_runs")
        return StreamingResponse(_events(hub, input, run_id, origin, skip),
                                 media_type=EventEncoder().get_content_type(),
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                          "X-Treadle-Run-Id": run_id})

    @router.post("/agui")
    async def agui_default(request: Request) -> Response:
        return await run(request, hub.default_agent)

    @router.post("/agui/{agent}")
    async def agui_agent(agent: str, request: Request) -> Response:
        return await run(request, agent)

    app.include_router(router)


async def _run_for(hub: RunHub, agent: str, input: RunAgentInput) -> tuple[str, tuple[int, int]]:
    """The treadle run this input streams (continued, reconnected to, or new) and the key after
    which its AG-UI run's events begin."""
    if input.resume:
        run_id, decisions = _resume_entries(input)
        pending = {str(p["call_id"]) for p in await waiting_calls(hub, run_id)}
        asked = {c for c, _, _ in decisions}
        if asked & pending:
            if pending - asked:
                raise ValueError(f"resume must answer every waiting call of run {run_id}: "
                                 f"{', '.join(sorted(pending - asked))}")
            origin = await asyncio.to_thread(_request_key, hub, run_id, asked)
            await decide_calls(hub, run_id, decisions)
            return run_id, origin
        if hub.get(run_id) is None and await asyncio.to_thread(hub.store.get_run, run_id) is None:
            raise Decided(404, f"no run {run_id!r}")
        return run_id, await asyncio.to_thread(_request_key, hub, run_id, asked)  # decided already: a reconnect
    if ID_RE.match(input.run_id):
        rid = input.run_id
        record = None if hub.get(rid) is not None else await asyncio.to_thread(hub.store.get_run, rid)
        live = hub.get(rid)  # read again after the journal: a request for the same run may have started it
        if live is not None or record is not None:  # this run exists: a reconnect
            owner = live.agent_name if live is not None else served_by(record)[0] if record is not None else None
            if owner != agent:
                raise Decided(409, f"run {rid} is a run of agent {owner!r}, not {agent!r}")
            return rid, (0, 0)
    text, history = conversation(input)
    live = start_run(hub, agent, text, history, run_id=input.run_id if ID_RE.match(input.run_id) else None)
    return live.run_id, (0, 0)


async def _events(hub: RunHub, input: RunAgentInput, run_id: str, origin: tuple[int, int],
                  skip: tuple[int, int]) -> AsyncIterator[str]:
    encoder = EventEncoder()
    mapper = Mapper(input, run_id)
    yield encoder.encode(RunStartedEvent(thread_id=input.thread_id, run_id=input.run_id))

    def frames(key: tuple[int, int], events: list[BaseEvent]) -> str:
        out = []
        for k, e in enumerate(events):
            if (key[0], k) > skip:
                out.append(f"id: {key[0]}.{k}\n{encoder.encode(e)}")
        return "".join(out)

    start_state = mapper.state("running")
    if start_state is not None:
        head = frames((origin[0], 0), [start_state])
        if head:
            yield head
    last = (origin[0], 1)
    try:
        async for item in follow(hub, run_id, origin):
            if isinstance(item, Stop):
                events = mapper.end(item)
                # the ending's events carry ids after the last event's
                out = []
                for k, e in enumerate(events, start=last[1] + 1):
                    if (last[0], k) > skip:
                        out.append(f"id: {last[0]}.{k}\n{encoder.encode(e)}")
                yield "".join(out)
                return
            if item is None:
                yield ": keep-alive\n\n"  # an SSE comment: AG-UI clients read data lines only
                continue
            key, env = item
            events = mapper.event(env)
            last = (key[0], len(events))
            text = frames(key, events)
            if text:
                yield text
    except Exception as e:  # the stream must end with the protocol's error, never a cut connection
        yield encoder.encode(RunErrorEvent(message=f"{type(e).__name__}: {e}", code="server_error"))

