"""``treadle serve`` with a plain ``def`` tool that blocks (issue #27): the server stays live.

A real uvicorn server on loopback, read with httpx. The tool blocks on a ``threading.Event``
(never a sleep), and every assertion is an ordering: the server answered *while* the tool
still blocked, then the test releases it. Without the worker thread, /health, the other
run's stream and the cancel all wait for the tool.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator

import httpx
import pytest
from server_utils import serving

from treadle import Agent, Function
from treadle.models.scripted import ScriptedModel

pytestmark = pytest.mark.timeout(90)

WAIT = 30  # bounds waits that should end at once: a hang fails the test instead of stalling it


class Blocker:
    """A tool body that blocks until released, and says when it entered and returned."""

    def __init__(self) -> None:
        self.entered, self.release, self.returned = threading.Event(), threading.Event(), threading.Event()

    def tool(self) -> Any:
        def export_report(name: str) -> str:
            """Export a report (blocking I/O).

            Args:
                name: the report
            """
            self.entered.set()
            self.release.wait(WAIT)
            self.returned.set()
            return f"exported {name}"

        return export_report


@pytest.fixture
def blocker() -> Iterator[Blocker]:
    b = Blocker()
    yield b
    b.release.set()


@pytest.fixture
def url(blocker: Blocker, tmp_path: Any) -> Iterator[str]:
    from treadle.server import create_app

    blocking = [Function(name="export_report", kwargs={"name": "q3"}), Function(name="finish", kwargs={"answer": "ok"})]
    agents = {
        "exporter": Agent(name="exporter", tools=[blocker.tool()], model=ScriptedModel(blocking, per_run=True)),
        "quick": Agent(name="quick", tools=[], model=ScriptedModel([Function(name="finish", kwargs={"answer": "hi"})],
                                                                   per_run=True)),
    }
    with serving(create_app(agents, store=f"sqlite:///{tmp_path / 'runs.db'}")) as u:
        yield u


def start(c: httpx.Client, agent: str) -> str:
    r = c.post("/runs", json={"input": "go", "agent": agent})
    assert r.status_code == 201, r.text
    return r.json()["run_id"]


def events(c: httpx.Client, run_id: str) -> list[str]:
    """The event names of a run's SSE stream, read to its end."""
    names: list[str] = []
    with c.stream("GET", f"/runs/{run_id}/events", timeout=WAIT) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event:"):
                names.append(line.partition(":")[2].strip())
            elif line.startswith("data:") and names and names[-1] == "agent.execution_complete":
                json.loads(line.partition(":")[2])
    return names


def status(c: httpx.Client, run_id: str, wanted: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while True:
        body = c.get(f"/runs/{run_id}").json()
        if body["status"] in wanted or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def test_health_and_another_runs_stream_are_answered_while_a_sync_tool_blocks(url: str, blocker: Blocker) -> None:
    with httpx.Client(base_url=url, timeout=WAIT * 2) as c:
        slow = start(c, "exporter")
        assert blocker.entered.wait(WAIT)
        assert c.get("/health").json()["status"] == "ok"
        assert not blocker.returned.is_set()  # answered while the tool still blocks
        quick = start(c, "quick")
        assert events(c, quick)[-1] == "agent.execution_complete"
        assert c.get(f"/runs/{quick}").json()["answer"] == "hi"
        assert not blocker.returned.is_set()  # the other run streamed to its end meanwhile
        assert c.get(f"/runs/{slow}").json()["status"] == "running"
        blocker.release.set()
        assert status(c, slow, {"success"})["answer"] == "ok"


def test_cancel_ends_a_run_whose_sync_tool_blocks_before_the_tool_returns(url: str, blocker: Blocker) -> None:
    with httpx.Client(base_url=url, timeout=WAIT * 2) as c:
        run_id = start(c, "exporter")
        assert blocker.entered.wait(WAIT)
        assert c.post(f"/runs/{run_id}/cancel").json() == {"accepted": True}
        body = status(c, run_id, {"cancelled"})
        names = events(c, run_id)
        assert not blocker.returned.is_set()  # cancelled, with the tool still blocking
        assert body["status"] == "cancelled" and body["error_type"] == "RunCancelled"
        assert names[-3:] == ["runner.cancel_received", "runner.cancelled", "agent.execution_complete"]
        assert "agent.tool_call_start" in names and "agent.tool_call_complete" not in names
        blocker.release.set()
        assert blocker.returned.wait(WAIT)  # the thread finished in the background...
        assert c.get(f"/runs/{run_id}").json()["status"] == "cancelled"  # ...and changed nothing
        assert events(c, run_id) == names
