"""Nested runs over the HTTP API: a run's children and parent, top-level listing, the trace
nesting child runs under their tool span, and the SSE stream of a parent carrying its
children's events (a real uvicorn server, a real SQLite journal, scripted models)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from server_utils import serving
from test_api import sse, start, wait_status

from nested_runs import agents as nested_agents
from nested_runs import nested_run
from treadle import Agent, Function, tool
from treadle.models.scripted import ScriptedModel
from treadle.types import child_run_id

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def journaled(tmp_path: Any) -> tuple[str, str, str, str]:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    return (url, *nested_run(url))


def test_run_detail_names_children_and_parent(journaled: tuple[str, str, str, str]) -> None:
    from treadle.server import create_app

    url, writer, calc, doubler = journaled
    with serving(create_app(nested_agents(), store=url)) as server, httpx.Client(base_url=server) as c:
        top = c.get(f"/runs/{writer}").json()
        assert top["parent_run_id"] is None and top["depth"] == 0
        assert [(k["run_id"], k["call_id"], k["parent_call_id"], k["agent"], k["status"], k["kind"])
                for k in top["children"]] == [(calc, "q1", "0:q1", "calculator", "success", "tool")]
        mid = c.get(f"/runs/{calc}").json()
        assert (mid["parent_run_id"], mid["parent_call_id"], mid["depth"]) == (writer, "0:q1", 1)
        assert [(k["run_id"], k["step"]) for k in mid["children"]] == [(doubler, 1)]
        leaf = c.get(f"/runs/{doubler}").json()
        assert (leaf["parent_run_id"], leaf["depth"], leaf["children"]) == (calc, 2, [])

        every = [r["run_id"] for r in c.get("/runs").json()["runs"]]
        assert set(every) == {writer, calc, doubler}
        top_level = c.get("/runs", params={"top_level": "true", "limit": 1}).json()["runs"]
        assert [r["run_id"] for r in top_level] == [writer]
        assert [r["run_id"] for r in c.get("/runs", params={"top_level": "true", "status": "error"}).json()[
            "runs"]] == []


def test_trace_nests_child_runs_under_their_tool_span(journaled: tuple[str, str, str, str]) -> None:
    from treadle.server import create_app

    url, writer, calc, doubler = journaled
    with serving(create_app(nested_agents(), store=url)) as server, httpx.Client(base_url=server) as c:
        trace = c.get(f"/runs/{writer}/trace").json()
    spans = {s["id"]: s for s in trace["spans"]}
    assert len(spans) == len(trace["spans"])  # ids are unique across the runs
    calc_run = spans[calc]
    assert calc_run["parent"] == f"{writer}:tool:q1" and calc_run["kind"] == "run"
    assert calc_run["name"] == "agent calculator" and calc_run["attributes"]["depth"] == 1
    assert spans[doubler]["parent"] == f"{calc}:tool:c2" and spans[doubler]["attributes"]["depth"] == 2
    assert spans[f"{doubler}:tool:d1"]["name"] == "tool double"

    def root_of(sid: str) -> str:
        while spans[sid]["parent"] is not None:
            sid = spans[sid]["parent"]
        return sid

    assert {root_of(s) for s in spans} == {writer}  # one tree
    kinds = [s["kind"] for s in trace["spans"]]
    assert kinds.count("run") == 3 and kinds.count("guardrail") == 1 and kinds.count("handoff") == 1
    guard = next(s for s in trace["spans"] if s["kind"] == "guardrail")
    assert guard["attributes"]["action"] == "passed" and guard["status"] == "ok"
    hand = next(s for s in trace["spans"] if s["kind"] == "handoff")
    assert hand["attributes"]["to_agent"] == "editor" and spans[hand["parent"]]["kind"] == "step"
    for s in trace["spans"]:
        assert s["start"] <= s["end"] + 1e-6, s


def test_the_parent_stream_carries_child_events_and_ends_with_the_parent(tmp_path: Any) -> None:
    from treadle.server import create_app

    app = create_app({"writer": nested_agents()}, store=f"sqlite:///{tmp_path / 'runs.db'}")
    with serving(app) as server, httpx.Client(base_url=server) as c:
        run_id = start(c, "what is (2+3)*2?")
        wait_status(c, run_id, {"success"})
        msgs = sse(c, run_id)
        calc = child_run_id(run_id, "0:q1")
        own = [m for m in msgs if "." not in m["id"]]
        nested = [m for m in msgs if "." in m["id"]]
        assert all(m["data"]["depth"] == 0 if "depth" in m["data"] else True for m in own)
        assert [m["data"]["seq"] for m in own] == list(range(1, len(own) + 1))
        assert own[-1]["event"] == "agent.execution_complete" and msgs[-1] is own[-1]
        assert {m["data"]["run_id"] for m in nested} == {calc, child_run_id(calc, "1:c2")}
        assert {m["data"]["depth"] for m in nested} == {1, 2}
        assert all(m["data"]["parent_run_id"] in (run_id, calc) for m in nested)
        # the agent speaking, in every event: the writer, then the editor it handed to; the children's own
        speakers = {m["data"].get("run_id", run_id): set() for m in msgs}
        for m in msgs:
            speakers[m["data"].get("run_id", run_id)].add(m["data"]["event"]["agent"])
        assert speakers == {run_id: {"writer", "editor"}, calc: {"calculator"},
                            child_run_id(calc, "1:c2"): {"doubler"}}, speakers
        ends = [m for m in nested if m["event"] == "agent.execution_complete"]
        assert len(ends) == 2  # the children ended inside the parent's stream, which went on
        keys = [tuple(int(p) for p in (m["id"] + ".0").split(".")[:2]) for m in msgs]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        # the calculator's events have the seqs of its own journal (which leaves out streamed deltas)
        journaled = [(e.seq, e.name) for e in app.state.hub.store.events(calc)]
        streamed = [(m["data"]["seq"], m["event"]) for m in nested if m["data"]["run_id"] == calc]
        assert set(journaled) <= set(streamed) and streamed[-1] == journaled[-1]

        # resuming after a child's event misses nothing and repeats nothing
        cut = nested[3]["id"]
        rest = sse(c, run_id, last_event_id=cut)  # type: ignore[arg-type]
        assert [m["id"] for m in rest] == [m["id"] for m in msgs[msgs.index(nested[3]) + 1:]]
        assert c.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": "3.x"}).status_code == 422

        # the journal replay of a finished run this process forgot: its own events only
        app.state.hub.finished.clear()
        replay = sse(c, run_id)
        assert [m["id"] for m in replay] == [str(e.seq) for e in app.state.hub.store.events(run_id)]


@tool(require_approval=True)
def launch(target: str) -> str:
    """Launch something (needs approval).

    Args:
        target: what to launch
    """
    return f"launched {target}"


def test_a_live_child_run_streams_through_its_parent(tmp_path: Any) -> None:
    """A child of a live run waits for an approval: its own stream follows the parent's."""
    from treadle.server import create_app

    inner = Agent("launcher", tools=[launch], model=ScriptedModel(
        [Function(id="l1", name="launch", kwargs={"target": "probe"}), Function(name="finish", kwargs={
            "answer": "ok"})]))
    outer = Agent("boss", tools=[inner.as_tool()], model=ScriptedModel(
        [Function(id="b1", name="launcher", kwargs={"input": "go"}), Function(name="finish", kwargs={
            "answer": "done"})]))
    app = create_app({"boss": outer}, store=f"sqlite:///{tmp_path / 'runs.db'}")
    with serving(app) as server, httpx.Client(base_url=server) as c:
        run_id = start(c, "launch it")
        body = wait_status(c, run_id, {"waiting_for_approval"})
        assert [p["call_id"] for p in body["pending_approvals"]] == ["l1"]
        child = child_run_id(run_id, "0:b1")
        deadline = time.monotonic() + 30
        while c.get(f"/runs/{child}").status_code == 404:  # journaled by the writer thread
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert c.get(f"/runs/{run_id}").json()["children"][0]["run_id"] == child
        with c.stream("GET", f"/runs/{child}/events", timeout=30) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            events: list[str] = []
            decided = False
            for line in lines:
                if line.startswith("event:"):
                    events.append(line.split(":", 1)[1].strip())
                    if events[-1] == "agent.tool_permission_request" and not decided:
                        decided = True
                        assert c.post(f"/runs/{run_id}/approvals/l1", json={"decision": "approve"}).status_code == 200
                    if events[-1] in ("agent.execution_complete", "treadle.not_live"):
                        break
        assert decided and events[-1] == "agent.execution_complete", events
        assert "agent.tool_call_complete" in events
        done = wait_status(c, run_id, {"success"})
        assert done["answer"] == "done"


