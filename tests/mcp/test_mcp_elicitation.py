"""An MCP server's question (elicitation) during a run's tool call is a pause of the run, like an
approval: asked through the permission manager, seen on the stream and over HTTP, answered after the
treadle process was killed (journaled), and the answer reaches the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from elicitation_run import ASK, FINISH, agent, everything
from test_mcp_everything import _entry

from treadle import Runner
from treadle.events import ToolCallQuestion
from treadle.permissions import ApprovalResponse, PermissionManager

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "server"))
from server_utils import serving  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Any:
    _entry()  # skips (or fails under CI) without server-everything
    s = everything()
    yield s
    s.close()


def test_a_question_goes_to_the_approval_callback_and_the_answer_to_the_server(server: Any) -> None:
    asked: list[Any] = []

    def answer(request: Any) -> ApprovalResponse:
        asked.append(request)
        return ApprovalResponse.approve(kwargs={"name": "Ada Lovelace", "integer": 7})

    runner = Runner(agent(server, [ASK, FINISH]), permission_manager=PermissionManager(answer))
    result = runner.call("ask me")
    assert result.status == "success", result.error
    [request] = asked
    assert request.tool_name == "trigger-elicitation-request.question"
    assert request.id.startswith("c1:q1:")
    assert request.tool.thought == "Please provide inputs for the following fields:"
    assert request.tool.kwargs["integer"] == 42  # the proposed answer: the form's defaults
    assert request.confirmation_details["schema"]["properties"]["name"]["type"] == "string"
    observation = str(result.step_history[0].observation)
    assert result.step_history[0].status == "success"
    assert "Name: Ada Lovelace" in observation and "Favorite Integer: 7" in observation
    assert "It was a dark and stormy night." in observation  # a default the answer left out, filled in


async def test_the_question_is_a_typed_event_on_the_stream_and_a_denial_declines(server: Any) -> None:
    runner = Runner(agent(server, [ASK, FINISH]), permission_manager=PermissionManager())
    stream = runner.astream("ask me")
    seen: list[ToolCallQuestion] = []
    async for event in stream.stream_events():
        item = getattr(event, "item", None)
        if isinstance(item, ToolCallQuestion):
            seen.append(item)
            assert stream.deny(item.id, "not telling")
    result = stream.result
    assert len(seen) == 1 and seen[0].data.confirmation_details["message"].startswith("Please provide")
    assert result is not None and result.status == "success"
    assert "decline" in str(result.step_history[0].observation).lower()


def test_a_question_without_an_answerer_is_an_error_not_a_success(server: Any) -> None:
    result = Runner(agent(server, [ASK, FINISH])).call("ask me")  # no callback, no stream, no suspension
    step = result.step_history[0]
    assert step.status == "error", step.observation  # server-everything reports "declined" as a success
    assert "nobody can answer now" in str(step.observation) and "suspend_for_approval=True" in str(step.observation)


def test_the_answer_survives_a_killed_process(server: Any, tmp_path: Path) -> None:
    """Process 1 suspends at the question and is killed; the answer, given over the HTTP API of
    another process (this one), resumes the run: the call runs again with the same arguments and the
    server gets the journaled answer."""
    from treadle.server import create_app
    from treadle.store import open_store

    db = tmp_path / "runs.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent.parent / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(HERE / "elicitation_run.py"), str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("RUN "), (line, proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
        _, run_id, status = line.split()
        assert status == "waiting_for_approval"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    url = f"sqlite:///{db}"
    import httpx

    with serving(create_app({"asker": agent(server, [ASK, FINISH])}, store=url)) as base, \
            httpx.Client(base_url=base, timeout=30) as c:
        body = c.get(f"/runs/{run_id}").json()
        [pending] = body["pending_approvals"]
        assert pending["tool_name"] == "trigger-elicitation-request.question"
        assert pending["thought"] == "Please provide inputs for the following fields:"
        assert pending["question"]["schema"]["properties"]["email"]["format"] == "email"
        r = c.post(f"/runs/{run_id}/approvals/{pending['call_id']}",
                   json={"decision": "edit", "kwargs": {"name": "Grace Hopper", "number": 12.5}})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60
        while (body := c.get(f"/runs/{run_id}").json())["status"] not in ("success", "error"):
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
    assert body["status"] == "success", (body.get("error"), body)
    entries = open_store(url).events(run_id)
    done = [e.payload["item"] for e in entries if e.name == "agent.tool_call_complete"]
    assert len(done) == 1
    output = json.dumps(done[0]["data"]["output"])
    assert "Grace Hopper" in output and "12.5" in output and done[0]["data"].get("error") is None
    starts = [e.payload["item"]["data"] for e in entries if e.name == "agent.tool_call_start"]
    assert len(starts) == 2 and all(s["kwargs"] == {} and s["id"] == "c1" for s in starts)  # the same call, again
    questions = {e.payload["item"]["data"]["id"] for e in entries if e.name == "agent.tool_permission_request"}
    assert questions == {pending["call_id"]}  # asked once more after the resume, answered from the journal


# ---------------------------------------------------------------------------- sampling and roots

def _sampling_agent(server: Any, model_reply: Any) -> Any:
    from treadle import Agent, Function, ScriptedModel

    script = [Function(id="s1", name="trigger-sampling-request", kwargs={"prompt": "Name a colour", "maxTokens": 20}),
              model_reply, Function(name="finish", kwargs={"answer": "sampled"})]
    return Agent("sampler", tools=server.tools(), model=ScriptedModel(script))


@pytest.fixture(scope="module")
def sampling_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from treadle.tools.mcp import MCPServerStdio

    folder = tmp_path_factory.mktemp("work")
    s = MCPServerStdio("node", [_entry(), "stdio"], errlog=subprocess.DEVNULL, name="everything", timeout=20,
                       include=["trigger-sampling-request", "get-roots-list"], roots=[str(folder)])
    yield s, folder
    s.close()


def test_sampling_goes_to_the_runs_own_model_after_an_approval(sampling_server: Any) -> None:
    server, _ = sampling_server
    seen: list[Any] = []
    asked: list[Any] = []

    def model_reply(messages: list[Any]) -> str:  # the run's model, answering the server's request
        seen.append(messages)
        return "Vermilion"

    def approve(request: Any) -> bool:
        asked.append(request)
        return True

    result = Runner(_sampling_agent(server, model_reply), permission_manager=PermissionManager(approve)).call("go")
    assert result.status == "success", result.error
    [request] = asked
    assert request.tool_name == "trigger-sampling-request.sampling"
    last = request.confirmation_details["messages"][-1]
    assert last["role"] == "user" and last["content"].endswith("Name a colour")  # as the server worded it
    assert seen and seen[0][-1] == last
    step = result.step_history[0]
    assert step.status == "success" and "Vermilion" in str(step.observation)


def test_refused_sampling_never_reaches_the_model(sampling_server: Any) -> None:
    server, _ = sampling_server
    from treadle import Function

    # the script's next reply ends the run: a model asked for the server's request would have used it up
    agent = _sampling_agent(server, Function(name="finish", kwargs={"answer": "refused"}))
    result = Runner(agent, permission_manager=PermissionManager(lambda request: False)).call("go")
    step = result.step_history[0]
    assert "refused the model request" in str(step.observation), step.observation


def test_roots_come_from_the_configuration(sampling_server: Any) -> None:
    import asyncio

    server, folder = sampling_server
    out = asyncio.run(server.call_tool("get-roots-list", {}))
    assert folder.resolve().as_uri() in out.observation and "1 total" in out.observation


def test_the_answer_from_the_command_line(server: Any, tmp_path: Path) -> None:
    """`treadle show` shows the question, `treadle approve --args` answers it, `treadle resume` goes on."""
    db = tmp_path / "runs.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent.parent / "src"), str(HERE),
                                                         os.environ.get("PYTHONPATH", "")]),
           "TREADLE_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(HERE / "elicitation_run.py"), str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("RUN "), line
        run_id = line.split()[1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def treadle(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "treadle.cli", *args, "--store", f"sqlite:///{db}"],
                              capture_output=True, text=True, env=env, timeout=120)

    shown = treadle("show", run_id)
    assert "the server asks: Please provide inputs for the following fields:" in shown.stdout, shown.stdout
    question_id = shown.stdout.split("call c1:q1:")[1].split()[0].rstrip(",")
    approved = treadle("approve", run_id, f"c1:q1:{question_id}", "--args", '{"name": "Linus", "integer": 3}',
                       "--agent", "elicitation_run:resumed")
    assert approved.returncode == 0, approved.stderr
    resumed = treadle("resume", run_id, "--json", "--agent", "elicitation_run:resumed")
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "success"
    observation = str(result["step_history"][0]["observation"])
    assert "Name: Linus" in observation and "Favorite Integer: 3" in observation


def test_the_timeout_counts_the_servers_work_not_the_wait_for_an_answer(tmp_path: Path) -> None:
    import time as _time

    from treadle.tools.mcp import MCPServerStdio

    quick = MCPServerStdio("node", [_entry(), "stdio"], errlog=subprocess.DEVNULL, timeout=1.0,
                           include=["trigger-elicitation-request", "trigger-long-running-operation"])
    try:
        def slow_answer(request: Any) -> ApprovalResponse:
            _time.sleep(2.5)  # a person thinking: longer than the tool's timeout
            return ApprovalResponse.approve(kwargs={"name": "Ada"})

        result = Runner(agent(quick, [ASK, FINISH]), permission_manager=PermissionManager(slow_answer)).call("ask")
        step = result.step_history[0]
        assert step.status == "success" and "Name: Ada" in str(step.observation), step.observation

        from treadle import Function

        slow_tool = Function(id="t1", name="trigger-long-running-operation", kwargs={"duration": 3, "steps": 3})
        result = Runner(agent(quick, [slow_tool, FINISH])).call("wait")
        step = result.step_history[0]
        assert step.status == "error" and "timed out after 1 s" in str(step.observation), step.observation
    finally:
        quick.close()
