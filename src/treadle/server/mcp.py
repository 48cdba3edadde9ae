"""The MCP face: served agents as the tools of an MCP server (``treadle mcp serve`` over
stdio, ``/mcp`` on ``treadle serve`` over streamable HTTP). See docs/mcp-serve.md.

A call of an agent's tool is a run of that agent, started in the run hub (the journal,
the limits, the web UI and ``GET /runs/{id}`` see it); the run id is in the result. The
face maps the run's events: steps and tool calls become progress notifications. An
approval is asked of the host: an ``elicitation/create`` request (2025-era protocol), or
an ``input_required`` result whose request state names the run (2026-07-28). The run
waits for its answer in the journal, so the answer continues it after a restart too; a
host that cannot be asked gets a result saying how to decide the call. A cancelled
request cancels the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .. import __version__
from .. import events as ev
from .._edits import InvalidEdit
from ..errors import TreadleError
from .hub import TERMINAL, LiveRun, RunHub

__all__ = ["APPROVAL_SCHEMA", "PATH", "STATE_KEY_ENV", "build_server", "input_schema", "mount_mcp", "serve_stdio"]

logger = logging.getLogger("treadle.server")

PATH = "/mcp"
STATE_KEY_ENV = "TREADLE_MCP_STATE_KEY"
MAX_INPUT = 100_000  # characters, as POST /runs
ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
RUN_META = "treadle/run_id"

APPROVAL_SCHEMA: dict[str, Any] = {
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


def input_schema() -> dict[str, Any]:
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


def _fail(message: str) -> MCPError:
    return MCPError(types.INVALID_PARAMS, message)


# ---------------------------------------------------------------------- the server
class MCPFace:
    """The MCP requests of the agents of one run hub."""

    def __init__(self, hub: RunHub, *, how_to_decide: str) -> None:
        self.hub = hub
        self.how_to_decide = how_to_decide  # the words after "decide it": where, for this transport
        # tool name -> agent name: an MCP tool name is 1-128 of A-Z a-z 0-9 _ - . (SEP-986)
        self.names = {re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:128] or "agent": name for name in hub.agents}

    async def list_tools(self, ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
        tools = []
        for tool_name, name in self.names.items():
            agent = self.hub.agents[name]
            names = ", ".join(t.name for t in agent.tools) or "none"
            description = (agent.instructions or f"The treadle agent {name!r}.").strip()
            tools.append(types.Tool(name=tool_name, title=name, input_schema=input_schema(),
                                    description=f"{description}\n\nRuns the agent (tools: {names}) on the input and "
                                                f"returns its answer; the run id is in the result."))
        return types.ListToolsResult(tools=tools)

    async def call_tool(self, ctx: ServerRequestContext[Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult | types.InputRequiredResult:
        agent = self.names.get(params.name)
        if agent is None:
            raise _fail(f"no tool {params.name!r}: the served agents are {', '.join(self.names)}")
        args = params.arguments or {}
        unknown = set(args) - {"input", "session_id", "run_id"}
        if unknown:
            raise _fail(f"unknown arguments {', '.join(sorted(unknown))}: give input (and session_id), or run_id")
        for key in ("input", "session_id", "run_id"):
            if args.get(key) is not None and not isinstance(args[key], str):
                raise _fail(f"{key} must be a string")
        for key in ("session_id", "run_id"):
            if args.get(key) is not None and not ID.match(args[key]):
                raise _fail(f"{key} must be 1-128 letters, digits or _.:-")
        if params.request_state is not None:  # the retry of an input_required result: the host's answer
            run_id, call_id = _state(params.request_state)
            outcome = await self._answer(agent, run_id, call_id, _response(params.input_responses, call_id))
        elif args.get("run_id"):
            outcome = await self._take_up(agent, args["run_id"])
        else:
            text = args.get("input") or ""
            if not text.strip():
                raise _fail("give input (the message to the agent), or run_id (a run to continue)")
            if len(text) > MAX_INPUT:
                raise _fail(f"input is over {MAX_INPUT} characters")
            try:
                outcome = self.hub.start(text, session_id=args.get("session_id"), agent=agent, suspend=True)
            except OverflowError as e:
                return _result(None, "busy", f"the server is busy ({e}): call again later", error=True)
            except TreadleError as e:
                raise _fail(str(e)) from None
        if isinstance(outcome, types.CallToolResult):
            return outcome
        return await self._follow(ctx, agent, outcome)

    # ------------------------------------------------------------------ following a run
    async def _follow(self, ctx: ServerRequestContext[Any], agent: str,
                      live: LiveRun) -> types.CallToolResult | types.InputRequiredResult:
        """Follow the run to its end, each step a progress notification; at an approval,
        ask the host and go on with its answer."""
        progress = _Progress(ctx)
        key = live.frames[-1].key if live.frames else (0, 0)
        await progress.say(f"run {live.run_id} of agent {agent!r}")
        while True:
            try:
                key = await _pump_progress(live, key, progress)
            except anyio.get_cancelled_exc_class():  # the host cancelled the request: the run stops too
                if live.run_id in self.hub.live:
                    live.stream.cancel()
                raise
            status = live.status
            if status != "waiting_for_approval":
                return _ended(live)
            pending = await asyncio.to_thread(self.hub.pending, live.run_id)
            if not pending:
                return _ended(live)
            call = pending[0]
            try:
                asked = await self._ask(ctx, agent, live.run_id, call)
            except anyio.get_cancelled_exc_class():  # cancelled while the host was asked
                await self._cancel_waiting(agent, live.run_id)
                raise
            if not isinstance(asked, dict):
                return asked
            outcome = await self._answer(agent, live.run_id, str(call["call_id"]), asked)
            if isinstance(outcome, types.CallToolResult):
                return outcome
            live = outcome
            key = live.frames[-1].key if live.frames else (0, 0)
            verdict = "approved" if asked["decision"] == "approve" else "denied"
            await progress.say(f"{call['tool_name']}: {verdict} by the host")

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
                                      session_id=((record.config or {}).get("server") or {}).get("session_id"),
                                      resume=run_id, earlier=earlier)
            except (OverflowError, TreadleError):
                logger.warning("run %s stays waiting for its approval: it could not be cancelled", run_id)
                return
            live.stream.cancel()
            await live.settled()

    async def _ask(self, ctx: ServerRequestContext[Any], agent: str, run_id: str,
                   call: dict[str, Any]) -> dict[str, Any] | types.CallToolResult | types.InputRequiredResult:
        """The host's decision on ``call`` (elicited); or the result to return instead: an
        ``input_required`` one (2026 protocol), or one saying the run waits."""
        question = _question(call)
        if not _can_elicit(ctx):
            return self._waiting(run_id, call, "the MCP host does not support elicitation")
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            request = types.ElicitRequest(params=types.ElicitRequestFormParams(message=question,
                                                                                requested_schema=APPROVAL_SCHEMA))
            return types.InputRequiredResult(input_requests={call["call_id"]: request},
                                             request_state=json.dumps({"run": run_id, "call": call["call_id"]}))
        try:
            answer = await ctx.session.elicit_form(question, APPROVAL_SCHEMA, related_request_id=ctx.request_id)
        except MCPError as e:
            return self._waiting(run_id, call, f"the host answered the question with an error ({e.error.message})")
        return _decision(answer) or self._waiting(run_id, call, "the host dismissed the question")

    def _waiting(self, run_id: str, call: dict[str, Any], why: str) -> types.CallToolResult:
        text = (f"run {run_id} waits for an approval of {_call_text(call)} ({why}). Decide it {self.how_to_decide} "
                f"(run {run_id}, call {call['call_id']}), then call this tool again with run_id={run_id!r} for its "
                "answer.")
        return _result(run_id, "waiting_for_approval", text, error=True, pending=[call])

    async def _answer(self, agent: str, run_id: str, call_id: str,
                      decision: dict[str, Any] | None) -> LiveRun | types.CallToolResult:
        """Record the host's decision on a run waiting in the journal, and resume it."""
        hub = self.hub
        if run_id in hub.live:  # decided and resumed elsewhere meanwhile (the web UI): follow it
            return hub.live[run_id]
        record = await asyncio.to_thread(hub.store.get_run, run_id)
        if record is None or ((record.config or {}).get("server") or {}).get("agent", record.agent_name) != agent:
            raise _fail(f"no run {run_id!r} of agent {agent!r}")
        if decision is None:
            raise _fail(f"the retry carries no answer for call {call_id!r} (inputResponses[{call_id!r}])")
        if record.status in TERMINAL:  # decided elsewhere meanwhile, and ended
            return _summary_result(await asyncio.to_thread(hub.summary, run_id, record) or {"run_id": run_id,
                                                                                          "status": record.status})
        if decision["decision"] == "cancel":
            pending = await asyncio.to_thread(hub.pending, run_id)
            call = next((c for c in pending if c["call_id"] == call_id), {"call_id": call_id, "tool_name": "a tool"})
            return self._waiting(run_id, call, "the host dismissed the question")
        why = await asyncio.to_thread(hub.decidable, run_id, record)
        if why is not None:
            return _result(run_id, record.status, f"run {run_id}: {why}", error=True)
        session = ((record.config or {}).get("server") or {}).get("session_id")
        runner = hub.runner_for(agent, session, suspend=True)
        try:
            await asyncio.to_thread(runner.record_decision, run_id, call_id, approve=decision["decision"] == "approve",
                                    always=decision["always"], reason=decision["reason"])
        except (InvalidEdit, TreadleError) as e:
            return _result(run_id, record.status, f"run {run_id}: the decision was not recorded: {e}", error=True)
        return await self._resume(agent, record)

    async def _resume(self, agent: str, record: Any) -> LiveRun | types.CallToolResult:
        earlier = await asyncio.to_thread(self.hub.store.events, record.run_id)
        session = ((record.config or {}).get("server") or {}).get("session_id")
        try:
            return self.hub.start((record.prompt_kwargs or {}).get("input_str") or "", session_id=session,
                                  agent=agent, resume=record.run_id, earlier=earlier, suspend=True)
        except OverflowError as e:
            return _result(record.run_id, record.status, f"the server is busy ({e}): call again later", error=True)
        except TreadleError as e:
            return _result(record.run_id, record.status, f"run {record.run_id} cannot go on: {e}", error=True)

    async def _take_up(self, agent: str, run_id: str) -> LiveRun | types.CallToolResult:
        """``run_id`` given: follow the run if it is live here, answer with its result if it
        ended, resume it if it stopped (its decision recorded, or to ask for it again)."""
        hub = self.hub
        if run_id in hub.live:
            return hub.live[run_id]
        record = await asyncio.to_thread(hub.store.get_run, run_id)
        summary = await asyncio.to_thread(hub.summary, run_id, record) if record is not None else None
        if summary is None or summary["agent"] != agent or summary.get("parent_run_id"):
            raise _fail(f"no run {run_id!r} of agent {agent!r}")
        if record is not None and record.status in TERMINAL:
            return _summary_result(summary)
        why = await asyncio.to_thread(hub.decidable, run_id, record)
        if why is not None and record is not None and record.status == "waiting_for_approval":
            return _result(run_id, record.status, f"run {run_id}: {why}", error=True)
        return await self._resume(agent, record)