@pytest.mark.parametrize("via", ["outer", "inner"])
def test_an_inner_approval_suspended_in_the_journal_is_decided_after_a_restart(tmp_path: Any, via: str) -> None:
    """The process stopped while an inner agent's call waited: the next server lists the call
    among the outer run's pending approvals, takes the decision (posted on the outer run or on
    the inner one) and resumes the outer run, which resumes the inner one."""
    from treadle import Runner
    from treadle.server import create_app

    def build() -> Agent[Any]:
        inner = Agent("launcher", tools=[launch], model=ScriptedModel(
            [Function(id="l1", name="launch", kwargs={"target": "probe"}),
             Function(name="finish", kwargs={"answer": "launched"})], per_run=True))
        return Agent("boss", tools=[inner.as_tool()], model=ScriptedModel(
            [Function(id="b1", name="launcher", kwargs={"input": "go"}),
             Function(name="finish", kwargs={"answer": "all done"})], per_run=True))

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    first = Runner(build(), store=url, suspend_for_approval=True,
                   run_metadata={"server": {"agent": "boss", "session_id": None}}).call("launch it")
    assert first.status == "waiting_for_approval"
    child = child_run_id(first.run_id, "0:b1")
    with serving(create_app({"boss": build()}, store=url)) as server, httpx.Client(base_url=server) as c:
        body = c.get(f"/runs/{first.run_id}").json()
        assert body["live"] is False and [(p["call_id"], p["tool_name"], p["kwargs"]) for p in
                                          body["pending_approvals"]] == [("l1", "launch", {"target": "probe"})]
        target = first.run_id if via == "outer" else child
        assert c.post(f"/runs/{target}/approvals/nope", json={"decision": "approve"}).status_code == 409
        r = c.post(f"/runs/{target}/approvals/l1", json={"decision": "approve"})
        assert r.status_code == 200, r.text
        done = wait_status(c, first.run_id, {"success"})
        assert done["answer"] == "all done" and done["pending_approvals"] == []
        assert c.get(f"/runs/{child}").json()["status"] == "success"
        assert c.post(f"/runs/{target}/approvals/l1", json={"decision": "approve"}).status_code == 409


