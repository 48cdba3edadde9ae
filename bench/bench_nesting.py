"""One level of nesting: an agent called as another agent's tool, against a flat run, in one process.

Workload: the loop benchmark's zero-latency model asking for K ``add`` calls then answering.
- flat: one agent does the K calls and answers (K+1 model calls, K tool calls);
- nested: an outer agent calls an inner agent as its tool once and answers; the inner agent
  does the K calls and answers (K+3 model calls, K+1 tool calls: two more model calls, one more
  tool call, one more run's bookkeeping).
Figures: µs per run and per inner step, the extra per step of the nested run over the flat one,
and both as multiples of the hand-written loop's step measured in the same rounds.

    python bench/bench_nesting.py [--json out.json]      # BENCH_K / BENCH_N / BENCH_R
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_loop import BenchModel, K, add, raw_async

from treadle import Agent, Function, ModelRequest, ModelResponse, Runner, Usage

N = int(os.environ.get("BENCH_N", 300))
R = int(os.environ.get("BENCH_R", 5))
pc = time.perf_counter


class OuterModel:
    """Calls the inner agent once, then answers with its observation."""

    native_tools = True

    async def request(self, request: ModelRequest) -> ModelResponse:
        msgs = request.messages
        if not any(m["role"] == "tool" for m in msgs):
            return ModelResponse(tool_calls=[Function(id="o0", name="adder", kwargs={"input": "Add the numbers."})],
                                 usage=Usage(1, 1, 1))
        return ModelResponse(text=msgs[-1]["content"], usage=Usage(1, 1, 1))


def flat() -> Runner[str]:
    return Runner(Agent("adder", tools=[add], model=BenchModel(K), max_steps=K + 5))


def nested() -> Runner[str]:
    inner = Agent("adder", tools=[add], model=BenchModel(K), max_steps=K + 5)
    return Runner(Agent("outer", tools=[inner.as_tool()], model=OuterModel(), max_steps=4))


async def timed(r: Runner[str], n: int) -> float:
    t = pc()
    for _ in range(n):
        res = await r.acall("Add the numbers.")
        assert res.ok and res.answer == f"result={K}", (res.error, res.answer)
    return (pc() - t) / n


async def raw(n: int) -> float:
    t = pc()
    for _ in range(n):
        await raw_async(K)
    return (pc() - t) / n


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} us [{min(xs):.1f} - {max(xs):.1f}]"


async def main_async(out_path: str | None) -> None:
    f, nst = flat(), nested()
    for r in (f, nst):
        await timed(r, 30)
    flat_us, nested_us, raw_us = [], [], []
    for i in range(R):
        raw_us.append(await raw(N * 5) / K * 1e6)
        order = [(f, flat_us), (nst, nested_us)] if i % 2 == 0 else [(nst, nested_us), (f, flat_us)]
        for r, into in order:
            into.append(await timed(r, N) * 1e6)
    extra = [(n - fl) / K for n, fl in zip(nested_us, flat_us)]
    rs = statistics.median(raw_us)
    print(f"nesting overhead, K={K} inner steps, N={N} runs, R={R} rounds (load {os.getloadavg()[0]:.1f}); "
          f"hand-written loop step: {med(raw_us)}")
    print(f"  flat run:   {med(flat_us)} per run = {statistics.median(flat_us) / K:.1f} us per step")
    print(f"  nested run: {med(nested_us)} per run = {statistics.median(nested_us) / K:.1f} us per inner step")
    print(f"  extra per inner step: {med(extra)} = {statistics.median(extra) / rs:.1f}x the hand-written step "
          f"(flat step: {statistics.median(flat_us) / K / rs:.1f}x); it carries the outer agent's 2 model calls, "
          f"1 tool call and the child run's start and end")
    if out_path:
        with open(out_path, "w") as fh:
            json.dump({"K": K, "N": N, "R": R, "raw_step_us": rs, "flat_run_us": statistics.median(flat_us),
                       "nested_run_us": statistics.median(nested_us),
                       "extra_per_inner_step_us": statistics.median(extra),
                       "extra_per_inner_step_x_raw": statistics.median(extra) / rs}, fh, indent=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    asyncio.run(main_async(ap.parse_args().json))