class _Progress:
    """Progress notifications of one request (none when the host sent no progress token)."""

    def __init__(self, ctx: ServerRequestContext[Any]) -> None:
        self.ctx = ctx
        self.count = 0

    async def say(self, message: str) -> None:
        self.count += 1
        try:
            await self.ctx.session.report_progress(self.count, None, message[:1000])
        except Exception:  # a host gone away: the run goes on, its end is journaled
            logger.debug("cannot send a progress notification", exc_info=True)


async def _pump_progress(live: LiveRun, key: tuple[int, int], progress: _Progress) -> tuple[int, int]:
    """The run's events after ``key`` as progress, until its own end (or its suspension)."""
    while True:
        changed = live.changed
        for f in live.frames_after(key):
            key = f.key
            if f.name == ev.EXECUTION_COMPLETE and f.depth == 0:
                await live.settled()
                return key
            text = _describe(f)
            if text:
                await progress.say(text)
        if live.finished and not live.frames_after(key):
            return key
        await live.wait(changed, 15)


def _describe(f: Any) -> str | None:
    """One progress message from a frame of the run's stream (None: not worth one)."""
    if f.name not in (ev.TOOL_CALL_START, ev.TOOL_CALL_COMPLETE, ev.TOOL_PERMISSION_REQUEST):
        return None
    data = ((json.loads(f.data).get("event") or {}).get("item") or {}).get("data") or {}
    who = "an inner agent: " if f.depth else ""
    if f.name == ev.TOOL_PERMISSION_REQUEST:
        tool = data.get("tool") or {}
        return f"{who}{data.get('tool_name')}({_args(tool.get('kwargs'))}) needs approval"
    if f.name == ev.TOOL_CALL_START:
        return f"{who}calling {data.get('name')}({_args(data.get('kwargs'))})"
    fn = data.get("input") or {}
    out = data.get("error") or data.get("output")
    if isinstance(out, dict) and "observation" in out:  # a ToolOutput
        out = out["observation"]
    return f"{who}{fn.get('name')} {'failed' if data.get('error') else 'returned'}: {str(out)[:500]}"


