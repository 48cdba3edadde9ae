"""The A2A face, driven by the a2a-sdk client against a real `treadle serve` on loopback:
send, stream, get, cancel, an input-required round trip, a restart with the task still
answerable, a treadle agent calling a served agent over A2A; malformed JSON-RPC gets the
protocol's errors, never a 5xx."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2AClientError, ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)
from a2a.utils.errors import A2AError, TaskNotCancelableError, TaskNotFoundError
from a2a_agents import make
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_utils import serving, wait_journaled
from test_serve_cli import free_port, wait_up
from test_serve_cli import start as start_server

from treadle import Agent, Function, Runner
from treadle.models.scripted import ScriptedModel
from treadle.tools.a2a import A2AAgent

pytestmark = pytest.mark.timeout(120)
TOKEN = "a2a-t0k"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
S = TaskState
ERRORS = (A2AClientError, A2AError)  # the client raises the protocol's errors as A2AError


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`treadle serve a2a_agents:make --token ...` on a loopback port."""
    port = free_port()
    proc = start_server(["a2a_agents:make", "--port", str(port), "--token", TOKEN], tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        yield url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)


async def client_for(url: str, agent: str, http: httpx.AsyncClient, streaming: bool = True) -> Any:
    return await create_client(f"{url}/a2a/{agent}", ClientConfig(streaming=streaming, httpx_client=http))


def message(text: str = "", *, task_id: str = "", data: Any = None) -> SendMessageRequest:
    parts = [Part(text=text)] if text else []
    if data is not None:
        from a2a.helpers.proto_helpers import new_data_part

        parts.append(new_data_part(data))
    return SendMessageRequest(message=Message(message_id=f"m{time.monotonic_ns()}", role=Role.ROLE_USER,
                                              task_id=task_id, parts=parts))


async def collect(responses: AsyncIterator[Any]) -> list[Any]:
    return [r async for r in responses]


def texts(task_or_message: Any) -> str:
    from a2a.helpers.proto_helpers import get_text_parts

    return " ".join(get_text_parts(task_or_message.parts))


def kinds(responses: list[Any]) -> list[str]:
    return [str(r.WhichOneof("payload")) for r in responses]


# ---------------------------------------------------------------------- card and auth
def test_each_served_agent_has_a_card_declaring_the_bearer_token(server: str) -> None:
    card = httpx.get(f"{server}/a2a/adder/.well-known/agent-card.json")  # discovery needs no token
    assert card.status_code == 200, card.text
    body = card.json()
    assert body["name"] == "adder" and body["description"] == "Adds numbers with a calculator."
    assert body["supportedInterfaces"][0]["url"] == f"{server}/a2a/adder"
    assert [s["id"] for s in body["skills"]] == ["calculator"] and body["capabilities"]["streaming"] is True
    assert body["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "bearer"
    assert body["securityRequirements"] == [{"schemes": {"bearer": {}}}]
    root = httpx.get(f"{server}/.well-known/agent-card.json").json()  # the server's: its first agent's
    assert root["name"] == "adder" and root["supportedInterfaces"][0]["url"] == f"{server}/a2a/adder"
    gate = httpx.get(f"{server}/a2a/gate/.well-known/agent-card.json").json()
    assert gate["skills"][0]["id"] == "delete_file" and "approval" in gate["skills"][0]["tags"]
    assert httpx.get(f"{server}/a2a/nobody/.well-known/agent-card.json", headers=AUTH).status_code == 404
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}
    assert httpx.post(f"{server}/a2a/adder", json=rpc).status_code == 401  # the endpoint needs it
    assert httpx.post(f"{server}/a2a/adder", json=rpc, headers={**AUTH, "A2A-Version": "1.0"}).json()["error"][
        "code"] == -32001  # TaskNotFoundError


