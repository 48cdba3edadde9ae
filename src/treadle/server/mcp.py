"""The MCP face: an ``MCPApp`` (agents, tools, resources, prompts) served to an MCP host
(``treadle mcp serve`` over stdio, ``/mcp`` on ``treadle serve`` over streamable HTTP). See
docs/mcp-serve.md.

A call of an agent's tool is a run of that agent, and a call of a plain tool a one-call run,
started in the run hub (the journal, the limits, the web UI and ``GET /runs/{id}`` see it);
the run id is in the result. The face maps the run's events: an agent's steps become
progress notifications, a tool's own progress and log lines the host's. An approval, or a
question a tool asks (``ask_host``, ``sample_host``), is asked of the host: an
``elicitation/create`` (or ``sampling/createMessage``) request tied to its own call (2025-era
protocol), or an ``input_required`` result whose sealed request state names the run
(2026-07-28). The run waits for its answer in the journal, so the answer continues it after a
restart too; a host that cannot be asked gets a result saying how to decide the call. A
cancelled request cancels the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import JsonValue
from starlette.applications import Starlette

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from .. import __version__
from .._edits import InvalidEdit
from ..errors import TreadleError
from ..store import RunRecord, RunStore, SQLiteRunStore, default_store_path
from ..store.links import waiting_requests
from ..types import RunnerResult
from .hub import TERMINAL, LiveRun, RunHub
from .mcp_app import TOOL_AGENT, MCPApp
from .mcp_catalog import Catalog
from .mcp_follow import Progress, pump
from .mcp_results import Answer, Pending, answer_of, ended, fail, result, tool_result
from .mcp_tools import ELICITATION, SAMPLING

__all__ = ["APPROVAL_SCHEMA", "PATH", "STATE_KEY_ENV", "build_server", "input_schema", "mount_mcp", "serve_stdio",
           "sealing_key"]

logger = logging.getLogger("treadle.server")

PATH = "/mcp"
STATE_KEY_ENV = "TREADLE_MCP_STATE_KEY"
KEY_FILE = "mcp-state.key"
MAX_INPUT = 100_000  # characters, as POST /runs
ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
Context = ServerRequestContext[object]

APPROVAL_SCHEMA: dict[str, JsonValue] = {
    "type": "object",
    "properties": {
        "decision": {"type": "string", "title": "Decision", "enum": ["approve", "deny"],
                     "description": "Run the tool call as the agent made it, or refuse it."},
        "reason": {"type": "string", "title": "Reason", "description": "Why (the agent's model reads it when denied)."},
        "always": {"type": "boolean", "title": "Always", "default": False,
                   "description": "Approve this tool for the rest of the run."},
    },
    "required": ["decision"],
}


def input_schema() -> dict[str, JsonValue]:
    """The arguments of every agent's tool."""
    return {
        "type": "object",
        "properties": {
            "input": {"type": "string", "description": "The message to the agent: starts a run."},
            "session_id": {"type": "string", "pattern": ID.pattern,
                           "description": "Continue this chat session (its memory); a new id starts one."},
            "run_id": {"type": "string", "pattern": ID.pattern,
                       "description": "Instead of input: continue this run of the agent (after its approval was "
                                      "decided elsewhere), or read its result."},
        },
        "additionalProperties": False,
    }


def _server_of(record: RunRecord) -> dict[str, JsonValue]:
    server = (record.config or {}).get("server")
    return server if isinstance(server, dict) else {}


