"""What the protocol faces share: starting a run on a conversation, following a run's events
(live, or from the journal) until it ends or waits for an approval, and deciding its calls
(live, or suspended in the journal after a restart) — all over the server's RunHub, so a face's
runs are the API's runs (same journal, limits, approvals)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic import JsonValue, ValidationError

from ... import events as ev
from ..._json import is_object
from ...errors import TreadleError
from ...store.base import RunRecord
from ...store.records import End, decode
from ..hub import TERMINAL, LiveRun, RunHub, served_by

__all__ = ["Decided", "Stop", "Turn", "decide_calls", "first_error", "follow", "history_text", "start_run",
           "waiting_calls"]

ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
APPROVE_WORDS = frozenset({"approve", "approved", "yes", "y", "ok", "okay", "allow", "go", "go ahead", "sure"})


@dataclass
class Turn:
    """One message of a protocol conversation, reduced to what a treadle run reads."""

    role: str  # system, user, assistant, tool
    text: str


def first_error(e: ValidationError) -> tuple[str, str]:
    """Where a refused request body is wrong (``"messages.0.role"``, or ``""``: the body itself)
    and what is wrong there, as ``"<where>: <message>"``."""
    first = e.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return where, f"{where or 'body'}: {first.get('msg')}"


def history_text(turns: list[Turn]) -> str:
    """The earlier turns as the run's ``chat_history_str`` (one line block per turn)."""
    names = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
    return "\n".join(f"{names.get(t.role, t.role.title())}: {t.text}" for t in turns if t.text)


def start_run(hub: RunHub, agent: str, input_text: str, history: str, run_id: str | None = None) -> LiveRun:
    """Start a journaled run of ``agent`` on ``input_text`` with ``history`` (the earlier turns)
    as its chat history; like ``RunHub.start`` (same runners, limits and journal), with the
    conversation the protocol's request carries instead of a memory session."""
    if len(hub.live) >= hub.max_live_runs:
        raise OverflowError(f"{len(hub.live)} runs are live; the limit is {hub.max_live_runs}")
    runner = hub.runner_for(agent, None)
    kwargs: dict[str, object] = {"input_str": input_text}
    if history:
        kwargs["chat_history_str"] = history
    stream = runner.astream(kwargs, id=run_id)
    live = LiveRun(run_id=stream.run_id, agent_name=agent, session_id=None, runner=runner, input=input_text,
                   stream=stream)
    return hub.adopt(live, f"treadle-face-{live.run_id}")


@dataclass
class Stop:
    """Why following a run stopped: it ended (``result`` is its RunnerResult JSON) or it waits
    for decisions (``pending``: ``[{"call_id", "tool_name", "kwargs", "thought"}]``)."""

    status: str
    result: dict[str, JsonValue] = field(default_factory=dict[str, JsonValue])
    pending: list[dict[str, JsonValue]] = field(default_factory=list[dict[str, JsonValue]])


def _envelope(data: bytes) -> dict[str, JsonValue]:
    return json.loads(data)


async def follow(hub: RunHub, run_id: str, after: tuple[int, int] = (0, 0), idle: float = 15
                 ) -> AsyncIterator[tuple[tuple[int, int], dict[str, JsonValue]] | Stop | None]:
    """The run's own events after ``after`` as ``(key, envelope)``, live as they come, then one
    ``Stop``: the run ended, or it waits for an approval (it stays live, or suspended in the
    journal), or it is not live here and never ended (``status`` "not_live"). ``None`` after
    ``idle`` seconds without an event (for keep-alives)."""
    live = hub.get(run_id)
    if live is None:
        entries = await asyncio.to_thread(hub.frames, run_id, after[0])
        for f in entries:
            yield f.key, _envelope(f.data)
        record = await asyncio.to_thread(hub.record, run_id)
        status = record.status if record is not None else "unknown"
        if record is not None and status in TERMINAL:
            yield Stop(status, {"usage": record.usage, **(record.result or {}), "status": status})
        elif status == "waiting_for_approval":
            yield Stop(status, pending=await asyncio.to_thread(hub.pending, run_id))
        else:
            yield Stop("not_live")
        return
    key = after
    async for f in live.follow(after, until=lambda: bool(live.stream.pending_approvals), idle=idle, ticks=True):
        if f is None:
            yield None  # nothing for ``idle`` seconds: a reader may send a keep-alive
            continue
        key = f.key
        if f.depth:
            continue
        env = _envelope(f.data)
        yield key, env
        if f.name == ev.EXECUTION_COMPLETE:
            end = decode(env.get("event"))
            ending = end.item.data if isinstance(end, End) else None
            data = ending.model_dump(mode="json", by_alias=True, exclude_unset=True) if ending is not None else {}
            yield Stop(str(data.get("status") or "error"), data)
            return
    if live.finished and not live.frames_after(key):
        result = live.result
        status = (result.status if result is not None else None) or "error"
        yield Stop(status, {"status": status, "error": result.error if result is not None else None})
    else:  # the run waits for a decision (its request's event was read first)
        yield Stop("waiting_for_approval", pending=hub.pending(run_id))


