"""Crashes at every journal write boundary of a run that hands off to another agent, and of a
run with guardrails (an agent guardrail on the input, a tool guardrail on every call that
blocks one, another after every call that replaces one's output, an output guardrail that
sends the first answer back once): killed before each
statement the store executes (and after each commit), then resumed to the end (runs:
multi_agent_scenarios.py, through boundary_worker.py; the same machinery as
test_nested_crash.py). After each: one ending; the answer typed as the receiving agent's; no
charge run twice, the blocked one never; every call completed once; and one guardrail
decision per check in the journal. Then the same with the first resumer killed too (at its own
first, middle or last boundary, in turn), and the run resumed again to the end.

Which checks may run again (their function called) and why none is recorded twice: a
decision is journaled with the progress it belongs to (an input check's with the first
model reply, a call's with its start or completion, an after-call check's with the call's
completion, an output check's with the step it retries or the run's end), so a cut that
loses the progress loses the decision too, and the check is made again — once, in the
journal. A call whose decision is journaled but whose result is not (cut after its start)
keeps its decision on resume (the check is not made again); a call cut off that is not run
again (a charge) gets no after-call check. An agent guardrail whose child run had ended
answers from it (its model is not called again).
"""

from __future__ import annotations

import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from treadle.types import child_run_id

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from backends import Backend  # noqa: E402
from boundary_worker import make_runner  # noqa: E402
from multi_agent_scenarios import CHECKED, GUARDED_PLAN, HANDOFF_PLAN, Receipt  # noqa: E402
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

SCENARIOS = {"handoff": HANDOFF_PLAN, "guardrails": GUARDED_PLAN}
JUDGE_KEY = "guardrail:input:judge:0:"


def item(e: Any) -> dict[str, Any]:
    return e.payload.get("item") or {}


def check(backend: Backend, scenario: str, run_id: str, log: Path) -> None:
    store = backend.store
    record = store.get_run(run_id)
    entries = store.events(run_id)
    names = [e.name for e in entries]
    assert names.count(ENDING) == 1 and names[-1] == ENDING, names
    assert record.status == "success" and record.owner is None, record
    plan = SCENARIOS[scenario]
    calls = [f"{run_id}-c{i}" for i in range(len(plan))]
    runs = executions(log)
    for c, (tool, kwargs) in zip(calls, plan):
        if tool == "charge":
            limit = 0 if kwargs["amount"] > 100 else 1  # the guardrail blocks a charge of 500
            assert runs[(tool, c)] <= limit, f"{c} (charge {kwargs['amount']}) ran {runs[(tool, c)]} times"
    completes = Counter(item(e)["id"] for e in entries if e.name == "agent.tool_call_complete")
    assert all(completes[c] == 1 for c in calls) and len(completes) == len(calls), completes
    steps = [item(e)["data"]["step"] for e in entries if e.name == "agent.step_complete"]
    if scenario == "handoff":
        assert record.result["answer"] == {"run": run_id, "total": 12}, record.result
        assert steps == [0, 1, 2, 3], steps
        handoffs = [(item(e)["data"]["from_agent"], item(e)["data"]["to_agent"]) for e in entries
                    if e.name == "agent.handoff"]
        assert handoffs == [("desk", "closer")], handoffs
        return
    assert record.result["answer"] == f"done {run_id}", record.result
    assert steps == [0, 1, 2, 3], steps  # three calls, then the answer sent back once
    got = Counter((d["guardrail"], d["kind"], d["call_id"], d["action"])
                  for d in (item(e)["data"] for e in entries if e.name == "agent.guardrail"))
    want = Counter([("judge", "input", None, "passed"), ("limit", "tool_input", calls[0], "passed"),
                    ("limit", "tool_input", calls[1], "passed"), ("limit", "tool_input", calls[2], "blocked"),
                    ("receipt", "tool_output", calls[1], "replaced"),
                    ("final_only", "output", None, "retry"), ("final_only", "output", None, "passed")])
    outputs = {item(e)["id"]: item(e)["data"] for e in entries if e.name == "agent.tool_call_complete"}
    if outputs[calls[0]]["error"] is None:  # the charge ran (not cut off): its output was checked, once
        want[("receipt", "tool_output", calls[0], "passed")] += 1
    assert outputs[calls[1]]["output"] == CHECKED, outputs[calls[1]]
    assert got == want, f"one decision per check: {got}"
    judge = store.get_run(child_run_id(run_id, JUDGE_KEY))
    assert judge is not None and judge.status == "success" and judge.config["parent_run_id"] == run_id
    assert [e.name for e in store.events(judge.run_id)].count(ENDING) == 1


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_multi_agent_run_killed_at_every_write_boundary_resumes_to_one_end(backend: Backend, scenario: str,
                                                                             tmp_path: Path) -> None:
    env = {**ENV, "BOUNDARY_SCENARIO": scenario}
    code, out = finish(worker(backend, "ref", tmp_path / "ref.log", "start", env=env))
    assert code == 0 and out["status"] == "success", out
    check(backend, scenario, "ref", tmp_path / "ref.log")
    if scenario == "handoff":
        assert out["answer_type"] == "Receipt", out
    total = int(out["boundaries"])
    # a floor that says the run is long enough to be worth cutting everywhere: the handoff run counted 19
    # on SQLite once its prompt's UPDATE was left out when unchanged (20-odd before)
    assert total >= 15, total
    judged_before = 0
    for n in range(1, total + 1):
        run_id, log = f"n{n}", tmp_path / f"n{n}.log"
        code, out = finish(worker(backend, run_id, log, "start", kill_at=n, env=env))
        assert code == -signal.SIGKILL, f"the worker was to die at boundary {n} of {total}: {out}"
        store = backend.store
        if store.get_run(run_id) is None:  # killed before the run's first commit: it never began
            assert not executions(log)
            continue
        judge = store.get_run(child_run_id(run_id, JUDGE_KEY)) if scenario == "guardrails" else None
        judged = executions(log)[("judge", "-")]
        runner = make_runner(backend.url, str(log), scenario=scenario)
        res = runner.resume(run_id)
        runner.store.close()  # one connection at a time from this process
        assert res.status == "success", (n, res.error)
        if scenario == "handoff":
            assert isinstance(res.answer, Receipt) and res.answer == Receipt(run=run_id, total=12), (n, res.answer)
        else:
            assert res.answer == f"done {run_id}", (n, res.answer)
            if judge is not None and judge.status == "success":  # the judge had answered: not asked again
                judged_before += 1
                assert executions(log)[("judge", "-")] == judged, f"boundary {n}: the judge's model ran again"
        check(backend, scenario, run_id, log)
    if scenario == "guardrails":
        assert judged_before >= 1, "some cut came after the judge's run had ended"
    print(f"\n{backend.kind} {scenario}: {total} boundaries, each killed and resumed")


