"""The AG-UI face against a real `treadle serve` on loopback: the `@ag-ui/client` package from npm
(`.ci/agui.sh`) runs an agent with a tool, an approval interrupt and its continuation, and a
reconnect; from Python: resuming with Last-Event-ID, an interrupt answered after a restart, and
malformed inputs answered with a RUN_ERROR body, never a 5xx."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from server_utils import wait_journaled
from test_serve_cli import free_port, serve, wait_up
from test_serve_cli import start as start_server

pytestmark = pytest.mark.timeout(120)
HERE = Path(__file__).resolve().parent
CLIENT = HERE / "agui_client.cjs"
DOCS = HERE.parents[1] / "docs" / "ag-ui.md"
TOKEN = "agui-t0k"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("agui")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(["served_agents:make_faces", "--port", str(port), "--token", TOKEN], tmp)
    try:
        wait_up(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def events(text: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(SSE id, AG-UI event) of each message of a stream."""
    out = []
    for block in text.split("\n\n"):
        lines = re.split(r"\r\n|\r|\n", block)  # SSE's line ends only (not str.splitlines: U+2028 is data)
        sid = next((line[4:] for line in lines if line.startswith("id: ")), None)
        data = next((line[6:] for line in lines if line.startswith("data: ")), None)
        if data:
            out.append((sid, json.loads(data)))
    return out


def post(url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(url, json=body, headers={**AUTH, **headers}, timeout=30)


def user_input(run_id: str, text: str, **more: Any) -> dict[str, Any]:
    return {"threadId": "thread-1", "runId": run_id, "state": {"theme": "dark"},
            "messages": [{"id": "m1", "role": "user", "content": text}], **more}


def test_the_ag_ui_client_runs_tools_interrupts_and_reconnects(served: str) -> None:
    modules = os.environ.get("TREADLE_AGUI_NODE_MODULES")
    if not modules or not shutil.which("node"):
        if _ci():
            pytest.fail("@ag-ui/client is not installed: eval \"$(bash .ci/agui.sh)\" (CI=true: no skip)")
        pytest.skip("@ag-ui/client is not installed: eval \"$(bash .ci/agui.sh)\"")
    proc = subprocess.run(["node", str(CLIENT), served, TOKEN], env={**os.environ, "NODE_PATH": modules},
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    parts = {p["part"]: p for p in map(json.loads, proc.stdout.splitlines())}
    tool = parts["tool"]
    assert tool["result"] == "42" and tool["types"][0] == "RUN_STARTED" and tool["types"][-1] == "RUN_FINISHED"
    assert ["TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT"] == \
        [t for t in tool["types"] if t.startswith("TOOL_CALL")]
    assert {"STEP_STARTED", "TEXT_MESSAGE_CONTENT", "MESSAGES_SNAPSHOT", "STATE_SNAPSHOT"} <= set(tool["types"])
    [interrupt] = parts["interrupt"]["interrupts"]
    assert interrupt["reason"] == "tool_approval" and interrupt["metadata"]["treadle"]["tool_name"] == "delete_file"
    assert "TOOL_CALL_RESULT" not in parts["interrupt"]["types"]
    resumed = parts["resumed"]
    assert resumed["result"] == "done" and "TOOL_CALL_RESULT" in resumed["types"] and not resumed["interrupts"]
    reconnect = parts["reconnect"]
    assert "TOOL_CALL_RESULT" not in reconnect["cut"]  # the first connection was dropped mid-run
    assert reconnect["result"] == "found" and "TOOL_CALL_RESULT" in reconnect["types"]


def test_the_docs_page_shows_the_client_the_test_runs() -> None:
    page = DOCS.read_text(encoding="utf-8")
    block = re.search(r"^```js\n(.*?)^```", page, re.M | re.S)
    assert block is not None and block.group(1) == CLIENT.read_text(encoding="utf-8")


def test_last_event_id_resumes_the_stream_where_it_stopped(served: str) -> None:
    run_id = f"le-{time.monotonic_ns()}"
    full = events(post(f"{served}/agui/adder", user_input(run_id, "add")).text)
    assert full[0][1]["type"] == "RUN_STARTED" and full[-1][1]["type"] == "RUN_FINISHED"
    ids = [sid for sid, _ in full if sid is not None]
    assert len(ids) == len(set(ids)) == len(full) - 1  # every event but RUN_STARTED has an id, each its own
    cut = next(i for i, (_, e) in enumerate(full) if e["type"] == "TOOL_CALL_ARGS")
    rest = events(post(f"{served}/agui/adder", user_input(run_id, "add"), **{"Last-Event-ID": full[cut][0] or ""}).text)
    assert rest[0][1]["type"] == "RUN_STARTED"
    assert [e for _, e in rest[1:]] == [e for _, e in full[cut + 1:]]  # nothing lost, nothing twice
    again = events(post(f"{served}/agui/adder", user_input(run_id, "add")).text)  # no id: the whole run again
    assert [e["type"] for _, e in again] == [e["type"] for _, e in full]
    state = [e for _, e in full if e["type"] == "STATE_SNAPSHOT"][-1]["snapshot"]
    assert state["theme"] == "dark" and state["treadle"] == {"run_id": run_id, "status": "success", "steps": 2}


def test_an_interrupt_is_answered_after_a_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["served_agents:make_faces", "--port", str(port)]
    with serve(args, tmp_path, url, kill=True):
        asked = events(httpx.post(f"{url}/agui/gate", json=user_input("r-1", "tidy up"), timeout=30).text)
        outcome = asked[-1][1]["outcome"]
        assert outcome["type"] == "interrupt"
        [interrupt] = outcome["interrupts"]
        wait_journaled(tmp_path, "r-1", "waiting_for_approval")
    with serve(args, tmp_path, url):
        body = {"threadId": "thread-1", "runId": "r-2", "messages": [],
                "resume": [{"interruptId": interrupt["id"], "status": "cancelled"}]}
        done = events(httpx.post(f"{url}/agui/gate", json=body, timeout=30).text)
        result = next(e for _, e in done if e["type"] == "TOOL_CALL_RESULT")
        assert "cancelled by the user" in result["content"]  # a cancelled interrupt denies the call
        assert done[-1][1]["type"] == "RUN_FINISHED" and done[-1][1]["result"] == "done"
        assert done[-1][1]["runId"] == "r-2"


def test_malformed_inputs_get_a_run_error_body(served: str) -> None:
    for body, status in (({"threadId": "t"}, 422), ({"threadId": "t", "runId": "x", "messages": []}, 422),
                         (user_input("x-1", "hi", resume=[{"interruptId": "nope", "status": "resolved"}]), 422),
                         (user_input("x-2", "hi", resume=[{"interruptId": "approval:ghost:c1", "status": "resolved"}]),
                          404)):
        r = post(f"{served}/agui", body)
        assert r.status_code == status and r.json()["type"] == "RUN_ERROR", (body, r.text)
    assert post(f"{served}/agui/ghost", user_input("x-3", "hi")).json()["code"] == "unknown_agent"
    r = httpx.post(f"{served}/agui", json=user_input("x-4", "hi"))  # no token
    assert r.status_code == 401 and r.json()["type"] == "RUN_ERROR"
    r = post(f"{served}/agui", user_input("x-5", "hi"), **{"Last-Event-ID": "7"})
    assert r.status_code == 422 and r.json()["type"] == "RUN_ERROR"
    run_id = f"own-{time.monotonic_ns()}"
    assert post(f"{served}/agui/adder", user_input(run_id, "add")).status_code == 200
    r = post(f"{served}/agui/gate", user_input(run_id, "add"))  # another agent's run is not streamed
    assert r.status_code == 409 and r.json()["type"] == "RUN_ERROR" and "adder" in r.json()["message"]
    r = httpx.get(f"{served}/agui", headers=AUTH)
    assert r.status_code == 405 and r.json()["type"] == "RUN_ERROR" and r.headers["allow"] == "POST"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3), max_leaves=10)
