"""The HTTP API and run ownership: a run another live process runs is not resumed or decided
here (409), and a suspended call takes one decision however many come in at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from server_utils import serving

from treadle import Agent, Function, Runner, ScriptedModel

pytestmark = pytest.mark.timeout(90)


def test_resume_of_a_run_a_live_process_owns_is_409(agents: dict[str, Any], store_url: str) -> None:
    from treadle.server import create_app

    started, release = threading.Event(), threading.Event()

    def hold(key: str) -> str:
        started.set()
        release.wait(60)
        return "held"

    owner_agent = Agent(name="echo", tools=[hold], model=ScriptedModel(
        [Function(name="hold", kwargs={"key": "k"}), Function(name="finish", kwargs={"answer": "ok"})]))
    owner = Runner(owner_agent, store=store_url, run_metadata={"server": {"agent": "echo", "session_id": None}})
    t = threading.Thread(target=lambda: owner.call("hold on", id="owned"))
    t.start()
    try:
        assert started.wait(30)
        with serving(create_app(agents, store=store_url)) as url, httpx.Client(base_url=url) as c:
            r = c.post("/runs/owned/resume")
            assert r.status_code == 409 and "live process" in r.text, r.text
    finally:
        release.set()
        t.join(30)


def test_concurrent_decisions_on_a_suspended_call_one_wins(agents: dict[str, Any], store_url: str) -> None:
    from treadle.server import create_app

    runner = Runner(agents["approver"], store=store_url, suspend_for_approval=True,
                    run_metadata={"server": {"agent": "approver", "session_id": None}})
    result = runner.call("clean up")
    assert result.status == "waiting_for_approval"
    store = runner.store
    call_id = next(e.payload["item"]["id"] for e in store.events(result.run_id)
                   if e.name == "agent.tool_permission_request")
    with serving(create_app(agents, store=store_url)) as url, httpx.Client(base_url=url, timeout=30) as c:
        bodies = [{"decision": "approve"}, {"decision": "deny", "reason": "no"}] * 3
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda b: c.post(f"/runs/{result.run_id}/approvals/{call_id}", json=b).status_code,
                                  bodies))
        assert sorted(codes) == [200] + [409] * 5, codes
        decisions = [e for e in store.events(result.run_id) if e.name == "treadle.approval_decision"]
        assert len(decisions) == 1
