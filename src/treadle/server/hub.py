"""The server's run hub: starts runs, keeps each live run's events for its SSE readers,
and answers approvals and cancels. Finished runs are read back from the journal."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import JsonValue

from .. import events as ev
from .._edits import check_edit
from .._json import is_object
from ..agent import Agent
from ..errors import UserError
from ..events import FunctionRequest
from ..permissions import ApprovalResponse, PermissionManager
from ..runner import Runner
from ..store.base import JournalEntry, RunRecord, RunStore, lease_is_free
from ..store.links import child_links, journaled_steps, parent_link, root_of, waiting_requests
from ..store.records import Request
from ..types import to_jsonable
from .bodies import ChildRun
from .frames import (
    MAX_FRAME_BYTES,
    MAX_ITEMS,
    MAX_TEXT,
    Envelope,
    Frame,
    clip,
    envelope_from_entry,
    event_key,
    frame,
    suspended,
    suspension,
)
from .live import LiveRun
from .trace import TraceEvent

if TYPE_CHECKING:
    from ..memory import MemoryStore

__all__ = ["MAX_FRAME_BYTES", "MAX_ITEMS", "MAX_TEXT", "TERMINAL", "Envelope", "Frame", "LiveRun", "RunHub", "clip",
           "envelope_from_entry", "event_key", "frame", "model_name", "served_by", "suspended", "suspension"]

logger = logging.getLogger("treadle.server")

TERMINAL = frozenset({"success", "error", "max_steps", "cancelled"})
KEEP_FINISHED = 256  # finished runs whose events stay in memory (older ones are read from the journal)
KEEP_RUNNERS = 1024  # chat sessions whose Runner (and memory handle) stay built


def served_by(record: RunRecord) -> tuple[str, str | None]:
    """The agent (and chat session) a journaled run was started for by a server (else its
    agent's name, and no session)."""
    server: object = (record.config or {}).get("server")
    info: dict[str, object] = server if is_object(server) else {}
    agent, session = info.get("agent"), info.get("session_id")
    return (agent if isinstance(agent, str) and agent else record.agent_name,
            session if isinstance(session, str) and session else None)


class RunHub:
    """Runs agents for the HTTP server. One Runner per (agent, chat session), all sharing
    one journal; every run's events are kept in memory while it is live (and for the last
    few hundred finished runs) so an SSE reader can join or rejoin at any event."""

    def __init__(self, agents: dict[str, Agent[Any]], store: RunStore, *, memory_store: MemoryStore | None = None,
                 max_live_runs: int = 64, max_steps: int | None = None) -> None:
        if not agents:
            raise UserError("the server needs at least one agent")
        self.agents = agents
        self.default_agent = next(iter(agents))
        self.store = store
        self.memory_store = memory_store
        self.max_live_runs = max_live_runs
        self.max_steps = max_steps
        self.live: dict[str, LiveRun] = {}
        self.finished: OrderedDict[str, LiveRun] = OrderedDict()
        self._runners: OrderedDict[tuple[str, str | None, bool], Runner[Any]] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ runners
    def runner_for(self, agent_name: str, session_id: str | None, suspend: bool = False) -> Runner[Any]:
        """The (agent, session) runner; ``suspend``: one whose runs wait for an approval in the
        journal (they end "waiting_for_approval"; the MCP face asks its host, then resumes them)."""
        key = (agent_name, session_id, suspend)
        runner = self._runners.get(key)
        if runner is not None:
            self._runners.move_to_end(key)
        else:
            memory = None
            if session_id is not None:
                from ..memory import ConversationMemory, SQLiteMemoryStore

                if self.memory_store is None:
                    self.memory_store = SQLiteMemoryStore()
                memory = ConversationMemory(self.memory_store, session_id=session_id)
            runner = Runner(self.agents[agent_name], max_steps=self.max_steps, conversation_memory=memory,
                            store=self.store, permission_manager=PermissionManager(),
                            run_metadata={"server": {"agent": agent_name, "session_id": session_id}},
                            suspend_for_approval=suspend)
            self._runners[key] = runner
            self._evict()
        return runner

    def _evict(self) -> None:
        """Forget the least recently used idle sessions' runners past KEEP_RUNNERS (their
        memory is in the store; an 'always allow' given in such a session is forgotten)."""
        excess = len(self._runners) - KEEP_RUNNERS
        for key in list(self._runners):
            if excess <= 0:
                break
            if key[1] is not None and not self._runners[key].active_runs:
                del self._runners[key]
                excess -= 1

    # ------------------------------------------------------------------ runs
    def get(self, run_id: str) -> LiveRun | None:
        return self.live.get(run_id) or self.finished.get(run_id)

    def start(self, input: str, *, session_id: str | None = None, agent: str | None = None,
              resume: str | None = None, earlier: list[JournalEntry] | None = None, suspend: bool = False) -> LiveRun:
        """Start a run (or resume a journaled one) in the server's loop; returns at once."""
        name = self.default_agent if agent is None else agent  # "" names no agent
        if name not in self.agents:
            raise KeyError(name)
        if len(self.live) >= self.max_live_runs:
            raise OverflowError(f"{len(self.live)} runs are live; the limit is {self.max_live_runs}")
        runner = self.runner_for(name, session_id, suspend)
        if resume and earlier is None:
            earlier = self.store.events(resume)
        stream = runner.astream_resume(resume) if resume else runner.astream({"input_str": input})
        live = LiveRun(run_id=stream.run_id, agent_name=name, session_id=session_id, runner=runner, input=input,
                       stream=stream)
        for entry in earlier or ():
            if not suspension(entry):
                live.add_entry(entry)
        return self.adopt(live, f"treadle-serve-{live.run_id}")

    def adopt(self, live: LiveRun, task_name: str) -> LiveRun:
        """Hold a run just started (by ``start``, or by a face on its own conversation): live here,
        its events pumped into memory by a task of the server's loop."""
        self.live[live.run_id] = live
        self.finished.pop(live.run_id, None)
        task = asyncio.get_running_loop().create_task(self._pump(live), name=task_name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return live

    async def _pump(self, live: LiveRun) -> None:
        """The run's one stream consumer: it never stops early, whoever reads the SSE."""
        try:
            async for event in live.stream.stream_events():
                try:
                    live.add(event)
                except Exception:  # one event the server cannot encode must not end the stream
                    logger.exception("cannot send event %s of run %s", getattr(event, "name", "raw"), live.run_id)
            live.result = await live.stream.wait_for_completion()
        except Exception as e:  # the stream's safety net already journaled the ending
            live.result = live.stream.result
            if live.result is None:
                live.add(ev.RunItemStreamEvent(name=ev.EXECUTION_COMPLETE, item=ev.FinalOutputItem(
                    data={"status": "error", "error": f"{type(e).__name__}: {e}"}), run_id=live.run_id,
                    seq=live._last + 1))
        finally:
            live.finished = True
            live._changed.set()
            self.live.pop(live.run_id, None)
            self.finished[live.run_id] = live
            while len(self.finished) > KEEP_FINISHED:
                self.finished.popitem(last=False)

    def cancel(self, run_id: str) -> bool:
        live = self.live.get(run_id)
        if live is None:
            raise LookupError(run_id)
        return live.stream.cancel()

    def pending(self, run_id: str) -> list[dict[str, JsonValue]]:
        """The calls the run waits on: ``{"call_id", "tool_name", "kwargs", "thought"}`` (and
        ``question``: the form of a question a tool call asks, an MCP elicitation)."""
        live = self.live.get(run_id)
        if live is None:  # suspended in the journal (before a restart too): its calls, and its inner agents'
            out: list[dict[str, JsonValue]] = []
            for _, payload in waiting_requests(self.store, run_id):
                r = Request.model_validate(payload)
                fn = r.tool
                one: dict[str, JsonValue] = {"call_id": r.id, "tool_name": r.tool_name,
                                             "kwargs": fn.kwargs if fn is not None else {},
                                             "thought": fn.thought if fn is not None else None}
                details: object = r.confirmation_details
                if is_object(details) and details.get("kind") == "mcp_elicitation":
                    one["question"] = to_jsonable(details)
                out.append(one)
            return out
        requests: list[FunctionRequest] = live.stream.pending_approvals
        return [{"call_id": r.id, "tool_name": r.tool_name, "kwargs": to_jsonable(r.tool.kwargs),
                 "thought": r.tool.thought} for r in requests]

    def decidable(self, run_id: str, record: RunRecord | None) -> str | None:
        """Why this server cannot take decisions on the run's approvals; None when it can:
        it runs the run (or the run's caller), or the run is suspended in the journal by an
        agent served here and no other process holds it."""
        if run_id in self.live:
            return None
        if record is None:
            return "the run is not in this server's journal"
        if record.status in TERMINAL:  # (read first: no journal reads for the many ended runs of a list)
            return f"the run has ended ({record.status})"
        if self.live_root(record) is not None:  # a child of a run live here
            return None
        if parent_link(record)["parent_run_id"]:
            record = root_of(self.store, record)  # an inner agent's calls are decided on its caller
            if record.run_id in self.live:
                return None
        if record.status in TERMINAL:
            return f"the run has ended ({record.status})"
        if not lease_is_free(record.owner, record.lease_until, time.time()):
            return ("another process is running this run (a terminal or another server) and takes its decisions "
                    "there")
        if record.status != "waiting_for_approval":
            return "the run is not live on this server (it stopped mid-run): resume it first"
        agent, _ = served_by(record)
        if agent not in self.agents:
            return (f"the run was made by agent {agent!r}, which this server does not serve "
                    f"({', '.join(self.agents)}): decide it where that agent runs (e.g. treadle approve)")
        return None

    def decide(self, run_id: str, call_id: str, decision: str, *, reason: str | None = None,
               kwargs: dict[str, JsonValue] | None = None, always: bool = False) -> bool:
        """Answer one pending approval of one live run. False when that run has no such
        pending call. Edited arguments are checked first (``InvalidEdit``: nothing decided)."""
        live = self.live.get(run_id)
        if live is None:
            return False
        requests: list[FunctionRequest] = live.stream.pending_approvals
        request = next((r for r in requests if r.id == call_id), None)
        if request is None:
            return False
        if decision == "deny":
            response = ApprovalResponse.deny(reason or "denied by the user")
        elif decision == "edit":
            check_edit(live.runner.agent, request.tool_name, kwargs)  # the caller's tool, or an inner agent's
            response = ApprovalResponse.approve(kwargs=kwargs)
        else:
            response = ApprovalResponse.approve(always=always)
        manager = live.runner.permission_manager  # runner_for's: a PermissionManager, which takes decisions
        if not isinstance(manager, PermissionManager):
            raise ValueError("this run's permission manager takes no decisions from outside")
        return manager.decide(run_id, call_id, response)

    # ------------------------------------------------------------------ reading
    def record(self, run_id: str) -> RunRecord | None:
        return self.store.get_run(run_id)

    def summary(self, run_id: str, record: RunRecord | None) -> dict[str, JsonValue] | None:
        """The run's JSON from its journal row (read by the caller, off the loop) and live state."""
        live = self.get(run_id)
        if record is None and live is None:
            return None
        out = summarize(record, live, self.pending(run_id))
        why = self.decidable(run_id, record)
        out.update(can_decide=why is None, cannot_decide_reason=why)
        return out

    def frames(self, run_id: str, after: int) -> list[Frame]:
        """Journaled events after ``after`` (for runs this process no longer holds; a child
        run's own events, not its children's)."""
        return [Frame((e.seq, 0), str(e.seq), e.name, frame(e.seq, e.created_at, e.name, None,
                                                             envelope_from_entry(e)["event"]))
                for e in self.store.events(run_id) if e.seq > after and not suspension(e)]

    def live_root(self, record: RunRecord | None) -> LiveRun | None:
        """The live run of this process that a child run (``record``) belongs to, if any."""
        seen: set[str] = set()
        while record is not None:
            parent = parent_link(record)["parent_run_id"]
            if not parent or parent in seen:
                return None
            seen.add(parent)
            live = self.live.get(parent)
            if live is not None:
                return live
            record = self.store.get_run(parent)
        return None

    def children(self, run_id: str) -> list[ChildRun]:
        """The run's child runs (agents it called as tools or used as guardrails)."""
        return [ChildRun.model_validate(link) for link in child_links(self.store, run_id)]

    def trace_parts(self, run_id: str) -> tuple[list[TraceEvent], list[ChildRun]]:
        return self.trace_events(run_id), self.children(run_id)

    def created(self, run_id: str) -> float | None:
        record = self.store.get_run(run_id)
        return record.created_at if record is not None else None

    def trace_events(self, run_id: str) -> list[TraceEvent]:
        """The run's own events, typed, for the trace view (a live run's light copies)."""
        live = self.get(run_id)
        if live is not None:
            return list(live.events)
        return [TraceEvent(e.seq, e.created_at, e.record) for e in self.store.events(run_id) if not suspension(e)]

    def steps(self, run_id: str) -> JsonValue:
        live = self.get(run_id)
        if live is not None and live.result is not None:
            return to_jsonable(live.result.step_history)
        if live is not None:
            return to_jsonable(list(live.stream._run.step_history))
        return to_jsonable(journaled_steps(self.store.events(run_id)))

    def cancel_all(self) -> None:
        """Cancel every live run (the server is stopping): each is journaled as cancelled."""
        for live in list(self.live.values()):
            live.stream.cancel()

    async def aclose(self) -> None:
        """Cancel the live runs and wait for them."""
        self.cancel_all()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)


def summarize(record: RunRecord | None, live: LiveRun | None, pending: list[dict[str, JsonValue]]
              ) -> dict[str, JsonValue]:
    """The JSON of one run for the API (``bodies.RunSummary``): from its journal row, completed by
    the live state."""
    out: dict[str, JsonValue] = {"run_id": None, "agent": None, "status": "running", "model": None, "steps": 0,
                           "usage": None, "created_at": None, "updated_at": None, "input": None,
                           "session_id": None, "live": live is not None and not live.finished, "answer": None,
                           "error": None, "error_type": None, "duration_s": None,
                           "pending_approvals": list[JsonValue](pending),
                           "parent_run_id": None, "parent_call_id": None, "depth": 0}
    if record is not None:
        link = parent_link(record)
        out.update(parent_run_id=link["parent_run_id"], parent_call_id=link["parent_call_id"], depth=link["depth"])
        result = record.result or {}
        config = record.config or {}
        agent, session = served_by(record)
        out.update(run_id=record.run_id, agent=agent, status=record.status,
                   model=config.get("model"), steps=record.steps, usage=record.usage,
                   created_at=record.created_at, updated_at=record.updated_at,
                   input=(record.prompt_kwargs or {}).get("input_str"),
                   session_id=session or config.get("memory_session_id"),
                   answer=result.get("answer"), error=result.get("error"), error_type=result.get("error_type"))
        if record.status in TERMINAL and record.updated_at and record.created_at:
            out["duration_s"] = round(record.updated_at - record.created_at, 6)
    if live is not None:
        run = live.stream._run
        out.update(run_id=live.run_id, agent=live.agent_name, input=live.input, session_id=live.session_id,
                   status=live.status, steps=len(run.step_history), usage=to_jsonable(run.usage))
        created = out["created_at"]
        created = created if isinstance(created, (int, float)) and created else live.created_at
        out["created_at"] = created
        if out["model"] is None:
            out["model"] = model_name(live.runner.agent)
        if live.result is not None:
            res = live.result
            out.update(answer=to_jsonable(res.answer), error=res.error, error_type=res.error_type)
            if out["duration_s"] is None:
                updated = out["updated_at"]
                end = updated if isinstance(updated, (int, float)) and updated else time.time()
                out["duration_s"] = round(end - created, 6)
    return out


@runtime_checkable
class Named(Protocol):
    """A model client that says its name (the providers' clients do; the protocol does not ask it)."""

    name: str


def model_name(agent: Agent[Any]) -> str:
    """The name of an agent's model: its model string, the client's ``name``, or its class's."""
    model: object = agent._model  # as given: a model string is not resolved (no client is built to say it)
    if isinstance(model, str):
        return model
    return model.name if isinstance(model, Named) else type(model).__name__
