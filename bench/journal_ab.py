"""A/B of the journal's cost between two source trees, interleaved process by process.

    git worktree add /tmp/base <commit>
    python bench/journal_ab.py /tmp/base/src src            # 4 processes per side (use an even number)
    python bench/journal_ab.py /tmp/base/src src --procs 6 --rounds 15

Each process (``--child``) measures, against the same runs without a store, the extra cost per
step of a SQLite journal (WAL, NORMAL): 100 concurrent runs (the main thread's CPU time, which
the store's own threads do not add to), the same with a model that answers after one loop turn
(``interleaved``: as a model reached over a network, so the runs without a store take turns too;
with the zero-latency model they run one after the other while the durable ones interleave at
every commit) and one run at a time (wall time); each figure is the
least of ``--rounds`` rounds of the durable runs less the least of the plain ones (noise only
adds time; on a shared machine whose speed drifts, the least is the steadiest estimate). The
processes of the two trees alternate in ABBA order (on the machine these figures come from,
the first process of a pair measured a few µs lower: the order must cancel out), and the medians
over processes are printed with the hand-written loop's step (``bench_loop.raw_async``)
measured in the same processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(rounds: int) -> dict[str, float]:
    sys.path.insert(0, HERE)
    from bench_loop import BenchModel, K, YieldingModel, add, raw_async

    from treadle import Agent, Runner
    from treadle.store import SQLiteRunStore

    def runner(store: object = None, model: type[BenchModel] = BenchModel) -> Runner[str]:
        return Runner(Agent(tools=[add], model=model(K), max_steps=K + 5), store=store)

    def db() -> SQLiteRunStore:
        return SQLiteRunStore(os.path.join(tempfile.mkdtemp(), "ab.db"))

    plain, durable = runner(), runner(db())
    yplain, ydurable = runner(model=YieldingModel), runner(db(), YieldingModel)

    async def concurrent(r: Runner[str], m: int = 100) -> float:
        t = time.thread_time()
        results = await asyncio.gather(*(r.acall("Add the numbers.") for _ in range(m)))
        assert all(x.ok for x in results)
        return (time.thread_time() - t) / (m * K) * 1e6

    async def sequential(r: Runner[str], n: int = 50) -> float:
        t = time.perf_counter()
        for _ in range(n):
            assert (await r.acall("Add the numbers.")).ok
        return (time.perf_counter() - t) / (n * K) * 1e6

    async def raw(n: int = 1000) -> float:
        t = time.perf_counter()
        for _ in range(n):
            await raw_async(K)
        return (time.perf_counter() - t) / (n * K) * 1e6

    loop = asyncio.new_event_loop()
    for r in (plain, durable, yplain, ydurable):  # warm-up
        loop.run_until_complete(concurrent(r, 50))
    cp, cd, yp, yd, sp, sd, rs = [], [], [], [], [], [], []
    for _ in range(rounds):
        rs.append(loop.run_until_complete(raw()))
        cp.append(loop.run_until_complete(concurrent(plain)))
        cd.append(loop.run_until_complete(concurrent(durable)))
        yp.append(loop.run_until_complete(concurrent(yplain)))
        yd.append(loop.run_until_complete(concurrent(ydurable)))
        sp.append(loop.run_until_complete(sequential(plain)))
        sd.append(loop.run_until_complete(sequential(durable)))
    return {"concurrent": min(cd) - min(cp), "interleaved": min(yd) - min(yp), "sequential": min(sd) - min(sp),
            "raw": min(rs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="*", help="two src folders (each put first on PYTHONPATH)")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.rounds)))
        return
    if len(args.trees) != 2:
        ap.error("give two src folders")
    out: dict[str, dict[str, list[float]]] = {t: {} for t in args.trees}
    for i in range(args.procs):
        for tree in args.trees if i % 2 == 0 else args.trees[::-1]:  # ABBA: the first of a pair measures lower
            env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
            res = subprocess.run([sys.executable, __file__, "--child", "--rounds", str(args.rounds)], env=env,
                                 check=True, capture_output=True, text=True)
            for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items():
                out[tree].setdefault(k, []).append(v)
    for tree, figures in out.items():
        raw = statistics.median(figures["raw"])
        seq, conc = statistics.median(figures["sequential"]), statistics.median(figures["concurrent"])
        inter = statistics.median(figures["interleaved"])
        print(f"{tree}: 1 run at a time {seq:.1f} us per step ({seq / raw:.0f}x raw), 100 concurrent {conc:.1f} us "
              f"({conc / raw:.0f}x raw), 100 concurrent with a model that yields {inter:.1f} us ({inter / raw:.0f}x "
              f"raw); raw step {raw:.2f} us")


if __name__ == "__main__":
    main()
