"""An agent run against an OAuth-protected MCP server of the conformance suite, launched by the suite
like conformance_client.py: ``python conformance_agent.py REPORT_JSON URL``. It signs in with
MCPOAuth, runs an agent that calls the server's tool with a journal (SQLite), then reports where the
access token appears: the model's messages, the events, the journal file (it must appear nowhere).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from conformance_client import CLIENT_METADATA_URL, sign_in

from treadle import Agent, Function, Runner, ScriptedModel
from treadle.tools.mcp import MCPOAuth, MCPServerStreamableHTTP


def main(report: Path, url: str) -> None:
    seen: list[Any] = []

    def call_the_tool(messages: list[Any]) -> Function:
        seen.append(json.dumps(messages, default=str))
        return Function(name="test-tool", kwargs={})

    def finish(messages: list[Any]) -> Function:
        seen.append(json.dumps(messages, default=str))
        return Function(name="finish", kwargs={"answer": "done"})

    server = MCPServerStreamableHTTP(url, auth=MCPOAuth(authorize=sign_in, client_metadata_url=CLIENT_METADATA_URL,
                                                         redirect_uri="http://localhost:3000/callback"),
                                     timeout=20, connect_timeout=20)
    events: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        agent = Agent(tools=server.tools(), model=ScriptedModel([call_the_tool, finish]))
        result = Runner(agent, store=f"sqlite:///{db}", event_handlers=[lambda e: events.append(repr(e))]).call("go")
        token = server._auth_flow.context.current_tokens.access_token
        journal = db.read_bytes() + b"".join(p.read_bytes() for p in Path(tmp).glob("runs.db-*"))
        report.write_text(json.dumps({
            "status": result.status, "observation": str(result.step_history[0].observation),
            "token_length": len(token), "in_messages": any(token in m for m in seen),
            "in_events": any(token in e for e in events), "in_journal": token.encode() in journal,
            "in_repr": token in repr(server) + repr(server.auth)}))
    server.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