# ---------------------------------------------------------------------- the server
class MCPFace:
    """The MCP tool calls of one app, run in one run hub."""

    def __init__(self, hub: RunHub, app: MCPApp, catalog: Catalog, *, how_to_decide: str) -> None:
        self.hub = hub
        self.app = app
        self.catalog = catalog
        self.how_to_decide = how_to_decide  # the words after "decide it": where, for this transport
        # tool name -> run-hub agent: an MCP tool name is 1-128 of A-Z a-z 0-9 _ - . (SEP-986)
        self.names = {re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:128] or "agent": name for name in app.agents}
        self.names.update({name: TOOL_AGENT + name for name in app.tools})

    def plain(self, agent: str) -> bool:
        return agent.startswith(TOOL_AGENT) and agent[len(TOOL_AGENT):] in self.app.tools

    async def list_tools(self, ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        tools = []
        for tool_name, name in self.names.items():
            if self.plain(name):
                t = self.app.tools[name[len(TOOL_AGENT):]]
                tools.append(types.Tool(name=tool_name, description=t.description or f"The tool {tool_name!r}.",
                                        input_schema=t.parameters_schema))
                continue
            agent = self.hub.agents[name]
            names = ", ".join(t.name for t in agent.tools) or "none"
            description = (agent.instructions or f"The treadle agent {name!r}.").strip()
            tools.append(types.Tool(name=tool_name, title=name, input_schema=input_schema(),
                                    description=f"{description}\n\nRuns the agent (tools: {names}) on the input and "
                                                f"returns its answer; the run id is in the result."))
        return types.ListToolsResult(tools=tools)

    async def call_tool(self, ctx: Context,
                        params: types.CallToolRequestParams) -> types.CallToolResult | types.InputRequiredResult:
        agent = self.names.get(params.name)
        if agent is None:
            raise fail(f"no tool {params.name!r}: the tools are {', '.join(self.names)}")
        args = dict(params.arguments or {})
        if params.request_state is not None:  # the retry of an input_required result: the host's answer
            run_id, call_id = _state(params.request_state)
            outcome = await self._answer(agent, run_id, call_id, await self._response(run_id, call_id, params))
        elif self.plain(agent):
            outcome = self._start(json.dumps(args), agent, None)
        else:
            outcome = self._agent_call(agent, args)
        if isinstance(outcome, types.CallToolResult):
            return outcome
        if isinstance(outcome, str):  # run_id: take the run up
            outcome = await self._take_up(agent, outcome)
            if isinstance(outcome, types.CallToolResult):
                return outcome
        return await self._follow(ctx, agent, outcome)

    def _agent_call(self, agent: str, args: dict[str, JsonValue]) -> LiveRun | types.CallToolResult | str:
        unknown = set(args) - {"input", "session_id", "run_id"}
        if unknown:
            raise fail(f"unknown arguments {', '.join(sorted(unknown))}: give input (and session_id), or run_id")
        given: dict[str, str] = {}
        for key in ("input", "session_id", "run_id"):
            value = args.get(key)
            if value is not None and not isinstance(value, str):
                raise fail(f"{key} must be a string")
            if isinstance(value, str):
                given[key] = value
        for key in ("session_id", "run_id"):
            if key in given and not ID.match(given[key]):
                raise fail(f"{key} must be 1-128 letters, digits or _.:-")
        if given.get("run_id"):
            return given["run_id"]
        text = given.get("input") or ""
        if not text.strip():
            raise fail("give input (the message to the agent), or run_id (a run to continue)")
        if len(text) > MAX_INPUT:
            raise fail(f"input is over {MAX_INPUT} characters")
        return self._start(text, agent, given.get("session_id"))

    def _start(self, text: str, agent: str, session_id: str | None) -> LiveRun | types.CallToolResult:
        try:
            return self.hub.start(text, session_id=session_id, agent=agent, suspend=True)
        except OverflowError as e:
            return result(None, "busy", f"the server is busy ({e}): call again later", error=True)
        except TreadleError as e:
            raise fail(str(e)) from None

    # ------------------------------------------------------------------ following a run
    async def _follow(self, ctx: Context, agent: str,
                      live: LiveRun) -> types.CallToolResult | types.InputRequiredResult:
        """Follow the run to its end, its events as notifications; at an approval or a
        question, ask the host and go on with its answer."""
        progress = Progress(ctx, self.catalog, plain=self.plain(agent))
        key = live.frames[-1].key if live.frames else (0, 0)
        await progress.say(f"run {live.run_id} of agent {agent!r}")
        while True:
            try:
                key = await pump(live, key, progress)
            except anyio.get_cancelled_exc_class():  # the host cancelled the request: the run stops too
                if live.run_id in self.hub.live:
                    live.stream.cancel()
                raise
            if live.status != "waiting_for_approval":
                return await self._ended(agent, live.run_id)
            pending = await asyncio.to_thread(self._pending, live.run_id)
            if not pending:
                return await self._ended(agent, live.run_id)
            call = pending[0]
            try:
                asked = await self._ask(ctx, live.run_id, call)
            except anyio.get_cancelled_exc_class():  # cancelled while the host was asked
                await self._cancel_waiting(agent, live.run_id)
                raise
            if not isinstance(asked, Answer):
                return asked
            outcome = await self._answer(agent, live.run_id, call.call_id, asked)
            if isinstance(outcome, types.CallToolResult):
                return outcome
            live = outcome
            key = live.frames[-1].key if live.frames else (0, 0)
            if call.kind == "approval":
                await progress.say(f"{call.tool_name}: {'approved' if asked.approve else 'denied'} by the host")

    async def _ended(self, agent: str, run_id: str) -> types.CallToolResult:
        live = self.hub.get(run_id)
        res = live.result if live is not None else None
        if isinstance(res, RunnerResult):
            status, error, kind = str(res.status), res.error, res.error_type
            answer: JsonValue = json.loads(json.dumps(res.answer, default=str))
        else:  # ended before this process took it up: its journal row
            record = await asyncio.to_thread(self.hub.store.get_run, run_id)
            summary = await asyncio.to_thread(self.hub.summary, run_id, record) or {}
            status, answer = str(summary.get("status") or "error"), summary.get("answer")
            err, kind_of = summary.get("error"), summary.get("error_type")
            error = err if isinstance(err, str) else None
            kind = kind_of if isinstance(kind_of, str) else None
        if self.plain(agent):
            entries = await asyncio.to_thread(self.hub.store.events, run_id)
            return tool_result(run_id, status, entries, error)
        return ended(run_id, status, answer if status == "success" else None, error, kind)

    def _pending(self, run_id: str) -> list[Pending]:
        """The calls a run suspended in the journal waits on (approvals and questions)."""
        out: list[Pending] = []
        for _, r in waiting_requests(self.hub.store, run_id):
            fn = r.get("tool") or {}
            details = r.get("confirmation_details")
            kwargs = fn.get("kwargs") if isinstance(fn, dict) else None
            out.append(Pending(str(r.get("id")), str(r.get("tool_name")), kwargs if isinstance(kwargs, dict) else {},
                               fn.get("thought") if isinstance(fn, dict) else None,
                               details if isinstance(details, dict) and details.get("kind") in (ELICITATION, SAMPLING)
                               else None))
        return out

    async def _cancel_waiting(self, agent: str, run_id: str) -> None:
        """End a run that waits in the journal as cancelled (its request was): taken up,
        then cancelled, as ``POST /runs/{id}/cancel`` would a live one."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            record = await asyncio.to_thread(self.hub.store.get_run, run_id)
            if record is None or record.status in TERMINAL or run_id in self.hub.live:
                return
            earlier = await asyncio.to_thread(self.hub.store.events, run_id)
            try:  # not a suspending runner: the resumed run waits in memory, and the cancel ends it
                live = self.hub.start((record.prompt_kwargs or {}).get("input_str") or "", agent=agent,
                                      session_id=_session(record), resume=run_id, earlier=earlier)
            except (OverflowError, TreadleError):
                logger.warning("run %s stays waiting for its approval: it could not be cancelled", run_id)
                return
            live.stream.cancel()
            await live.settled()

    async def _ask(self, ctx: Context, run_id: str,
                   call: Pending) -> Answer | types.CallToolResult | types.InputRequiredResult:
        """The host's answer to ``call`` (asked on this request's own stream); or the result
        to return instead: an ``input_required`` one (2026 protocol), or one saying the run waits."""
        request = _request_for(call)
        caps = ctx.session.client_capabilities
        if isinstance(request, types.CreateMessageRequest):
            if caps is None or caps.sampling is None:
                return self._waiting(run_id, call, "the MCP host does not support sampling")
        elif not _can_elicit(caps):
            return self._waiting(run_id, call, "the MCP host does not support elicitation")
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return types.InputRequiredResult(input_requests={call.call_id: request},
                                             request_state=json.dumps({"run": run_id, "call": call.call_id}))
        try:
            if isinstance(request, types.CreateMessageRequest):
                p = request.params
                reply: types.ElicitResult | types.CreateMessageResult = await ctx.session.create_message(
                    p.messages, max_tokens=p.max_tokens, system_prompt=p.system_prompt,
                    related_request_id=ctx.request_id)
            elif isinstance(request.params, types.ElicitRequestFormParams):
                reply = await ctx.session.elicit_form(request.params.message, request.params.requested_schema,
                                                      related_request_id=ctx.request_id)
            else:  # only forms are asked
                return self._waiting(run_id, call, "the question is not a form")
        except MCPError as e:
            return self._waiting(run_id, call, f"the host answered the question with an error ({e.error.message})")
        answer = answer_of(call, reply)
        return self._waiting(run_id, call, "the host dismissed the question") if answer.wait else answer

    def _waiting(self, run_id: str, call: Pending, why: str) -> types.CallToolResult:
        live = self.hub.get(run_id)
        then = (f"then call this tool again with run_id={run_id!r} for its answer"
                if live is None or not self.plain(live.agent_name) else  # a plain tool takes its own arguments
                f"then the call's result is run {run_id}'s (GET /runs/{run_id}, or treadle show {run_id})")
        text = (f"run {run_id} waits for an answer to {_call_text(call)} ({why}). Decide it {self.how_to_decide} "
                f"(run {run_id}, call {call.call_id}), {then}.")
        return result(run_id, "waiting_for_approval", text, error=True, pending=[call])

    async def _response(self, run_id: str, call_id: str, params: types.CallToolRequestParams) -> Answer | None:
        reply = (params.input_responses or {}).get(call_id)
        if reply is None:
            return None
        if not isinstance(reply, (types.ElicitResult, types.CreateMessageResult)):
            raise fail(f"inputResponses[{call_id!r}] is not an elicitation or sampling result")
        pending = await asyncio.to_thread(self._pending, run_id)
        call = next((p for p in pending if p.call_id == call_id), Pending(call_id, "a tool", {}))
        return answer_of(call, reply)

    async def _answer(self, agent: str, run_id: str, call_id: str,
                      answer: Answer | None) -> LiveRun | types.CallToolResult:
        """Record the host's answer for a run waiting in the journal, and resume it."""
        hub = self.hub
        if run_id in hub.live:  # decided and resumed elsewhere meanwhile (the web UI): follow it
            return hub.live[run_id]
        record = await asyncio.to_thread(hub.store.get_run, run_id)
        if record is None or _server_of(record).get("agent", record.agent_name) != agent:
            raise fail(f"no run {run_id!r} of tool {agent!r}")
        if answer is None:
            raise fail(f"the retry carries no answer for call {call_id!r} (inputResponses[{call_id!r}])")
        if record.status in TERMINAL:  # decided elsewhere meanwhile, and ended
            return await self._ended(agent, run_id)
        if answer.wait:
            pending = await asyncio.to_thread(self._pending, run_id)
            call = next((p for p in pending if p.call_id == call_id), Pending(call_id, "a tool", {}))
            return self._waiting(run_id, call, "the host dismissed the question")
        why = await asyncio.to_thread(hub.decidable, run_id, record)
        if why is not None:
            return result(run_id, record.status, f"run {run_id}: {why}", error=True)
        runner = hub.runner_for(agent, _session(record), suspend=True)
        try:
            await asyncio.to_thread(runner.record_decision, run_id, call_id, approve=answer.approve,
                                    always=answer.always, reason=answer.reason, kwargs=answer.kwargs)
        except (InvalidEdit, TreadleError) as e:
            return result(run_id, record.status, f"run {run_id}: the answer was not recorded: {e}", error=True)
        return await self._resume(agent, record)

    async def _resume(self, agent: str, record: RunRecord) -> LiveRun | types.CallToolResult:
        earlier = await asyncio.to_thread(self.hub.store.events, record.run_id)
        try:
            return self.hub.start((record.prompt_kwargs or {}).get("input_str") or "", session_id=_session(record),
                                  agent=agent, resume=record.run_id, earlier=earlier, suspend=True)
        except OverflowError as e:
            return result(record.run_id, record.status, f"the server is busy ({e}): call again later", error=True)
        except TreadleError as e:
            return result(record.run_id, record.status, f"run {record.run_id} cannot go on: {e}", error=True)

    async def _take_up(self, agent: str, run_id: str) -> LiveRun | types.CallToolResult:
        """``run_id`` given: follow the run if it is live here, answer with its result if it
        ended, resume it if it stopped (its decision recorded, or to ask for it again)."""
        hub = self.hub
        if run_id in hub.live:
            return hub.live[run_id]
        record = await asyncio.to_thread(hub.store.get_run, run_id)
        summary = await asyncio.to_thread(hub.summary, run_id, record) if record is not None else None
        if record is None or summary is None or summary["agent"] != agent or summary.get("parent_run_id"):
            raise fail(f"no run {run_id!r} of agent {agent!r}")
        if record.status in TERMINAL:
            return await self._ended(agent, run_id)
        why = await asyncio.to_thread(hub.decidable, run_id, record)
        if why is not None and record.status == "waiting_for_approval":
            return result(run_id, record.status, f"run {run_id}: {why}", error=True)
        return await self._resume(agent, record)


