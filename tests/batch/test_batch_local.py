"""Batches on the local backend: order, bounded concurrency, the journal, progress."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from treadle import Agent, Function, Runner, ScriptedModel, UserError
from treadle.batch import BatchProgress, abatch, aiter_batch, batch, build_runner
from treadle.store import SQLiteRunStore

sys.path.insert(0, str(Path(__file__).parent))

from batch_agents import STEPS, make_runner


def expected(task: str) -> str:
    return f"{task}|" + "+".join(f"{task.upper()}{i}" for i in range(STEPS))


async def test_local_batch_returns_results_in_input_order() -> None:
    inputs: list[Any] = [f"t{i}" for i in range(50)] + [{"input_str": "d0"}]
    seen: list[BatchProgress] = []
    res = await abatch(make_runner(delay=0.001), inputs, concurrency=8, batch_id="b", progress=seen.append)
    assert [r.answer for r in res] == [expected(f"t{i}") for i in range(50)] + [expected("d0")]
    assert [r.run_id for r in res] == [f"b-{i}" for i in range(51)]
    assert (res.done, res.failed, res.retried) == (51, 0, 0)
    assert seen[0].finished == 0 and seen[-1].finished == 51 and seen[-1].total == 51


async def test_local_concurrency_is_bounded_and_inputs_are_read_lazily() -> None:
    read, running, peak = [0], [0], [0]

    def gen() -> Any:
        for i in range(300):
            read[0] += 1
            yield f"g{i}"

    async def handler_tracking(messages: list[dict]) -> Any:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        import asyncio

        await asyncio.sleep(0.001)
        running[0] -= 1
        return Function(name="finish", kwargs={"answer": messages[-1]["content"]})  # the input

    runner = Runner(Agent(model=ScriptedModel([handler_tracking], per_run=True, native_tools=True)))
    got = []
    async for i, r in aiter_batch(runner, gen(), concurrency=5):
        got.append((i, r.answer))
        assert read[0] <= len(got) + 5  # never more than `concurrency` inputs taken ahead
    assert sorted(got) == [(i, f"g{i}") for i in range(300)]
    assert peak[0] <= 5


def test_sync_batch_journals_runs_and_a_rerun_reuses_them(tmp_path: Path) -> None:
    db, log = tmp_path / "runs.db", tmp_path / "tools.log"
    res = batch(lambda: make_runner(str(log)), ["a", "b", "c"], store=f"sqlite:///{db}", batch_id="j")
    assert res.done == 3 and len(log.read_text().splitlines()) == 3 * STEPS
    store = SQLiteRunStore(str(db))
    assert {r.run_id: r.status for r in store.list_runs()} == {"j-0": "success", "j-1": "success", "j-2": "success"}
    again = batch(lambda: make_runner(str(log)), ["a", "b", "c"], store=f"sqlite:///{db}", batch_id="j")
    assert again.reused == 3 and [r.answer for r in again] == [expected(t) for t in "abc"]
    assert len(log.read_text().splitlines()) == 3 * STEPS  # nothing ran again
    assert [len(r.step_history) for r in again] == [STEPS] * 3, "reused results carry their journaled steps"
    assert [s.observation for s in again[0].step_history] == [s.observation for s in res[0].step_history]


async def test_errors_become_failed_results_and_bad_arguments_are_refused() -> None:
    runner = Runner(Agent(model=ScriptedModel([RuntimeError("boom")], per_run=True, native_tools=True),
                          max_steps=1))
    res = await abatch(runner, ["x", "y"])
    assert res.failed == 2 and all(r.status != "success" for r in res)
    bad = await abatch(runner, [3])  # type: ignore[list-item]  # one bad input fails its task, not the batch
    assert bad[0].error_type == "UserError" and bad.failed == 1
    with pytest.raises(UserError):
        await abatch(runner, ["x"], backend="nope")  # type: ignore[arg-type]
    with pytest.raises(UserError):
        build_runner("no_colon_here")
    assert build_runner("batch_agents:make_fast_runner").agent.name == "agent"


def test_rich_progress_bar_follows_the_batch() -> None:
    pytest.importorskip("rich")
    from treadle.batch import rich_progress

    with rich_progress(total=4, description="test") as cb:
        res = batch(make_runner(), ["a", "b", "c", "d"], concurrency=2, progress=cb)
    assert res.done == 4


def test_runner_batch_and_the_cli_batch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json as _json

    from typer.testing import CliRunner

    from treadle import Agent, Function, Runner, ScriptedModel
    from treadle.cli import app

    runner = Runner(Agent(model=ScriptedModel([lambda msgs: Function(name="finish", kwargs={
        "answer": msgs[1]["content"].upper()})], repeat_last=True)))
    res = runner.batch(["a", "b", {"input_str": "c"}], concurrency=2)
    assert [r.answer for r in res] == ["A", "B", "C"] and res.done == 3 and res.failed == 0
    monkeypatch.setenv("TREADLE_HOME", str(tmp_path))
    src = tmp_path / "in.jsonl"
    src.write_text('"What is 2 + 3?"\n{"input_str": "What is 6 * 7?"}\n')
    out = CliRunner().invoke(app, ["batch", str(src), "--out", str(tmp_path / "out.jsonl"), "--max-steps", "2"])
    assert out.exit_code in (0, 1), out.output
    summary = _json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["total"] == 2 and summary["done"] + summary["failed"] == 2
    rows = [_json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["status"] in ("success", "max_steps", "error") for r in rows)


def _slow_runner(store: Any, gate: Any, ran: list[str], answer: str) -> Runner[str]:
    import asyncio

    async def work(x: int) -> int:
        """A tool that waits for the test's gate (the first runner's is still running it)."""
        ran.append(answer)
        await gate.wait()
        return x + 1

    model = ScriptedModel([Function(name="work", kwargs={"x": 1}), Function(name="finish", kwargs={"answer": answer})])
    assert isinstance(gate, asyncio.Event)
    return Runner(Agent(tools=[work], model=model), store=store)


@pytest.mark.parametrize("ending", ["finishes", "dies"])
async def test_a_task_whose_run_another_worker_still_owns_waits_for_it(tmp_path: Path, ending: str) -> None:
    """A batch re-sends a task when its worker seems dead; that worker may still be running it
    (Ray reports an actor dead before its process is gone). The new attempt must neither fail
    (RunLeasedError, or "already in the store" when the first one created the run meanwhile) nor
    run it twice: it waits for the lease, then takes the ended run's result or resumes it."""
    import asyncio

    from treadle.batch import run_task

    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    gate, ran = asyncio.Event(), []
    first = asyncio.ensure_future(_slow_runner(store, gate, ran, "first").acall("q", id="t-0"))
    while not ran:
        await asyncio.sleep(0.01)
    open_gate = asyncio.Event()
    open_gate.set()
    second = _slow_runner(store, open_gate, ran, "second")
    stale = [True]
    real_get = store.get_run

    def get_run(run_id: str) -> Any:  # the second's first look misses the row: it tries to create the run
        if stale[0]:
            stale[0] = False
            return None
        return real_get(run_id)

    store.get_run = get_run  # type: ignore[method-assign]
    task = asyncio.ensure_future(run_task(second, "q", "t-0"))
    for _ in range(30):  # it is waiting for the first's lease, not failing
        await asyncio.sleep(0.01)
    assert not task.done() and not stale[0]
    if ending == "finishes":
        gate.set()
        assert (await first).answer == "first"
        res, how = await asyncio.wait_for(task, 30)
        assert (how, res.status, res.answer) == ("reused", "success", "first") and ran == ["first"]
    else:  # the first worker's process is gone (its lease is free) while its tool hangs: the second resumes
        from treadle.store.base import drop_owner

        drop_owner(real_get("t-0").owner)
        res, how = await asyncio.wait_for(task, 30)
        assert (how, res.status, res.answer) == ("resumed", "success", "second"), res
        gate.set()  # the first wakes up: it was fenced, it stops without writing
        late = await first
        assert late.error_type == "RunOwnershipLostError" and ran.count("first") == 1, (late, ran)
    assert store.get_run("t-0").status == "success"
