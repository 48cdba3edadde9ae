"""Batch benchmark: N tasks whose tool burns ~MS ms of CPU, local asyncio vs Ray with 1 and 2 workers.

    .venv/bin/python bench/bench_ray.py [--tasks 2000] [--ms 20] [--concurrency 16]

Each task is a scripted agent run: one tool call (the CPU burn), then the answer. The tool holds the
GIL, so the local backend runs the burns one at a time whatever its concurrency; Ray runs one actor
process per worker. Each Ray run starts its own local cluster (``workers`` CPUs) and shuts it down,
so its wall time includes Ray's fixed start-up cost, reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster: no token in ~/.ray
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray's workers import this file as `bench_ray` to build the agent
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
BURN_MS = float(os.environ.get("BENCH_BURN_MS", "20"))


def burn(n: int) -> int:
    """Burn CPU for about BURN_MS milliseconds; returns the loop count."""
    end = time.perf_counter() + BURN_MS / 1000
    k = 0
    while time.perf_counter() < end:
        k += 1
    return n


def make_runner():  # type: ignore[no-untyped-def]
    from treadle import Agent, Function, Runner, ScriptedModel

    def script(messages: list[dict]) -> Function:
        if any(m["role"] == "tool" for m in messages):
            return Function(name="finish", kwargs={"answer": messages[-1]["content"]})
        return Function(name="burn", kwargs={"n": int(messages[1]["content"])})

    model = ScriptedModel([script], repeat_last=True, native_tools=True)
    model.record_requests = False
    return Runner(Agent(tools=[burn], model=model, max_steps=3))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--ms", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    os.environ["BENCH_BURN_MS"] = str(args.ms)  # inherited by Ray's workers
    global BURN_MS
    BURN_MS = args.ms
    sys.path.insert(0, str(HERE))
    import ray

    from treadle.batch import batch

    inputs = [str(i) for i in range(args.tasks)]
    want = [str(i) for i in range(args.tasks)]
    rows = []

    t = time.perf_counter()
    res = batch("bench_ray:make_runner", inputs, concurrency=args.concurrency)
    local = time.perf_counter() - t
    assert [r.answer for r in res] == want, res.summary()
    rows.append({"backend": "local", "workers": 1, "wall_s": round(local, 2), "startup_s": 0.0, "shutdown_s": 0.0,
                 "work_s": round(local, 2)})

    tmp = tempfile.mkdtemp(prefix="bray")
    for workers in (1, 2):
        t = time.perf_counter()
        res = batch("bench_ray:make_runner", inputs, backend="ray", workers=workers, concurrency=args.concurrency,
                    ray_init_kwargs={"_temp_dir": tmp})
        wall = time.perf_counter() - t
        assert [r.answer for r in res] == want and not ray.is_initialized(), res.summary()
        rows.append({"backend": "ray", "workers": workers, "wall_s": round(wall, 2),
                     "startup_s": round(res.startup, 2), "shutdown_s": round(res.teardown, 2),
                     "work_s": round(wall - res.startup - res.teardown, 2)})

    ideal = args.tasks * args.ms / 1000
    print(f"{args.tasks} tasks x {args.ms:g} ms CPU (serial CPU time {ideal:.1f} s), {os.cpu_count()} cores")
    print(f"{'backend':8} {'workers':>7} {'wall s':>8} {'start-up s':>10} {'stop s':>7} {'work s':>8} {'speed-up':>9} "
          f"{'per worker':>10}")
    for r in rows:
        r["speedup_wall"] = round(local / r["wall_s"], 2)
        r["speedup_work"] = round(local / r["work_s"], 2)
        r["speedup_per_worker"] = round(r["speedup_work"] / r["workers"], 2)
        print(f"{r['backend']:8} {r['workers']:>7} {r['wall_s']:>8.2f} {r['startup_s']:>10.2f} "
              f"{r['shutdown_s']:>7.2f} {r['work_s']:>8.2f} "
              f"{r['speedup_wall']:>8.2f}x {r['speedup_per_worker']:>9.2f}x")
    print("speed-up = local wall / wall (x); per worker = (local wall / work without start-up and stop) / workers")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