# ---------------------------------------------------------------------- send, stream, get, cancel
async def test_send_stream_get_and_cancel_with_the_sdk_client(server: str) -> None:
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        blocking = await client_for(server, "adder", http, streaming=False)
        [sent] = await collect(blocking.send_message(message("what is 17 + 25?")))
        task = sent.task
        assert task.status.state == S.TASK_STATE_COMPLETED, task
        assert [texts(a) for a in task.artifacts] == ["42"] and texts(task.history[0]) == "what is 17 + 25?"
        run = (await http.get(f"{server}/runs/{task.id}")).json()  # the task is the run
        assert run["answer"] == "42" and run["agent"] == "adder"

        streaming = await client_for(server, "adder", http)
        got = await collect(streaming.send_message(message("17 + 25 again")))
        assert kinds(got) == ["task", "status_update", "status_update", "artifact_update", "status_update"], got
        task_id = got[0].task.id
        said = [texts(r.status_update.status.message) for r in got[1:3]]
        assert said == ['calling calculator({"expression": "17 + 25"})', "calculator returned: 42"]
        assert texts(got[3].artifact_update.artifact) == "42"
        assert got[-1].status_update.status.state == S.TASK_STATE_COMPLETED

        fetched = await streaming.get_task(GetTaskRequest(id=task_id))
        assert fetched.status.state == S.TASK_STATE_COMPLETED and texts(fetched.artifacts[0]) == "42"
        with pytest.raises(TaskNotFoundError, match="no task 'no-such-task'"):
            await streaming.get_task(GetTaskRequest(id="no-such-task"))
        with pytest.raises(TaskNotFoundError):  # a task of another served agent
            await (await client_for(server, "gate", http)).get_task(GetTaskRequest(id=task_id))

        slow = await client_for(server, "slow", http, streaming=False)
        [started] = await collect(slow.send_message(SendMessageRequest(
            message=message("look k up").message, configuration=SendMessageConfiguration(return_immediately=True))))
        assert started.task.status.state == S.TASK_STATE_WORKING
        watcher = await client_for(server, "slow", http)  # tasks/resubscribe: follow a working task
        watching = watcher.subscribe(SubscribeToTaskRequest(id=started.task.id))
        first = await anext(watching)  # subscribed: the task as it is
        assert first.task.id == started.task.id and first.task.status.state == S.TASK_STATE_WORKING, first
        cancelled = await slow.cancel_task(CancelTaskRequest(id=started.task.id))
        assert cancelled.status.state == S.TASK_STATE_CANCELED, cancelled
        watched = await asyncio.wait_for(collect(watching), 20)
        assert watched[-1].status_update.status.state == S.TASK_STATE_CANCELED, watched
        assert (await http.get(f"{server}/runs/{started.task.id}")).json()["status"] == "cancelled"
        with pytest.raises(TaskNotCancelableError, match="has ended"):
            await slow.cancel_task(CancelTaskRequest(id=started.task.id))


async def test_the_v0_3_method_names_are_served_too(server: str) -> None:
    """``message/send``, ``tasks/get`` (the names of A2A 0.3, which the issue and older clients use)."""
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        sent = (await http.post(f"{server}/a2a/adder", json={
            "jsonrpc": "2.0", "id": "1", "method": "message/send",
            "params": {"message": {"kind": "message", "messageId": "m1", "role": "user",
                                   "parts": [{"kind": "text", "text": "17 + 25?"}]}}})).json()
        assert sent["result"]["status"]["state"] == "completed", sent
        got = (await http.post(f"{server}/a2a/adder", json={
            "jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": sent["result"]["id"]}})).json()
        assert got["result"]["artifacts"][0]["parts"][0]["text"] == "42", got


# ---------------------------------------------------------------------- approvals
async def input_required(client: Any, text: str) -> tuple[str, Any]:
    got = await collect(client.send_message(message(text)))
    last = got[-1].status_update.status
    assert last.state == S.TASK_STATE_INPUT_REQUIRED, got
    return got[0].task.id, last.message


