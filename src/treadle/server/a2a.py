"""The A2A face of ``treadle serve``: each served agent speaks the Agent2Agent protocol
(JSON-RPC, with a2a-sdk's dispatcher) at ``/a2a/{agent}``, with its agent card at
``/a2a/{agent}/.well-known/agent-card.json``. See docs/a2a.md.

A task is a run: the task id is the run id, its state the run's status, its updates a
mapping of the run's events, so a task lives in the journal and survives a restart. An
approval request is the task's ``input-required`` state; the next message on the task
decides it (``approve``; ``deny: reason``; or a data part ``{"decision": ...}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Union

from a2a.helpers.proto_helpers import get_data_parts, get_text_parts, new_data_part, new_text_part
from a2a.server.context import ServerCallContext as Ctx
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Artifact,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    HTTPAuthSecurityScheme,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SecurityRequirement,
    SecurityScheme,
    SendMessageRequest,
    StringList,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    ExtendedAgentCardNotConfiguredError,
    InvalidParamsError,
    InvalidRequestError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from pydantic import JsonValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from .. import events as ev
from .._edits import InvalidEdit
from .._json import is_list, is_object
from ..errors import TreadleError
from ..store.base import RunRecord
from ..store.records import CallComplete, CallStart, PermissionRequest, decode
from ..store.records import Request as CallRequest
from .bodies import PendingApproval, RunSummary
from .hub import TERMINAL, Frame, LiveRun, RunHub, served_by

__all__ = ["CARD_PATH", "PREFIX", "agent_card", "mount_a2a", "parse_decision"]

PREFIX = "/a2a"
CARD_PATH = "/.well-known/agent-card.json"
MAX_INPUT = 100_000  # characters, as POST /runs
ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")  # a context id becomes a chat session id

STATES = {"running": TaskState.TASK_STATE_WORKING, "waiting_for_approval": TaskState.TASK_STATE_INPUT_REQUIRED,
          "success": TaskState.TASK_STATE_COMPLETED, "error": TaskState.TASK_STATE_FAILED,
          "max_steps": TaskState.TASK_STATE_FAILED, "cancelled": TaskState.TASK_STATE_CANCELED}
APPROVE = {"approve", "approved", "yes", "y", "ok", "allow", "go"}
DENY = {"deny", "denied", "no", "n", "reject", "stop"}

Endpoint = Callable[[Request], Awaitable[Response]]
Update = Union[Message, Task, TaskStatusUpdateEvent, TaskArtifactUpdateEvent]  # what a task's stream sends


# ---------------------------------------------------------------------- mounting
def mount_a2a(app: Starlette, hub: RunHub, *, token: str | None) -> None:
    """Add, per served agent, its card route and its JSON-RPC endpoint (outside the OpenAPI
    document: the A2A schema is the protocol's own)."""
    for name in hub.agents:
        dispatcher = JsonRpcDispatcher(A2AHandler(hub, name), enable_v0_3_compat=True, shutdown_grace_period=2)
        app.router.routes.append(Route(f"{PREFIX}/{name}", _rpc_endpoint(dispatcher), methods=["POST"]))
        app.router.routes.append(Route(f"{PREFIX}/{name}{CARD_PATH}", _card_endpoint(hub, name, token),
                                       methods=["GET"]))
    # the server's own well-known card: its default agent's (a client given just the server's address)
    app.router.routes.append(Route(CARD_PATH, _card_endpoint(hub, hub.default_agent, token), methods=["GET"]))


def _rpc_endpoint(dispatcher: JsonRpcDispatcher) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:  # a body that is not UTF-8 JSON is the protocol's parse error, not an internal one
            json.loads(await request.body())
        except ValueError as e:
            return JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": f"{e}"}})
        return await dispatcher.handle_requests(request)

    return endpoint


def _card_endpoint(hub: RunHub, name: str, token: str | None) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONResponse(agent_card_to_dict(agent_card(hub, name, f"{base}{PREFIX}/{name}", token=bool(token))))

    return endpoint


def agent_card(hub: RunHub, name: str, url: str, *, token: bool) -> AgentCard:
    """The card of served agent ``name``: a skill per tool, the bearer scheme when the server has a token."""
    agent = hub.agents[name]
    skills = [AgentSkill(id=t.name, name=t.name, description=(getattr(t, "description", "") or t.name)[:1000],
                         tags=["tool", "approval" if getattr(t, "require_approval", False) else "auto"])
              for t in agent.tools]
    description = agent.instructions or f"treadle agent {name!r}"
    if not skills:
        skills = [AgentSkill(id=name, name=name, description=description, tags=["chat"])]
    card = AgentCard(name=name, description=description, version=__version__,
                     supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")],
                     capabilities=AgentCapabilities(streaming=True, push_notifications=False),
                     default_input_modes=["text/plain", "application/json"],
                     default_output_modes=["text/plain", "application/json"], skills=skills)
    if token:
        card.security_schemes["bearer"].CopyFrom(SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(
            scheme="bearer", description="the server's token (treadle serve --token)")))
        card.security_requirements.append(SecurityRequirement(schemes={"bearer": StringList()}))
    return card


