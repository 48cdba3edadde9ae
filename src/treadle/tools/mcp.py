"""MCP tools: use the tools of any Model Context Protocol server in a treadle agent.

Two transports, both through the official ``mcp`` SDK (``pip install 'treadle[mcp]'``)::

    from treadle.tools.mcp import MCPServerStdio, MCPServerStreamableHTTP

    time_server = MCPServerStdio("mcp-server-time")
    remote = MCPServerStreamableHTTP("http://127.0.0.1:8000/mcp", headers={"Authorization": "Bearer ..."})
    agent = Agent(tools=[*time_server.tools(), *remote.tools()], model=...)

Each server owns one MCP session, opened lazily (or by ``async with server:``), on an event
loop of its own in a daemon thread. Every run, whatever its loop or face (sync, async,
streaming), shares that one session; calls cross the thread boundary as futures, progress
notifications come back as ``ToolCallActivityRunItem``s (``agent.tool_call_activity`` events).

Failures never hang a run: a server that cannot start raises ``MCPServerError`` on connect
(within ``connect_timeout``); a server that dies mid-call fails that call with
``MCPServerError`` (a ``ToolError``: the ToolManager turns it into an error observation) and
the next call starts it again; every call is bounded by ``timeout``. HTTP errors are typed
(``MCPHTTPError``, ``MCPAuthError``); a session the server forgot (HTTP 404) is started anew.

Both protocol eras (2026-07-28 when the server speaks it). A question the server asks during a run's
call (elicitation, ``input_required``) or a model request (sampling) is a pause of the run, like an
approval (``treadle.tools._mcp_pause``); ``MCPOAuth`` signs in through the SDK's OAuth; resources
and prompts are read with ``list_resources``/``read_resource``/``get_prompt`` and ``resource_tools()``.
See docs/mcp.md.
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Collection

try:
    from mcp import StdioServerParameters, stdio_client
except ImportError as _e:  # pragma: no cover - exercised only without the extra
    raise ImportError("treadle.tools.mcp needs the MCP SDK: pip install 'treadle[mcp]'") from _e

from ._mcp_auth import MCPOAuth
from ._mcp_requests import ElicitationHandler, MCPElicitation, MCPElicitationAnswer
from ._mcp_results import MCPAuthError, MCPHTTPError, MCPServerError, result_to_tool_output
from ._mcp_server import MCPServer
from ._mcp_tool import MCPTool

__all__ = ["ElicitationHandler", "MCPAuthError", "MCPElicitation", "MCPElicitationAnswer", "MCPHTTPError",
           "MCPOAuth", "MCPServer", "MCPServerError", "MCPServerStdio", "MCPServerStreamableHTTP", "MCPTool",
           "result_to_tool_output"]


class MCPServerStdio(MCPServer):
    """An MCP server run as a subprocess, speaking MCP over its stdin/stdout.

    Args:
        command: the executable (``"mcp-server-time"``, ``"node"``, ``"python"``...).
        args: its arguments.
        env: extra environment variables, on top of the SDK's safe defaults (HOME, PATH, ...).
        cwd: its working directory.
        errlog: where its stderr goes (default: inherited).
        **options: see ``MCPServer``.
    """

    def __init__(self, command: str, args: Collection[str] = (), env: dict[str, str] | None = None, *,
                 cwd: str | None = None, errlog: Any = None, **options: Any) -> None:
        self.command = command
        self.args = list(args)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.errlog = errlog
        super().__init__(**options)

    def _default_name(self) -> str:
        return " ".join(os.path.basename(part) for part in [self.command, *self.args])[:80]

    def _transport(self) -> Any:
        params = StdioServerParameters(command=self.command, args=self.args, env=self.env, cwd=self.cwd)
        return stdio_client(params, errlog=self.errlog)


class MCPServerStreamableHTTP(MCPServer):
    """An MCP server reached over Streamable HTTP.

    Args:
        url: the MCP endpoint, e.g. ``http://127.0.0.1:8000/mcp``.
        headers: sent with every request (a static token, ...).
        auth: ``MCPOAuth(...)`` (OAuth through the SDK: discovery, registration, PKCE, client
            credentials, refresh) or any ``httpx2.Auth``.
        **options: see ``MCPServer``.
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None, *, auth: MCPOAuth | Any = None,
                 **options: Any) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.auth = auth
        # one provider for the server object's life: its tokens outlive a reconnect (never in `headers`)
        self._auth_flow = auth.provider(url) if isinstance(auth, MCPOAuth) else auth
        super().__init__(**options)

    def _default_name(self) -> str:
        return self.url

    @asynccontextmanager
    async def _transport(self) -> AsyncIterator[Any]:
        import httpx2  # the mcp SDK's HTTP client
        from mcp.client.streamable_http import streamable_http_client

        # a long read timeout: the server may hold a response stream open while a tool runs
        timeout = httpx2.Timeout(self.connect_timeout, read=max(300.0, self.timeout or 0.0))
        async with httpx2.AsyncClient(headers=self.headers, timeout=timeout, auth=self._auth_flow,
                                      event_hooks={"response": [self._on_http_response]}) as client:
            async with streamable_http_client(self.url, http_client=client) as streams:
                yield streams

    async def _on_http_response(self, response: Any) -> None:
        """Remember the HTTP errors (the SDK turns them into JSON-RPC errors without the status)."""
        if response.status_code < 400:
            return
        request = response.request
        method = None
        try:
            body = json.loads(request.content or b"null")
            method = body.get("method") if isinstance(body, dict) else None
        except (ValueError, UnicodeDecodeError, AttributeError):
            pass
        if method is None and request.method != "POST":
            method = f"HTTP {request.method}"
        self._note_http_error(response.status_code, method, "mcp-session-id" in request.headers,
                              response.headers.get("www-authenticate"))