async def test_an_approval_is_input_required_and_the_next_message_decides_it(server: str) -> None:
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        gate = await client_for(server, "gate", http)
        task_id, question = await input_required(gate, "tidy up")
        assert texts(question).startswith('delete_file({"path": "notes.txt"}) needs approval')
        from a2a.helpers.proto_helpers import get_data_parts

        [call] = get_data_parts(question.parts)
        assert call["tool_name"] == "delete_file" and call["kwargs"] == {"path": "notes.txt"}
        task = await gate.get_task(GetTaskRequest(id=task_id))
        assert task.status.state == S.TASK_STATE_INPUT_REQUIRED and texts(task.status.message) == texts(question)

        got = await collect(gate.send_message(message("approve", task_id=task_id)))
        assert got[-1].status_update.status.state == S.TASK_STATE_COMPLETED, got
        assert texts(got[-2].artifact_update.artifact) == "deleted notes.txt"

        task_id, _ = await input_required(gate, "tidy up")  # denied, with the reason the model reads
        blocking = await client_for(server, "gate", http, streaming=False)
        [done] = await collect(blocking.send_message(message("no: keep my notes", task_id=task_id)))
        assert done.task.status.state == S.TASK_STATE_COMPLETED
        assert "keep my notes" in texts(done.task.artifacts[0]) and "deleted" not in texts(done.task.artifacts[0])

        task_id, _ = await input_required(gate, "tidy up")  # an edit, as a data part; a bad one is refused first
        with pytest.raises(ERRORS, match="not valid for delete_file"):
            await collect(gate.send_message(message(task_id=task_id, data={"decision": "edit",
                                                                           "kwargs": {"path": ["a"]}})))
        got = await collect(gate.send_message(message(task_id=task_id, data={"decision": "edit",
                                                                             "kwargs": {"path": "old.txt"}})))
        assert texts(got[-2].artifact_update.artifact) == "deleted old.txt", got
        with pytest.raises(ERRORS, match="ended"):  # a finished task takes no more messages
            await collect(gate.send_message(message("approve", task_id=task_id)))

        task_id, _ = await input_required(gate, "tidy up")  # cancelling instead of answering
        cancelled = await gate.cancel_task(CancelTaskRequest(id=task_id))
        assert cancelled.status.state == S.TASK_STATE_CANCELED