# ---------------------------------------------------------------------- answers and results
def _args(kwargs: Any) -> str:
    return json.dumps(kwargs or {}, default=str)[:500]


def _call_text(call: dict[str, Any]) -> str:
    return f"{call.get('tool_name')}({_args(call.get('kwargs'))})"


def _question(call: dict[str, Any]) -> str:
    thought = f" The agent's reason: {call['thought']}" if call.get("thought") else ""
    return f"The agent wants to call {_call_text(call)}. Approve it?{thought}"


def _can_elicit(ctx: ServerRequestContext[Any]) -> bool:
    caps = ctx.session.client_capabilities
    if caps is None or caps.elicitation is None:
        return False
    e = caps.elicitation  # form mode is implied by a bare capability
    return e.form is not None or e.url is None


def _decision(answer: types.ElicitResult) -> dict[str, Any] | None:
    """The decision an elicitation answer gives; None when the host dismissed it (the run waits)."""
    if answer.action == "decline":
        return {"decision": "deny", "reason": "declined by the user", "always": False}
    if answer.action != "accept":
        return None
    content = answer.content or {}
    choice = content.get("decision")
    reason = content.get("reason")
    return {"decision": "approve" if choice == "approve" else "deny",  # anything but approve denies
            "reason": str(reason) if reason else (None if choice == "approve" else "denied by the user"),
            "always": content.get("always") is True}


