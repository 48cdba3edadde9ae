"""Every tool of ``@modelcontextprotocol/server-everything``, over stdio and over Streamable HTTP, in
one agent run: the questions it asks (form and URL elicitation) answered through the approval
callback, its sampling request answered by the run's own model, its roots from the configuration.
The tools that run only as MCP tasks are not offered (and a log line says why)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("mcp")

from test_mcp_everything import _entry

from treadle import Agent, Function, Runner, ScriptedModel
from treadle.permissions import ApprovalResponse, PermissionManager
from treadle.tools.mcp import MCPServerStdio, MCPServerStreamableHTTP

PRELOAD = Path(__file__).parent.parent.parent / ".ci" / "conformance-loopback.cjs"

# each tool, the arguments the model gives it, and a piece of what it must answer
CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("echo", {"message": "hello"}, "hello"),
    ("get-annotated-message", {"messageType": "success", "includeImage": True}, "[image: image/png"),
    ("get-env", {}, "PATH"),
    ("get-resource-links", {"count": 2}, "[resource link:"),
    ("get-resource-reference", {"resourceType": "Text", "resourceId": 2}, "[resource: demo://resource/dynamic/text/2]"),
    ("get-structured-content", {"location": "Chicago"}, "temperature"),
    ("get-sum", {"a": 17, "b": 25}, "42"),
    ("get-tiny-image", {}, "[image: image/png"),
    ("gzip-file-as-resource", {"name": "hello.txt.gz", "data": "data:text/plain;base64,aGVsbG8gd29ybGQ="},
     "hello.txt.gz"),
    ("toggle-simulated-logging", {}, "logging"),
    ("toggle-subscriber-updates", {}, "updates"),
    ("trigger-long-running-operation", {"duration": 0.3, "steps": 3}, "completed"),
    ("get-roots-list", {}, "1 total"),
    ("trigger-elicitation-request", {}, "Name: Ada"),
    ("trigger-url-elicitation", {"url": "https://example.com/consent"}, "accept"),
    ("trigger-sampling-request", {"prompt": "Name a colour", "maxTokens": 10}, "Vermilion"),
]
TASK_ONLY = {"simulate-research-query"}  # execution.taskSupport "required"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["stdio", "http"])
def everything(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    entry = _entry()
    options: dict[str, Any] = {"timeout": 30, "roots": [str(tmp_path)], "name": "everything"}
    if request.param == "stdio":
        server: Any = MCPServerStdio("node", [entry, "stdio"], errlog=subprocess.DEVNULL, **options)
        yield server
        server.close()
        return
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "NODE_OPTIONS": f"--require {PRELOAD}"}
    proc = subprocess.Popen(["node", entry, "streamableHttp"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "server-everything did not start"
                time.sleep(0.1)
        server = MCPServerStreamableHTTP(f"http://127.0.0.1:{port}/mcp", **options)
        yield server
        server.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_every_tool_is_usable(everything: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="treadle.mcp"):
        tools = everything.tools()
    names = {t.name for t in tools}
    assert names == {name for name, _, _ in CALLS}, names ^ {name for name, _, _ in CALLS}
    for hidden in TASK_ONLY:
        assert f"tool {hidden} is not offered to the model: it runs only as an MCP task" in caplog.text

    script: list[Any] = []
    for i, (name, kwargs, _) in enumerate(CALLS):
        script.append(Function(id=f"c{i}", name=name, kwargs=kwargs))
        if name == "trigger-sampling-request":
            script.append("Vermilion")  # the run's model answers the server's sampling request
    script.append(Function(name="finish", kwargs={"answer": "all done"}))
    asked: list[str] = []

    def decide(request: Any) -> ApprovalResponse:
        asked.append(request.tool_name)
        if request.tool_name == "trigger-elicitation-request.question":
            return ApprovalResponse.approve(kwargs={"name": "Ada"})
        return ApprovalResponse.approve()

    agent = Agent(tools=tools, model=ScriptedModel(script), max_steps=len(CALLS) + 2)
    result = Runner(agent, permission_manager=PermissionManager(decide)).call("use every tool")
    assert result.status == "success", result.error
    assert len(result.step_history) == len(CALLS)  # every call (the answer is not a step)
    for step, (name, _, expected) in zip(result.step_history, CALLS):
        assert step.status == "success", (name, step.observation)
        assert expected.lower() in str(step.observation).lower(), (name, step.observation)
    assert asked == ["trigger-elicitation-request.question", "trigger-url-elicitation.question",
                     "trigger-sampling-request.sampling"]
