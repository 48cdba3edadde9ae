"""What an MCP server asks of its client: elicitation (a question for the user), sampling (a
model call), roots (which folders it may use). A part of ``treadle.tools.mcp``.

An elicitation during a tool call made by a run becomes a pause of that run, like an approval
(``treadle.tools._mcp_pause``); outside a run, or for a server configured so, it goes to the
server's ``elicitation`` handler.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Union

import mcp.types as mcp_types

__all__ = ["ElicitationHandler", "MCPElicitation", "MCPElicitationAnswer", "apply_defaults", "call_handler",
           "elicit_result"]


@dataclass(slots=True)
class MCPElicitation:
    """A question an MCP server asks (``elicitation/create``).

    ``schema`` is the requested form (a flat JSON Schema object) in ``form`` mode; ``url`` the
    page to open in ``url`` mode. ``tool`` is the MCP tool whose call it came during (None when
    it came outside a call).
    """

    __module__ = "treadle.tools.mcp"

    server: str
    message: str
    mode: Literal["form", "url"] = "form"
    schema: dict[str, Any] | None = None
    url: str | None = None
    elicitation_id: str | None = None
    tool: str | None = None

    @classmethod
    def from_params(cls, server: str, params: Any, tool: str | None = None) -> MCPElicitation:
        if isinstance(params, mcp_types.ElicitRequestURLParams):
            return cls(server=server, message=params.message, mode="url", url=params.url,
                       elicitation_id=params.elicitation_id, tool=tool)
        schema = params.requested_schema
        if hasattr(schema, "model_dump"):
            schema = schema.model_dump(by_alias=True, exclude_none=True)
        return cls(server=server, message=params.message, schema=dict(schema or {}), tool=tool)

    @property
    def fingerprint(self) -> str:
        """The question's identity (message, form, url): a recorded answer is only given to the same question."""
        raw = json.dumps([self.message, self.mode, self.schema, self.url], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"server": self.server, "message": self.message, "mode": self.mode}
        for key in ("schema", "url", "elicitation_id", "tool"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["fingerprint"] = self.fingerprint
        return out


@dataclass(slots=True)
class MCPElicitationAnswer:
    """The answer to an ``MCPElicitation``: ``accept`` (with the form's ``content``), ``decline`` or ``cancel``."""

    __module__ = "treadle.tools.mcp"

    action: Literal["accept", "decline", "cancel"]
    content: dict[str, Any] | None = field(default=None)

    @classmethod
    def accept(cls, content: dict[str, Any] | None = None) -> MCPElicitationAnswer:
        return cls("accept", dict(content or {}))

    @classmethod
    def decline(cls) -> MCPElicitationAnswer:
        return cls("decline")

    @classmethod
    def cancel(cls) -> MCPElicitationAnswer:
        return cls("cancel")


Answer = Union[MCPElicitationAnswer, dict[str, Any], bool, None]
ElicitationHandler = Callable[[MCPElicitation], Union[Answer, Awaitable[Answer]]]
"""``handler(question) -> answer``, sync or async: an ``MCPElicitationAnswer``, a dict (accept
with that content), True (accept with the form's defaults), False or None (decline)."""


def as_answer(value: Answer) -> MCPElicitationAnswer:
    if isinstance(value, MCPElicitationAnswer):
        return value
    if isinstance(value, dict):
        return MCPElicitationAnswer.accept(value)
    if value is True:
        return MCPElicitationAnswer.accept()
    return MCPElicitationAnswer.decline()


async def call_handler(handler: ElicitationHandler, question: MCPElicitation) -> MCPElicitationAnswer:
    value = handler(question)
    if inspect.isawaitable(value):
        value = await value
    return as_answer(value)  # type: ignore[arg-type]


def apply_defaults(schema: dict[str, Any] | None, content: dict[str, Any] | None) -> dict[str, Any]:
    """``content`` with each property of the form it leaves out set to the property's ``default``
    (SEP-1034: a client fills in the defaults the user did not change)."""
    out = dict(content or {})
    for name, prop in ((schema or {}).get("properties") or {}).items():
        if name not in out and isinstance(prop, dict) and "default" in prop:
            out[name] = prop["default"]
    return out


def check_content(schema: dict[str, Any] | None, content: dict[str, Any]) -> str | None:
    """Why ``content`` does not fit the form (None when it does)."""
    if not schema:
        return None
    import jsonschema

    problems = [f"{'.'.join(str(p) for p in e.path) or '(answer)'}: {e.message}"
                for e in jsonschema.Draft202012Validator(schema).iter_errors(content)]
    return "; ".join(problems[:5]) or None


def elicit_result(question: MCPElicitation, answer: MCPElicitationAnswer) -> mcp_types.ElicitResult:
    """The wire result for an answer (defaults filled in for an accepted form)."""
    if answer.action != "accept":
        return mcp_types.ElicitResult(action=answer.action)
    if question.mode == "url":
        return mcp_types.ElicitResult(action="accept")
    return mcp_types.ElicitResult(action="accept", content=apply_defaults(question.schema, answer.content))