def resume_here(backend: Backend, scenario: str, run_id: str, log: Path) -> tuple[Any, int]:
    runner = make_runner(backend.url, str(log), scenario=scenario)
    res, count = counted_resume(runner, run_id)
    runner.store.close()  # one connection at a time from this process
    assert res.status == "success", (run_id, res.error)
    if scenario == "handoff":
        assert isinstance(res.answer, Receipt) and res.answer == Receipt(run=run_id, total=12), (run_id, res.answer)
    else:
        assert res.answer == f"done {run_id}", (run_id, res.answer)
    check(backend, scenario, run_id, log)
    return res, count


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_multi_agent_run_killed_at_every_write_boundary_then_its_resumer_killed_too(
        backend: Backend, scenario: str, tmp_path: Path) -> None:
    """As test_nested_crash's: for each boundary n, a run killed at n is resumed here to count
    the resumer's boundaries (R); a second run killed at n is resumed by a process killed at its
    1st, R/2-th or R-th boundary (in turn over n), then resumed here to the end."""
    env = {**ENV, "BOUNDARY_SCENARIO": scenario}
    code, out = finish(worker(backend, "ref", tmp_path / "ref.log", "start", env=env))
    assert code == 0 and out["status"] == "success", out
    total = int(out["boundaries"])
    cuts: Counter[str] = Counter()
    ended_by_resumer = judged_before = 0
    for n in range(1, total + 1):
        measured, run_id = f"m{n}", f"r{n}"
        mlog, log, go = tmp_path / f"m{n}.log", tmp_path / f"r{n}.log", tmp_path / f"go{n}"
        first = [worker(backend, r, lg, "start", kill_at=n, env=env) for r, lg in ((measured, mlog), (run_id, log))]
        resumer = worker(backend, run_id, log, "resume", go=go, env=env)
        for p in first:
            code, out = finish(p)
            assert code == -signal.SIGKILL, f"the worker was to die at boundary {n} of {total}: {out}"
        count = 0
        if backend.store.get_run(measured) is not None:  # else it never began: the test above covers it
            _, count = resume_here(backend, scenario, measured, mlog)
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
        store = backend.store
        ended = store.get_run(run_id).status == "success"
        judge = store.get_run(child_run_id(run_id, JUDGE_KEY)) if scenario == "guardrails" else None
        before = executions(log)
        resume_here(backend, scenario, run_id, log)
        if ended:  # the resumer had ended the run before it died: nothing runs again
            ended_by_resumer += 1
            assert executions(log) == before, f"boundary {n}, resumer cut at {cut}: an ended run ran again"
        elif judge is not None and judge.status == "success":  # the judge had answered: not asked again
            judged_before += 1
            assert executions(log)[("judge", "-")] == before[("judge", "-")], f"boundary {n}: the judge ran again"
    killed = {k: cuts[k] for k in ("first", "middle", "last")}
    assert sum(killed.values()) >= total // 2 and min(killed.values()) >= 1, cuts  # the spread stayed wide
    print(f"\n{backend.kind} {scenario}: {total} boundaries, each killed, then its resumer killed at its own "
          f"{dict(cuts)} boundary, then resumed; {ended_by_resumer} ended by the killed resumer"
          + (f", {judged_before} after the judge had answered" if scenario == "guardrails" else ""))
