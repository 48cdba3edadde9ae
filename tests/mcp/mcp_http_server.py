"""A small MCP server on the mcp SDK's own server class, over Streamable HTTP on loopback.

Run by tests/mcp/test_mcp_http.py as ``python mcp_http_server.py PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp.types import Tool, ToolExecution
from pydantic import BaseModel


class TestServer(MCPServer):
    async def list_tools(self) -> list[Tool]:
        tools = await super().list_tools()
        for t in tools:  # a tool that runs only as an MCP task (2025-11-25 tasks)
            if t.name == "render_video":
                t.execution = ToolExecution(task_support="required")
        return tools


server = TestServer("treadle-test-http")


class Area(BaseModel):
    width: float
    height: float
    area: float


@server.tool()
def rectangle_area(width: float, height: float) -> Area:
    """Area of a width x height rectangle."""
    return Area(width=width, height=height, area=width * height)


@server.tool()
def whoami(ctx: Context) -> str:
    """The X-Treadle-User header of the request."""
    headers = ctx.headers or {}
    return f"user={headers.get('x-treadle-user', '?')}"


@server.tool()
async def count_up(n: int, ctx: Context) -> str:
    """Count to n, reporting progress."""
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"step {i}")
        await asyncio.sleep(0.01)
    return f"counted to {n}"


def double(x: int) -> int:
    """Twice x (added at run time by `unlock`)."""
    return 2 * x


@server.tool()
async def unlock(ctx: Context) -> str:
    """Add the `double` tool and tell the client its tool list changed."""
    server.add_tool(double)
    await ctx.session.send_tool_list_changed()  # 2025: a notification on the session
    await ctx.notify_tools_changed()  # 2026-07-28: an event for the subscriptions/listen streams
    return "double is available"


class Colour(BaseModel):
    colour: str
    shade: str = "light"


def ask_colour() -> Elicit[Colour]:
    return Elicit("Which colour?", Colour)


@server.tool()
def paint(wall: str, choice: Annotated[Colour, Resolve(ask_colour)], ctx: Context) -> str:
    """Paint a wall in a colour the user chooses (asked mid-call: input_required on 2026-07-28)."""
    return f"{wall} painted {choice.shade} {choice.colour} (protocol {ctx.protocol_version})"


@server.tool()
def render_video(scene: str) -> str:
    """Render a scene (a long job: callable only as an MCP task)."""
    return f"rendered {scene}"


@server.resource("notes://house-rules", mime_type="text/markdown")
def house_rules() -> str:
    """The house's painting rules."""
    return "# House rules\nNever paint the north wall red."


@server.prompt()
def painter(room: str) -> str:
    """Instructions for a painting assistant."""
    return f"You help paint the {room}. Ask before painting anything."


if __name__ == "__main__":
    asyncio.run(server.run_streamable_http_async(host="127.0.0.1", port=int(sys.argv[1])))
