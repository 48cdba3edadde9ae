"""Journaling overhead per step: the loop benchmark with the journal on and off, in one process.

    python bench/bench_journal.py                 # SQLite; BENCH_N / BENCH_R / BENCH_K / BENCH_M
    python bench/bench_journal.py --json out.json
    TREADLE_TEST_POSTGRES_DSN=postgresql://… python bench/bench_journal.py --postgres

Figures (median [min - max] over R interleaved rounds; each a difference measured in the
same round, so the machine's load cancels out as far as it can):

- sequential: N runs one after another (K steps each); extra µs per step = (durable - plain) / K.
  SQLite WAL with synchronous=NORMAL (survives a process crash) and FULL (survives power loss).
- concurrent: M runs at once in one event loop (asyncio.gather); amortised extra µs per step
  = (durable - plain) / (M x K): the group-commit writer shares commits between runs. With the
  zero-latency model the plain runs never wait, so they run one after the other while the durable
  ones take turns at every commit; the same is also measured with a model that answers after one
  loop turn (as one reached over a network: both sides' runs take turns).
Also: commits per step (how many transactions the store made per step), and the same
differences in CPU time (all threads, user + system: steadier than wall time on a loaded machine;
it leaves out time spent waiting, e.g. for fsync with FULL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_loop import BenchModel, K, YieldingModel, add, raw_async

from treadle import Agent, Runner
from treadle.store import SQLiteRunStore

N = int(os.environ.get("BENCH_N", 200))
R = int(os.environ.get("BENCH_R", 5))
M = int(os.environ.get("BENCH_M", 100))
pc = time.perf_counter
# the hand-written loop's step on the machine the targets were set on (docs/performance.md): the
# figures are also given as multiples of the raw step measured here, and scaled back to that machine
REF_RAW = 1.2


def runner(store: object = None, model: type[BenchModel] = BenchModel) -> Runner[str]:
    return Runner(Agent(tools=[add], model=model(K), max_steps=K + 5), store=store)


CPU: dict[bool, float] = {}  # the CPU seconds (all threads, user + system) of the last timing, by durability


async def sequential(r: Runner[str], n: int) -> float:
    t, c = pc(), time.process_time()
    for _ in range(n):
        res = await r.acall("Add the numbers.")
        assert res.ok, res.error
    CPU[r.store is not None] = time.process_time() - c
    return pc() - t


async def concurrent(r: Runner[str], m: int) -> float:
    t, c = pc(), time.process_time()
    results = await asyncio.gather(*(r.acall("Add the numbers.") for _ in range(m)))
    assert all(x.ok for x in results), [x.error for x in results if not x.ok][:2]
    CPU[r.store is not None] = time.process_time() - c
    return pc() - t


async def raw(n: int) -> float:
    """The hand-written loop (bench_loop.raw_async) n times: the yardstick for the machine's speed now."""
    t = pc()
    for _ in range(n):
        await raw_async(K)
    return pc() - t


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} us [{min(xs):.1f} - {max(xs):.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--postgres", action="store_true", help="also PostgreSQL ($TREADLE_TEST_POSTGRES_DSN)")
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="treadle-bench-journal-")
    plain = runner()
    stores = {"sqlite-normal": SQLiteRunStore(f"{folder}/normal.db"),
              "sqlite-full": SQLiteRunStore(f"{folder}/full.db", synchronous="FULL")}
    if args.postgres:
        from treadle.store import PostgresRunStore

        stores["postgres"] = PostgresRunStore(os.environ["TREADLE_TEST_POSTGRES_DSN"],
                                              table_prefix=f"bench{os.getpid()}_")
    durable = {name: runner(s) for name, s in stores.items()}
    # the same stores with a model that answers after one loop turn: the runs without a journal take turns too
    iplain, idurable = runner(model=YieldingModel), {n: runner(s, YieldingModel) for n, s in stores.items()}
    loop = asyncio.new_event_loop()
    for r in (plain, *durable.values(), iplain, *idurable.values()):  # warm-up
        loop.run_until_complete(sequential(r, 20))
        loop.run_until_complete(concurrent(r, 20))
    seq: dict[str, list[float]] = {n: [] for n in durable}
    conc: dict[str, list[float]] = {n: [] for n in durable}
    seq_cpu: dict[str, list[float]] = {n: [] for n in durable}
    conc_cpu: dict[str, list[float]] = {n: [] for n in durable}
    inter: dict[str, list[float]] = {n: [] for n in durable}
    per_step: dict[str, list[float]] = {n: [] for n in durable}
    raw_step: list[float] = []
    for i in range(R):
        raw_step.append(loop.run_until_complete(raw(N * 10)) / (N * 10 * K) * 1e6)
        for name, r in durable.items():
            w = r._journal.writer
            b0 = w.batches
            order = [(plain, False), (r, True)] if i % 2 == 0 else [(r, True), (plain, False)]
            t = {d: loop.run_until_complete(sequential(x, N)) for x, d in order}
            seq[name].append((t[True] - t[False]) / (N * K) * 1e6)
            seq_cpu[name].append((CPU[True] - CPU[False]) / (N * K) * 1e6)
            b1 = w.batches
            t = {d: loop.run_until_complete(concurrent(x, M)) for x, d in order}
            conc[name].append((t[True] - t[False]) / (M * K) * 1e6)
            conc_cpu[name].append((CPU[True] - CPU[False]) / (M * K) * 1e6)
            per_step[name].append((w.batches - b1) / (M * (K + 1)))
            iorder = [(iplain, False), (idurable[name], True)] if i % 2 == 0 else \
                [(idurable[name], True), (iplain, False)]
            t = {d: loop.run_until_complete(concurrent(x, M)) for x, d in iorder}
            inter[name].append((t[True] - t[False]) / (M * K) * 1e6)
            per_step[name].append((b1 - b0) / (N * (K + 1)))
    rs = statistics.median(raw_step)
    out = {"K": K, "N": N, "M": M, "R": R, "load": os.getloadavg()[0], "raw_loop_us_per_step": rs}
    print(f"journal overhead, K={K} steps/run, sequential N={N}, concurrent M={M}, R={R} rounds "
          f"(load {os.getloadavg()[0]:.1f}); the hand-written loop: {med(raw_step)} per step")
    for name in durable:
        print(f"  {name:14} 1 run at a time: extra {med(seq[name])} per step (CPU {med(seq_cpu[name])});  "
              f"{M} concurrent: amortised extra {med(conc[name])} per step (CPU {med(conc_cpu[name])});  "
              f"transactions per model turn {statistics.median(per_step[name]):.2f}")
        print(f"  {'':14} {M} concurrent, a model that yields a loop turn: amortised extra {med(inter[name])} per step")
        xs, xc = statistics.median(seq[name]) / rs, statistics.median(conc[name]) / rs
        xi = statistics.median(inter[name]) / rs
        print(f"  {'':14} as multiples of the hand-written loop's step: sequential {xs:.0f}x, concurrent {xc:.0f}x, "
              f"concurrent with a yielding model {xi:.0f}x (at {REF_RAW} us per raw step, the reference machine: "
              f"{xs * REF_RAW:.0f} us, {xc * REF_RAW:.0f} us, {xi * REF_RAW:.0f} us)")
        out[name] = {"sequential_us_per_step": statistics.median(seq[name]), "sequential_all": seq[name],
                     "sequential_cpu_us_per_step": statistics.median(seq_cpu[name]),
                     "concurrent_us_per_step": statistics.median(conc[name]), "concurrent_all": conc[name],
                     "concurrent_cpu_us_per_step": statistics.median(conc_cpu[name]),
                     "concurrent_yielding_model_us_per_step": statistics.median(inter[name]),
                     "sequential_x_raw": statistics.median(seq[name]) / rs,
                     "concurrent_x_raw": statistics.median(conc[name]) / rs}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.postgres:
        import psycopg

        with psycopg.connect(os.environ["TREADLE_TEST_POSTGRES_DSN"], autocommit=True) as c:
            p = f"bench{os.getpid()}_"
            c.execute(f"DROP TABLE IF EXISTS {p}runs, {p}events, {p}meta")


if __name__ == "__main__":
    main()