# ---------------------------------------------------------------------- messages
def text_of(message: Message) -> str:
    """The run's input: the text parts, then the data parts as JSON."""
    parts = list(get_text_parts(message.parts))
    parts += [json.dumps(d) for d in get_data_parts(message.parts)]
    return "\n".join(p for p in parts if p.strip())


@dataclass(frozen=True)
class Verdict:
    """A decision a message on an ``input-required`` task gives."""

    decision: Literal["approve", "deny", "edit"]
    kwargs: dict[str, JsonValue] | None = None
    reason: str | None = None
    always: bool = False
    call_id: str | None = None


def parse_decision(message: Message) -> Verdict:
    """The decision a message on an ``input-required`` task takes: a data part
    ``{"decision": "approve"|"deny"|"edit", "kwargs"?, "reason"?, "always"?, "call_id"?}``, or text:
    ``approve`` / ``yes`` approves, ``deny`` / ``no`` (``deny: reason``) denies, any other text
    denies with that text as the reason (the model reads it): nothing runs without an approval."""
    for data in get_data_parts(message.parts):
        if not is_object(data):
            continue
        decision = data.get("decision")
        if isinstance(decision, str) and decision in ("approve", "deny", "edit"):
            kwargs = _ints(data.get("kwargs"))
            if decision == "edit" and not isinstance(kwargs, dict):
                raise InvalidParamsError(message="an edit needs kwargs: the arguments the tool runs with")
            reason, call_id = data.get("reason"), data.get("call_id")
            return Verdict(decision, kwargs if isinstance(kwargs, dict) else None,
                           str(reason) if reason is not None else None, data.get("always") is True,
                           str(call_id) if call_id is not None else None)
    text = "\n".join(get_text_parts(message.parts)).strip()
    word, rest = [*re.split(r"[\s:,.!]+", text, maxsplit=1), ""][:2] if text else ("", "")
    if word.lower() in APPROVE:
        return Verdict("approve")
    reason = rest.strip() if word.lower() in DENY else text
    return Verdict("deny", reason=reason or None)


