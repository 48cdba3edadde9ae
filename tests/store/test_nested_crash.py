"""Crashes at every journal write boundary of a nested run: an outer agent calls an inner
agent as a tool, and the inner agent does the charge / lookup / charge run of
test_crash_boundaries. Killed before each statement the store executes (and after each
commit), then resumed from the outer run: the outer run and the inner run each end once,
the inner run is continued (never started over: a finished inner call is not run again, a
charge never runs twice), and a finished inner run is not run again at all. Then the same
with the first resumer killed too, at its own first, middle or last boundary, and the run
resumed again to the end."""

from __future__ import annotations

import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from treadle.types import child_run_id

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from backends import Backend  # noqa: E402
from boundary_worker import PLAN, make_runner  # noqa: E402
from test_crash_boundaries import (  # noqa: E402
    ENDING,
    ENV,
    counted_resume,
    executions,
    finish,
    release,
    resumer_cut,
    worker,
)

NESTED = {**ENV, "BOUNDARY_NESTED": "1"}


def check_nested(backend: Backend, run_id: str, log: Path) -> None:
    store = backend.store
    outer = store.get_run(run_id)
    outer_names = [e.name for e in store.events(run_id)]
    assert outer.status == "success" and outer.result["answer"] == f"done {run_id}", outer
    assert outer_names.count(ENDING) == 1 and outer_names[-1] == ENDING, outer_names
    starts = [e for e in store.events(run_id) if e.name == "agent.tool_call_start"]
    assert 1 <= len(starts) <= 3  # the agent call, started again by each process cut inside it
    child_id = child_run_id(run_id, f"0:{run_id}-outer")
    child = store.get_run(child_id)
    assert child is not None and child.status == "success" and child.config["parent_run_id"] == run_id
    entries = store.events(child_id)
    names = [e.name for e in entries]
    assert names.count(ENDING) == 1 and names[-1] == ENDING, names
    runs = executions(log)
    calls = [f"{run_id}-c{i}" for i in range(len(PLAN))]
    for i, (tool, _) in enumerate(PLAN):
        if tool == "charge":
            assert runs[(tool, calls[i])] <= 1, f"{calls[i]} (not idempotent) ran {runs[(tool, calls[i])]} times"
    completes = Counter(e.payload["item"]["id"] for e in entries if e.name == "agent.tool_call_complete")
    assert all(completes[c] == 1 for c in calls), completes
    steps = [e.payload["item"]["data"]["step"] for e in entries if e.name == "agent.step_complete"]
    assert steps == list(range(len(PLAN))), steps
    assert outer.owner is None and child.owner is None


def reference(backend: Backend, tmp_path: Path) -> int:
    code, out = finish(worker(backend, "ref", tmp_path / "ref.log", "start", env=NESTED))
    assert code == 0 and out["status"] == "success", out
    check_nested(backend, "ref", tmp_path / "ref.log")
    return int(out["boundaries"])


@pytest.mark.slow
def test_a_nested_run_killed_at_every_write_boundary_resumes_from_the_outer_run(backend: Backend,
                                                                               tmp_path: Path) -> None:
    total = reference(backend, tmp_path)
    assert total >= 25, f"two runs write at least 8 commits, counted {total}"
    child_finished_before = 0
    for n in range(1, total + 1):
        run_id, log = f"n{n}", tmp_path / f"n{n}.log"
        code, out = finish(worker(backend, run_id, log, "start", kill_at=n, env=NESTED))
        assert code == -signal.SIGKILL, f"the worker was to die at boundary {n} of {total}: {out}"
        store = backend.store
        if store.get_run(run_id) is None:  # killed before the outer run's first commit: it never began
            assert not executions(log)
            continue
        child = store.get_run(child_run_id(run_id, f"0:{run_id}-outer"))
        before = executions(log)
        finished_child = child is not None and child.status == "success"
        runner = make_runner(backend.url, str(log), nested=True)
        res = runner.resume(run_id)
        runner.store.close()  # one connection at a time from this process
        assert res.status == "success" and res.answer == f"done {run_id}", (n, res.error)
        if finished_child:  # the inner run had ended: resuming the outer one runs no inner tool
            child_finished_before += 1
            assert executions(log) == before, f"boundary {n}: a finished inner run ran again"
        check_nested(backend, run_id, log)
    assert child_finished_before >= 1, "some cut came after the inner run's end"
    print(f"\n{backend.kind}: {total} boundaries of a nested run, each killed and resumed from the outer run; "
          f"{child_finished_before} after the inner run had ended")


@pytest.mark.slow
def test_a_nested_run_killed_at_every_write_boundary_then_its_resumer_killed_too(backend: Backend,
                                                                              tmp_path: Path) -> None:
    """For each boundary n: a run killed at n is resumed here, counting the resumer's own
    boundaries (R); a second run killed at n is resumed by a process killed at its 1st, R/2-th or
    R-th boundary (in turn over n), then resumed here to the end. (The three processes of a
    boundary start together: the resumer waits, made, until it is told where to die.)"""
    total = reference(backend, tmp_path)
    cuts: Counter[str] = Counter()
    ended_by_resumer = 0
    for n in range(1, total + 1):
        measured, run_id = f"m{n}", f"r{n}"
        mlog, log, go = tmp_path / f"m{n}.log", tmp_path / f"r{n}.log", tmp_path / f"go{n}"
        first = [worker(backend, r, lg, "start", kill_at=n, env=NESTED) for r, lg in ((measured, mlog), (run_id, log))]
        resumer = worker(backend, run_id, log, "resume", go=go, env=NESTED)
        for p in first:
            code, out = finish(p)
            assert code == -signal.SIGKILL, f"the worker was to die at boundary {n} of {total}: {out}"
        count = 0
        if backend.store.get_run(measured) is not None:  # else it never began: the test above covers it
            runner = make_runner(backend.url, str(mlog), nested=True)
            res, count = counted_resume(runner, measured)
            runner.store.close()
            assert res.status == "success" and res.answer == f"done {measured}", (n, res.error)
            check_nested(backend, measured, mlog)
        if count == 0:  # never began, or had ended: no resumer to kill
            resumer.kill()
            resumer.communicate()
            continue
        cut = resumer_cut(count, n)
        release(go, cut)
        code, out = finish(resumer)
        if code == -signal.SIGKILL:
            cuts["first" if cut == 1 else "last" if cut == count else "middle"] += 1
        else:  # it went through fewer boundaries than the measured resume (a completion committed on its
            # own when the next write came later than max_delay, under load): it ended the run, uncut
            assert code == 0 and out["status"] == "success", f"boundary {n}, resumer cut at {cut}: {out}"
            cuts["uncut"] += 1
        ended = backend.store.get_run(run_id).status == "success"
        before = executions(log)
        runner = make_runner(backend.url, str(log), nested=True)
        res = runner.resume(run_id)
        runner.store.close()
        assert res.status == "success" and res.answer == f"done {run_id}", (n, cut, res.error)
        if ended:  # the resumer had ended the run before it died: nothing runs again
            ended_by_resumer += 1
            assert executions(log) == before, f"boundary {n}, resumer cut at {cut}: an ended run ran again"
        check_nested(backend, run_id, log)
    killed = {k: cuts[k] for k in ("first", "middle", "last")}
    assert sum(killed.values()) >= total // 2 and min(killed.values()) >= 1, cuts  # the spread stayed wide
    print(f"\n{backend.kind}: {total} boundaries of a nested run, each killed, then its resumer killed at its "
          f"own {dict(cuts)} boundary, then resumed; {ended_by_resumer} ended by the killed resumer")
