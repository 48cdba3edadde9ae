"""The HTTP API against a real uvicorn server on loopback, read with httpx."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from server_utils import serving

from treadle import Agent, Function, Runner
from treadle.models.scripted import ScriptedModel

pytestmark = pytest.mark.timeout(60)


def sse(client: httpx.Client, run_id: str, *, last_event_id: int | None = None, limit: int | None = None,
        timeout: float = 20) -> list[dict[str, Any]]:
    """Read a run's SSE stream; returns the messages ({id, event, data}) until it ends or
    ``limit`` messages were read (then the connection is dropped)."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    out: list[dict[str, Any]] = []
    msg: dict[str, Any] = {}
    with client.stream("GET", f"/runs/{run_id}/events", headers=headers, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if msg:
                    msg["data"] = json.loads(msg["data"])
                    out.append(msg)
                    msg = {}
                    if limit is not None and len(out) >= limit:
                        break
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            msg[key] = msg.get(key, "") + value if key == "data" else value
    return out


def start(client: httpx.Client, input: str, **kw: Any) -> str:
    r = client.post("/runs", json={"input": input, **kw})
    assert r.status_code == 201, r.text
    return r.json()["run_id"]


def wait_status(client: httpx.Client, run_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/runs/{run_id}").json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


def test_health_info_openapi(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        assert c.get("/health").json()["status"] == "ok"
        info = c.get("/info").json()
        assert [a["name"] for a in info["agents"]] == ["echo", "approver", "slow"]
        assert {"name": "delete_file", "require_approval": True} in info["agents"][1]["tools"]
        assert info["auth"] is False
        paths = c.get("/openapi.json").json()["paths"]
        for p in ("/runs", "/runs/{run_id}", "/runs/{run_id}/events", "/runs/{run_id}/approvals/{call_id}",
                  "/runs/{run_id}/cancel", "/runs/{run_id}/trace"):
            assert p in paths


def test_run_streams_every_event_and_is_listed(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        run_id = start(c, "what is 6*7? TOKEN:t1", agent="echo")
        msgs = sse(c, run_id)
        events = [m["event"] for m in msgs]
        assert events[-1] == "agent.execution_complete"
        assert events.count("agent.execution_complete") == 1
        assert "agent.tool_call_start" in events and "agent.step_complete" in events
        seqs = [int(m["id"]) for m in msgs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(m["data"]["seq"] == int(m["id"]) and m["data"]["name"] == m["event"] for m in msgs)
        final = msgs[-1]["data"]["event"]["item"]["data"]
        assert final["status"] == "success" and final["answer"] == "42 for t1"
        body = wait_status(c, run_id, {"success"})
        assert body["answer"] == "42 for t1" and body["steps"] == 1 and body["live"] is False
        assert body["model"] == "echo-model" and body["agent"] == "echo" and body["input"].endswith("TOKEN:t1")
        assert body["usage"]["requests"] == 2 and body["duration_s"] >= 0
        assert body["step_history"][0]["observation"] == "42"
        listed = c.get("/runs").json()["runs"]
        assert listed[0]["run_id"] == run_id and listed[0]["status"] == "success"


def test_reconnect_with_last_event_id_misses_nothing(agents: dict[str, Any], store_url: str,
                                                     memory_store: Any) -> None:
    from treadle.server import create_app

    with serving(create_app(agents, store=store_url, memory_store=memory_store)) as url, \
            httpx.Client(base_url=url) as c:
        run_id = start(c, "TOKEN:r1", agent="echo")
        first = sse(c, run_id, limit=2)  # the client drops the connection after two events
        rest = sse(c, run_id, last_event_id=int(first[-1]["id"]))
        whole = sse(c, run_id)
        assert [m["id"] for m in first + rest] == [m["id"] for m in whole]
        assert rest[-1]["event"] == "agent.execution_complete"
        journaled = [m for m in whole if m["event"] != "raw" or isinstance(m["data"]["event"]["data"], list)]
    # a new server process on the same journal: the events come from the journal
    with serving(create_app(agents, store=store_url, memory_store=memory_store)) as url, \
            httpx.Client(base_url=url) as c:
        again = sse(c, run_id, last_event_id=int(first[-1]["id"]))
        expected = [m["id"] for m in journaled if int(m["id"]) > int(first[-1]["id"])]
        assert [m["id"] for m in again] == expected
        assert again[-1]["data"]["event"]["item"]["data"]["answer"] == "42 for r1"
        assert c.get(f"/runs/{run_id}").json()["status"] == "success"
        bad = c.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": "seven"})
        assert bad.status_code == 422


def _pending(c: httpx.Client, run_id: str) -> dict[str, Any]:
    body = wait_status(c, run_id, {"waiting_for_approval"})
    assert len(body["pending_approvals"]) == 1, body
    return body["pending_approvals"][0]


def test_approval_round_trip_and_bypass_attempts(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        run_id = start(c, "clean up", agent="approver")
        pending = _pending(c, run_id)
        assert pending["tool_name"] == "delete_file" and pending["kwargs"] == {"path": "notes.txt"}
        call_id = pending["call_id"]
        other = start(c, "clean up too", agent="approver")
        other_call = _pending(c, other)["call_id"]
        # an approval names its run and call: wrong call, the other run's call, unknown run
        assert c.post(f"/runs/{run_id}/approvals/nope", json={"decision": "approve"}).status_code == 409
        assert c.post(f"/runs/{run_id}/approvals/{other_call}", json={"decision": "approve"}).status_code == 409
        assert c.post(f"/runs/{other}/approvals/{call_id}", json={"decision": "approve"}).status_code == 409
        assert c.post(f"/runs/missing/approvals/{call_id}", json={"decision": "approve"}).status_code == 404
        # an edit whose arguments fail the tool's schema is refused and the call stays pending
        r = c.post(f"/runs/{run_id}/approvals/{call_id}", json={"decision": "edit", "kwargs": {"path": 3}})
        assert r.status_code == 422 and "not valid" in r.json()["message"]
        r = c.post(f"/runs/{run_id}/approvals/{call_id}", json={"decision": "edit"})
        assert r.status_code == 422
        assert c.get(f"/runs/{run_id}").json()["pending_approvals"][0]["call_id"] == call_id
        r = c.post(f"/runs/{run_id}/approvals/{call_id}", json={"decision": "edit", "kwargs": {"path": "old.txt"}})
        assert r.status_code == 200 and r.json() == {"accepted": True}
        body = wait_status(c, run_id, {"success"})
        assert body["step_history"][0]["observation"] == "deleted old.txt"
        # a decision is used once
        assert c.post(f"/runs/{run_id}/approvals/{call_id}", json={"decision": "approve"}).status_code == 409
        # the other run is still waiting; deny it with a reason the model sees
        r = c.post(f"/runs/{other}/approvals/{other_call}", json={"decision": "deny", "reason": "keep it"})
        assert r.status_code == 200
        body = wait_status(c, other, {"success"})
        assert "keep it" in str(body["step_history"][0]["observation"])
        assert not body["pending_approvals"]


def test_cancel_a_live_run_and_a_finished_one(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        run_id = start(c, "look it up", agent="slow")
        msgs = sse(c, run_id, limit=3)
        assert "agent.tool_call_start" in [m["event"] for m in msgs]
        r = c.post(f"/runs/{run_id}/cancel")
        assert r.status_code == 202 and r.json() == {"accepted": True}
        body = wait_status(c, run_id, {"cancelled"})
        assert body["error_type"] == "RunCancelled"
        events = [m["event"] for m in sse(c, run_id)]
        assert events[-3:] == ["runner.cancel_received", "runner.cancelled", "agent.execution_complete"] or \
            events[-2:] == ["runner.cancelled", "agent.execution_complete"]
        assert c.post(f"/runs/{run_id}/cancel").status_code == 409
        assert c.post("/runs/unknown/cancel").status_code == 404


def test_a_client_that_disconnects_does_not_stop_the_run(agents: dict[str, Any], store_url: str) -> None:
    from treadle.server import create_app

    agents["echo"] = Agent(name="echo", tools=agents["echo"].tool_manager.tools,
                           model=ScriptedModel([Function(name="calculator", kwargs={"expression": "1+1"}),
                                                Function(name="finish", kwargs={"answer": "two"})],
                                               per_run=True, delay=0.2))
    with serving(create_app(agents, store=store_url)) as url, httpx.Client(base_url=url) as c:
        run_id = start(c, "1+1", agent="echo")
        assert len(sse(c, run_id, limit=1)) == 1  # then the connection is closed
        body = wait_status(c, run_id, {"success"})
        assert body["answer"] == "two"


def test_validation_limits_and_hosts(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        r = c.post("/runs", json={})
        assert r.status_code == 422 and "input: Field required" in r.json()["message"]
        r = c.post("/runs", json={"input": "x", "surprise": 1})
        assert r.status_code == 422 and "surprise" in r.json()["message"]
        assert c.post("/runs", json={"input": ""}).status_code == 422
        assert c.post("/runs", json={"input": "x", "session_id": "../etc"}).status_code == 422
        r = c.post("/runs", json={"input": "x", "agent": "ghost"})
        assert r.status_code == 422 and "ghost" in r.json()["message"]
        r = c.post("/runs", content=b"input=x", headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415
        r = c.post("/runs", content=b"{" + b" " * (2 << 20) + b"}", headers={"content-type": "application/json"})
        assert r.status_code == 413

        def chunked() -> Any:  # no Content-Length: the limit is counted as the body arrives
            yield b'{"input": "'
            for _ in range(300):
                yield b"x" * 10_000
            yield b'"}'

        r = c.post("/runs", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "over" in r.json()["detail"]
        r = c.post("/runs", content=b"not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        assert c.get("/runs/missing").status_code == 404
        assert c.get("/runs/missing/events").status_code == 404
        assert c.get("/runs?limit=0").status_code == 422
        # DNS rebinding: a page on another name that resolves to 127.0.0.1 gets nothing
        r = c.get("/runs", headers={"host": "evil.example:8000"})
        assert r.status_code == 400
        # CORS is closed by default
        r = c.get("/runs", headers={"origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = c.options("/runs", headers={"origin": "http://evil.example", "access-control-request-method": "POST"})
        assert "access-control-allow-origin" not in r.headers


def test_cors_opens_only_to_the_given_origin(agents: dict[str, Any], store_url: str) -> None:
    from treadle.server import create_app

    app = create_app(agents, store=store_url, cors_origins=("http://app.example",))
    with serving(app) as url, httpx.Client(base_url=url) as c:
        r = c.get("/runs", headers={"origin": "http://app.example"})
        assert r.headers["access-control-allow-origin"] == "http://app.example"
        r = c.get("/runs", headers={"origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_token_auth(agents: dict[str, Any], store_url: str) -> None:
    from treadle.server import create_app

    with serving(create_app(agents, store=store_url, token="s3cret-token")) as url, \
            httpx.Client(base_url=url) as c:
        assert c.get("/health").status_code == 200
        for method, path in (("GET", "/"), ("GET", "/info"), ("GET", "/runs"), ("GET", "/openapi.json"),
                             ("GET", "/docs"), ("GET", "/static/js/main.js"), ("GET", "/runs/x"),
                             ("GET", "/runs/x/events"), ("POST", "/runs/x/cancel"), ("GET", "/runs/x/trace"),
                             ("POST", "/runs/x/approvals/y")):
            r = c.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 401, (method, path)
            assert "s3cret" not in r.text
        assert c.get("/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/runs", headers={"Authorization": "Basic s3cret-token"}).status_code == 401
        ok = {"Authorization": "Bearer s3cret-token"}
        assert c.get("/runs", headers=ok).status_code == 200
        run_id = c.post("/runs", json={"input": "TOKEN:a1"}, headers=ok).json()["run_id"]
        assert c.get(f"/runs/{run_id}/events").status_code == 401
        # the UI signs in once and then uses an HttpOnly cookie
        assert c.post("/login", json={"token": "nope"}).status_code == 401
        r = c.post("/login", json={"token": "s3cret-token"})
        assert r.status_code == 200 and "httponly" in r.headers["set-cookie"].lower()
        assert "s3cret-token" not in r.headers["set-cookie"]
        assert c.get("/runs").status_code == 200  # the client kept the cookie
        assert sse(c, run_id)[-1]["event"] == "agent.execution_complete"


def test_sessions_keep_the_conversation(server: str, agents: dict[str, Any]) -> None:
    model = agents["echo"].model

    def prompt_of_last_run() -> str:
        return json.dumps([m["content"] for m in model.requests[-1].messages])

    with httpx.Client(base_url=server) as c:
        first = start(c, "my name is Ada TOKEN:s1", agent="echo", session_id="chat-1")
        wait_status(c, first, {"success"})
        second = start(c, "what is my name? TOKEN:s2", agent="echo", session_id="chat-1")
        body = wait_status(c, second, {"success"})
        assert body["session_id"] == "chat-1" and body["answer"] == "42 for s2"
        assert "my name is Ada" in prompt_of_last_run()  # the first turn is in the second run's prompt
        third = start(c, "who am I? TOKEN:s3", agent="echo")  # no session: no memory
        wait_status(c, third, {"success"})
        assert "my name is Ada" not in prompt_of_last_run() and "who am I?" in prompt_of_last_run()


def test_many_concurrent_runs_do_not_mix(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        ids = {start(c, f"TOKEN:c{i}", agent="echo"): i for i in range(60)}
        for run_id, i in ids.items():
            body = wait_status(c, run_id, {"success", "error", "max_steps", "cancelled"})
            assert body["status"] == "success" and body["answer"] == f"42 for c{i}", body
        listed = {r["run_id"] for r in c.get("/runs?limit=200").json()["runs"]}
        assert set(ids) <= listed


def test_trace_spans_nest_and_order(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        run_id = start(c, "TOKEN:tr", agent="approver")
        call_id = _pending(c, run_id)["call_id"]
        time.sleep(0.05)
        c.post(f"/runs/{run_id}/approvals/{call_id}", json={"decision": "approve"})
        wait_status(c, run_id, {"success"})
        trace = c.get(f"/runs/{run_id}/trace").json()
        spans = {s["id"]: s for s in trace["spans"]}
        kinds = [s["kind"] for s in trace["spans"]]
        assert kinds.count("run") == 1 and kinds.count("step") == 2 and kinds.count("model") == 2
        assert kinds.count("tool") == 1 and kinds.count("approval") == 1
        for s in trace["spans"]:
            assert s["start"] <= s["end"], s
            if s["parent"] is not None:
                parent = spans[s["parent"]]
                assert parent["start"] <= s["start"] + 1e-6 and s["end"] <= parent["end"] + 1e-6, (s, parent)
        approval = next(s for s in trace["spans"] if s["kind"] == "approval")
        tool = next(s for s in trace["spans"] if s["kind"] == "tool")
        assert approval["end"] > approval["start"]  # the span covers the wait for the human (not timed)
        assert approval["end"] <= tool["start"] + 1e-6 and approval["parent"] == tool["parent"]


def test_a_run_suspended_in_the_journal_is_approved_and_resumed(agents: dict[str, Any], store_url: str) -> None:
    """The server stopped while a run waited for approval: the decision is journaled and
    the run resumed by the next server process."""
    from treadle.server import create_app

    runner = Runner(agents["approver"], store=store_url, suspend_for_approval=True,
                    run_metadata={"server": {"agent": "approver", "session_id": None}})
    result = runner.call("clean up")
    assert result.status == "waiting_for_approval"
    with serving(create_app(agents, store=store_url)) as url, httpx.Client(base_url=url) as c:
        body = c.get(f"/runs/{result.run_id}").json()
        assert body["status"] == "waiting_for_approval" and body["live"] is False
        events = sse(c, result.run_id)
        assert events[-1]["event"] == "treadle.not_live"
        call_id = next(m for m in events if m["event"] == "agent.tool_permission_request")["data"]["event"][
            "item"]["data"]["id"]
        assert c.post(f"/runs/{result.run_id}/approvals/wrong", json={"decision": "approve"}).status_code == 409
        r = c.post(f"/runs/{result.run_id}/approvals/{call_id}", json={"decision": "approve"})
        assert r.status_code == 200, r.text
        body = wait_status(c, result.run_id, {"success"})
        assert body["step_history"][0]["observation"] == "deleted notes.txt"
        whole = sse(c, result.run_id)
        assert [m["event"] for m in whole].count("agent.tool_permission_request") == 1
        assert whole[-1]["event"] == "agent.execution_complete"
        assert c.post(f"/runs/{result.run_id}/resume").status_code == 409


def huge_output(kind: str) -> Any:
    """Tool outputs no browser wants whole, and values JSON has no word for."""
    return {"huge": "x" * 10_000_000, "bytes": b"\xff\xfe not utf-8", "nan": float("nan"),
            "many": list(range(100_000)), "set": {1, 2}}[kind]


def test_huge_and_odd_outputs_reach_the_stream_clipped_and_strict(store_url: str) -> None:
    from treadle.server import create_app
    from treadle.server.hub import MAX_FRAME_BYTES

    def dump(kind: str) -> Any:
        """Return a test value of the given kind.

        Args:
            kind: huge, bytes, nan, many or set
        """
        return huge_output(kind)

    kinds = ["huge", "bytes", "nan", "many", "set"]
    script = [Function(name="dump", kwargs={"kind": k}) for k in kinds] + [Function(name="finish",
                                                                                   kwargs={"answer": "ok"})]
    agent = Agent(name="dumper", tools=[dump], model=ScriptedModel(script, per_run=True), max_steps=8)

    def strict(text: str) -> Any:
        def no_constants(c: str) -> Any:
            raise AssertionError(f"{c} is not JSON")

        return json.loads(text, parse_constant=no_constants)

    def check(msgs: list[dict[str, Any]]) -> None:
        assert msgs[-1]["event"] == "agent.execution_complete"
        steps = [m for m in msgs if m["event"] == "agent.step_complete"]
        assert len(steps) == len(kinds)
        huge = json.dumps(steps[0]["data"]["event"]["item"]["data"]["observation"])
        assert len(huge) < 100_000 and "[clipped 99" in huge  # 10 MB in the journal, 16 kB on the stream

    raw_sizes: list[int] = []
    with serving(create_app(agent, store=store_url)) as url, httpx.Client(base_url=url) as c:
        run_id = start(c, "dump them")
        with c.stream("GET", f"/runs/{run_id}/events", timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    raw_sizes.append(len(line))
                    strict(line[5:])
        check(sse(c, run_id))
        assert wait_status(c, run_id, {"success"})["answer"] == "ok"
        seen = str(agent.model.requests[1].messages[-1]["content"])
        assert len(seen) < 25_000 and "truncated" in seen  # the model saw a truncated observation
    assert max(raw_sizes) < MAX_FRAME_BYTES + 64 * 1024, max(raw_sizes)
    with serving(create_app(agent, store=store_url)) as url, httpx.Client(base_url=url) as c:  # from the journal
        with c.stream("GET", f"/runs/{run_id}/events", timeout=30) as r:
            sizes = [len(line) for line in r.iter_lines() if line.startswith("data:") and strict(line[5:])]
        assert sizes and max(sizes) < MAX_FRAME_BYTES + 64 * 1024
        check(sse(c, run_id))


def test_idle_session_runners_are_forgotten_past_the_limit(agents: dict[str, Any], store_url: str,
                                                           memory_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from treadle.server import create_app, hub

    monkeypatch.setattr(hub, "KEEP_RUNNERS", 3)
    app = create_app(agents, store=store_url, memory_store=memory_store)
    with serving(app) as url, httpx.Client(base_url=url) as c:
        slow = start(c, "wait", agent="slow", session_id="busy")  # live: never evicted
        for i in range(6):
            wait_status(c, start(c, f"TOKEN:e{i}", agent="echo", session_id=f"s{i}"), {"success"})
        keys = {key[:2] for key in app.state.hub._runners}  # (agent, session, suspends for approvals)
        assert len(app.state.hub._runners) <= 4 and ("slow", "busy") in keys and ("echo", "s5") in keys
        # an evicted session still has its memory: a new run of it sees the earlier turn
        wait_status(c, start(c, "again TOKEN:e9", agent="echo", session_id="s0"), {"success"})
        assert "TOKEN:e0" in str([m["content"] for m in agents["echo"].model.requests[-1].messages])
        c.post(f"/runs/{slow}/cancel")


def test_a_journaled_run_of_an_agent_not_served_here_is_refused(agents: dict[str, Any], store_url: str) -> None:
    """A run made elsewhere (the CLI, a script) by another agent must not be decided or resumed
    with this server's agent: that agent may not even require the approval."""
    from treadle.server import create_app
    from treadle.store import SQLiteRunStore

    janitor = Agent(name="janitor", tools=agents["approver"].tool_manager.tools,
                    model=ScriptedModel([Function(name="delete_file", kwargs={"path": "a.txt"}),
                                         Function(name="finish", kwargs={"answer": "done"})], per_run=True))
    result = Runner(janitor, store=store_url, suspend_for_approval=True).call("clean")
    assert result.status == "waiting_for_approval"
    with serving(create_app(agents, store=store_url)) as url, httpx.Client(base_url=url) as c:
        call_id = next(m for m in sse(c, result.run_id) if m["event"] == "agent.tool_permission_request")[
            "data"]["event"]["item"]["data"]["id"]
        r = c.post(f"/runs/{result.run_id}/approvals/{call_id}", json={"decision": "approve"})
        assert r.status_code == 409 and "janitor" in r.json()["detail"]
        assert c.post(f"/runs/{result.run_id}/resume").status_code == 409
    store = SQLiteRunStore(store_url.removeprefix("sqlite:///"))
    assert store.get_run(result.run_id).status == "waiting_for_approval"
    assert not [e for e in store.events(result.run_id) if e.name == "treadle.approval_decision"]


def test_suspended_run_decisions_validate_edits_and_respect_the_run_limit(agents: dict[str, Any],
                                                                          store_url: str) -> None:
    from treadle.server import create_app

    runner = Runner(agents["approver"], store=store_url, suspend_for_approval=True,
                    run_metadata={"server": {"agent": "approver", "session_id": None}})
    result = runner.call("clean up")
    app = create_app(agents, store=store_url, max_live_runs=1)
    with serving(app) as url, httpx.Client(base_url=url) as c:
        call_id = next(m for m in sse(c, result.run_id) if m["event"] == "agent.tool_permission_request")[
            "data"]["event"]["item"]["data"]["id"]
        r = c.post(f"/runs/{result.run_id}/approvals/{call_id}", json={"decision": "edit", "kwargs": {"path": 1}})
        assert r.status_code == 422 and "not valid" in r.json()["message"]
        busy = start(c, "look it up", agent="slow")  # the one live run allowed
        r = c.post(f"/runs/{result.run_id}/approvals/{call_id}", json={"decision": "approve"})
        assert r.status_code == 429
        assert c.post(f"/runs/{result.run_id}/resume").status_code == 429
        c.post(f"/runs/{busy}/cancel")
        wait_status(c, busy, {"cancelled"})
        # nothing was recorded by the refused attempts: the decision can still be made
        r = c.post(f"/runs/{result.run_id}/approvals/{call_id}", json={"decision": "edit",
                                                                         "kwargs": {"path": "b.txt"}})
        assert r.status_code == 200, r.text
        body = wait_status(c, result.run_id, {"success"})
        assert body["step_history"][0]["observation"] == "deleted b.txt"


def test_cors_preflight_works_with_a_token(agents: dict[str, Any], store_url: str) -> None:
    from treadle.server import create_app

    app = create_app(agents, store=store_url, token="tok", cors_origins=("http://app.example",))
    with serving(app) as url, httpx.Client(base_url=url) as c:
        r = c.options("/runs", headers={"origin": "http://app.example", "access-control-request-method": "POST",
                                        "access-control-request-headers": "authorization,content-type"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.example"
        r = c.get("/runs", headers={"origin": "http://app.example"})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "http://app.example"
        r = c.get("/runs", headers={"origin": "http://app.example", "authorization": "Bearer tok"})
        assert r.status_code == 200
        r = c.options("/runs", headers={"origin": "http://evil.example", "access-control-request-method": "POST"})
        assert "access-control-allow-origin" not in r.headers


def test_a_chunked_body_that_is_not_json_is_refused(server: str) -> None:
    def chunks() -> Any:
        yield b"input=hello"

    with httpx.Client(base_url=server) as c:
        r = c.post("/runs", content=chunks(), headers={"content-type": "text/plain"})
        assert r.status_code == 415
        r = c.post("/runs", content=chunks())
        assert r.status_code == 415


async def test_a_reader_wakes_for_an_event_added_while_it_was_sending() -> None:
    """The SSE generator is suspended at each yield while the frame is sent; an event added
    then must wake it at once (not after the 15 s keep-alive wait)."""
    from treadle import events as ev
    from treadle.server.app import _frames
    from treadle.server.hub import LiveRun

    live = LiveRun(run_id="r", agent_name="a", session_id=None, runner=None, input="x",  # type: ignore[arg-type]
                   stream=None)

    def event(seq: int, name: str) -> Any:
        return ev.RunItemStreamEvent(name=name, item=ev.RunItem(data={"n": seq}), run_id="r", seq=seq)

    live.add(event(1, ev.TOOL_CALL_ACTIVITY))
    frames = _frames(None, "r", live, 0)  # type: ignore[arg-type]
    first = await frames.__anext__()
    assert first.id == "1"
    live.add(event(2, ev.TOOL_PERMISSION_REQUEST))  # while the reader is "sending" frame 1
    second = await asyncio.wait_for(frames.__anext__(), 30)
    assert second.id == "2" and second.event == ev.TOOL_PERMISSION_REQUEST
    live.add(event(3, ev.EXECUTION_COMPLETE))  # a dict as the result (the pump's fallback ending)
    assert (await asyncio.wait_for(frames.__anext__(), 30)).id == "3"
    await frames.aclose()
