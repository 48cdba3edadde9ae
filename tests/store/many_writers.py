"""Journal many runs at once from this process into one store (used by test_run_stores).

    python many_writers.py STORE_URL FIRST N_RUNS GO_FILE

Opens the store (creating its schema when missing), waits until GO_FILE exists so that all
the writers start together, runs runs w<FIRST>…w<FIRST+N-1> concurrently, and exits with 1
if any of them did not succeed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from treadle import Agent, Function, Runner, ScriptedModel

STEPS = 3


def make_agent(delay: float = 0.001) -> Agent[str]:
    """Each run: STEPS tool calls (one per step), then the answer "done"."""

    def add(a: int, b: int) -> int:
        return a + b

    script = [Function(id=f"c{i}", name="add", kwargs={"a": i, "b": 1}) for i in range(STEPS)]
    model = ScriptedModel([*script, Function(name="finish", kwargs={"answer": "done"})], per_run=True, delay=delay)
    model.record_requests = False
    return Agent(tools=[add], model=model, max_steps=STEPS + 2)


def expected_names(steps: int = STEPS) -> list[str]:
    """A finished run's journal, event by event."""
    step = ["raw", "agent.tool_call_start", "agent.tool_call_complete", "agent.step_complete"]
    return step * steps + ["raw", "agent.execution_complete"]


async def main(url: str, first: int, n: int, go: str) -> int:
    runner = Runner(make_agent(), store=url)
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
    results = await asyncio.gather(*(runner.acall(f"q{i}", id=f"w{i:04}") for i in range(first, first + n)))
    bad = [f"{r.run_id}: {r.status} {r.error}" for r in results if r.status != "success"]
    for line in bad[:5]:
        print(line, file=sys.stderr)
    runner.store.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])))