def _response(responses: types.InputResponses | None, call_id: str) -> dict[str, Any] | None:
    answer = (responses or {}).get(call_id)
    if answer is None:
        return None
    if not isinstance(answer, types.ElicitResult):
        raise _fail(f"inputResponses[{call_id!r}] is not an elicitation result")
    return _decision(answer) or {"decision": "cancel"}


def _state(state: str) -> tuple[str, str]:
    try:
        data = json.loads(state)
        return str(data["run"]), str(data["call"])
    except (ValueError, KeyError, TypeError):
        raise _fail("requestState is not one this server made") from None


def _result(run_id: str | None, status: str, text: str, *, error: bool = False, answer: Any = None,
            pending: list[dict[str, Any]] | None = None) -> types.CallToolResult:
    structured: dict[str, Any] = {"run_id": run_id, "status": status, "answer": answer}
    if pending:
        structured["pending_approvals"] = [{k: c.get(k) for k in ("call_id", "tool_name", "kwargs")} for c in pending]
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured,
                                is_error=error, _meta={RUN_META: run_id} if run_id else None)


def _answer_text(answer: Any) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer, default=str)


def _ended(live: LiveRun) -> types.CallToolResult:
    res = live.result
    status = getattr(res, "status", None) or "error"
    if status == "success":
        answer = json.loads(json.dumps(getattr(res, "answer", None), default=str))
        return _result(live.run_id, status, _answer_text(answer), answer=answer)
    error = getattr(res, "error", None)
    kind = getattr(res, "error_type", None)
    return _result(live.run_id, status, f"run {live.run_id} ended with status {status}"
                                        f"{f': {kind}' if kind else ''}{f': {error}' if error else ''}", error=True)


