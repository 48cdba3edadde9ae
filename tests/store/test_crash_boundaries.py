"""Crashes at every journal write boundary, racing resumers, stale owners, racing deciders.

A worker process (boundary_worker.py) runs one journaled run — charge (not idempotent),
lookup (idempotent), charge, answer — and SIGKILLs itself just before the N-th statement
the store executes (BEGIN, SELECT, INSERT, UPDATE, COMMIT, and just after each COMMIT), for
every N the run has. Then the run is resumed (by a process killed at its own N-th
boundary too, then by this one) and checked: it ended exactly once, with the right answer,
no non-idempotent call ran twice, every call completed once, the journal has no gap.
The same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from treadle import AlreadyDecidedError, PermissionManager, RunLeasedError, UserError

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from backends import Backend  # noqa: E402
from boundary_worker import PLAN, make_runner  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
ENDING = "agent.execution_complete"


def worker(backend: Backend, run_id: str, log: Path, mode: str, kill_at: int = 0, go: Path | None = None,
           ttl: float = 30.0, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(HERE / "boundary_worker.py"), backend.url, run_id, str(log), mode,
                             str(kill_at), str(go) if go else "-", str(ttl)],
                            env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p: subprocess.Popen[str], timeout: float = 120) -> tuple[int, dict[str, Any]]:
    out, err = p.communicate(timeout=timeout)
    line = out.strip().splitlines()[-1] if out.strip() else ""
    return p.returncode, (json.loads(line) if line else {"stderr": err[-3000:]})


def executions(log: Path) -> Counter[tuple[str, str]]:
    if not log.exists():
        return Counter()
    return Counter((kind, call) for kind, call, *_ in (line.split() for line in log.read_text().splitlines()))


def check_run(backend: Backend, run_id: str, log: Path) -> None:
    """The invariants after every crash and resume."""
    store = backend.open()
    record = store.get_run(run_id)
    entries = store.events(run_id)
    names = [e.name for e in entries]
    assert names.count(ENDING) == 1 and names[-1] == ENDING, (run_id, names)
    assert record.status == "success" and record.result["answer"] == f"done {run_id}", (run_id, record)
    assert record.owner is None, "the lease is released at the end"
    runs = executions(log)
    calls = [f"{run_id}-c{i}" for i in range(len(PLAN))]
    for i, (tool, _) in enumerate(PLAN):
        n = runs[(tool, calls[i])]
        if tool == "charge":
            assert n <= 1, f"{run_id}: {calls[i]} (not idempotent) ran {n} times"
        else:
            assert n >= 1 or any(e.name == "agent.tool_call_complete" and e.payload["item"]["id"] == calls[i]
                                 for e in entries), f"{run_id}: {calls[i]} never ran"
    completes = Counter(e.payload["item"]["id"] for e in entries if e.name == "agent.tool_call_complete")
    assert all(completes[c] == 1 for c in calls), (run_id, completes)
    steps = [e.payload["item"]["data"]["step"] for e in entries if e.name == "agent.step_complete"]
    assert steps == list(range(len(PLAN))), (run_id, steps)
    starts = Counter(e.payload["item"]["id"] for e in entries if e.name == "agent.tool_call_start")
    for c, (tool, _) in zip(calls, PLAN):  # an idempotent call is started again by each process cut inside it
        assert starts[c] == 1 if tool == "charge" else 1 <= starts[c] <= 3, (run_id, starts)


def counted_resume(runner: Any, run_id: str) -> tuple[Any, int]:
    """``runner.resume(run_id)`` in this process, and the write boundaries it went through
    (counted as boundary_worker counts them: after the runner is made)."""
    from treadle.store import base

    count = [0]

    def hook(label: str) -> None:
        count[0] += 1

    base.boundary_hook = hook
    try:
        res = runner.resume(run_id)
    finally:
        base.boundary_hook = None
    return res, count[0]


def release(go: Path, kill_at: int) -> None:
    """Let a worker waiting on ``go`` start, to die at its ``kill_at``-th boundary (0: never)."""
    tmp = go.with_name(go.name + ".tmp")
    tmp.write_text(str(kill_at))
    os.replace(tmp, go)  # whole: the worker never reads it half written


def resumer_cut(count: int, n: int) -> int:
    """Where to kill a resumer that goes through ``count`` boundaries, for the run first killed
    at boundary ``n``: its first, middle and last boundary in turn (a deterministic spread: the
    cross product of both kills is too slow for CI)."""
    return (1, (count + 1) // 2, count)[n % 3]


def boundaries(backend: Backend, tmp_path: Path) -> int:
    code, out = finish(worker(backend, "reference", tmp_path / "ref.log", "start"))
    assert code == 0 and out["status"] == "success", out
    return int(out["boundaries"])


@pytest.mark.slow
def test_a_kill_at_every_write_boundary_then_another_while_resuming(backend: Backend, tmp_path: Path) -> None:
    total = boundaries(backend, tmp_path)
    # 5 commits: the run row (begin, create, commit, committed), 3 steps (insert, committed), the end
    # (begin, insert, update, commit, committed); more where the store takes more statements
    assert total >= 15, f"a run this long goes through at least 15 boundaries, counted {total}"
    killed = resumed_after_end = 0
    for n in range(1, total + 1):
        run_id, log = f"k{n}", tmp_path / f"k{n}.log"
        code, _ = finish(worker(backend, run_id, log, "start", kill_at=n))
        assert code == -signal.SIGKILL, f"the worker was to die at boundary {n} of {total}"
        killed += 1
        if backend.open().get_run(run_id) is None:  # killed before the run's first commit: it never began
            assert not executions(log), "no tool runs before the run is in the journal"
            with pytest.raises(UserError, match="no run"):
                make_runner(backend.url, str(log)).resume(run_id)
            code, out = finish(worker(backend, run_id, log, "start"))  # so the caller starts it (again)
            assert code == 0 and out["status"] == "success", out
            check_run(backend, run_id, log)
            continue
        # the first resumer dies too, at its own n-th boundary (when it has that many)
        code, out = finish(worker(backend, run_id, log, "resume", kill_at=n))
        assert code in (0, -signal.SIGKILL), out
        before = executions(log)
        res = make_runner(backend.url, str(log)).resume(run_id)
        assert res.status == "success" and res.answer == f"done {run_id}", (n, res.error)
        if code == 0:
            resumed_after_end += 1
            assert executions(log) == before, "resuming an ended run runs nothing"
        check_run(backend, run_id, log)
    print(f"\n{backend.kind}: {total} boundaries, {killed} runs killed at each, every one resumed; "
          f"{resumed_after_end} finished by the first resumer")


@pytest.mark.slow
def test_racing_resumers_one_runs_the_others_are_refused(backend: Backend, tmp_path: Path) -> None:
    total = boundaries(backend, tmp_path)
    for n in sorted({6, total // 3, total // 2, total - 4}):  # each after the run's creation (5 boundaries)
        run_id, log, go = f"race{n}", tmp_path / f"race{n}.log", tmp_path / f"go{n}"
        code, _ = finish(worker(backend, run_id, log, "start", kill_at=n))
        assert code == -signal.SIGKILL
        procs = [worker(backend, run_id, log, "resume", go=go) for _ in range(3)]
        time.sleep(0.5)
        go.touch()
        outcomes = [finish(p) for p in procs]
        codes = sorted(c for c, _ in outcomes)
        assert all(c in (0, 3) for c in codes), outcomes
        ran = [o for c, o in outcomes if c == 0]
        refused = [o for c, o in outcomes if c == 3]
        assert ran and all(o["status"] == "success" for o in ran), outcomes
        assert all(o["error_type"] == "RunLeasedError" for o in refused), outcomes
        check_run(backend, run_id, log)


@pytest.mark.slow
def test_a_stale_owner_is_fenced_and_runs_no_more_tools(backend: Backend, tmp_path: Path) -> None:
    """A owns the run and is frozen (SIGSTOP) inside a tool past its lease; B takes the run
    over and finishes it; A wakes up: its writes are refused and it runs no further tool."""
    log, gate = tmp_path / "stale.log", tmp_path / "gate"
    env = {**ENV, "BOUNDARY_GATE": str(gate)}
    a = worker(backend, "stale", log, "start", ttl=1.0, env=env)
    deadline = time.monotonic() + 60
    while ("charge", "stale-c0") not in executions(log):
        assert time.monotonic() < deadline and a.poll() is None, a.communicate()
        time.sleep(0.01)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        with pytest.raises(RunLeasedError, match="live process"):  # alive, lease not expired yet
            make_runner(backend.url, str(log)).resume("stale")
        time.sleep(1.5)  # A cannot renew while stopped: its lease expires
        res = make_runner(backend.url, str(log), lease_ttl=1.0).resume("stale")
        assert res.status == "success"
        assert "interrupted" in str(res.step_history[0].observation), "B did not repeat A's charge"
    finally:
        gate.touch()
        os.kill(a.pid, signal.SIGCONT)
    code_a, out_a = finish(a)
    assert code_a == 0 and out_a["status"] == "error" and out_a["error_type"] == "RunOwnershipLostError", out_a
    runs = executions(log)
    assert runs[("charge", "stale-c0")] == 1 and runs[("charge", "stale-c2")] == 1, runs
    assert sum(1 for k, _ in runs if k == "charge") == 2, "A ran no tool after it lost the run"
    store = backend.open()
    names = [e.name for e in store.events("stale")]
    assert names.count(ENDING) == 1 and store.get_run("stale").status == "success"


def test_racing_deciders_threads_one_decision_wins() -> None:
    """PermissionManager.approve/deny from many threads on one pending call: one True."""
    import asyncio

    from treadle import Agent, Function, FunctionTool, Runner, ScriptedModel

    ran: list[int] = []

    def pay(amount: int) -> str:
        ran.append(amount)
        return "paid"

    pm = PermissionManager()
    runner = Runner(Agent(tools=[FunctionTool(pay, require_approval=True)],
                          model=ScriptedModel([Function(name="pay", kwargs={"amount": 3}), Function(
                              name="finish", kwargs={"answer": "ok"})], per_run=True)), permission_manager=pm)

    async def main() -> tuple[list[bool], Any]:
        stream = runner.astream("pay")
        answers: list[bool] = []
        async for e in stream.stream_events():
            if getattr(e, "name", "") == "agent.tool_permission_request":
                barrier, call = threading.Barrier(8), e.item.id

                def decide(i: int, barrier: threading.Barrier = barrier, call: str = call) -> None:
                    barrier.wait()
                    answers.append(pm.approve(stream.run_id, call) if i % 2 else pm.deny(stream.run_id, call))

                threads = [threading.Thread(target=decide, args=(i,)) for i in range(8)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        return answers, await stream.wait_for_completion()

    for _ in range(20):
        ran.clear()
        answers, result = asyncio.run(main())
        assert sorted(answers) == [False] * 7 + [True], answers
        assert result.status == "success" and len(ran) in (0, 1)


@pytest.mark.slow
def test_racing_deciders_processes_one_decision_is_journaled(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "decide.log"
    env = {**ENV, "BOUNDARY_APPROVAL": "1"}
    code, out = finish(worker(backend, "d1", log, "start", env=env))
    assert code == 0 and out["status"] == "waiting_for_approval", out
    for attempt in range(3):
        go = tmp_path / f"go-d{attempt}"
        procs = [worker(backend, "d1", log, "decide:approve" if i % 2 else "decide:deny", go=go, env=env)
                 for i in range(4)]
        time.sleep(0.5)
        go.touch()
        outcomes = [finish(p) for p in procs]
        assert sorted(c for c, _ in outcomes) == [0, 3, 3, 3], outcomes
        assert {o["error_type"] for c, o in outcomes if c == 3} == {"AlreadyDecidedError"}, outcomes
        store = backend.open()
        decisions = [e for e in store.events("d1") if e.name == "treadle.approval_decision"]
        assert len(decisions) == attempt + 1, "one decision per call"
        runner = make_runner(backend.url, str(log), approval=True)
        res = runner.resume("d1")
        with pytest.raises(AlreadyDecidedError):
            runner.record_decision("d1", decisions[-1].payload["call_id"], approve=True)
        if res.status != "waiting_for_approval":
            break
    assert res.status == "success", res.error
    assert sum(n for (kind, _), n in executions(log).items() if kind == "charge") <= 2


def test_resume_of_a_run_a_live_process_owns_is_refused(backend: Backend, tmp_path: Path) -> None:
    import asyncio

    from treadle import Agent, Function, Runner, ScriptedModel

    started = threading.Event()
    release = threading.Event()

    def wait() -> str:
        started.set()
        release.wait(30)
        return "done"

    def agent() -> Agent[Any]:
        return Agent(tools=[wait], model=ScriptedModel([Function(name="wait"), Function(
            name="finish", kwargs={"answer": "ok"})], per_run=True))

    owner = Runner(agent(), store=backend.open(), lease_ttl=0.6)
    t = threading.Thread(target=lambda: owner.call("go", id="live"))
    t.start()
    try:
        assert started.wait(30)
        time.sleep(2.0)  # three lease lengths: the heartbeat keeps renewing it while the tool runs
        other = Runner(agent(), store=backend.open())
        with pytest.raises(RunLeasedError, match="live process") as e:
            other.resume("live")
        assert e.value.owner and str(os.getpid()) in e.value.owner
        with pytest.raises(UserError):
            asyncio.run(other.aresume("live"))
    finally:
        release.set()
        t.join(30)
    assert backend.open().get_run("live").status == "success"
    assert Runner(agent(), store=backend.open()).resume("live").answer == "ok"  # ended: the recorded result
