"""MCP over Streamable HTTP: the mcp SDK's own server class on a loopback port, in a subprocess."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from treadle import Agent, Function, Runner, ScriptedModel
from treadle.tools.manager import ToolManager
from treadle.tools.mcp import MCPServerError, MCPServerStreamableHTTP

SERVER = Path(__file__).with_name("mcp_http_server.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def http_url() -> Any:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the MCP HTTP test server did not start (exit code {proc.poll()})")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def remote(http_url: str) -> Any:
    server = MCPServerStreamableHTTP(http_url, headers={"X-Treadle-User": "ada"}, timeout=10)
    yield server
    server.close()


async def test_lists_and_calls_tools_over_http(remote: MCPServerStreamableHTTP) -> None:
    tm = ToolManager(await remote.list_tools())
    assert {"rectangle_area", "whoami", "count_up", "unlock"} <= set(tm.names)
    assert tm.get("rectangle_area").definition.func_parameters["required"] == ["width", "height"]
    res = await tm.execute(Function(name="rectangle_area", kwargs={"width": 3, "height": 4.5}))
    assert res.status == "success" and res.output == {"width": 3.0, "height": 4.5, "area": 13.5}
    res = await tm.execute(Function(name="whoami"))
    assert res.observation == "user=ada"  # the headers reach the server


async def test_progress_and_errors_over_http(remote: MCPServerStreamableHTTP) -> None:
    tm = ToolManager(await remote.list_tools())
    activity: list[Any] = []
    res = await tm.execute(Function(name="count_up", kwargs={"n": 3}), on_activity=activity.append)
    assert res.observation == "counted to 3"
    assert [(a.data["progress"], a.data.get("message")) for a in activity] == [(1, "step 1"), (2, "step 2"),
                                                                              (3, "step 3")]
    res = await tm.execute(Function(name="rectangle_area", kwargs={"width": "wide", "height": 1}))
    assert res.error_type == "ToolArgumentsError"


async def test_agent_run_over_http(remote: MCPServerStreamableHTTP) -> None:
    model = ScriptedModel([Function(name="rectangle_area", kwargs={"width": 2, "height": 5}),
                           Function(name="finish", kwargs={"answer": "ten"})])
    res = await Runner(Agent(tools=remote.tools(), model=model)).acall("area?")
    assert res.ok and res.answer == "ten" and res.step_history[0].output == {"width": 2.0, "height": 5.0,
                                                                              "area": 10.0}


async def test_unreachable_url_is_a_clear_error() -> None:
    server = MCPServerStreamableHTTP(f"http://127.0.0.1:{_free_port()}/mcp", connect_timeout=5)
    try:
        with pytest.raises(MCPServerError, match="cannot connect"):
            await server.list_tools()
    finally:
        server.close()


async def test_tools_list_changed_from_a_real_server_reaches_the_next_run(http_url: str) -> None:
    from treadle import Agent, Function, Runner, ScriptedModel

    server = MCPServerStreamableHTTP(http_url, timeout=20)
    try:
        done = Function(name="finish", kwargs={"answer": "ok"})
        model = ScriptedModel([Function(name="unlock"), done, Function(name="double", kwargs={"x": 21}), done])
        agent = Agent(tools=[server], model=model)
        runner = Runner(agent)
        assert "double" not in agent.tool_manager.names
        first = await runner.acall("unlock it")
        assert first.ok and first.step_history[0].observation == "double is available"
        for _ in range(100):  # the notification arrives on the session's own loop
            if server.tools_changed:
                break
            await asyncio.sleep(0.02)
        assert server.tools_changed, "the server's tools/list_changed was received"
        second = await runner.acall("use it")
        assert "double" in agent.tool_manager.names
        assert second.ok and str(second.step_history[0].observation) == "42"
    finally:
        server.close()


def test_input_required_on_the_2026_protocol_is_a_question_of_the_run(http_url: str) -> None:
    """On 2026-07-28 the server answers the call with input_required; the question goes to the run's
    approval machinery like a 2025 elicitation, and the call is sent again with the answer."""
    from treadle.permissions import ApprovalResponse, PermissionManager

    asked: list[Any] = []

    def answer(request: Any) -> ApprovalResponse:
        asked.append(request)
        return ApprovalResponse.approve(kwargs={"colour": "teal"})

    server = MCPServerStreamableHTTP(http_url, include=["paint"], timeout=10)
    try:
        model = ScriptedModel([Function(id="p1", name="paint", kwargs={"wall": "north"}),
                               Function(name="finish", kwargs={"answer": "painted"})])
        runner = Runner(Agent(tools=server.tools(), model=model), permission_manager=PermissionManager(answer))
        result = runner.call("paint it")
        assert result.status == "success", result.error
        [request] = asked
        assert request.tool.thought == "Which colour?" and request.tool.kwargs == {"shade": "light"}
        assert result.step_history[0].observation == "north painted light teal (protocol 2026-07-28)"
    finally:
        server.close()


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
def test_a_tool_that_needs_mcp_tasks_is_not_offered(http_url: str, protocol: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    server = MCPServerStreamableHTTP(http_url, protocol=protocol, timeout=10)
    try:
        with caplog.at_level("INFO", logger="treadle.mcp"):
            names = [t.name for t in server.tools()]
        assert "rectangle_area" in names and server._session is not None
        assert server._session.protocol_version == ("2025-11-25" if protocol == "legacy" else "2026-07-28")
        if protocol == "legacy":
            assert "render_video" not in names
            assert "tool render_video is not offered to the model: it runs only as an MCP task" in caplog.text
        else:  # 2026-07-28 has no tasks in the core protocol: the server's field does not travel
            assert "render_video" in names
    finally:
        server.close()


def test_parallel_calls_each_get_their_own_question_on_the_2026_protocol(http_url: str) -> None:
    from treadle.permissions import ApprovalResponse, PermissionManager

    asked: list[str] = []

    def answer(request: Any) -> ApprovalResponse:
        asked.append(request.id)
        return ApprovalResponse.approve(kwargs={"colour": "red" if request.id.startswith("n:") else "blue"})

    server = MCPServerStreamableHTTP(http_url, include=["paint"], timeout=10)
    try:
        both = [Function(id="n", name="paint", kwargs={"wall": "north"}),
                Function(id="s", name="paint", kwargs={"wall": "south"})]
        model = ScriptedModel([both, Function(name="finish", kwargs={"answer": "painted"})])
        runner = Runner(Agent(tools=server.tools(), model=model), permission_manager=PermissionManager(answer))
        result = runner.call("paint both")
        assert result.status == "success", result.error
        assert sorted(a.split(":")[0] + ":" + a.split(":")[1] for a in asked) == ["n:q1", "s:q1"]
        observations = sorted(str(s.observation) for s in result.step_history)
        assert observations[0].startswith("north painted light red")
        assert observations[1].startswith("south painted light blue")
    finally:
        server.close()
