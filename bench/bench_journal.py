"""Journaling overhead per step: the loop benchmark with the SQLite journal on and off.

    python bench/bench_journal.py          # BENCH_N / BENCH_R / BENCH_K as in bench_loop.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_loop import BenchModel, K, add, time_async

from treadle import Agent, Runner

N = int(os.environ.get("BENCH_N", 200))
R = int(os.environ.get("BENCH_R", 5))


async def run_once(runner: Runner[str]) -> str:
    return (await runner.acall("Add the numbers.")).answer  # type: ignore[return-value]


def main() -> None:
    folder = tempfile.mkdtemp(prefix="treadle-bench-journal-")
    plain = Runner(Agent(tools=[add], model=BenchModel(K), max_steps=K + 5))
    durable = Runner(Agent(tools=[add], model=BenchModel(K), max_steps=K + 5),
                     store=f"sqlite:///{folder}/runs.db")
    loop = asyncio.new_event_loop()
    for _ in range(20):
        loop.run_until_complete(run_once(plain))
        loop.run_until_complete(run_once(durable))
    extra = []
    for _ in range(R):
        t_off = loop.run_until_complete(time_async(run_once, plain, N))
        t_on = loop.run_until_complete(time_async(run_once, durable, N))
        extra.append((t_on - t_off) / K * 1e6)
    print(f"SQLite journal (WAL, synchronous=NORMAL), K={K}, N={N} x R={R}: extra per step "
          f"{statistics.median(extra):.1f} us [{min(extra):.1f} - {max(extra):.1f}]")


if __name__ == "__main__":
    main()
