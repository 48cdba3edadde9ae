"""The HTTP API and web UI of ``treadle serve`` (FastAPI; extra ``[server]``).

Endpoints (JSON unless said): ``POST /runs``, ``GET /runs``, ``GET /runs/{id}``,
``GET /runs/{id}/events`` (Server-Sent Events, resumable with ``Last-Event-ID``),
``POST /runs/{id}/approvals/{call_id}``, ``POST /runs/{id}/cancel``,
``POST /runs/{id}/resume``, ``GET /runs/{id}/trace``, ``GET /info``, ``GET /health``;
the UI at ``/``; the schema at ``/openapi.json``. See docs/http-api.md.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import importlib.util
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Protocol, Union

import anyio
from fastapi import Body, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from sse_starlette import EventSourceResponse, ServerSentEvent

from .. import __version__
from .. import events as ev
from .._edits import InvalidEdit
from ..agent import Agent
from ..errors import TreadleError
from ..store.base import RunRecord, RunStore
from ..store.links import parent_link, root_of, top_level_runs
from ..store.records import decode
from .bodies import AgentInfo, Health, Info, RunDetail, RunList, ToolInfo, Trace
from .contract import (
    PENDING_LINKS,
    RUN_LINKS,
    SSE_EVENT,
    guarded,
    install_error_handlers,
    operation_id,
    refine_openapi,
    unprocessable,
)
from .guard import COOKIE, LOOPBACK_HOSTS, OPEN_PATHS, Guard, session_cookie
from .hub import TERMINAL, Frame, LiveRun, RunHub, clip, event_key, model_name, served_by, suspended
from .mcp_app import MCPApp, as_app
from .trace import nested_trace

if TYPE_CHECKING:
    from ..memory import MemoryStore

__all__ = ["create_app"]

ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"


# ---------------------------------------------------------------------- request / response bodies
class StartRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str = Field(min_length=1, max_length=100_000, description="The user's message.")
    session_id: Optional[str] = Field(None, pattern=ID_PATTERN,
                                      description="Continue this chat session (its memory); a new id starts one.")
    agent: Optional[str] = Field(None, description="Which served agent (default: the first).")


class RunStarted(BaseModel):
    run_id: str
    status: str
    session_id: Optional[str]


class Answer(BaseModel):
    """Approve or deny the call as the model made it."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "deny"]
    reason: Optional[str] = Field(None, max_length=10_000, description="Shown to the model (deny).")
    kwargs: Optional[dict[str, JsonValue]] = Field(None, description="Ignored: only an edit changes the "
                                                                     "arguments.")
    always: bool = Field(False, description="Approve: allow this tool for the rest of the run.")


