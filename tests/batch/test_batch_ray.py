"""Batches on a local Ray cluster (2 CPUs): same results as local, and a killed actor loses nothing."""

from __future__ import annotations

import collections
import functools
import sys
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from treadle.batch import BatchProgress, abatch  # noqa: E402
from treadle.store import SQLiteRunStore  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from batch_agents import STEPS, make_fast_runner, make_runner  # noqa: E402


def expected(task: str) -> str:
    return f"{task}|" + "+".join(f"{task.upper()}{i}" for i in range(STEPS))


async def test_200_tasks_on_ray_give_the_same_results_as_local(ray_cluster: None) -> None:
    inputs: list[Any] = [f"t{i}" if i % 2 else {"input_str": f"t{i}"} for i in range(200)]
    local = await abatch(make_fast_runner, inputs, concurrency=16, batch_id="same")
    remote = await abatch(make_fast_runner, inputs, backend="ray", workers=2, concurrency=16, batch_id="same")
    assert [r.answer for r in remote] == [r.answer for r in local] == [expected(f"t{i}") for i in range(200)]
    assert [r.status for r in remote] == [r.status for r in local]
    assert [r.run_id for r in remote] == [r.run_id for r in local]
    assert [len(r.step_history) for r in remote] == [len(r.step_history) for r in local]
    assert (remote.done, remote.failed, remote.retried) == (200, 0, 0)
    assert ray.is_initialized()  # a cluster it did not start is left running


async def test_a_killed_actor_loses_no_task_and_reruns_no_finished_step(ray_cluster: None, tmp_path: Path) -> None:
    db, log = tmp_path / "runs.db", tmp_path / "tools.log"
    n = 120
    actors: list[Any] = []
    killed: list[Any] = []

    def kill_one(p: BatchProgress) -> None:
        if not killed and p.finished >= 20:
            killed.append(actors[0])
            ray.kill(actors[0])  # the actor dies with runs in the middle of their steps

    factory = functools.partial(make_runner, str(log), delay=0.005, tool_delay=0.01)
    res = await abatch(factory, [f"k{i}" for i in range(n)], backend="ray", workers=2, concurrency=16,
                       store=f"sqlite:///{db}", batch_id="kill", progress=kill_one, _actors=actors)
    assert killed and res.retried > 0, res.summary()  # how many resumed vs restarted depends on timing
    assert len(res) == n and res.done == n and res.failed == 0, (res.summary(), [
        (r.run_id, r.status, r.error_type, r.error) for r in res if not r.ok])
    # the killed actor's runs that had started were resumed: none of their finished calls ran again
    lines = [tuple(line.split()[:2]) for line in log.read_text().splitlines()]
    twice = [c for c, k in collections.Counter(lines).items() if k > 1]
    assert twice == [], f"tool calls executed twice: {twice[:5]}"
    store = SQLiteRunStore(str(db))
    for i in range(n):
        rec = store.get_run(f"kill-{i}")
        assert rec is not None and rec.status == "success"
        steps = [e.payload["item"]["data"]["step"] for e in store.events(f"kill-{i}")
                 if e.name == "agent.step_complete"]
        assert sorted(steps) == list(range(STEPS)), (i, steps)
    interrupted = sum(1 for i in range(n) for e in store.events(f"kill-{i}")
                      if e.name == "agent.tool_call_complete" and "interrupted" in str(e.payload["item"].get("error")))
    print(f"\nray kill: {res.summary()}; tool executions {len(lines)} for {n * STEPS} calls; "
          f"interrupted calls reported to the model {interrupted}")