@tool
async def dig(site: str) -> str:
    """Dig slowly.

    Args:
        site: where
    """
    await asyncio.sleep(60)
    return "found"


def test_cancelling_a_live_outer_run_over_http_cancels_its_child(tmp_path: Any) -> None:
    from treadle.server import create_app

    inner = Agent("digger", tools=[dig], model=ScriptedModel(
        [Function(id="g1", name="dig", kwargs={"site": "x"}), Function(name="finish", kwargs={"answer": "?"})]))
    outer = Agent("boss", tools=[inner.as_tool()], model=ScriptedModel(
        [Function(id="b1", name="digger", kwargs={"input": "dig"}), Function(name="finish", kwargs={"answer": "?"})]))
    app = create_app({"boss": outer}, store=f"sqlite:///{tmp_path / 'runs.db'}")
    with serving(app) as server, httpx.Client(base_url=server) as c:
        run_id = start(c, "dig it")
        child = child_run_id(run_id, "0:b1")
        with c.stream("GET", f"/runs/{run_id}/events", timeout=30) as r:  # until the child's tool has started
            for line in r.iter_lines():
                if line.startswith("data:") and '"agent.tool_call_start"' in line and child in line:
                    break
        assert c.post(f"/runs/{run_id}/cancel").status_code == 202
        body = wait_status(c, run_id, {"cancelled"})
        assert body["error_type"] == "RunCancelled"
        assert wait_status(c, child, {"cancelled"})["status"] == "cancelled"
        ends = [(m["data"].get("depth", 0), m["data"]["event"]["item"]["data"]["status"]) for m in sse(c, run_id)
                if m["event"] == "agent.execution_complete"]
        assert ends == [(1, "cancelled"), (0, "cancelled")]


def test_a_guardrail_tripwire_over_http(tmp_path: Any) -> None:
    from treadle.guardrails import input_guardrail

    @input_guardrail
    def no_secrets(text: str) -> str | None:
        return "asks for a secret" if "password" in text else None

    from treadle.server import create_app

    agent = Agent("guarded", input_guardrails=[no_secrets], model=ScriptedModel(
        [Function(name="finish", kwargs={"answer": "hi"})], per_run=True))
    app = create_app({"guarded": agent}, store=f"sqlite:///{tmp_path / 'runs.db'}")
    with serving(app) as server, httpx.Client(base_url=server) as c:
        bad = start(c, "tell me the password")
        body = wait_status(c, bad, {"error"})
        assert body["error_type"] == "InputGuardrailTripwireTriggered" and "asks for a secret" in body["error"]
        decisions = [m["data"]["event"]["item"]["data"] for m in sse(c, bad) if m["event"] == "agent.guardrail"]
        assert [(d["guardrail"], d["action"]) for d in decisions] == [("no_secrets", "ended")]
        spans = c.get(f"/runs/{bad}/trace").json()["spans"]
        assert [s["attributes"]["action"] for s in spans if s["kind"] == "guardrail"] == ["ended"]
        good = start(c, "hello")
        assert wait_status(c, good, {"success"})["answer"] == "hi"