async def waiting_calls(hub: RunHub, run_id: str) -> list[dict[str, JsonValue]]:
    """The calls the run waits on (live here, or suspended in the journal); [] when none."""
    if run_id in hub.live:  # the live run's state is read on the loop, the journal off it
        return hub.pending(run_id)
    record = await asyncio.to_thread(hub.store.get_run, run_id)
    if record is None or record.status != "waiting_for_approval":
        return []
    return await asyncio.to_thread(hub.pending, run_id)


class Decided(Exception):
    """A decision this server cannot carry out (``status`` as the HTTP API would answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def last_key(hub: RunHub, run_id: str) -> tuple[int, int]:
    live = hub.live.get(run_id)
    if live is not None and live.seqs:
        return live.seqs[-1]
    return (0, 0)


async def decide_calls(hub: RunHub, run_id: str, decisions: list[tuple[str, bool, str | None]]
                       ) -> tuple[int, int]:
    """Decide the run's waiting calls (``(call_id, approve, reason)``) the way
    ``POST /runs/{id}/approvals/{call_id}`` does — the live run's, or a suspended run's (each
    recorded in the journal, then the run is resumed, under the same checks and limits).
    Returns the key after which the run's new events come."""
    if run_id in hub.live:
        key = last_key(hub, run_id)
        for call_id, approve, reason in decisions:
            hub.decide(run_id, call_id, "approve" if approve else "deny", reason=reason)
        return key
    record = await asyncio.to_thread(hub.store.get_run, run_id)
    if record is None:
        raise Decided(404, f"no run {run_id!r}")
    why = await asyncio.to_thread(hub.decidable, run_id, record)
    if why is not None:
        raise Decided(409, f"run {run_id}: {why}")
    agent, session_id = _agent_of(hub, record)
    if len(hub.live) >= hub.max_live_runs:  # before recording: a decision is never left without its run
        raise OverflowError(f"{len(hub.live)} runs are live; the limit is {hub.max_live_runs}")
    runner = hub.runner_for(agent, session_id)
    try:
        for call_id, approve, reason in decisions:
            await asyncio.to_thread(runner.record_decision, run_id, call_id, approve=approve, reason=reason)
        earlier = await asyncio.to_thread(hub.store.events, run_id)
        live = hub.start((record.prompt_kwargs or {}).get("input_str") or "", session_id=session_id, agent=agent,
                         resume=run_id, earlier=earlier)
    except TreadleError as e:
        raise Decided(409, str(e)) from None
    return live.seqs[-1] if live.seqs else (0, 0)


def _agent_of(hub: RunHub, record: RunRecord) -> tuple[str, str | None]:
    agent, session = served_by(record)
    if agent not in hub.agents:
        raise Decided(409, f"run {record.run_id} was made by agent {agent!r}, which this server does not serve")
    return agent, session


def parse_answer(text: str) -> tuple[bool, str | None]:
    """A person's reply to an approval question: approve (``approve``, ``yes``, ``ok``…) or deny,
    the rest of the text as the reason (``deny too risky``; any other text denies with itself)."""
    words = text.strip()
    low = words.lower().rstrip(".!")
    if low in APPROVE_WORDS:
        return True, None
    for w in ("deny", "denied", "no", "reject", "refuse"):
        if low == w:
            return False, "denied by the user"
        if low.startswith(w + " ") or low.startswith(w + ":") or low.startswith(w + ","):
            return False, words[len(w) + 1:].strip() or "denied by the user"
    return False, words or "denied by the user"


def answer_text(result: dict[str, JsonValue]) -> str:
    """A run's ending as a chat reply: its answer (JSON when not text), or what went wrong."""
    status = result.get("status")
    answer = result.get("answer")
    if status == "success":
        return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
    if status == "cancelled":
        return "(the run was cancelled before an answer)"
    if status == "max_steps":
        return answer if isinstance(answer, str) and answer else "(the run used all its steps without an answer)"
    return f"(the run ended without an answer: {result.get('error') or answer or status})"


def usage_of(result: dict[str, JsonValue]) -> tuple[int, int]:
    usage = result.get("usage")
    if not is_object(usage):
        return 0, 0
    tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
    return (int(tokens_in) if isinstance(tokens_in, (int, float)) else 0,
            int(tokens_out) if isinstance(tokens_out, (int, float)) else 0)
