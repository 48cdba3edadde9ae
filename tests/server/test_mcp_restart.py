"""A question asked on the 2026-07-28 protocol (``input_required``) survives a SIGKILL of the
``treadle serve`` process: the host's retry, sent to the next process, continues the same run from
its journal, and what the run did before the question (a side effect) is not done again. No
``TREADLE_MCP_STATE_KEY``: the key sealing the request state is the one kept beside the journal."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import mcp_types as types
import pytest
from test_serve_cli import free_port, wait_up
from test_serve_cli import start as start_server

from mcp import Client

pytestmark = pytest.mark.timeout(120)


async def never_asked(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
    raise AssertionError("the question comes back as input_required, not as a request")


async def test_a_question_survives_a_kill_and_the_side_effect_runs_once(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    notes = tmp_path / "notes.txt"
    monkeypatch.setenv("TREADLE_TEST_NOTES", str(notes))
    monkeypatch.delenv("TREADLE_MCP_STATE_KEY", raising=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(["mcp_agents:make", "--port", str(port)], tmp_path)
    try:
        wait_up(url, server)
        async with Client(f"{url}/mcp", elicitation_callback=never_asked) as client:
            asked = await client.session.call_tool("noter", {"input": "tidy up"}, allow_input_required=True)
        assert isinstance(asked, types.InputRequiredResult) and asked.request_state and asked.input_requests
        (call_id, request), = asked.input_requests.items()
        assert isinstance(request, types.ElicitRequest) and "delete_file" in request.params.message
        assert notes.read_text() == "before the question\n"
        os.kill(server.pid, signal.SIGKILL)  # mid-question: the host has not answered yet
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)

    server = start_server(["mcp_agents:make", "--port", str(port)], tmp_path)  # the same journal and home
    try:
        wait_up(url, server)
        answer = types.ElicitResult(action="accept", content={"decision": "approve"})
        async with Client(f"{url}/mcp", elicitation_callback=never_asked) as client:
            result = await client.session.call_tool("noter", {"input": "tidy up"}, input_responses={call_id: answer},
                                                    request_state=asked.request_state)
        assert isinstance(result, types.CallToolResult) and not result.is_error
        assert [c.text for c in result.content if isinstance(c, types.TextContent)] == ["deleted notes.txt"]
        run_id = (result.structured_content or {})["run_id"]
        run = httpx.get(f"{url}/runs/{run_id}").json()
        assert (run["status"], run["agent"]) == ("success", "noter")
        assert [r["run_id"] for r in httpx.get(f"{url}/runs").json()["runs"]] == [run_id]  # one run, continued
    finally:
        server.terminate()
        server.wait(10)
    assert notes.read_text() == "before the question\n"  # the side effect before the question ran once
    assert (tmp_path / "mcp-state.key").stat().st_mode & 0o777 == 0o600  # the sealing key, its owner's only
