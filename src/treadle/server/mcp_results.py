"""Answers and results of the MCP face (a part of ``treadle.server.mcp``): the host's answer
to a question as a decision on the run, and a run's end as a ``CallToolResult``."""

from __future__ import annotations

import json
from dataclasses import dataclass

import mcp_types as types
from mcp.shared.exceptions import MCPError
from pydantic import JsonValue

from ..store.base import JournalEntry
from .mcp_catalog import blocks
from .mcp_tools import tool_call_output

__all__ = ["RUN_META", "Answer", "Pending", "answer_of", "fail", "result", "tool_result"]

RUN_META = "treadle/run_id"


def fail(message: str) -> MCPError:
    return MCPError(types.INVALID_PARAMS, message)


@dataclass(frozen=True, slots=True)
class Pending:
    """A call a run waits on: an approval of a tool call, or a question its tool asks."""

    call_id: str
    tool_name: str
    kwargs: dict[str, JsonValue]
    thought: str | None = None
    details: dict[str, JsonValue] | None = None  # a question's kind, message, form

    @property
    def kind(self) -> str:
        return str((self.details or {}).get("kind") or "approval")

    def public(self) -> dict[str, JsonValue]:
        return {"call_id": self.call_id, "tool_name": self.tool_name, "kwargs": self.kwargs}


@dataclass(frozen=True, slots=True)
class Answer:
    """The host's decision on a pending call. ``kwargs``: a question's answer (the form's
    content, the model's reply); ``wait``: the host dismissed an approval (the run waits)."""

    approve: bool
    reason: str | None = None
    always: bool = False
    kwargs: dict[str, JsonValue] | None = None
    wait: bool = False


def answer_of(pending: Pending, reply: types.ElicitResult | types.CreateMessageResult) -> Answer:
    """The decision a host's reply to ``pending``'s question gives."""
    if isinstance(reply, types.CreateMessageResult):
        content = reply.content
        text = content.text if isinstance(content, types.TextContent) else ""
        return Answer(True, kwargs={"text": text})
    if pending.kind != "approval":  # a tool's own question: the tool gets the answer, whatever it is
        if reply.action == "accept":
            given: dict[str, JsonValue] = {}
            for k, v in (reply.content or {}).items():
                given[str(k)] = list(v) if isinstance(v, list) else v
            return Answer(True, kwargs=given)
        return Answer(False, reason=reply.action)
    if reply.action == "decline":
        return Answer(False, reason="declined by the user")
    if reply.action != "accept":
        return Answer(False, wait=True)
    content = reply.content or {}
    approve = content.get("decision") == "approve"  # anything but approve denies
    reason = content.get("reason")
    return Answer(approve, reason=str(reason) if reason else (None if approve else "denied by the user"),
                  always=content.get("always") is True)


def result(run_id: str | None, status: str, text: str, *, error: bool = False, answer: JsonValue = None,
           pending: list[Pending] | None = None,
           content: list[types.ContentBlock] | None = None) -> types.CallToolResult:
    structured: dict[str, JsonValue] = {"run_id": run_id, "status": status, "answer": answer}
    if pending:
        structured["pending_approvals"] = [p.public() for p in pending]
    return types.CallToolResult(content=content or [types.TextContent(text=text)], structured_content=structured,
                                is_error=error, _meta={RUN_META: run_id} if run_id else None)


def answer_text(answer: JsonValue) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer, default=str)


def ended(run_id: str, status: str, answer: JsonValue, error: str | None, kind: str | None) -> types.CallToolResult:
    """An agent's run that ended: its answer, or why it has none."""
    if status == "success":
        return result(run_id, status, answer_text(answer), answer=answer)
    return result(run_id, status, f"run {run_id} ended with status {status}"
                                  f"{f': {kind}' if kind else ''}{f': {error}' if error else ''}", error=True)


def tool_result(run_id: str, status: str, entries: list[JournalEntry], error: str | None) -> types.CallToolResult:
    """A served tool's run that ended: what the tool returned (its content blocks, text or
    JSON), or its error."""
    out = tool_call_output(entries)
    if out is None:  # the tool never ran (cancelled, refused): the run's own ending
        return result(run_id, status, f"the tool did not run: {error or status}", error=True)
    if out.error is not None:
        return result(run_id, "error", out.error, error=True)
    value = out.output
    if isinstance(value, dict):
        meta = value.get("metadata")
        raw = meta.get("content") if isinstance(meta, dict) else None
        failed = value.get("status") == "error"
        if isinstance(raw, list) and raw:
            return result(run_id, status, "", answer=value.get("observation"), content=blocks(raw), error=failed)
        if "observation" in value:
            observed = value.get("observation")
            return result(run_id, status, str(observed or ""), answer=value.get("output"), error=failed)
    return result(run_id, status, answer_text(value), answer=value)