class Edit(BaseModel):
    """Approve the call with other arguments (checked against the tool's schema)."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["edit"]
    kwargs: dict[str, JsonValue] = Field(description="The arguments the tool runs with instead.")
    reason: Optional[str] = Field(None, max_length=10_000)
    always: bool = False


Decision = Annotated[Union[Answer, Edit], Body(discriminator="decision")]


class Accepted(BaseModel):
    accepted: bool


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(max_length=1_000)


class Sessions(Protocol):
    """What the app's lifespan keeps running: the /mcp face's session manager."""

    def run(self) -> AbstractAsyncContextManager[None]: ...


# ---------------------------------------------------------------------- the app
def create_app(agents: Agent[Any] | dict[str, Agent[Any]] | MCPApp, *, store: RunStore | str | None = None,
               token: str | None = None, memory_store: MemoryStore | None = None,
               allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS,
               cors_origins: tuple[str, ...] = (), max_body: int = 2 << 20, max_live_runs: int = 64,
               max_steps: int | None = None) -> FastAPI:
    """The FastAPI app serving ``agents`` (one Agent, ``{name: Agent}``, or an ``MCPApp``).

    Args:
        store: the run journal (a RunStore or URL); default the user's SQLite ``runs.db``.
        token: require ``Authorization: Bearer <token>`` (or the UI's cookie) on every
            endpoint but ``/health``.
        allowed_hosts: accepted ``Host`` headers (loopback names by default: a web page
            cannot reach the API through DNS rebinding); ``None`` accepts any.
        cors_origins: origins allowed to call the API from a browser (none by default).
        max_body: request bodies over this many bytes are refused (413).
        max_live_runs: ``POST /runs`` answers 429 while this many runs are live.
    """
    from ..store import default_store_path, open_store

    if isinstance(agents, Agent):
        agents = {agents.name or "agent": agents}
    elif isinstance(agents, MCPApp):
        agents = agents.hub_agents()
    served = as_app(agents)  # what /mcp serves: the MCPApp the agents came from (docs/mcp-serve.md)
    run_store = open_store(store if store is not None else f"sqlite:///{default_store_path()}")
    hub = RunHub(dict(agents), run_store, memory_store=memory_store, max_live_runs=max_live_runs,
                 max_steps=max_steps)

    sessions: list[Sessions] = []  # the /mcp face's, when mounted: they live as long as the app

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncGenerator[None, None]:
        manager = sessions[0] if sessions else None
        if manager is None:
            yield
        else:
            async with manager.run():
                yield
        await hub.aclose()

    app = FastAPI(title="treadle", version=__version__, lifespan=lifespan, generate_unique_id_function=operation_id,
                  description="Start agent runs, stream their events, approve tool calls, cancel runs.")
    app.state.hub = hub
    app.state.token = token

    install_error_handlers(app)

    # ------------------------------------------------------------------ open
    @app.get("/health", tags=["server"], response_model=Health,
             responses=guarded("GET", "/health", open_paths=OPEN_PATHS))
    async def health() -> Health:
        return Health(status="ok", live_runs=len(hub.live))

    @app.post("/login", tags=["server"], response_model=Accepted,
              responses=guarded("POST", "/login", 401, 422, open_paths=OPEN_PATHS))
    async def login(body: Login) -> JSONResponse:
        if not token or not hmac.compare_digest(body.token.encode(), token.encode()):
            raise HTTPException(401, "wrong token")
        resp = JSONResponse({"accepted": True})
        resp.set_cookie(COOKIE, session_cookie(token), httponly=True, samesite="strict", path="/")
        return resp

    # ------------------------------------------------------------------ UI
    static = importlib.resources.files("treadle.server") / "static"

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(static), check_dir=False), name="static")

    # ------------------------------------------------------------------ API
    @app.get("/info", tags=["server"], response_model=Info, responses=guarded("GET", "/info"))
    async def info() -> Info:
        out = [AgentInfo(name=name, model=model_name(agent),
                         tools=[ToolInfo(name=t.name, require_approval=bool(t.require_approval))
                                for t in agent.tool_manager.tools])
               for name, agent in hub.agents.items()]
        return Info(version=__version__, agents=out, auth=bool(token))

    @app.post("/runs", status_code=201, response_model=RunStarted, tags=["runs"],
              responses={**guarded("POST", "/runs", 422, 429), 201: RUN_LINKS})
    async def start_run(body: StartRun) -> RunStarted:
        try:
            live = hub.start(body.input, session_id=body.session_id, agent=body.agent)
        except KeyError:
            raise unprocessable(f"no agent named {body.agent!r}; served: {', '.join(hub.agents)}", "body", "agent") \
                from None
        except OverflowError as e:
            raise HTTPException(429, str(e)) from None
        except TreadleError as e:
            raise unprocessable(str(e)) from None
        return RunStarted(run_id=live.run_id, status="running", session_id=body.session_id)

    @app.get("/runs", tags=["runs"], response_model=RunList, responses=guarded("GET", "/runs", 422))
    async def list_runs(status: Optional[str] = Query(None, max_length=32),
                        limit: int = Query(100, ge=1, le=1000),
                        top_level: bool = Query(False, description="Only runs that are not child runs (an agent "
                                                                    "called as a tool or used as a guardrail).")
                        ) -> dict[str, JsonValue]:
        if top_level:
            records = await asyncio.to_thread(top_level_runs, hub.store, status=status, limit=limit)
        else:
            records = await asyncio.to_thread(hub.store.list_runs, status=status, limit=limit)
        seen = {r.run_id for r in records}
        runs = [s for r in records if (s := hub.summary(r.run_id, r)) is not None]
        for live in list(hub.live.values()):  # started, not journaled yet
            if live.run_id not in seen and (status is None or live.status == status):
                s = hub.summary(live.run_id, None)
                if s is not None:
                    runs.append(s)
        runs.sort(key=_created, reverse=True)
        return {"runs": list[JsonValue](runs[:limit])}

    async def known(run_id: str) -> tuple[dict[str, JsonValue], RunRecord | None]:
        """The run's summary and journal row (404 when neither this process nor the journal knows it)."""
        record = await asyncio.to_thread(hub.store.get_run, run_id)  # the store is never read on the loop
        summary = hub.summary(run_id, record)
        if summary is None:
            raise HTTPException(404, f"no run {run_id!r}")
        return summary, record

    @app.get("/runs/{run_id}", tags=["runs"], response_model=RunDetail,
             responses={**guarded("GET", "/runs/{run_id}", 404), 200: PENDING_LINKS})
    async def get_run(run_id: str) -> dict[str, JsonValue]:
        summary, _ = await known(run_id)
        summary["step_history"] = clip(await asyncio.to_thread(hub.steps, run_id))
        children = await asyncio.to_thread(hub.children, run_id)
        summary["children"] = [c.model_dump(mode="json") for c in children]
        return summary

    @app.get("/runs/{run_id}/events", tags=["runs"], response_class=EventSourceResponse,
             responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}},
                              "description": "The run's events as SSE; `id` is the event's seq."},
                        **guarded("GET", "/runs/{run_id}/events", 404, 422)})
    async def run_events(run_id: str, request: Request,
                         last_event_id: str = Header(None, alias="Last-Event-ID",
                                                     pattern=r"^[0-9]{1,15}(\.[0-9]{1,9})?$",
                                                     description="Resume after this event: its SSE id (a seq, "
                                                                 "or seq.k for a child run's event)."),
                         after: int = Query(0, ge=0, description="Start after this seq (or send Last-Event-ID).")
                         ) -> EventSourceResponse:
        await known(run_id)
        start = event_key(last_event_id, after)
        stopping = anyio.Event()  # set by sse-starlette when the server shuts down
        return EventSourceResponse(stream_frames(hub, run_id, start, stopping), ping=15, shutdown_event=stopping,
                                   shutdown_grace_period=3,
                                   headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/runs/{run_id}/approvals/{call_id}", response_model=Accepted, tags=["approvals"],
              responses=guarded("POST", "/runs/{run_id}/approvals/{call_id}", 404, 409, 422, 429))
    async def decide(run_id: str, call_id: str, body: Decision) -> Accepted:
        _, record = await known(run_id)
        if record is not None and run_id not in hub.live and parent_link(record)["parent_run_id"]:
            record = await asyncio.to_thread(root_of, hub.store, record)  # an inner agent's call: its caller decides
            run_id = record.run_id
        if run_id not in hub.live:
            why = await asyncio.to_thread(hub.decidable, run_id, record)
            if why is not None or record is None:  # the same reason the run's summary gives (cannot_decide_reason)
                raise HTTPException(409, f"run {run_id}: {why}")
            return await _decide_suspended(hub, record, call_id, body)
        try:
            ok = hub.decide(run_id, call_id, body.decision, reason=body.reason, kwargs=body.kwargs,
                            always=body.always)
        except InvalidEdit as e:
            raise unprocessable(str(e), "body", "kwargs") from None
        except (ValueError, TreadleError) as e:
            raise unprocessable(f"the edited arguments are not valid: {e}", "body", "kwargs") from None
        if not ok:
            raise HTTPException(409, f"run {run_id} has no pending approval for call {call_id!r}")
        return Accepted(accepted=True)

    @app.post("/runs/{run_id}/cancel", status_code=202, response_model=Accepted, tags=["runs"],
              responses=guarded("POST", "/runs/{run_id}/cancel", 404, 409))
    async def cancel(run_id: str) -> Accepted:
        await known(run_id)
        try:
            return Accepted(accepted=bool(hub.cancel(run_id)))
        except LookupError:
            raise HTTPException(409, f"run {run_id} is not running") from None

    @app.post("/runs/{run_id}/resume", status_code=202, response_model=RunStarted, tags=["runs"],
              responses=guarded("POST", "/runs/{run_id}/resume", 404, 409, 429))
    async def resume(run_id: str) -> RunStarted:
        """Continue a journaled run that is not live here (the server stopped mid-run)."""
        _, record = await known(run_id)
        if run_id in hub.live:
            raise HTTPException(409, f"run {run_id} is already running")
        if record is None or record.status in TERMINAL:
            raise HTTPException(409, f"run {run_id} has ended ({record.status if record else 'unknown'})")
        return await _resume(hub, record)

    @app.get("/runs/{run_id}/trace", tags=["runs"], response_model=Trace,
             responses=guarded("GET", "/runs/{run_id}/trace", 404))
    async def trace(run_id: str) -> Trace:
        summary, _ = await known(run_id)
        created = summary["created_at"]
        return await asyncio.to_thread(nested_trace, run_id, created if isinstance(created, (int, float)) else None,
                                       hub.trace_parts, created=hub.created)

    if importlib.util.find_spec("a2a") is not None:  # the A2A face (docs/a2a.md): a2a-sdk, in the server extra
        from .a2a import mount_a2a

        mount_a2a(app, hub, token=token)
    if importlib.util.find_spec("mcp") is not None:  # the MCP face (docs/mcp-serve.md): the mcp extra
        from .mcp import mount_mcp

        app.state.mcp = manager = mount_mcp(app, hub, served)
        sessions.append(manager)
    refine_openapi(app, list(hub.agents))
    app.add_middleware(Guard, token=token, allowed_hosts=allowed_hosts, max_body=max_body)
    if cors_origins:  # outside the guard: preflights carry no credentials, and a 401 must be readable
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Last-Event-ID"])
    from .faces import mount_faces  # the OpenAI-compatible and AG-UI faces (docs/openai-compatible.md, ag-ui.md)

    mount_faces(app, hub)
    return app