# ---------------------------------------------------------------------- questions
def _session(record: RunRecord) -> str | None:
    session = _server_of(record).get("session_id")
    return session if isinstance(session, str) else None


def _call_text(call: Pending) -> str:
    if call.details is not None:
        return f"the question {str(call.details.get('message') or '')[:300]!r} of a tool call"
    return f"{call.tool_name}({json.dumps(call.kwargs, default=str)[:500]})"


def _request_for(call: Pending) -> types.ElicitRequest | types.CreateMessageRequest:
    details = call.details or {}
    if call.kind == SAMPLING:
        system = details.get("system_prompt")
        tokens = details.get("max_tokens")
        return types.CreateMessageRequest(params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(text=str(details.get("prompt"))))],
            max_tokens=tokens if isinstance(tokens, int) else 1000,
            system_prompt=system if isinstance(system, str) else None))
    if call.kind == ELICITATION:
        schema = details.get("schema")
        return types.ElicitRequest(params=types.ElicitRequestFormParams(
            message=str(details.get("message") or ""), requested_schema=schema if isinstance(schema, dict) else {}))
    thought = f" The agent's reason: {call.thought}" if call.thought else ""
    return types.ElicitRequest(params=types.ElicitRequestFormParams(
        message=f"The agent wants to call {_call_text(call)}. Approve it?{thought}", requested_schema=APPROVAL_SCHEMA))


