"""An MCP server's resources and prompts for treadle (a part of ``treadle.tools.mcp``): listed, read
and got from code, and as two tools an agent can browse and read resources with.

``resource_tools()`` gives ``<prefix>list_resources`` (the server's resources and templates) and
``<prefix>read_resource(uri)``; ``get_prompt(name, args)`` renders a prompt as text (to use as an
agent's instructions or a message).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Coroutine, TypeVar

import mcp.types as mcp_types

from mcp import ClientSession, MCPError

from ..types import ToolOutput
from ._mcp_results import MCPServerError, _block_text

__all__ = ["ResourcesAndPrompts"]

T = TypeVar("T")


class ResourcesAndPrompts:
    """Mixin of ``MCPServer``: resources (list, templates, read) and prompts (list, get)."""

    name: str
    prefix: str

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        raise NotImplementedError

    async def _get_session(self) -> ClientSession:
        raise NotImplementedError

    async def _on_loop(self, what: str, call: Any) -> Any:
        """``call(session)`` on the server's own loop, from any loop; an MCP error becomes ``MCPServerError``."""

        async def run() -> Any:
            session = await self._get_session()
            try:
                return await call(session)
            except MCPError as e:
                raise MCPServerError(f"MCP server {self.name} could not {what}: {e.message}") from None

        return await asyncio.wrap_future(self._submit(run()))

    async def _pages(self, what: str, method: str, field: str) -> list[Any]:
        async def run(session: ClientSession) -> list[Any]:
            items: list[Any] = []
            cursor: str | None = None
            while True:
                params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                page = await getattr(session, method)(params=params)
                items.extend(getattr(page, field))
                cursor = page.next_cursor
                if not cursor:
                    return items

        return await self._on_loop(what, run)

    # -- resources
    async def list_resources(self) -> list[dict[str, Any]]:
        """The server's resources: ``{"uri", "name", "description", "mime_type"}`` each."""
        found = await self._pages("list its resources", "list_resources", "resources")
        return [{"uri": str(r.uri), "name": r.name, "description": r.description, "mime_type": r.mime_type}
                for r in found]

    async def list_resource_templates(self) -> list[dict[str, Any]]:
        """The server's resource templates (URIs with ``{placeholders}``): ``{"uri_template", "name", ...}``."""
        found = await self._pages("list its resource templates", "list_resource_templates", "resource_templates")
        return [{"uri_template": t.uri_template, "name": t.name, "description": t.description,
                 "mime_type": t.mime_type} for t in found]

    async def read_resource(self, uri: str) -> ToolOutput:
        """One resource: its text as the observation (binary contents as references), the raw contents in
        ``metadata["contents"]``."""
        result = await self._on_loop(f"read {uri}", lambda session: session.read_resource(uri))
        texts: list[str] = []
        for c in result.contents:
            text = getattr(c, "text", None)
            texts.append(text if text is not None else _block_text(mcp_types.EmbeddedResource(type="resource",
                                                                                               resource=c)) or "")
        observation = "\n".join(texts)
        return ToolOutput(output=observation, observation=observation, display=observation, metadata={
            "mcp_server": self.name, "uri": uri,
            "contents": [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in result.contents]})

    # -- prompts
    async def list_prompts(self) -> list[dict[str, Any]]:
        """The server's prompts: ``{"name", "description", "arguments": [{"name", "required", ...}]}`` each."""
        found = await self._pages("list its prompts", "list_prompts", "prompts")
        return [{"name": p.name, "description": p.description,
                 "arguments": [a.model_dump(exclude_none=True) for a in (p.arguments or [])]} for p in found]

    async def get_prompt(self, name: str, arguments: dict[str, str] | None = None) -> str:
        """A prompt rendered as text (one message: its text; several: ``role: text`` lines), to use as
        an agent's instructions or input."""
        result = await self._on_loop(f"get the prompt {name}",
                                     lambda session: session.get_prompt(name, dict(arguments or {})))
        parts = [(m.role, _block_text(m.content) or "") for m in result.messages]
        if len(parts) == 1:
            return parts[0][1]
        return "\n\n".join(f"{role}: {text}" for role, text in parts)

    # -- as tools
    def resource_tools(self) -> list[Any]:
        """Two tools for an agent: ``<prefix>list_resources`` and ``<prefix>read_resource(uri)``."""
        from .function_tool import FunctionTool

        server = self

        async def list_resources() -> str:
            """List the resources of the MCP server (documents, files, records an agent can read), and the
            URI templates it can fill in."""
            return json.dumps({"resources": await server.list_resources(),
                               "templates": await server.list_resource_templates()}, ensure_ascii=False)

        async def read_resource(uri: str) -> ToolOutput:
            """Read one resource of the MCP server.

            Args:
                uri: the resource's URI, from list_resources (or a template with its placeholders filled in).
            """
            return await server.read_resource(uri)

        return [FunctionTool(list_resources, name=f"{self.prefix}list_resources",
                             description=f"List the resources of the MCP server {self.name}."),
                FunctionTool(read_resource, name=f"{self.prefix}read_resource",
                             description=f"Read one resource of the MCP server {self.name} by its URI.")]
