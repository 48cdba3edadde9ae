"""One approval contract over HTTP: pending approvals survive a restart, decisions are offered
only where this server can continue the run (and say why not), edits are checked before they
are recorded."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_utils import serving, wait_journaled
from test_api import start, wait_status
from test_serve_cli import free_port, serve

from treadle import Agent, Function, PermissionManager, Runner
from treadle.models.scripted import ScriptedModel

pytestmark = pytest.mark.timeout(90)


def wait_body(url: str, run_id: str, check: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{url}/runs/{run_id}").json()
        if check(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_pending_approvals_are_rebuilt_from_the_journal_after_a_restart(tmp_path: Path) -> None:
    """`treadle serve` is killed while a run waits for a click; the next server lists the
    call (tool, arguments) and takes the decision."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["served_agents:make_gated", "--port", str(port)]
    with serve(args, tmp_path, url, kill=True):
        run_id = httpx.post(url + "/runs", json={"input": "tidy up"}).json()["run_id"]
        before = wait_body(url, run_id, lambda b: b["pending_approvals"])["pending_approvals"]
        wait_journaled(tmp_path, run_id, "waiting_for_approval")
    with serve(args, tmp_path, url):
        body = httpx.get(f"{url}/runs/{run_id}").json()
        assert body["status"] == "waiting_for_approval" and body["live"] is False
        assert body["pending_approvals"] == before, body
        [call] = body["pending_approvals"]
        assert call["tool_name"] == "delete_file" and call["kwargs"] == {"path": "notes.txt"}
        assert body["can_decide"] is True and body["cannot_decide_reason"] is None
        listed = next(r for r in httpx.get(f"{url}/runs").json()["runs"] if r["run_id"] == run_id)
        assert listed["pending_approvals"] == before
        bad = httpx.post(f"{url}/runs/{run_id}/approvals/{call['call_id']}",
                         json={"decision": "edit", "kwargs": {"path": ["a", "b"]}})
        assert bad.status_code == 422 and "not valid for delete_file" in bad.json()["message"], bad.text
        assert httpx.get(f"{url}/runs/{run_id}").json()["pending_approvals"] == before  # still pending
        ok = httpx.post(f"{url}/runs/{run_id}/approvals/{call['call_id']}", json={"decision": "approve"})
        assert ok.status_code == 200, ok.text
        done = wait_body(url, run_id, lambda b: b["status"] == "success")
        assert done["step_history"][0]["observation"] == "deleted notes.txt" and not done["pending_approvals"]
        assert done["can_decide"] is False and "ended" in done["cannot_decide_reason"]


def test_runs_this_server_cannot_continue_say_why_and_refuse_decisions(agents: dict[str, Any],
                                                                       store_url: str) -> None:
    from treadle.server import create_app

    # suspended by another agent (a script's, the CLI's): not served here
    janitor = Agent(name="janitor", tools=agents["approver"].tool_manager.tools,
                    model=ScriptedModel([Function(name="delete_file", kwargs={"path": "a.txt"}),
                                         Function(name="finish", kwargs={"answer": "done"})], per_run=True))
    other = Runner(janitor, store=store_url, suspend_for_approval=True).call("clean")
    # waiting in another process's hands (here: a Runner of this test, its approver still thinking)
    release = threading.Event()

    async def slow_approver(request: Any) -> bool:
        await asyncio.to_thread(release.wait, 30)
        return True

    held = Runner(agents["approver"], store=store_url, permission_manager=PermissionManager(slow_approver),
                  run_metadata={"server": {"agent": "approver", "session_id": None}})
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(held.call("clean up")))
    thread.start()
    try:
        with serving(create_app(agents, store=store_url)) as url, httpx.Client(base_url=url) as c:
            body = c.get(f"/runs/{other.run_id}").json()
            assert body.get("can_decide") is False and "janitor" in body["cannot_decide_reason"], body
            [call] = body["pending_approvals"]
            r = c.post(f"/runs/{other.run_id}/approvals/{call['call_id']}", json={"decision": "approve"})
            assert r.status_code == 409 and body["cannot_decide_reason"] in r.json()["detail"]

            deadline = time.monotonic() + 10
            while not (body := c.get("/runs", params={"status": "waiting_for_approval"}).json()["runs"]) or \
                    len(body) < 2:
                assert time.monotonic() < deadline, body
                time.sleep(0.05)
            busy = next(b for b in body if b["run_id"] != other.run_id)
            assert busy["can_decide"] is False and "another process" in busy["cannot_decide_reason"], busy
            [call] = busy["pending_approvals"]
            r = c.post(f"/runs/{busy['run_id']}/approvals/{call['call_id']}", json={"decision": "approve"})
            assert r.status_code == 409 and "another process" in r.json()["detail"]

            live = start(c, "clean up", agent="approver")  # a run of this server: decided here
            body = wait_status(c, live, {"waiting_for_approval"})
            assert body["can_decide"] is True and body["cannot_decide_reason"] is None and body["pending_approvals"]
            c.post(f"/runs/{live}/approvals/{body['pending_approvals'][0]['call_id']}", json={"decision": "deny"})
            wait_status(c, live, {"success"})
    finally:
        release.set()
        thread.join(30)
    assert results and results[0].status == "success"