def _can_elicit(caps: types.ClientCapabilities | None) -> bool:
    if caps is None or caps.elicitation is None:
        return False
    e = caps.elicitation  # form mode is implied by a bare capability
    return e.form is not None or e.url is None


def _state(state: str) -> tuple[str, str]:
    try:
        data = json.loads(state)
        return str(data["run"]), str(data["call"])
    except (ValueError, KeyError, TypeError):
        raise fail("requestState is not one this server made") from None


# ---------------------------------------------------------------------- building and serving
def sealing_key(store: RunStore) -> str:
    """The key sealing ``input_required`` request states: ``TREADLE_MCP_STATE_KEY``, else one
    kept in a file beside the journal (a SQLite one; else in treadle's home), made on first
    use: a new process serving the same journal opens the states of the last one."""
    given = os.environ.get(STATE_KEY_ENV)
    if given:
        return given
    folder = Path(store.path if isinstance(store, SQLiteRunStore) else default_store_path()).parent
    path = folder / KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


def build_server(hub: RunHub, app: MCPApp | None = None, *, how_to_decide: str,
                 state_key: str | bytes | None = None) -> Server[object]:
    """The low-level MCP server of ``app`` (default: ``hub``'s agents). ``state_key`` (32+
    bytes; default ``sealing_key(hub.store)``) seals the request state of
    ``input_required`` results, so a host's answer continues the run after a restart too."""
    app = app or MCPApp(agents=hub.agents)
    catalog = Catalog(app)
    face = MCPFace(hub, app, catalog, how_to_decide=how_to_decide)
    extra = {}
    if app.resources:
        extra.update(on_list_resources=catalog.list_resources, on_read_resource=catalog.read_resource,
                     on_list_resource_templates=catalog.list_templates, on_subscribe_resource=catalog.subscribe,
                     on_unsubscribe_resource=catalog.unsubscribe)
    if app.prompts:
        extra.update(on_list_prompts=catalog.list_prompts, on_get_prompt=catalog.get_prompt)
    if app.prompts or app.resources:
        extra.update(on_completion=catalog.complete)
    with warnings.catch_warnings():  # logging is deprecated in 2026-07-28; 2025-era hosts use it
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        server: Server[object] = Server(app.name, version=__version__,
                                        instructions=app.instructions or _instructions(app),
                                        on_list_tools=face.list_tools, on_call_tool=face.call_tool,
                                        on_set_logging_level=catalog.set_level, **extra)
    key = state_key or sealing_key(hub.store)
    server.middleware.append(RequestStateBoundary(RequestStateSecurity(keys=[key], ttl=7 * 86400),
                                                  default_audience="treadle"))
    return server