def test_a_task_survives_a_restart_and_is_still_answerable(tmp_path: Path) -> None:
    """`treadle serve` is killed while a task is input-required; the next server answers
    tasks/get from the journal and takes the decision, which resumes the run."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["a2a_agents:make", "--port", str(port), "--token", TOKEN]

    async def ask() -> tuple[str, str, str]:
        async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
            gate = await client_for(url, "gate", http)
            task_id, question = await input_required(gate, "tidy up")
            dropped, _ = await input_required(gate, "tidy up")
            adder = await client_for(url, "adder", http, streaming=False)
            [done] = await collect(adder.send_message(message("17 + 25")))
            return task_id, dropped, done.task.id

    proc = start_server(args, tmp_path)
    try:
        wait_up(url, proc)
        task_id, dropped, done_id = asyncio.run(ask())
        for waiting in (task_id, dropped):
            wait_journaled(tmp_path, waiting, "waiting_for_approval")
    finally:
        proc.kill()
        proc.communicate(timeout=10)

    async def answer() -> None:
        async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
            gate = await client_for(url, "gate", http)
            task = await gate.get_task(GetTaskRequest(id=task_id))
            assert task.status.state == S.TASK_STATE_INPUT_REQUIRED, task
            assert texts(task.status.message).startswith('delete_file({"path": "notes.txt"}) needs approval')
            done = await (await client_for(url, "adder", http)).get_task(GetTaskRequest(id=done_id))
            assert done.status.state == S.TASK_STATE_COMPLETED and texts(done.artifacts[0]) == "42"
            got = await collect(gate.send_message(message("approve", task_id=task_id)))
            assert got[-1].status_update.status.state == S.TASK_STATE_COMPLETED, got
            assert texts(got[-2].artifact_update.artifact) == "deleted notes.txt"
            assert not [r for r in got if r.HasField("status_update")
                        and r.status_update.status.state == S.TASK_STATE_INPUT_REQUIRED]
            cancelled = await gate.cancel_task(CancelTaskRequest(id=dropped))  # waiting in the journal: cancellable
            assert cancelled.status.state == S.TASK_STATE_CANCELED, cancelled
            assert (await http.get(f"{url}/runs/{dropped}")).json()["status"] == "cancelled"

    proc = start_server(args, tmp_path)
    try:
        wait_up(url, proc)
        asyncio.run(answer())
    finally:
        stop(proc)


# ---------------------------------------------------------------------- the client direction
async def test_a_treadle_agent_calls_a_served_agent_over_a2a(server: str) -> None:
    def reply(messages: list[Any]) -> Any:
        last = str(messages[-1]["content"])
        if last.startswith("Observation:"):
            return Function(name="finish", kwargs={"answer": last.split(":", 1)[1].strip()})
        tool = "gate" if "gate" in str(messages[1]["content"]) else "adder"
        return Function(name=tool, kwargs={"message": "what is 17 + 25?"})

    adder = A2AAgent(f"{server}/a2a/adder", token=TOKEN)
    assert (await adder.card()).name == "adder"
    desk = Agent("desk", tools=[adder.as_tool(), A2AAgent(f"{server}/a2a/gate", token=TOKEN).as_tool()],
                 model=ScriptedModel([reply], repeat_last=True), max_steps=3)
    result = await Runner(desk).acall("ask the adder")
    assert result.status == "success" and result.answer == "42", result
    assert result.step_history[0].function.name == "adder"

    result = await Runner(desk).acall("ask the gate")  # input-required over there: an error here, not an answer
    assert "waits for input on task" in str(result.answer) and "delete_file" in str(result.answer), result
    remote = str(result.answer).split("on task ")[1].split(":")[0]
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        task = await (await client_for(server, "gate", http)).get_task(GetTaskRequest(id=remote))
        assert task.status.state == S.TASK_STATE_INPUT_REQUIRED  # still waiting for a person

    def replying(messages: list[Any]) -> Any:  # replies=True: the model may answer a remote question
        last = str(messages[-1]["content"])
        if "reply with task_id=" in last:
            task_id = last.split("task_id='")[1].split("'")[0]
            return Function(name="gate", kwargs={"message": "approve", "task_id": task_id})
        if last.startswith("Observation:"):
            return Function(name="finish", kwargs={"answer": last.split(":", 1)[1].strip()})
        return Function(name="gate", kwargs={"message": "tidy up"})

    opt_in = A2AAgent(f"{server}/a2a/gate", token=TOKEN).as_tool(replies=True)
    assert "task_id" in opt_in.definition.func_parameters["properties"]
    result = await Runner(Agent("desk", tools=[opt_in], model=ScriptedModel([replying], repeat_last=True),
                                max_steps=3)).acall("tidy up over there")
    assert result.answer == "deleted notes.txt", result

    bad = A2AAgent(f"{server}/a2a/adder", token="wrong").as_tool(name="adder")
    result = await Runner(Agent("desk", tools=[bad], model=ScriptedModel([reply], repeat_last=True),
                                max_steps=3)).acall("ask the adder")
    assert "401" in str(result.answer), result


async def test_cancelling_the_calling_run_cancels_the_remote_task(server: str) -> None:
    slow = A2AAgent(f"{server}/a2a/slow", token=TOKEN).as_tool(name="slow")
    desk = Agent("desk", tools=[slow], model=ScriptedModel([Function(name="slow", kwargs={"message": "k?"})],
                                                            repeat_last=True), max_steps=2)
    stream = Runner(desk).astream({"input_str": "ask slow"})
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        deadline = time.monotonic() + 20
        while not (running := (await http.get(f"{server}/runs", params={"status": "running"})).json()["runs"]):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        stream.cancel()
        result = await stream.wait_for_completion()
        assert result.status == "cancelled"
        remote = running[0]["run_id"]
        while (status := (await http.get(f"{server}/runs/{remote}")).json()["status"]) != "cancelled":
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------------- malformed requests
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                 max_size=4), max_leaves=12)
METHODS = st.sampled_from(["SendMessage", "SendStreamingMessage", "GetTask", "CancelTask", "ListTasks",
                           "SubscribeToTask", "message/send", "message/stream", "tasks/get", "tasks/cancel",
                           "tasks/resubscribe", "GetExtendedAgentCard", "CreateTaskPushNotificationConfig", "nope"])
PARAMS = st.fixed_dictionaries({}, optional={
    "id": st.text(max_size=140) | JSON, "message": st.fixed_dictionaries({}, optional={
        "messageId": st.text(max_size=10) | JSON, "role": st.sampled_from(["ROLE_USER", "user", "x"]) | JSON,
        "taskId": st.text(max_size=140) | JSON, "contextId": st.text(max_size=200) | JSON,
        "parts": st.lists(st.fixed_dictionaries({}, optional={"text": st.text(max_size=30) | JSON,
                                                              "data": JSON, "kind": st.text(max_size=5)}),
                          max_size=3) | JSON}),
    "configuration": st.dictionaries(st.sampled_from(["returnImmediately", "historyLength"]), JSON, max_size=2),
    "historyLength": JSON})
RPC = st.fixed_dictionaries({"jsonrpc": st.sampled_from(["2.0", "1.0"]) | JSON, "method": METHODS | JSON},
                            optional={"id": st.integers() | st.text(max_size=8) | JSON, "params": PARAMS | JSON})
BODIES = RPC.map(json.dumps).map(str.encode) | JSON.map(json.dumps).map(str.encode) | st.binary(max_size=60)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: Any) -> Iterator[str]:
    from treadle.server import create_app

    db = tmp_path_factory.mktemp("a2a-fuzz") / "runs.db"
    with serving(create_app(make(), store=f"sqlite:///{db}", token=TOKEN)) as url:
        yield url


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=BODIES, agent=st.sampled_from(["adder", "gate"]), version=st.sampled_from(["1.0", "0.3", None]))
def test_malformed_requests_get_json_rpc_errors_never_a_5xx(in_process: str, body: bytes, agent: str,
                                                            version: str | None) -> None:
    headers = {**AUTH, "Content-Type": "application/json", **({"A2A-Version": version} if version else {})}
    with httpx.stream("POST", f"{in_process}/a2a/{agent}", content=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200, (r.status_code, body)
        if r.headers["content-type"].startswith("text/event-stream"):
            for line in r.iter_lines():  # a stream of JSON-RPC responses: read it whole
                if line.startswith("data:"):
                    reply = json.loads(line[5:])
                    assert reply["jsonrpc"] == "2.0" and ("result" in reply or "error" in reply), reply
                    if "error" in reply:
                        break
            return
        reply = json.loads(r.read())
    assert reply["jsonrpc"] == "2.0", reply
    if "error" in reply:
        assert isinstance(reply["error"]["code"], int) and isinstance(reply["error"]["message"], str), reply
        assert reply["error"]["code"] != -32603, (reply, body)  # a malformed request is never "internal"
    else:
        assert "result" in reply, reply


def test_a_task_stopped_mid_run_says_so_and_a_message_resumes_it(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["a2a_agents:make", "--port", str(port), "--token", TOKEN]

    async def begin() -> str:
        async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
            slow = await client_for(url, "slow", http, streaming=False)
            [started] = await collect(slow.send_message(SendMessageRequest(
                message=message("look k up").message, configuration=SendMessageConfiguration(return_immediately=True))))
            return started.task.id

    proc = start_server(args, tmp_path)
    try:
        wait_up(url, proc)
        task_id = asyncio.run(begin())
        from treadle.store import SQLiteRunStore

        journal = SQLiteRunStore(tmp_path / "runs.db")
        deadline = time.monotonic() + 10
        while not any(e.name == "agent.tool_call_start" for e in journal.events(task_id)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.communicate(timeout=10)

    async def resume() -> None:
        async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
            slow = await client_for(url, "slow", http, streaming=False)
            task = await slow.get_task(GetTaskRequest(id=task_id))
            assert task.status.state == S.TASK_STATE_WORKING and "stopped mid-run" in texts(task.status.message)
            [resumed] = await collect(slow.send_message(message("go on", task_id=task_id)))
            assert resumed.task.id == task_id and resumed.task.status.state == S.TASK_STATE_COMPLETED, resumed
            assert texts(resumed.task.artifacts[0]) == "late"
            run = (await http.get(f"{url}/runs/{task_id}")).json()  # resumed: the interrupted call said so
            assert "interrupted" in run["step_history"][0]["observation"], run

    proc = start_server(args, tmp_path)
    try:
        wait_up(url, proc)
        asyncio.run(resume())
    finally:
        stop(proc)
