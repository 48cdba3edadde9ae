"""The MCP client the official conformance suite launches: ``python conformance_client.py URL``.

It drives treadle's own client (``treadle.tools.mcp``) the way an agent would: connect, list
the tools, call them. The suite names the scenario in ``MCP_CONFORMANCE_SCENARIO`` and, for the
auth scenarios, gives credentials in ``MCP_CONFORMANCE_CONTEXT`` (JSON). Exit code 0 on success.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from treadle.tools.mcp import MCPElicitation, MCPElicitationAnswer, MCPServerStreamableHTTP


def accept_with_defaults(question: MCPElicitation) -> MCPElicitationAnswer:
    """The user accepts the form without changing anything: treadle fills in the defaults."""
    return MCPElicitationAnswer.accept({})


async def main(url: str) -> None:
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    options: dict = {"timeout": 20, "connect_timeout": 20, "elicitation": accept_with_defaults}
    del context  # (auth scenarios: not supported yet)
    server = MCPServerStreamableHTTP(url, **options)
    try:
        tools = await server.list_tools()
        print(f"{scenario}: tools {[t.name for t in tools]}")
        for tool in tools:
            args = {"a": 2, "b": 3} if tool.mcp_name == "add_numbers" else {}
            out = await server.call_tool(tool.mcp_name, args)
            print(f"{tool.mcp_name} -> {out.status}: {out.observation[:200]}")
    finally:
        await server.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