def _instructions(app: MCPApp) -> str:
    return ("Each agent's tool runs a treadle agent: call it with input (a message) and it answers. "
            f"Agents: {', '.join(app.agents) or 'none'}; tools: {', '.join(app.tools) or 'none'}. A call may need "
            "your approval or ask you a question: it is asked as an elicitation.")


def mount_mcp(web: Starlette, hub: RunHub, app: MCPApp | None = None, *,
              state_key: str | bytes | None = None) -> StreamableHTTPSessionManager:
    """Add the streamable-HTTP endpoint ``/mcp`` to the server's app (behind its guard: the
    token and the Host check apply). Returns the session manager, which the app's lifespan
    runs (``async with manager.run():``)."""
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
    from starlette.routing import Route

    from .mcp_streams import MemoryEventStore

    server = build_server(hub, app, state_key=state_key,
                          how_to_decide="in the web UI, or with POST /runs/{run_id}/approvals/{call_id} on this "
                                        "server")
    manager = StreamableHTTPSessionManager(app=server, event_store=MemoryEventStore(), retry_interval=1000)
    web.router.routes.append(Route(PATH, StreamableHTTPASGIApp(manager), methods=["GET", "POST", "DELETE"]))
    return manager


async def serve_stdio(hub: RunHub, app: MCPApp | None = None, *, store_hint: str = "",
                      state_key: str | bytes | None = None) -> None:
    """Serve ``app`` (default: the hub's agents) over stdio until the host closes it (``treadle mcp serve``)."""
    from mcp.server.stdio import stdio_server

    server = build_server(hub, app, state_key=state_key,
                          how_to_decide=f"with `treadle approve RUN_ID CALL_ID{store_hint}` (or `treadle deny`)")
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await hub.aclose()
