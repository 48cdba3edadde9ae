"""`treadle serve` as users start it: a subprocess on a loopback port, stopped with Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

HERE = Path(__file__).resolve().parent
TREADLE = [sys.executable, "-m", "treadle.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)  # the treadle under test
    env = {**os.environ, "TREADLE_HOME": str(tmp_path), "PYTHONPATH": path}
    env.pop("TREADLE_SERVER_TOKEN", None)
    return subprocess.Popen([*TREADLE, "serve", *args], cwd=HERE, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_up(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read() if proc.stdout else "exited")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("treadle serve did not come up")


@contextlib.contextmanager
def serve(args: list[str], tmp_path: Path, url: str, *, kill: bool = False) -> Iterator[subprocess.Popen[str]]:
    """`treadle serve ARGS` (its home ``tmp_path``), up at ``url`` for the block; then stopped with
    Ctrl-C, or killed (``kill``: no shutdown, its runs stay as the journal has them)."""
    proc = start(args, tmp_path)
    try:
        wait_up(url, proc)
        yield proc
    finally:
        if kill:
            proc.kill()
            proc.communicate(timeout=10)
        else:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=20)


def test_serve_a_module_then_stop_with_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    proc = start(["served_agents:make", "--port", str(port), "--token", "t0k"], tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        auth = {"Authorization": "Bearer t0k"}
        assert httpx.get(url + "/info").status_code == 401
        info = httpx.get(url + "/info", headers=auth).json()
        assert [a["name"] for a in info["agents"]] == ["adder"] and info["auth"] is True
        run_id = httpx.post(url + "/runs", json={"input": "17 + 25?"}, headers=auth).json()["run_id"]
        events = httpx.get(f"{url}/runs/{run_id}/events", headers=auth, timeout=20).text
        assert "agent.execution_complete" in events
        assert httpx.get(f"{url}/runs/{run_id}", headers=auth).json()["answer"] == "42"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    # uvicorn stops gracefully, then re-raises the signal: the shell's usual 130 for Ctrl-C
    assert proc.returncode in (0, 130, -signal.SIGINT) and "Traceback" not in out, out
    assert f"http://127.0.0.1:{port}/#token=t0k" in out
    assert (tmp_path / "runs.db").exists(), "runs are journaled in TREADLE_HOME by default"


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0"], "set --token"),
    (["served_agents:not_an_agent"], "not an Agent"),
    (["no_such_module:agent"], "cannot load"),
])
def test_serve_refuses_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    proc = start([*args, "--port", str(free_port())], tmp_path)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and message in out, out


def test_ctrl_c_ends_live_runs_and_their_streams_cleanly(tmp_path: Path) -> None:
    """Stopping the server cancels its live runs; a reader of the stream gets the ending
    (runner.cancelled, agent.execution_complete) before the connection closes."""
    import threading

    port = free_port()
    proc = start(["served_agents:make_slow", "--port", str(port)], tmp_path)
    url = f"http://127.0.0.1:{port}"
    got: list[str] = []
    try:
        wait_up(url, proc)
        run_id = httpx.post(url + "/runs", json={"input": "wait"}).json()["run_id"]

        def read() -> None:
            with httpx.stream("GET", f"{url}/runs/{run_id}/events", timeout=30) as r:
                got.extend(line[7:] for line in r.iter_lines() if line.startswith("event: "))

        reader = threading.Thread(target=read)
        reader.start()
        deadline = time.monotonic() + 30
        while "agent.tool_call_start" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "agent.tool_call_start" in got
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)  # a hang guard: SIGINT must stop the server
    reader.join(30)
    assert not reader.is_alive()  # the event stream was closed by the shutdown
    assert got[-2:] == ["runner.cancelled", "agent.execution_complete"], got
    assert "Traceback" not in out and "ERROR" not in out, out
    from treadle.store import SQLiteRunStore

    assert SQLiteRunStore(tmp_path / "runs.db").get_run(run_id).status == "cancelled"


def test_a_run_of_a_killed_server_is_resumed_by_the_next_one(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["served_agents:make_slow", "--port", str(port)]
    with serve(args, tmp_path, url, kill=True):  # no shutdown: the run stays "running" in the journal
        run_id = httpx.post(url + "/runs", json={"input": "wait"}).json()["run_id"]
        seen = 0  # the last event id this reader got (streamed deltas are never journaled)
        with httpx.stream("GET", f"{url}/runs/{run_id}/events", timeout=10) as r:
            for line in r.iter_lines():
                if line.startswith("id: "):
                    seen = int(line[4:])
                if line == "event: agent.tool_call_activity" and seen >= 6:  # seen, not journaled yet
                    break
    with serve(args, tmp_path, url):
        body = httpx.get(f"{url}/runs/{run_id}").json()
        assert body["status"] == "running" and body["live"] is False
        events = httpx.get(f"{url}/runs/{run_id}/events", timeout=10).text
        assert "agent.tool_call_start" in events and events.rstrip().splitlines()[-2] == "event: treadle.not_live"
        r = httpx.post(f"{url}/runs/{run_id}/resume")
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 30
        while (body := httpx.get(f"{url}/runs/{run_id}").json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # the cut call is not run again (not idempotent): the model is told it was interrupted
        assert body["status"] == "success" and body["answer"] == "late", body
        assert "interrupted" in str(body["step_history"][0]["observation"]).lower()
        assert httpx.post(f"{url}/runs/{run_id}/resume").status_code == 409
        # the reader reconnects with the last id it saw before the crash: it gets every new event
        rest = httpx.get(f"{url}/runs/{run_id}/events", headers={"Last-Event-ID": str(seen)}, timeout=10).text
        ids = [int(line[4:]) for line in rest.splitlines() if line.startswith("id: ")]
        assert ids and min(ids) > seen and "event: agent.execution_complete" in rest, rest[-500:]
        assert "runner.cancelled" not in rest and rest.count("event: agent.step_complete") == 1
