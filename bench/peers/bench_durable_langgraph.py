"""LangGraph with its SQLite checkpointer on the shared workload: the extra cost of durability.

The same agent as bench_langgraph.py (create_react_agent, the scripted chat model: K calls of
add, then an answer), run with no checkpointer and with ``SqliteSaver`` (sync, a file in WAL
mode as the saver sets it; SQLite's default synchronous=FULL, and NORMAL set on its
connection) / ``AsyncSqliteSaver`` (for the concurrent runs). Extra µs per step = (with -
without) / K, both measured in this process and round. Printed as JSON (``--out``).

    python bench_durable_langgraph.py --out results/durable_langgraph.json   # in the langgraph venv
"""
import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
import warnings

import workload as W
from bench_langgraph import CONFIG, ScriptedChatModel, _inp

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.prebuilt import create_react_agent

K = int(os.environ.get("BENCH_K", 10))
N = int(os.environ.get("BENCH_N", 100))
R = int(os.environ.get("BENCH_R", 5))
M = int(os.environ.get("BENCH_M", 100))
pc = time.perf_counter


def graph(checkpointer=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(ScriptedChatModel(k=K), [W.add], prompt="You add numbers.",
                                  checkpointer=checkpointer)


def saver(path, synchronous=None):
    conn = sqlite3.connect(path, check_same_thread=False)
    s = SqliteSaver(conn)
    s.setup()
    if synchronous:
        conn.execute(f"PRAGMA synchronous={synchronous}")
    return s


_ids = iter(range(10**9))


def cfg():
    return {**CONFIG, "configurable": {"thread_id": f"t{next(_ids)}"}}


def sequential(g, n, durability=None):
    """(wall, CPU of all threads) seconds for n runs one after another."""
    kw = {"durability": durability} if durability else {}
    t, c = pc(), time.process_time()
    for _ in range(n):
        out = g.invoke(_inp(), cfg(), **kw)
        assert out["messages"][-1].content.startswith("result="), out["messages"][-1]
    return pc() - t, time.process_time() - c


async def concurrent(g, m):
    t = pc()
    outs = await asyncio.gather(*(g.ainvoke(_inp(), cfg()) for _ in range(m)))
    assert all(o["messages"][-1].content.startswith("result=") for o in outs)
    return pc() - t


async def concurrent_rounds(folder):
    plain = graph()
    async with AsyncSqliteSaver.from_conn_string(os.path.join(folder, "async.db")) as s:
        durable = graph(s)
        await concurrent(plain, 10)
        await concurrent(durable, 10)
        extra = []
        for i in range(R):
            order = [(plain, False), (durable, True)] if i % 2 == 0 else [(durable, True), (plain, False)]
            t = {d: await concurrent(g, M) for g, d in order}
            extra.append((t[True] - t[False]) / (M * K) * 1e6)
    return extra


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="lg-durable-")
    plain = graph()
    # LangGraph's default durability is "async": a step's checkpoint is written in a background thread
    # while the next step runs (on a machine with a free core its cost is hidden; a crash can lose it).
    # "sync" writes it before the next step starts, as treadle's journal does before a tool runs.
    normal = graph(saver(os.path.join(folder, "normal.db"), "NORMAL"))
    durable = {"sqlite-default(FULL)": (graph(saver(os.path.join(folder, "full.db"))), None),
               "sqlite-normal": (normal, None), "sqlite-normal-sync": (normal, "sync")}
    for g, how in ((plain, None), *durable.values()):
        sequential(g, 10, how)
    seq = {k: [] for k in durable}
    cpu = {k: [] for k in durable}
    for i in range(R):
        for name, (g, how) in durable.items():
            order = [(plain, None, False), (g, how, True)] if i % 2 == 0 else [(g, how, True), (plain, None, False)]
            t = {d: sequential(x, N, h) for x, h, d in order}
            seq[name].append((t[True][0] - t[False][0]) / (N * K) * 1e6)
            cpu[name].append((t[True][1] - t[False][1]) / (N * K) * 1e6)
    conc = asyncio.run(concurrent_rounds(folder))
    out = {"framework": "langgraph", "K": K, "N": N, "M": M, "R": R, "load": os.getloadavg()[0],
           "sequential_us_per_step": {k: statistics.median(v) for k, v in seq.items()},
           "sequential_all": seq, "sequential_cpu_us_per_step": {k: statistics.median(v) for k, v in cpu.items()},
           "sequential_cpu_all": cpu, "concurrent_us_per_step": {"async-sqlite-default": statistics.median(conc)},
           "concurrent_all": conc}
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