def _created(summary: dict[str, JsonValue]) -> float:
    created = summary["created_at"]
    return created if isinstance(created, (int, float)) else 0


def _served_agent(hub: RunHub, record: RunRecord) -> tuple[str, str | None]:
    """The agent (and chat session) a journaled run belongs to; 409 unless it is served here."""
    agent, session = served_by(record)
    if agent not in hub.agents:
        raise HTTPException(409, f"run {record.run_id} was made by agent {agent!r}, which this server does not "
                                 f"serve ({', '.join(hub.agents)})")
    return agent, session


async def _resume(hub: RunHub, record: RunRecord) -> RunStarted:
    agent, session_id = _served_agent(hub, record)
    earlier = await asyncio.to_thread(hub.store.events, record.run_id)
    try:
        live = hub.start((record.prompt_kwargs or {}).get("input_str") or "", session_id=session_id, agent=agent,
                         resume=record.run_id, earlier=earlier)
    except OverflowError as e:
        raise HTTPException(429, str(e)) from None
    except TreadleError as e:
        raise HTTPException(409, str(e)) from None
    return RunStarted(run_id=live.run_id, status="running", session_id=live.session_id)


async def _decide_suspended(hub: RunHub, record: RunRecord, call_id: str, body: Answer | Edit) -> Accepted:
    """A run suspended in the journal (the server stopped while it waited): record the
    decision, then resume it."""
    agent, session_id = _served_agent(hub, record)
    if len(hub.live) >= hub.max_live_runs:  # before recording: a decision is never left without its run
        raise HTTPException(429, f"{len(hub.live)} runs are live; the limit is {hub.max_live_runs}")
    runner = hub.runner_for(agent, session_id)
    try:  # edited arguments are checked against the tool's schema before anything is recorded
        await asyncio.to_thread(runner.record_decision, record.run_id, call_id, approve=body.decision != "deny",
                                always=body.always, reason=body.reason,
                                kwargs=body.kwargs if body.decision == "edit" else None)
    except InvalidEdit as e:
        raise unprocessable(str(e), "body", "kwargs") from None
    except TreadleError as e:
        raise HTTPException(409, str(e)) from None
    await _resume(hub, record)
    return Accepted(accepted=True)


