"""Two runs call the same 2025-era MCP server over streamable HTTP at once, and the server asks a
question during each call: each question reaches the run whose call it came with (it comes on
that call's own response stream), not the oldest call in flight. The server is treadle's own
``/mcp`` face, asking approvals of its agent ``deleter`` (tests/server/mcp_agents.py)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from treadle import Agent, Function, Runner
from treadle.events import FunctionRequest
from treadle.models.scripted import ScriptedModel
from treadle.permissions import ApprovalResponse, PermissionManager
from treadle.server import create_app
from treadle.tools.mcp import MCPServerStreamableHTTP

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from mcp_agents import make
from server_utils import serving

pytestmark = pytest.mark.timeout(120)


def caller(server: MCPServerStreamableHTTP) -> Agent[str]:
    """Asks the served agent ``deleter`` to delete the file its input names, then answers with the result."""
    def reply(messages: list[Any]) -> Function:
        last = str(messages[-1]["content"])
        if last.startswith("Observation:"):
            return Function(name="finish", kwargs={"answer": last.split(":", 1)[1].strip()})
        return Function(name="deleter", kwargs={"input": str(messages[1]["content"])})
    return Agent(name="caller", tools=[server], model=ScriptedModel([reply], repeat_last=True), max_steps=3)


async def test_each_question_reaches_its_own_call(tmp_path: Path) -> None:
    asked: list[tuple[str | None, str]] = []
    both = asyncio.Event()

    async def answer(request: FunctionRequest) -> ApprovalResponse:
        question = str(request.tool.thought)
        asked.append((request.run_id, question))
        if len(asked) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 30)  # both calls are in flight, both questions open
        if "a.txt" in question:
            return ApprovalResponse.approve(kwargs={"decision": "approve"})
        return ApprovalResponse.approve(kwargs={"decision": "deny", "reason": "keep b"})

    with serving(create_app(make(), store=f"sqlite:///{tmp_path / 'served.db'}")) as url:
        server = MCPServerStreamableHTTP(f"{url}/mcp", protocol="legacy", timeout=60)
        try:
            runners = {name: Runner(caller(server), permission_manager=PermissionManager(answer))
                       for name in ("a.txt", "b.txt")}
            streams = {name: r.astream(name) for name, r in runners.items()}
            results = {name: await s.wait_for_completion() for name, s in streams.items()}
        finally:
            server.close()
    by_run = {run_id: question for run_id, question in asked}
    for name, stream in streams.items():
        assert name in by_run[stream.run_id], (name, asked)  # the run's own call's question
    assert results["a.txt"].status == "success" and results["a.txt"].answer == "deleted a.txt"
    assert "keep b" in str(results["b.txt"].answer) and "deleted" not in str(results["b.txt"].answer)
