"""MCP results as treadle sees them: ``MCPServerError``, and a ``CallToolResult`` mapped to a
``ToolOutput`` (a part of ``treadle.tools.mcp``, which re-exports what is public here)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

try:
    import mcp.types as mcp_types

    from mcp import MCPError
except ImportError as _e:  # pragma: no cover - exercised only without the extra
    raise ImportError("treadle.tools.mcp needs the MCP SDK: pip install 'treadle[mcp]'") from _e

from ..errors import ToolError
from ..types import ToolOutput

__all__ = ["MCPAuthError", "MCPHTTPError", "MCPServerError", "describe_error", "http_error", "result_to_tool_output"]


class MCPServerError(ToolError):
    """The MCP server could not be started, reached, or died during a call."""

    __module__ = "treadle.tools.mcp"  # where it is imported from (and pickled by)


class MCPHTTPError(MCPServerError):
    """An MCP server over HTTP refused a request with an HTTP error status (``status``)."""

    __module__ = "treadle.tools.mcp"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class MCPAuthError(MCPHTTPError):
    """The MCP server wants credentials it did not get (HTTP 401) or refuses the ones it got (403)."""

    __module__ = "treadle.tools.mcp"


@dataclass(frozen=True, slots=True)
class _HTTPError:
    seq: int
    epoch: int
    status: int
    method: str | None
    had_session: bool
    www_authenticate: str | None


_HINTS = {
    401: ("it needs authentication: give the server OAuth (auth=MCPOAuth(...)) or a token "
          "(headers={'Authorization': 'Bearer ...'})"),
    403: "the credentials were refused for this request: check the token's scopes or the account's rights",
    404: "nothing answers MCP at this URL: check the path (often /mcp)",
    405: "the URL does not accept MCP's POST: check the path (often /mcp)",
    406: "the server refused the client's Accept header: is this a Streamable HTTP MCP endpoint?",
    429: "the server is rate limiting: retry later",
}


def http_error(server: str, doing: str, message: str, errors: list[_HTTPError]) -> MCPServerError:
    """The error for a request the server refused; when an HTTP status was behind it, a typed one naming the fix."""
    failed = errors[-1] if errors else None
    if failed is None:
        return MCPServerError(f"MCP server {server} {doing}: {message}")
    hint = _HINTS.get(failed.status) or ("the server failed: see its logs" if failed.status >= 500
                                         else "the server refused the request")
    if failed.status == 404 and failed.had_session:
        hint = "the server no longer knows the session, and a new one failed too"
    text = f"MCP server {server} {doing}: HTTP {failed.status}"
    if failed.method:
        text += f" to {failed.method}"
    text += f" - {hint}"
    if failed.www_authenticate and failed.status in (401, 403):
        text += f" (WWW-Authenticate: {failed.www_authenticate[:200]})"
    cls = MCPAuthError if failed.status in (401, 403) else MCPHTTPError
    return cls(text, failed.status)


# ---------------------------------------------------------------------------- results

def _decoded_size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except (ValueError, TypeError):
        return len(data) * 3 // 4


def _block_text(block: Any) -> str | None:
    """The text the model reads for one content block (binary content becomes a reference)."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        return f"[{kind}: {block.mime_type}, {_decoded_size(block.data)} bytes]"
    if kind == "resource":
        res = block.resource
        uri = str(res.uri)
        text = getattr(res, "text", None)
        if text is not None:
            return f"[resource: {uri}]\n{text}"
        blob = getattr(res, "blob", "") or ""
        return f"[resource: {uri}, {res.mime_type or 'application/octet-stream'}, {_decoded_size(blob)} bytes]"
    if kind == "resource_link":
        return f"[resource link: {block.name} <{block.uri}>]"
    return f"[{kind} content]"


def result_to_tool_output(result: mcp_types.CallToolResult, tool_name: str = "",
                          server_name: str | None = None) -> ToolOutput:
    """Map an MCP ``CallToolResult`` to a treadle ``ToolOutput``.

    Text content is the observation; structured content is the output (and, as JSON, the
    observation when there is no text); images, audio and binary resources become references
    like ``[image: image/png, 1234 bytes]``; ``isError`` gives ``status="error"``. The raw
    content blocks are kept in ``metadata["content"]`` for user interfaces.
    """
    texts = [t for t in (_block_text(b) for b in result.content) if t is not None]
    structured = result.structured_content
    if texts:
        observation = "\n".join(texts)
    elif structured is not None:
        observation = json.dumps(structured, ensure_ascii=False, default=str)
    else:
        observation = ""
    if result.is_error and not observation:
        observation = f"Tool {tool_name} reported an error."
    metadata: dict[str, Any] = {
        "mcp_tool": tool_name,
        "content": [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content],
    }
    if server_name is not None:
        metadata["mcp_server"] = server_name
    return ToolOutput(output=structured if structured is not None else observation, observation=observation,
                      display=observation, metadata=metadata, status="error" if result.is_error else "success")


def describe_error(exc: BaseException) -> str:
    """One readable line for an exception, looking inside (anyio) exception groups."""
    inner = getattr(exc, "exceptions", None)
    while isinstance(inner, (list, tuple)) and inner:  # an exception group: its first exception
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    if isinstance(exc, MCPError):
        return exc.message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