async def stream_frames(hub: RunHub, run_id: str, after: tuple[int, int] | int,
                        stopping: anyio.Event | None = None) -> AsyncIterator[ServerSentEvent]:
    """The SSE body: every event after ``after`` (a seq, or the key of ``event_key``), live
    ones as they come — a live run's children's events too, marked with ``depth`` (SSE id
    ``"seq.k"``); ends after the run's own ``agent.execution_complete`` (or, for a run this
    process does not hold and that never ended, after the journal's last event, with a
    ``treadle.not_live`` event). A child run of a live run follows that run's stream.
    When the server shuts down, live runs are cancelled and their readers get the ending."""
    key = (after, 0) if isinstance(after, int) else after
    live = hub.get(run_id)
    watcher = None
    if stopping is not None and live is not None and not live.finished:
        async def on_shutdown() -> None:
            await stopping.wait()
            hub.cancel_all()

        watcher = asyncio.get_running_loop().create_task(on_shutdown())
    try:
        async for message in _frames(hub, run_id, live, key):
            yield message
    finally:
        if watcher is not None:
            watcher.cancel()


def _sse(f: Frame) -> ServerSentEvent:
    return ServerSentEvent(data=f.data.decode(), id=f.id, event=f.name)


async def _frames(hub: RunHub, run_id: str, live: LiveRun | None, key: tuple[int, int] | int
                  ) -> AsyncIterator[ServerSentEvent]:
    if isinstance(key, int):
        key = (key, 0)
    if live is None:
        last = key[0]
        frames = await asyncio.to_thread(hub.frames, run_id, last)
        for f in frames:
            yield _sse(f)
            last = f.key[0]
        if any(f.name == ev.EXECUTION_COMPLETE for f in frames):
            return
        record = await asyncio.to_thread(hub.record, run_id)
        status = record.status if record is not None else "unknown"
        if status in TERMINAL:
            return
        root = await asyncio.to_thread(hub.live_root, record)
        if root is not None:  # a child of a live run: the rest of its events come in that run's stream
            async for message in _child_frames(root, run_id, last):
                yield message
            return
        yield ServerSentEvent(data=json.dumps({"status": status, "last_seq": last}), event="treadle.not_live")
        return
    async for f in live.follow(key):
        yield _sse(f)


async def _child_frames(root: LiveRun, run_id: str, last: int) -> AsyncIterator[ServerSentEvent]:
    """A child run's events as they reach its live root's stream (with the child's own seqs:
    a reader resumes it by its own Last-Event-ID)."""
    while True:
        changed = root.changed
        for f in root.child_frames(run_id, last):
            body: dict[str, JsonValue] = json.loads(f.data)  # the envelope as the child's own stream has it
            body["depth"] = 0
            yield ServerSentEvent(data=json.dumps(body, separators=(",", ":")), id=str(f.child_seq), event=f.name)
            last = f.child_seq
            if f.name == ev.EXECUTION_COMPLETE and not suspended(decode(body.get("event"))):
                return
        if root.finished:
            return
        await root.wait(changed, 15)
