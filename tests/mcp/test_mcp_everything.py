"""MCP over stdio against the reference server ``@modelcontextprotocol/server-everything`` (npm).

``.ci/mcp.sh`` installs it into a local folder and prints ``export TREADLE_MCP_EVERYTHING=...``
(its entry script, run with node). Without it the tests fail under CI and are skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from treadle import Agent, Function, Runner, ScriptedModel
from treadle.events import ToolCallActivityRunItem
from treadle.tools.manager import ToolManager
from treadle.tools.mcp import MCPServerStdio

ENV = "TREADLE_MCP_EVERYTHING"


def _entry() -> str:
    path = os.environ.get(ENV, "")
    why = ""
    if not path:
        why = f'{ENV} is not set (install the server with: eval "$(bash .ci/mcp.sh)")'
    elif not Path(path).is_file():
        why = f"{ENV}={path} does not exist (rerun: eval \"$(bash .ci/mcp.sh)\")"
    elif shutil.which("node") is None:
        why = "node is not installed"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def _server(tmp_path: Path, **options: Any) -> tuple[MCPServerStdio, Path]:
    """The server behind a shell that records its pid, so a test can kill it."""
    pidfile = tmp_path / "server.pid"
    script = f'echo $$ > "{pidfile}"; exec node "{_entry()}" stdio'
    # the server's banner and logs go nowhere
    return MCPServerStdio("sh", ["-c", script], errlog=subprocess.DEVNULL, name="everything", **options), pidfile


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server, _ = _server(tmp_path_factory.mktemp("everything"), timeout=20)
    yield server
    server.close()


async def test_tool_with_arguments(everything: MCPServerStdio) -> None:
    tm = ToolManager(await everything.list_tools())
    assert {"echo", "get-sum", "trigger-long-running-operation"} <= set(tm.names)
    res = await tm.execute(Function(name="get-sum", kwargs={"a": 2, "b": 40.5}))
    assert res.status == "success" and "42.5" in res.observation
    res = await tm.execute(Function(name="echo", kwargs={"message": "héllo"}))
    assert res.observation == "Echo: héllo"


async def test_images_become_references_and_structured_content_the_output(everything: MCPServerStdio) -> None:
    img = await everything.call_tool("get-tiny-image", {})
    assert img.status == "success"
    assert "[image: image/png, " in img.observation and " bytes]" in img.observation
    assert any(c["type"] == "image" for c in img.metadata["content"])  # the raw block, for UIs
    weather = await everything.call_tool("get-structured-content", {"location": "Chicago"})
    assert isinstance(weather.output, dict) and "temperature" in weather.output


async def test_progress_notifications_are_tool_call_activity(everything: MCPServerStdio) -> None:
    tm = ToolManager(await everything.list_tools())
    activity: list[ToolCallActivityRunItem] = []
    res = await tm.execute(Function(id="call-1", name="trigger-long-running-operation",
                                    kwargs={"duration": 0.6, "steps": 3}), on_activity=activity.append)
    assert res.status == "success" and "Long running operation completed" in res.observation
    assert [a.data["progress"] for a in activity] == [1, 2, 3]
    assert all(a.id == "call-1" and a.data["total"] == 3 and a.data["tool"] == "trigger-long-running-operation"
               for a in activity)


async def test_per_call_timeout_leaves_the_session_usable(tmp_path: Path) -> None:
    server, _ = _server(tmp_path, timeout=0.5)
    try:
        tm = ToolManager(await server.list_tools())
        res = await tm.execute(Function(name="trigger-long-running-operation", kwargs={"duration": 5, "steps": 5}))
        assert res.status == "error" and res.error_type == "ToolTimeoutError"  # not waited out: no success
        res = await tm.execute(Function(name="get-sum", kwargs={"a": 1, "b": 1}))
        assert res.status == "success" and server.connected
    finally:
        server.close()


async def _kill_when_running(pidfile: Path, activity: list[Any]) -> None:
    while not activity:  # the call is under way once the first progress arrives
        await asyncio.sleep(0.02)
    os.kill(int(pidfile.read_text()), signal.SIGKILL)


async def test_server_killed_mid_call_is_an_error_then_it_restarts(tmp_path: Path) -> None:
    server, pidfile = _server(tmp_path, timeout=20)
    try:
        tm = ToolManager(await server.list_tools())
        activity: list[Any] = []
        killer = asyncio.ensure_future(_kill_when_running(pidfile, activity))
        res = await tm.execute(Function(name="trigger-long-running-operation", kwargs={"duration": 10, "steps": 50}),
                               on_activity=activity.append)
        await killer
        assert len(activity) < 50  # the call ended with the server, long before its 50 steps were done
        assert res.status == "error" and res.error_type == "MCPServerError"
        assert "closed the connection" in res.observation
        # the next call starts the server again
        res = await tm.execute(Function(name="get-sum", kwargs={"a": 1, "b": 2}))
        assert res.status == "success" and "3" in res.observation
    finally:
        server.close()


async def test_agent_run_continues_after_the_server_dies(tmp_path: Path) -> None:
    server, pidfile = _server(tmp_path, timeout=20)
    try:
        model = ScriptedModel([
            Function(name="trigger-long-running-operation", kwargs={"duration": 10, "steps": 50}),
            Function(name="finish", kwargs={"answer": "gave up"}),
        ])
        runner = Runner(Agent(tools=server.tools(), model=model))
        events: list[Any] = []
        activity: list[Any] = []

        def handler(e: Any) -> None:
            events.append(e)
            if getattr(e, "name", "") == "agent.tool_call_activity":
                activity.append(e)

        runner.event_handlers.append(handler)
        killer = asyncio.ensure_future(_kill_when_running(pidfile, activity))
        res = await asyncio.wait_for(runner.acall("go"), 30)
        await killer
        assert res.ok and res.answer == "gave up"
        assert res.step_history[0].status == "error"
        assert "closed the connection" in res.step_history[0].observation
    finally:
        server.close()
