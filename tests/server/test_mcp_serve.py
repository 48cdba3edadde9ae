"""The MCP face, driven by the ``mcp`` package's own client: over streamable HTTP against
``/mcp`` on a real uvicorn server, and over stdio against ``treadle mcp serve``. An agent's
tool approval is answered through elicitation (2025 protocol) and through an
``input_required`` round trip (2026-07-28) — also after the server restarted; progress
notifications arrive; a cancelled request cancels the run; errors are the protocol's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_agents import make
from server_utils import serving

from mcp import Client
from treadle.server import create_app

pytestmark = pytest.mark.timeout(120)
HERE = Path(__file__).resolve().parent
STATE_KEY = "k" * 40


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def base(store: str) -> Iterator[str]:
    with serving(create_app(make(), store=store)) as url:
        yield url


class Host:
    """What an MCP host saw: the questions it was asked, the progress it was sent."""

    def __init__(self, *answers: dict[str, Any] | str) -> None:
        self.answers = list(answers)
        self.questions: list[types.ElicitRequestParams] = []
        self.progress: list[tuple[float, str | None]] = []

    async def elicit(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.questions.append(params)
        answer = self.answers.pop(0)
        if isinstance(answer, str):  # "decline" / "cancel"
            return types.ElicitResult(action=answer)  # type: ignore[arg-type]
        return types.ElicitResult(action="accept", content=answer)

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append((progress, message))


@asynccontextmanager
async def http_session(url: str, host: Host | None = None, headers: dict[str, str] | None = None
                       ) -> AsyncIterator[ClientSession]:
    """A 2025-era session (the initialize handshake) with ``/mcp``."""
    async with httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(30, read=60)) as http, \
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write), \
            ClientSession(read, write, elicitation_callback=host.elicit if host else None) as session:
        await session.initialize()
        yield session


def text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def run_json(url: str, run_id: str) -> dict[str, Any]:
    return httpx.get(f"{url}/runs/{run_id}").json()


# ---------------------------------------------------------------------- streamable HTTP, 2025 protocol
async def test_tools_are_the_served_agents(base: str) -> None:
    async with http_session(base) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        init = session.initialize_result
    assert init is not None and init.server_info.name == "treadle" and init.capabilities.tools is not None
    assert sorted(tools) == ["adder", "broken", "deleter", "gate", "noter", "slow", "steady"]
    adder = tools["adder"]
    assert adder.description and "Adds numbers with a calculator." in adder.description
    assert adder.input_schema["properties"]["input"]["type"] == "string"


async def test_a_call_runs_the_agent_in_the_journal_with_progress(base: str) -> None:
    host = Host()
    async with http_session(base, host) as session:
        result = await session.call_tool("adder", {"input": "What is 17 + 25?"}, progress_callback=host.on_progress)
    assert not result.is_error and text(result) == "42"
    run_id = result.structured_content["run_id"]  # type: ignore[index]
    assert result.structured_content == {"run_id": run_id, "status": "success", "answer": "42"}
    assert result.meta and result.meta["treadle/run_id"] == run_id
    run = run_json(base, run_id)  # the HTTP API sees the same run, from the journal
    assert run["status"] == "success" and run["agent"] == "adder" and run["input"] == "What is 17 + 25?"
    messages = [m for _, m in host.progress]
    assert messages[0] == f"run {run_id} of agent 'adder'"
    assert 'calling calculator({"expression": "17 + 25"})' in messages
    assert "calculator returned: 42" in messages
    values = [p for p, _ in host.progress]
    assert values == sorted(set(values))  # progress only grows


async def test_an_approval_is_an_elicitation_to_the_host(base: str) -> None:
    host = Host({"decision": "approve"})
    async with http_session(base, host) as session:
        result = await session.call_tool("gate", {"input": "clean up"}, progress_callback=host.on_progress)
    assert not result.is_error and text(result) == "deleted notes.txt"
    (question,) = host.questions
    assert isinstance(question, types.ElicitRequestFormParams)
    assert 'delete_file({"path": "notes.txt"})' in question.message and "clean up" in question.message
    assert question.requested_schema["properties"]["decision"]["enum"] == ["approve", "deny"]
    messages = [m for _, m in host.progress]
    assert messages.index('delete_file({"path": "notes.txt"}) needs approval') < \
        messages.index("delete_file: approved by the host") < messages.index("delete_file returned: deleted notes.txt")
    run_id = result.structured_content["run_id"]  # type: ignore[index]
    assert run_json(base, run_id)["status"] == "success"


@pytest.mark.parametrize("answer, expected", [
    ({"decision": "deny", "reason": "not today"}, "Tool execution cancelled by user: not today"),
    ("decline", "Tool execution cancelled by user: declined by the user"),
])
async def test_a_denial_reaches_the_model(base: str, answer: Any, expected: str) -> None:
    async with http_session(base, Host(answer)) as session:
        result = await session.call_tool("gate", {"input": "clean up"})
    assert expected in text(result)


async def test_a_host_without_elicitation_is_told_how_to_decide(base: str) -> None:
    async with http_session(base) as session:  # no elicitation callback: the capability is not declared
        waiting = await session.call_tool("gate", {"input": "clean up"})
        assert waiting.is_error
        info = waiting.structured_content or {}
        run_id, (call,) = info["run_id"], info["pending_approvals"]
        assert info["status"] == "waiting_for_approval" and call["tool_name"] == "delete_file"
        assert "POST /runs/{run_id}/approvals/{call_id}" in text(waiting) and call["call_id"] in text(waiting)
        assert run_json(base, run_id)["status"] == "waiting_for_approval"  # in the journal, decidable there
        decided = httpx.post(f"{base}/runs/{run_id}/approvals/{call['call_id']}", json={"decision": "approve"})
        assert decided.status_code == 200, decided.text
        result = await session.call_tool("gate", {"run_id": run_id})
    assert not result.is_error and text(result) == "deleted notes.txt"
    assert result.structured_content["run_id"] == run_id  # type: ignore[index]


async def test_a_dismissed_question_leaves_the_run_waiting(base: str) -> None:
    host = Host("cancel", {"decision": "approve"})
    async with http_session(base, host) as session:
        waiting = await session.call_tool("gate", {"input": "clean up"})
        assert waiting.is_error and "the host dismissed the question" in text(waiting)
        run_id = waiting.structured_content["run_id"]  # type: ignore[index]
        result = await session.call_tool("gate", {"run_id": run_id})  # asked again
    assert text(result) == "deleted notes.txt" and len(host.questions) == 2


async def test_cancelling_the_request_cancels_the_run(base: str) -> None:
    host = Host()
    async with http_session(base, host) as session:
        with anyio.move_on_after(30):
            async with anyio.create_task_group() as tg:
                async def call() -> None:
                    await session.call_tool("slow", {"input": "look k up"}, progress_callback=host.on_progress)

                tg.start_soon(call)
                while not any((m or "").startswith("calling slow_lookup") for _, m in host.progress):
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()  # the client sends notifications/cancelled
        run_id = host.progress[0][1].split()[1]  # type: ignore[union-attr]
        with anyio.fail_after(20):
            while run_json(base, run_id)["status"] != "cancelled":
                await anyio.sleep(0.05)
        await session.send_ping()  # the session goes on


async def test_cancelling_while_the_host_is_asked_cancels_the_run(base: str) -> None:
    asked = anyio.Event()

    async def never_answers(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.set()
        await anyio.sleep(3600)
        raise AssertionError("not reached")

    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60)) as http, \
            streamable_http_client(f"{base}/mcp", http_client=http) as (read, write), \
            ClientSession(read, write, elicitation_callback=never_answers) as session:
        await session.initialize()
        with anyio.move_on_after(30):
            async with anyio.create_task_group() as tg:
                async def call() -> None:
                    await session.call_tool("gate", {"input": "clean up"}, progress_callback=on_progress)

                tg.start_soon(call)
                await asked.wait()
                tg.cancel_scope.cancel()
    run_id = seen[0].split()[1]
    with anyio.fail_after(20):
        while run_json(base, run_id)["status"] != "cancelled":
            await anyio.sleep(0.05)


async def test_errors_are_typed(base: str) -> None:
    async with http_session(base) as session:
        with pytest.raises(MCPError) as unknown:
            await session.call_tool("nope", {"input": "x"})
        assert unknown.value.code == types.INVALID_PARAMS and "adder, gate" in unknown.value.error.message
        for args, says in (({}, "give input"), ({"input": "x", "bogus": 1}, "unknown arguments bogus"),
                           ({"input": "x", "session_id": "no spaces"}, "session_id must be"),
                           ({"run_id": "nonexistent"}, "no run 'nonexistent' of agent 'adder'")):
            with pytest.raises(MCPError) as bad:
                await session.call_tool("adder", args)
            assert bad.value.code == types.INVALID_PARAMS and says in bad.value.error.message, bad.value
        failed = await session.call_tool("broken", {"input": "x"})  # the run failed: a tool error, not a protocol one
    assert failed.is_error and failed.structured_content["status"] == "error"  # type: ignore[index]
    assert "the model is down" in text(failed)


def test_the_endpoint_is_behind_the_token_and_host_check(store: str) -> None:
    with serving(create_app(make(), store=store, token="s3cret")) as url:
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        accept = {"Accept": "application/json, text/event-stream"}
        assert httpx.post(f"{url}/mcp", json=body, headers=accept).status_code == 401
        assert httpx.post(f"{url}/mcp", json=body, headers={**accept, "Host": "evil.example.com"}).status_code == 400

        async def go() -> str:
            async with http_session(url, headers={"Authorization": "Bearer s3cret"}) as session:
                return text(await session.call_tool("adder", {"input": "17 + 25"}))

        assert anyio.run(go) == "42"


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The SSE events of a streamed response: ``{"id", "data"}`` (data parsed when JSON)."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                yield event
            event = {}
            continue
        field, _, value = line.partition(":")
        if field in ("id", "data"):
            value = value[1:] if value.startswith(" ") else value
            event[field] = (json.loads(value) if value else None) if field == "data" else value


def test_a_dropped_stream_resumes_with_last_event_id(base: str) -> None:
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
    with httpx.stream("POST", f"{base}/mcp", json=init, headers=headers) as r:
        assert any((e.get("data") or {}).get("id") == 1 for e in sse_events(r))
        headers["Mcp-Session-Id"] = r.headers["mcp-session-id"]
    httpx.post(f"{base}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "steady", "arguments": {"input": "17 + 25"}, "_meta": {"progressToken": "p"}}}
    seen: list[dict[str, Any]] = []
    with httpx.stream("POST", f"{base}/mcp", json=call, headers=headers, timeout=30) as r:
        for event in sse_events(r):
            seen.append(event)
            if event.get("data"):  # the priming event (empty data), then the run's first progress: drop it here
                break
    assert seen[0].get("data") is None and seen[0]["id"], seen  # the priming event
    assert seen[-1]["data"]["params"]["message"].startswith("run ")
    rest: list[dict[str, Any]] = []
    with httpx.stream("GET", f"{base}/mcp", headers={**headers, "Last-Event-ID": seen[-1]["id"]}, timeout=30) as r:
        assert r.status_code == 200
        for event in sse_events(r):
            if event.get("data"):
                rest.append(event["data"])
            if (event.get("data") or {}).get("id") == 2:
                break
    messages = [m["params"]["message"] for m in rest if m.get("method") == "notifications/progress"]
    assert 'calling calculator({"expression": "17 + 25"})' in messages and "calculator returned: 42" in messages
    result = rest[-1]["result"]
    assert result["content"][0]["text"] == "42" and not result["isError"]


# ---------------------------------------------------------------------- streamable HTTP, 2026-07-28 protocol
async def test_input_required_round_trip(base: str) -> None:
    host = Host({"decision": "approve"})
    async with Client(f"{base}/mcp", elicitation_callback=host.elicit) as client:
        assert client.session.protocol_version == "2026-07-28"
        result = await client.call_tool("gate", {"input": "clean up"})
    assert not result.is_error and text(result) == "deleted notes.txt" and len(host.questions) == 1


async def test_the_answer_continues_the_run_after_a_restart(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREADLE_MCP_STATE_KEY", STATE_KEY)  # the request state outlives the process
    host = Host({"decision": "approve"})
    with serving(create_app(make(), store=store)) as url:
        async with Client(f"{url}/mcp", elicitation_callback=host.elicit) as client:
            asked = await client.session.call_tool("gate", {"input": "clean up"}, allow_input_required=True)
    assert isinstance(asked, types.InputRequiredResult) and asked.request_state and asked.input_requests
    (call_id, request), = asked.input_requests.items()
    assert isinstance(request, types.ElicitRequest) and "delete_file" in request.params.message
    with serving(create_app(make(), store=store)) as url:  # a new server process, the same journal
        run_id = httpx.get(f"{url}/runs").json()["runs"][0]["run_id"]
        assert run_json(url, run_id)["status"] == "waiting_for_approval"
        answer = await host.elicit(None, request.params)
        async with Client(f"{url}/mcp", elicitation_callback=host.elicit) as client:
            result = await client.session.call_tool("gate", {"input": "clean up"}, input_responses={call_id: answer},
                                                    request_state=asked.request_state)
            assert isinstance(result, types.CallToolResult)
            assert text(result) == "deleted notes.txt" and result.structured_content["run_id"] == run_id  # type: ignore[index]
            with pytest.raises(MCPError) as forged:  # a state this server did not seal is refused
                await client.session.call_tool("gate", {"input": "clean up"}, input_responses={call_id: answer},
                                               request_state=json.dumps({"run": run_id, "call": call_id}))
            assert forged.value.code == types.INVALID_PARAMS
        assert run_json(url, run_id)["status"] == "success"


async def test_an_answer_after_the_run_was_decided_elsewhere_gets_its_result(base: str) -> None:
    host = Host({"decision": "deny"})
    async with Client(f"{base}/mcp", elicitation_callback=host.elicit) as client:
        asked = await client.session.call_tool("gate", {"input": "clean up"}, allow_input_required=True)
        assert isinstance(asked, types.InputRequiredResult) and asked.input_requests
        (call_id, request), = asked.input_requests.items()
        assert isinstance(request, types.ElicitRequest)
        run_id = httpx.get(f"{base}/runs").json()["runs"][0]["run_id"]
        decided = httpx.post(f"{base}/runs/{run_id}/approvals/{call_id}", json={"decision": "approve"})
        assert decided.status_code == 200, decided.text
        with anyio.fail_after(20):
            while run_json(base, run_id)["status"] != "success":
                await anyio.sleep(0.05)
        answer = await host.elicit(None, request.params)  # the host's late "deny" changes nothing
        result = await client.session.call_tool("gate", {"input": "clean up"}, input_responses={call_id: answer},
                                                request_state=asked.request_state)
    assert isinstance(result, types.CallToolResult) and text(result) == "deleted notes.txt"


def test_agent_names_become_valid_tool_names(store: str) -> None:
    agents = make()
    with serving(create_app({"billing agent/v2": agents["adder"]}, store=store)) as url:
        async def go() -> tuple[list[str], str]:
            async with http_session(url) as session:
                names = [t.name for t in (await session.list_tools()).tools]
                return names, text(await session.call_tool(names[0], {"input": "17 + 25"}))

        names, answer = anyio.run(go)
    assert names == ["billing_agent_v2"] and answer == "42"


# ---------------------------------------------------------------------- stdio: treadle mcp serve
def stdio_params(tmp_path: Path, *extra: str) -> StdioServerParameters:
    paths = [str(HERE), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]  # the treadle under test
    path = os.pathsep.join(os.path.abspath(p) for p in paths if p)
    return StdioServerParameters(command=sys.executable, args=["-m", "treadle.cli", "mcp", "serve", "mcp_agents:make",
                                                               "--store", str(tmp_path / "runs.db"), *extra],
                                 env={"PYTHONPATH": path, "TREADLE_HOME": str(tmp_path)}, cwd=str(HERE))


@asynccontextmanager
async def stdio_session(tmp_path: Path, host: Host | None = None) -> AsyncIterator[ClientSession]:
    with open(tmp_path / "stderr.log", "w") as errlog:
        async with stdio_client(stdio_params(tmp_path), errlog=errlog) as (read, write), \
                ClientSession(read, write, elicitation_callback=host.elicit if host else None) as session:
            await session.initialize()
            yield session


async def test_stdio_approval_by_elicitation(tmp_path: Path) -> None:
    host = Host({"decision": "approve"}, {"decision": "deny", "reason": "keep it"})
    async with stdio_session(tmp_path, host) as session:
        tools = (await session.list_tools()).tools
        assert sorted(t.name for t in tools) == ["adder", "broken", "deleter", "gate", "noter", "slow", "steady"]
        approved = await session.call_tool("gate", {"input": "clean up"}, progress_callback=host.on_progress)
        denied = await session.call_tool("gate", {"input": "clean up"})
    assert text(approved) == "deleted notes.txt" and "cancelled by user: keep it" in text(denied)
    assert "delete_file: approved by the host" in [m for _, m in host.progress]
    from treadle.store import SQLiteRunStore

    journal = SQLiteRunStore(str(tmp_path / "runs.db"))
    run = journal.get_run(approved.structured_content["run_id"])  # type: ignore[index]
    assert run is not None and run.status == "success"


async def test_stdio_without_elicitation_decided_with_treadle_approve(tmp_path: Path) -> None:
    async with stdio_session(tmp_path) as session:
        waiting = await session.call_tool("gate", {"input": "clean up"})
        info = waiting.structured_content or {}
        run_id, call_id = info["run_id"], info["pending_approvals"][0]["call_id"]
        assert f"treadle approve RUN_ID CALL_ID --store {tmp_path / 'runs.db'}" in text(waiting)
        env = {**os.environ, "PYTHONPATH": stdio_params(tmp_path).env["PYTHONPATH"], "TREADLE_HOME": str(tmp_path)}  # type: ignore[index]
        approve = subprocess.run([sys.executable, "-m", "treadle.cli", "approve", run_id, call_id, "--store",
                                  str(tmp_path / "runs.db")], env=env, cwd=HERE, capture_output=True, text=True)
        assert approve.returncode == 0, approve.stderr
        result = await session.call_tool("gate", {"run_id": run_id})
    assert not result.is_error and text(result) == "deleted notes.txt"


async def test_stdio_host_going_away_mid_call_cancels_the_run(tmp_path: Path) -> None:
    host = Host()
    with anyio.move_on_after(60) as gone:
        async with stdio_session(tmp_path, host) as session, anyio.create_task_group() as tg:
            async def call() -> None:
                await session.call_tool("slow", {"input": "look k up"}, progress_callback=host.on_progress)

            tg.start_soon(call)
            while not any((m or "").startswith("calling slow_lookup") for _, m in host.progress):
                await anyio.sleep(0.02)
            gone.cancel()  # the host closes the connection (and the server's stdin) mid-call
    from treadle.store import SQLiteRunStore

    run_id = (host.progress[0][1] or "").split()[1]
    run = SQLiteRunStore(str(tmp_path / "runs.db")).get_run(run_id)
    assert run is not None and run.status == "cancelled", run


async def test_stdio_input_required_round_trip(tmp_path: Path) -> None:
    host = Host({"decision": "approve"})
    async with Client(stdio_params(tmp_path), elicitation_callback=host.elicit) as client:
        assert client.session.protocol_version == "2026-07-28"
        result = await client.call_tool("gate", {"input": "clean up"})
    assert text(result) == "deleted notes.txt" and len(host.questions) == 1


def test_mcp_serve_names_what_is_missing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": stdio_params(tmp_path).env["PYTHONPATH"]}  # type: ignore[index]
    out = subprocess.run([sys.executable, "-m", "treadle.cli", "mcp", "serve", "no_such_module:agents"], env=env,
                         cwd=HERE, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "cannot load 'no_such_module:agents'" in out.stderr


async def test_parallel_calls_each_get_their_own_question(base: str) -> None:
    """Two calls in flight on one 2025-era session: each approval is asked on its own call's
    stream (related to its request) and its answer decides that call's run only."""
    both = anyio.Event()
    asked: list[str] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        if len(asked) == 2:
            both.set()
        with anyio.fail_after(30):
            await both.wait()  # both questions are open at once before either is answered
        choice = "approve" if "a.txt" in params.message else "deny"
        return types.ElicitResult(action="accept", content={"decision": choice, "reason": "not b"})

    results: dict[str, types.CallToolResult] = {}
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60)) as http, \
            streamable_http_client(f"{base}/mcp", http_client=http) as (read, write), \
            ClientSession(read, write, elicitation_callback=elicit) as session:
        await session.initialize()

        async def call(path: str) -> None:
            results[path] = await session.call_tool("deleter", {"input": path})

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "a.txt")
            tg.start_soon(call, "b.txt")
    assert sorted("a.txt" in q for q in asked) == [False, True]
    assert text(results["a.txt"]) == "deleted a.txt"
    assert "not b" in text(results["b.txt"]) and "deleted" not in text(results["b.txt"])
    runs = {run_json(base, r.structured_content["run_id"])["input"] for r in results.values()}  # type: ignore[index]
    assert runs == {"a.txt", "b.txt"}
