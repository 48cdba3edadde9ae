"""A served tool's call as a journaled run, and what such a tool can ask the MCP host (a
part of ``treadle.server.mcp``; the public names are re-exported by ``treadle.server.mcp_app``).

A tool served by an ``MCPApp`` runs as a one-call run of an agent whose scripted model calls
it with the request's arguments: the journal, the limits, the web UI and ``GET /runs/{id}``
see it, and its approval waits in the journal like an agent's. ``ask_host`` and
``sample_host`` are questions of the call (``treadle._approval.ask_during_call``): the run
waits for the answer in the journal, and the MCP face asks the host (an elicitation or a
sampling request, or an ``input_required`` result on 2026-07-28).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import JsonValue

from .._approval import ask_during_call
from .._run import current_run
from ..errors import UserError
from ..store.base import JournalEntry
from ..types import Function, RunContext

__all__ = ["HostAnswer", "ask_host", "one_call_reply", "sample_host", "tool_call_output"]

ELICITATION = "mcp_elicitation"  # the kind the client side's questions have: every approval surface shows them
SAMPLING = "mcp_host_sampling"
_ranks: weakref.WeakKeyDictionary[asyncio.Task[object], dict[str, int]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class HostAnswer:
    """The host's answer to ``ask_host``: ``accept`` with the form's content, ``decline`` or ``cancel``."""

    action: Literal["accept", "decline", "cancel"]
    content: dict[str, JsonValue]


def _where(ctx: RunContext[object], what: str) -> tuple[str, str]:
    run = current_run.get()
    if run is None or ctx.tool_call_id is None:
        raise UserError(f"{what} is for a tool served over MCP, during its call (it takes a RunContext parameter)")
    return run.run_id, ctx.tool_call_id


def _question_id(run_id: str, call_id: str, kind: str, body: JsonValue) -> str:
    """The same question of the same call gets the same id after a resume (its recorded answer):
    the n-th question of this execution of the call (a resume executes it again)."""
    task = asyncio.current_task()
    counts = _ranks.setdefault(task, {}) if task is not None else {}
    rank = counts[call_id] = counts.get(call_id, 0) + 1
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    return f"{call_id}:{kind}{rank}:{digest}"


async def ask_host(ctx: RunContext[object], message: str, schema: dict[str, JsonValue]) -> HostAnswer:
    """Ask the MCP host's user ``message`` with a form (``schema``: a flat JSON object schema);
    the run waits for the answer (in the journal: a restart does not lose it)."""
    run_id, call_id = _where(ctx, "ask_host")
    run = current_run.get()
    assert run is not None
    body: JsonValue = {"message": message, "schema": schema}
    qid = _question_id(run_id, call_id, "q", body)
    details: dict[str, JsonValue] = {"kind": ELICITATION, "call_id": call_id, "server": "host", "message": message,
                                     "mode": "form", "schema": schema, "fingerprint": qid.rsplit(":", 1)[1]}
    accepted, answer, reason = await ask_during_call(run, qid, "question", {}, details)
    if accepted:
        return HostAnswer("accept", {str(k): v for k, v in answer.items()})
    return HostAnswer("cancel" if reason == "cancel" else "decline", {})


async def sample_host(ctx: RunContext[object], prompt: str, *, max_tokens: int = 1000,
                      system_prompt: str | None = None) -> str:
    """Ask the MCP host's model for a reply to ``prompt`` (sampling); the run waits for it."""
    run_id, call_id = _where(ctx, "sample_host")
    run = current_run.get()
    assert run is not None
    body: JsonValue = {"prompt": prompt, "max_tokens": max_tokens, "system_prompt": system_prompt}
    qid = _question_id(run_id, call_id, "s", body)
    details: dict[str, JsonValue] = {"kind": SAMPLING, "call_id": call_id, "prompt": prompt,
                                     "message": f"the tool asks the host's model: {prompt[:300]}",
                                     "max_tokens": max_tokens, "system_prompt": system_prompt}
    accepted, answer, reason = await ask_during_call(run, qid, "sampling", {}, details)
    if not accepted:
        raise UserError(f"the host did not answer the model request ({reason or 'refused'})")
    return str(answer.get("text") or "")


def one_call_reply(tool_name: str) -> Callable[[list[dict[str, object]]], Function]:
    """The scripted model of a served tool's run: call the tool with the run's input (the
    request's arguments, as JSON), then finish with what the tool returned."""
    def reply(messages: list[dict[str, object]]) -> Function:
        if any(m.get("role") == "assistant" for m in messages):
            last = str(messages[-1].get("content") or "")
            return Function(name="finish", kwargs={"answer": last.removeprefix("Observation:").strip()})
        given = next(str(m.get("content") or "{}") for m in messages if m.get("role") == "user")
        kwargs = json.loads(given)
        return Function(name=tool_name, kwargs=kwargs if isinstance(kwargs, dict) else {})
    return reply


@dataclass(frozen=True, slots=True)
class CallOutput:
    """What a served tool's call gave: the tool's output (or its error)."""

    output: JsonValue
    error: str | None


def tool_call_output(entries: list[JournalEntry]) -> CallOutput | None:
    """The last finished tool call of a run's own journal (None: the tool did not run)."""
    for entry in reversed(entries):
        if entry.name != "agent.tool_call_complete":
            continue
        payload = entry.payload
        data = json.loads(payload) if isinstance(payload, (bytes, str)) else payload
        item = ((data or {}).get("item") or {}) if isinstance(data, dict) else {}
        out = item.get("data") or {}
        if isinstance(out, dict):
            return CallOutput(out.get("output"), out.get("error") if isinstance(out.get("error"), str) else None)
    return None