MESSAGE = st.fixed_dictionaries(
    {"id": st.text(max_size=5), "role": st.sampled_from(["user", "assistant", "system", "developer", "tool", "x"]),
     "content": st.text(max_size=10) | st.lists(st.fixed_dictionaries({"type": st.just("text"),
                                                                     "text": st.text(max_size=5)}), max_size=2) | JSON},
    optional={"toolCallId": st.text(max_size=5), "toolCalls": JSON})
RESUME = st.lists(st.fixed_dictionaries({"interruptId": st.sampled_from(["approval:r:c", "approval:x", "nope"]),
                                         "status": st.sampled_from(["resolved", "cancelled", "other"])},
                                        optional={"payload": JSON}), max_size=2)
NEAR = st.fixed_dictionaries(  # the shape of a RunAgentInput, with any of its parts wrong
    {"threadId": st.text(max_size=8), "runId": st.text(max_size=8), "messages": st.lists(MESSAGE, max_size=3)},
    optional={"state": JSON, "resume": RESUME | JSON, "tools": JSON, "context": st.lists(
        st.fixed_dictionaries({"description": st.text(max_size=5), "value": st.text(max_size=5)}), max_size=2)})
BODY = st.one_of(NEAR, NEAR, JSON, st.fixed_dictionaries({"threadId": JSON, "runId": JSON, "messages": JSON}))


def test_fuzzed_inputs_never_get_a_5xx(served: str) -> None:
    seen: dict[int, int] = {}

    @settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: each example is a request
    @given(BODY)
    def check(body: Any) -> None:
        r = post(f"{served}/agui/adder", body)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert r.json()["type"] == "RUN_ERROR", r.text
        else:
            kinds = [e["type"] for _, e in events(r.text)]
            assert kinds[0] == "RUN_STARTED" and kinds[-1] in ("RUN_FINISHED", "RUN_ERROR"), kinds

    check()
    assert seen.get(422), seen