def _summary_result(summary: dict[str, Any]) -> types.CallToolResult:
    run_id, status = summary["run_id"], summary["status"]
    if status == "success":
        return _result(run_id, status, _answer_text(summary.get("answer")), answer=summary.get("answer"))
    kind, error = summary.get("error_type"), summary.get("error")
    return _result(run_id, status, f"run {run_id} ended with status {status}"
                                   f"{f': {kind}' if kind else ''}{f': {error}' if error else ''}", error=True)


# ---------------------------------------------------------------------- building and serving
def build_server(hub: RunHub, *, how_to_decide: str, state_key: str | bytes | None = None) -> Server[Any]:
    """The low-level MCP server of ``hub``'s agents. ``state_key`` (32+ bytes; default the
    environment's ``TREADLE_MCP_STATE_KEY``, else a key of this process) seals the request
    state of ``input_required`` results: with a fixed key, a host's answer continues the run
    after a restart too."""
    face = MCPFace(hub, how_to_decide=how_to_decide)
    server: Server[Any] = Server("treadle", version=__version__, instructions=_instructions(hub),
                                 on_list_tools=face.list_tools, on_call_tool=face.call_tool)
    key = state_key or os.environ.get(STATE_KEY_ENV)
    security = RequestStateSecurity(keys=[key], ttl=7 * 86400) if key else RequestStateSecurity.ephemeral(ttl=86400)
    server.middleware.append(RequestStateBoundary(security, default_audience="treadle"))
    return server


def _instructions(hub: RunHub) -> str:
    return ("Each tool is a treadle agent: call it with input (a message) and it runs the agent and answers. "
            f"Agents: {', '.join(hub.agents)}. A tool call the agent makes may need your approval: it is asked "
            "as an elicitation.")


def mount_mcp(app: Any, hub: RunHub, *, state_key: str | bytes | None = None) -> Any:
    """Add the streamable-HTTP endpoint ``/mcp`` to the server's app (behind its guard: the
    token and the Host check apply). Returns the session manager, which the app's lifespan
    runs (``async with manager.run():``)."""
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
    from starlette.routing import Route

    server = build_server(hub, state_key=state_key,
                          how_to_decide="in the web UI, or with POST /runs/{run_id}/approvals/{call_id} on this "
                                        "server")
    from .mcp_streams import MemoryEventStore

    manager = StreamableHTTPSessionManager(app=server, event_store=MemoryEventStore(), retry_interval=1000)
    app.router.routes.append(Route(PATH, StreamableHTTPASGIApp(manager), methods=["GET", "POST", "DELETE"]))
    return manager


async def serve_stdio(hub: RunHub, *, store_hint: str = "", state_key: str | bytes | None = None) -> None:
    """Serve the hub's agents over stdio until the host closes it (``treadle mcp serve``)."""
    from mcp.server.stdio import stdio_server

    server = build_server(hub, state_key=state_key,
                          how_to_decide=f"with `treadle approve RUN_ID CALL_ID{store_hint}` (or `treadle deny`)")
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await hub.aclose()