def _ints(value: object) -> JsonValue:
    """A data part's JSON with whole floats back to ints (its numbers are doubles)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if is_object(value):
        return {k: _ints(v) for k, v in value.items()}
    if is_list(value):
        return [_ints(v) for v in value]
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _agent_message(task_id: str, context_id: str, mid: str, text: str, data: JsonValue = None) -> Message:
    parts = [new_text_part(text)]
    if data is not None:
        parts.append(new_data_part(data))
    return Message(message_id=mid, task_id=task_id, context_id=context_id, role=Role.ROLE_AGENT, parts=parts)


def _call_text(tool_name: str | None, kwargs: object) -> str:
    return f"{tool_name}({json.dumps(kwargs, default=str)[:2000]})"


def _question(call: PendingApproval) -> str:
    return (f"{_call_text(call.tool_name, call.kwargs)} needs approval: reply `approve`, "
            "`deny: <reason>`, or a data part {\"decision\": \"edit\", \"kwargs\": {...}}")


def _pending_part(call: PendingApproval) -> JsonValue:
    """A waiting call as the data part of the task's question (the API's pending approval)."""
    return call.model_dump(mode="json")


def _answer_part(answer: JsonValue) -> Part:
    return new_text_part(answer) if isinstance(answer, str) else new_data_part(json.loads(json.dumps(answer,
                                                                                                     default=str)))


def task_of(summary: RunSummary) -> Task:
    """A run's summary (the API's RunSummary) as an A2A task."""
    run_id = summary.run_id
    context_id = summary.session_id or run_id
    status = summary.status or "running"
    task = Task(id=run_id, context_id=context_id,
                status=TaskStatus(state=STATES.get(status, TaskState.TASK_STATE_WORKING)))
    task.history.append(Message(message_id=f"{run_id}-input", task_id=run_id, context_id=context_id,
                                role=Role.ROLE_USER, parts=[new_text_part(summary.input or "")]))
    pending = summary.pending_approvals
    if status == "waiting_for_approval" and pending:
        task.status.message.CopyFrom(_agent_message(run_id, context_id, f"{run_id}-ask-{pending[0].call_id}",
                                                    _question(pending[0]), _pending_part(pending[0])))
    elif status in ("error", "max_steps", "cancelled"):
        task.status.message.CopyFrom(_agent_message(run_id, context_id, f"{run_id}-end",
                                                    summary.error or status))
    elif status == "running" and not summary.live:
        task.status.message.CopyFrom(_agent_message(run_id, context_id, f"{run_id}-stopped",
                                                    "the server stopped mid-run: send a message on this task "
                                                    "to resume it"))
    if status == "success":
        task.artifacts.append(Artifact(artifact_id=f"{run_id}-answer", name="answer",
                                       parts=[_answer_part(summary.answer)]))
    return task


# ---------------------------------------------------------------------- the handler
class A2AHandler(RequestHandler):
    """The A2A requests of one served agent, answered from the run hub and the journal."""

    def __init__(self, hub: RunHub, agent: str) -> None:
        self.hub = hub
        self.agent = agent

    # ------------------------------------------------------------------ reading
    async def _summary(self, run_id: str) -> RunSummary:
        hub = self.hub
        if run_id in hub.live:
            summary = hub.summary(run_id, await asyncio.to_thread(hub.store.get_run, run_id))
        else:  # reads the journal (pending approvals, who holds the run): off the loop
            summary = await asyncio.to_thread(lambda: hub.summary(run_id, hub.store.get_run(run_id)))
        if summary is None or summary.get("agent") != self.agent or summary.get("parent_run_id"):
            raise TaskNotFoundError(message=f"no task {run_id!r} of agent {self.agent!r}")
        return RunSummary.model_validate(summary)

    async def _task(self, run_id: str) -> Task:
        return task_of(await self._summary(run_id))

    async def on_get_task(self, params: GetTaskRequest, context: Ctx) -> Task | None:
        task = await self._task(params.id)
        if params.HasField("history_length") and params.history_length >= 0:
            del task.history[:max(0, len(task.history) - params.history_length)]
        return task

    async def on_list_tasks(self, params: ListTasksRequest, context: Ctx) -> ListTasksResponse:
        raise UnsupportedOperationError(message="tasks/list is not served; GET /runs lists runs")

    # ------------------------------------------------------------------ sending
    async def _begin(self, params: SendMessageRequest) -> tuple[LiveRun, tuple[int, int], str]:
        """Start the run a new message asks for, or take the decision a message on an
        input-required task gives: the live run, the frame key to follow it from, its id."""
        message = params.message
        if message.task_id:
            return await self._continue(message)
        text = text_of(message)
        if not text:
            raise InvalidParamsError(message="the message has no text or data part")
        if len(text) > MAX_INPUT:
            raise InvalidParamsError(message=f"the message is over {MAX_INPUT} characters")
        session = message.context_id or None
        if session is not None and not ID.match(session):
            raise InvalidParamsError(message="contextId must be 1-128 letters, digits or _.:-")
        try:
            live = self.hub.start(text, session_id=session, agent=self.agent)
        except OverflowError as e:
            raise InvalidRequestError(message=f"busy: {e}") from None
        except TreadleError as e:
            raise InvalidParamsError(message=str(e)) from None
        return live, (0, 0), live.run_id

    async def _continue(self, message: Message) -> tuple[LiveRun, tuple[int, int], str]:
        run_id = message.task_id
        summary = await self._summary(run_id)
        status = summary.status
        hub = self.hub
        if status in TERMINAL:
            raise UnsupportedOperationError(message=f"task {run_id} has ended ({status}): start a new task")
        if status == "running" and summary.live:
            raise UnsupportedOperationError(message=f"task {run_id} is working: wait for it, or cancel it")
        record = await asyncio.to_thread(hub.store.get_run, run_id)
        if record is None:  # started, not journaled yet
            raise UnsupportedOperationError(message=f"task {run_id} is starting: wait for it")
        if status == "running":  # stopped mid-run (the server was killed): continue it
            return await self._resume(record)
        pending = summary.pending_approvals
        decision = parse_decision(message)
        call_id = decision.call_id or (pending[0].call_id if pending else None)
        if call_id is None or call_id not in {p.call_id for p in pending}:
            raise InvalidParamsError(message=f"task {run_id} has no pending approval for call {call_id!r}")
        live = hub.live.get(run_id)
        if live is not None:
            key = live.frames[-1].key if live.frames else (0, 0)
            try:
                ok = hub.decide(run_id, call_id, decision.decision, reason=decision.reason,
                                kwargs=decision.kwargs, always=decision.always)
            except (InvalidEdit, ValueError, TreadleError) as e:
                raise InvalidParamsError(message=f"the edited arguments are not valid: {e}") from None
            if not ok:
                raise InvalidParamsError(message=f"task {run_id} has no pending approval for call {call_id!r}")
            return live, key, run_id
        why = summary.cannot_decide_reason
        if why:
            raise UnsupportedOperationError(message=f"task {run_id}: {why}")
        if len(hub.live) >= hub.max_live_runs:  # before recording: a decision is never left without its run
            raise InvalidRequestError(message=f"busy: {len(hub.live)} runs are live")
        runner = hub.runner_for(self.agent, served_by(record)[1])
        try:
            await asyncio.to_thread(runner.record_decision, run_id, call_id, approve=decision.decision != "deny",
                                    always=decision.always, reason=decision.reason,
                                    kwargs=decision.kwargs if decision.decision == "edit" else None)
        except InvalidEdit as e:
            raise InvalidParamsError(message=str(e)) from None
        except TreadleError as e:
            raise UnsupportedOperationError(message=str(e)) from None
        return await self._resume(record)

    async def _resume(self, record: RunRecord) -> tuple[LiveRun, tuple[int, int], str]:
        session = served_by(record)[1]
        earlier = await asyncio.to_thread(self.hub.store.events, record.run_id)
        try:
            live = self.hub.start((record.prompt_kwargs or {}).get("input_str") or "", session_id=session,
                                  agent=self.agent, resume=record.run_id, earlier=earlier)
        except OverflowError as e:
            raise InvalidRequestError(message=f"busy: {e}") from None
        except TreadleError as e:
            raise UnsupportedOperationError(message=str(e)) from None
        return live, (live.frames[-1].key if live.frames else (0, 0)), live.run_id

    async def on_message_send(self, params: SendMessageRequest, context: Ctx) -> Task | Message:
        live, key, run_id = await self._begin(params)
        if not params.configuration.return_immediately:
            async for _ in self._follow(live, key):
                pass
        return await self._task(run_id)

    async def on_message_send_stream(self, params: SendMessageRequest, context: Ctx) -> AsyncGenerator[Update, None]:
        live, key, run_id = await self._begin(params)
        async for event in self._updates(live, key, run_id):
            yield event

    async def on_subscribe_to_task(self, params: SubscribeToTaskRequest, context: Ctx) -> AsyncGenerator[Update, None]:
        summary = await self._summary(params.id)
        live = self.hub.live.get(params.id)
        if live is None or summary.status in TERMINAL:
            raise UnsupportedOperationError(message=f"task {params.id} is not live here ({summary.status})")
        async for event in self._updates(live, live.frames[-1].key if live.frames else (0, 0), params.id):
            yield event

    async def _updates(self, live: LiveRun, key: tuple[int, int], run_id: str) -> AsyncGenerator[Update, None]:
        """The task, its updates as the run's events come, and its last status."""
        task = await self._task(run_id)
        task.status.state = TaskState.TASK_STATE_WORKING
        task.status.ClearField("message")
        yield task
        asked = False
        async for update in self._follow(live, key):
            asked = asked or update.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
            yield update
        if asked:
            return
        task = await self._task(run_id)
        for artifact in task.artifacts:
            yield TaskArtifactUpdateEvent(task_id=run_id, context_id=task.context_id, artifact=artifact,
                                          last_chunk=True)
        yield TaskStatusUpdateEvent(task_id=run_id, context_id=task.context_id, status=task.status)

    async def _follow(self, live: LiveRun, key: tuple[int, int]) -> AsyncGenerator[TaskStatusUpdateEvent, None]:
        """The run's events after ``key`` as working status updates (tool calls and their
        results); ends at an approval request (an input-required update) or when the run ends."""
        context_id = live.session_id or live.run_id
        async for f in live.follow(key):
            update = self._map(f, live.run_id, context_id)
            if update is not None:
                yield update
                if update.status.state == TaskState.TASK_STATE_INPUT_REQUIRED:
                    return

    def _map(self, f: Frame, run_id: str, context_id: str) -> TaskStatusUpdateEvent | None:
        if f.name not in (ev.TOOL_PERMISSION_REQUEST, ev.TOOL_CALL_START, ev.TOOL_CALL_COMPLETE):
            return None
        if f.depth and f.name != ev.TOOL_PERMISSION_REQUEST:  # an inner agent's tools: its caller's call says it
            return None
        envelope: dict[str, JsonValue] = json.loads(f.data)
        record = decode(envelope.get("event"))
        state, mid = TaskState.TASK_STATE_WORKING, f"{run_id}-{f.id}"
        extra: JsonValue = None
        if isinstance(record, PermissionRequest):
            req = record.item.data or CallRequest()
            tool = req.tool
            call = PendingApproval(call_id=str(req.id), tool_name=req.tool_name,
                                   kwargs=tool.kwargs if tool is not None else {},
                                   thought=tool.thought if tool is not None else None)
            state, text, extra = TaskState.TASK_STATE_INPUT_REQUIRED, _question(call), _pending_part(call)
        elif isinstance(record, CallStart):
            c = record.item.data
            text = f"calling {_call_text(c.name if c else None, c.kwargs if c else {})}"
        elif isinstance(record, CallComplete):
            o = record.item.data
            fn = o.input if o is not None else None
            out = (o.error or o.output) if o is not None else None
            text = (f"{fn.name if fn else None} {'failed' if o is not None and o.error else 'returned'}: "
                    f"{str(out)[:2000]}")
        else:
            return None
        message = _agent_message(run_id, context_id, mid, text, extra)
        return TaskStatusUpdateEvent(task_id=run_id, context_id=context_id,
                                     status=TaskStatus(state=state, message=message))

    # ------------------------------------------------------------------ cancelling
    async def on_cancel_task(self, params: CancelTaskRequest, context: Ctx) -> Task | None:
        run_id = params.id
        summary = await self._summary(run_id)
        if summary.status in TERMINAL:
            raise TaskNotCancelableError(message=f"task {run_id} has ended ({summary.status})")
        live = self.hub.live.get(run_id)
        if live is None:  # waiting in the journal (a restart came between): take it up to end it
            if summary.cannot_decide_reason and summary.status == "waiting_for_approval":
                raise TaskNotCancelableError(message=f"task {run_id}: {summary.cannot_decide_reason}")
            record = await asyncio.to_thread(self.hub.store.get_run, run_id)
            if record is None:  # started, not journaled yet
                raise TaskNotCancelableError(message=f"task {run_id} is starting: cancel it again")
            live, _, _ = await self._resume(record)
        live.stream.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(live.settled(), 20)
        return await self._task(run_id)

    # ------------------------------------------------------------------ not served
    async def on_create_task_push_notification_config(self, params: TaskPushNotificationConfig,
                                                      context: Ctx) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(self, params: GetTaskPushNotificationConfigRequest,
                                                   context: Ctx) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(self, params: ListTaskPushNotificationConfigsRequest,
                                                     context: Ctx) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(self, params: DeleteTaskPushNotificationConfigRequest,
                                                      context: Ctx) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(self, params: GetExtendedAgentCardRequest, context: Ctx) -> AgentCard:
        raise ExtendedAgentCardNotConfiguredError
