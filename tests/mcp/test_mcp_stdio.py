"""MCP over stdio against a third-party server from PyPI: ``mcp-server-time``."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from helpers import run_face
from treadle import Agent, Function, Runner, ScriptedModel
from treadle.tools.manager import ToolManager
from treadle.tools.mcp import MCPServerError, MCPServerStdio, MCPTool
from treadle.types import ToolOutput


def _time_command() -> str:
    found = shutil.which("mcp-server-time") or str(Path(sys.executable).with_name("mcp-server-time"))
    if not Path(found).exists():
        pytest.skip("mcp-server-time is not installed (pip install 'treadle[mcp]' mcp-server-time)")
    return found


@pytest.fixture(scope="module")
def time_server() -> Any:
    server = MCPServerStdio(_time_command(), timeout=20)
    yield server
    server.close()


def test_lists_the_tools_with_their_own_schemas(time_server: MCPServerStdio) -> None:
    tools = {t.name: t for t in time_server.tools()}
    assert set(tools) == {"get_current_time", "convert_time"}
    t = tools["get_current_time"]
    assert isinstance(t, MCPTool) and t.kind == "async_generator"
    assert t.definition.func_parameters["required"] == ["timezone"]
    assert t.definition.func_parameters["properties"]["timezone"]["type"] == "string"
    assert "timezone" in t.description.lower()
    assert time_server.tools()[0] is tools["get_current_time"]  # cached: listed once


async def test_call_with_arguments(time_server: MCPServerStdio) -> None:
    tm = ToolManager(await time_server.list_tools())
    res = await tm.execute(Function(id="c1", name="convert_time", kwargs={
        "source_timezone": "Europe/Paris", "time": "12:00", "target_timezone": "Asia/Tokyo"}))
    assert res.status == "success", res.observation
    assert isinstance(res.tool_output, ToolOutput)
    # structured content is the output, its JSON (the server's text) the observation
    assert res.output["source"]["timezone"] == "Europe/Paris"
    assert res.output["target"]["datetime"].endswith("T20:00:00+09:00")
    assert '"Asia/Tokyo"' in res.observation


async def test_tool_error_is_an_error_observation(time_server: MCPServerStdio) -> None:
    tm = ToolManager(await time_server.list_tools())
    res = await tm.execute(Function(name="get_current_time", kwargs={"timezone": "Mars/Olympus_Mons"}))
    assert res.status == "error"
    assert "Invalid timezone" in res.observation and "Mars/Olympus_Mons" in res.observation


async def test_arguments_are_checked_against_the_json_schema(time_server: MCPServerStdio) -> None:
    tm = ToolManager(await time_server.list_tools())
    res = await tm.execute(Function(name="get_current_time", kwargs={"tz": "UTC"}))
    assert res.status == "error" and res.error_type == "ToolArgumentsError"
    assert "'timezone' is a required property" in res.observation
    res = await tm.execute(Function(name="get_current_time", kwargs={"timezone": 5}))
    assert res.error_type == "ToolArgumentsError" and "timezone: 5 is not of type 'string'" in res.observation
    res = await tm.execute(Function(name="get_current_time", args=["UTC"]))
    assert res.error_type == "ToolArgumentsError"


async def test_concurrent_calls_share_one_session(time_server: MCPServerStdio) -> None:
    out = await asyncio.gather(*(time_server.call_tool("get_current_time", {"timezone": tz})
                                 for tz in ("UTC", "Europe/Paris", "Asia/Tokyo", "America/New_York")))
    assert [o.output["timezone"] for o in out] == ["UTC", "Europe/Paris", "Asia/Tokyo", "America/New_York"]
    assert time_server.connected


async def test_agent_run_calls_the_mcp_tool_and_finishes(time_server: MCPServerStdio, face: str) -> None:
    model = ScriptedModel([Function(name="get_current_time", kwargs={"timezone": "Asia/Tokyo"}),
                           Function(name="finish", kwargs={"answer": "done"})])
    runner = Runner(Agent(tools=time_server.tools(), model=model))
    res, _ = await run_face(runner, face)
    assert res.ok and res.answer == "done"
    step = res.step_history[0]
    assert step.status == "success" and '"timezone": "Asia/Tokyo"' in step.observation


def test_filters_prefix_and_approval() -> None:
    server = MCPServerStdio(_time_command(), include={"get_current_time", "convert_time"}, exclude={"convert_time"},
                            require_approval={"get_current_time"}, prefix="time_")
    try:
        tools = server.tools()
        assert [t.name for t in tools] == ["time_get_current_time"]
        assert tools[0].mcp_name == "get_current_time" and tools[0].require_approval is True
    finally:
        server.close()
    assert not server.connected


async def test_async_with_connects_and_closes() -> None:
    async with MCPServerStdio(_time_command()) as server:
        assert server.connected
        out = await server.call_tool("get_current_time", {"timezone": "UTC"})
        assert out.status == "success"
    assert not server.connected
    # a closed server reconnects on next use
    try:
        assert (await server.call_tool("get_current_time", {"timezone": "UTC"})).status == "success"
    finally:
        await server.aclose()


async def test_a_server_that_cannot_start_is_a_clear_error() -> None:
    missing = MCPServerStdio("/nonexistent/mcp-server-nowhere", connect_timeout=10)
    with pytest.raises(MCPServerError, match="cannot connect to MCP server"):
        await missing.list_tools()
    missing.close()
    # starts, then exits at once without speaking MCP
    dies = MCPServerStdio(sys.executable, ["-c", "import sys; sys.exit(3)"], connect_timeout=10)
    with pytest.raises(MCPServerError, match="cannot connect"):
        dies.tools()
    dies.close()
    # starts and says nothing for 60 s: ended by connect_timeout (the wait_for is a hang guard only)
    mute = MCPServerStdio(sys.executable, ["-c", "import time; time.sleep(60)"], connect_timeout=0.5)
    with pytest.raises(MCPServerError, match="handshake"):
        await asyncio.wait_for(mute.connect(), 30)
    mute.close()


async def test_the_server_itself_goes_in_an_agents_tools(time_server: MCPServerStdio) -> None:
    from treadle import Agent, Function, Runner, ScriptedModel

    def add(a: int, b: int) -> int:
        return a + b

    model = ScriptedModel([Function(name="get_current_time", kwargs={"timezone": "UTC"}),
                           Function(name="add", kwargs={"a": 1, "b": 2}),
                           Function(name="finish", kwargs={"answer": "ok"})])
    agent = Agent(tools=[add, time_server], model=model)
    assert {"add", "get_current_time", "convert_time"} <= set(agent.tool_manager.names)
    res = await Runner(agent).acall("what time is it?")
    assert res.ok and "UTC" in str(res.step_history[0].observation) and res.step_history[1].observation == 3


@pytest.mark.slow
def test_cli_run_with_an_mcp_server(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from treadle.cli import app

    monkeypatch.setenv("TREADLE_HOME", str(tmp_path))
    out = CliRunner().invoke(app, ["run", "What time is it in UTC?", "--mcp", _time_command(), "--tool",
                                   "treadle.tools.builtin:calculator", "--json", "--max-steps", "2"])
    data = json.loads(out.stdout)
    assert data["status"] in ("success", "max_steps", "error"), out.output
    names = {s["function"]["name"] for s in data["step_history"] if s["function"]}
    assert names <= {"get_current_time", "convert_time", "calculator"}
    bad = CliRunner().invoke(app, ["run", "x", "--mcp", "/nonexistent/server", "--no-store"])
    assert bad.exit_code == 2 and "error" in bad.output


async def test_a_changed_tool_list_reaches_the_agent_at_its_next_run() -> None:
    from treadle import Agent, Function, Runner, ScriptedModel

    server = MCPServerStdio(_time_command(), include={"get_current_time"})
    try:
        model = ScriptedModel([Function(name="finish", kwargs={"answer": "ok"}),
                               Function(name="convert_time", kwargs={"source_timezone": "UTC", "time": "12:00",
                                                                     "target_timezone": "Asia/Tokyo"}),
                               Function(name="finish", kwargs={"answer": "ok"})])
        agent = Agent(tools=[server], model=model)
        runner = Runner(agent)
        assert agent.tool_manager.names == ["get_current_time"]
        assert (await runner.acall("q")).ok
        # the server announces tools/list_changed (simulated: the SDK notification sets this flag)
        server.include = {"get_current_time", "convert_time"}
        server._tools_stale = True
        assert server.tools_changed
        res = await runner.acall("q")
        assert sorted(agent.tool_manager.names) == ["convert_time", "get_current_time"]
        assert res.step_history[0].status == "success" and "Asia/Tokyo" in str(res.step_history[0].observation)
        assert "convert_time" in [b["properties"]["name"].get("const") for b in agent.planner.output_schema()["anyOf"]
                                  if "name" in b["properties"]]
    finally:
        server.close()


async def test_an_mcp_tool_needing_approval_waits_for_the_decision(time_server: MCPServerStdio) -> None:
    from treadle import Agent, Function, PermissionManager, Runner, ScriptedModel

    asked: list[str] = []

    def approver(req: Any) -> bool:
        asked.append(req.tool_name)
        return req.tool.kwargs.get("timezone") == "UTC"

    tools = MCPServerStdio(_time_command(), require_approval={"get_current_time"}).tools()
    model = ScriptedModel([Function(name="get_current_time", kwargs={"timezone": "Asia/Tokyo"}),
                           Function(name="get_current_time", kwargs={"timezone": "UTC"}),
                           Function(name="finish", kwargs={"answer": "ok"})])
    res = await Runner(Agent(tools=tools, model=model), permission_manager=PermissionManager(approver)).acall("q")
    assert asked == ["get_current_time", "get_current_time"]
    denied, allowed = res.step_history
    assert denied.status == "cancelled" and allowed.status == "success" and "UTC" in str(allowed.observation)


@pytest.mark.slow
def test_cli_config_file_with_an_mcp_entry(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from treadle.cli import app

    monkeypatch.setenv("TREADLE_HOME", str(tmp_path))
    cfg = tmp_path / "treadle.toml"
    cfg.write_text(f'max_steps = 2\ntools = ["treadle.tools.builtin:calculator"]\n\n[[mcp]]\n'
                   f'command = {json.dumps(_time_command())}\ninclude = ["get_current_time"]\n')
    out = CliRunner().invoke(app, ["run", "What time is it in UTC?", "--config", str(cfg), "--json"])
    data = json.loads(out.stdout)
    names = {s["function"]["name"] for s in data["step_history"] if s["function"]}
    assert names <= {"get_current_time", "calculator"} and len(data["step_history"]) <= 2
    bad = CliRunner().invoke(app, ["run", "x", "--config", str(tmp_path / "missing.toml")])
    assert bad.exit_code == 2 and "cannot read the config" in bad.output
