"""Loop overhead benchmark: treadle's three faces against a hand-written loop.

Workload (the same as ../shared/bench-peers): a zero-latency model that asks for K
calls of ``add(a, b)`` (one per turn, derived from the history it is given), then
answers with text. Overhead per step = (treadle run - raw run) / K, both timed in the
same process and round. Prints a table and, with --json, machine-readable figures.

    python bench/bench_loop.py            # K=10, N=300 runs per block, R=7 rounds
    python bench/bench_loop.py --shapes   # K=1/10/40, the tool inline=True and in a worker thread
    python bench/bench_loop.py --hop      # one thread hop: treadle's tool pool vs asyncio.to_thread
    BENCH_N=50 BENCH_R=3 python bench/bench_loop.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from typing import Any

from treadle import Agent, Function, ModelRequest, ModelResponse, Runner, Usage

K = int(os.environ.get("BENCH_K", 10))
N = int(os.environ.get("BENCH_N", 300))
R = int(os.environ.get("BENCH_R", 7))
pc = time.perf_counter


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# ------------------------------------------------------------------ the hand-written loop
def _raw_model(messages: list[dict[str, Any]], k: int) -> dict[str, Any]:
    done = sum(1 for m in messages if m["role"] == "tool")
    if done < k:
        return {"role": "assistant", "tool_calls": [{"id": f"c{done}", "name": "add",
                                                     "arguments": {"a": done, "b": 1}}]}
    return {"role": "assistant", "content": f"result={messages[-1]['content']}"}


async def raw_async(k: int) -> str:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Add the numbers."}]
    while True:
        msg = _raw_model(messages, k)
        messages.append(msg)
        if not msg.get("tool_calls"):
            return msg["content"]
        for call in msg["tool_calls"]:
            out = add(**call["arguments"])
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": str(out)})


def _raw_sync(k: int) -> str:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Add the numbers."}]
    while True:
        msg = _raw_model(messages, k)
        messages.append(msg)
        if not msg.get("tool_calls"):
            return msg["content"]
        for call in msg["tool_calls"]:
            out = add(**call["arguments"])
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": str(out)})


# ------------------------------------------------------------------ treadle
class BenchModel:
    """A stateless zero-latency native-tools model: the turn comes from the history."""

    native_tools = True
    USAGE = Usage(input_tokens=1, output_tokens=1)

    def __init__(self, k: int, delay: float = 0.0) -> None:
        self.k = k
        self.delay = delay

    async def request(self, request: ModelRequest) -> ModelResponse:
        if self.delay:
            await asyncio.sleep(self.delay)
        msgs = request.messages
        done = sum(1 for m in msgs if m["role"] == "tool")
        usage = Usage(1, 1, 1)
        if done < self.k:
            return ModelResponse(tool_calls=[Function(id=f"c{done}", name="add", kwargs={"a": done, "b": 1})],
                                 usage=usage)
        return ModelResponse(text=f"result={msgs[-1]['content']}", usage=usage)


class YieldingModel(BenchModel):
    """The same replies after one event-loop turn, as a model reached over a network: runs made
    at once take turns (with BenchModel, runs without a journal run one after the other)."""

    async def request(self, request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(0)
        return await super().request(request)


def make_runner(k: int, delay: float = 0.0, inline: bool = False) -> Runner[str]:
    """``add`` as a user passes it (a plain def: a worker thread per call), or with ``inline=True``."""
    from treadle import FunctionTool

    tool = FunctionTool(add, inline=True) if inline else add
    return Runner(Agent(tools=[tool], model=BenchModel(k, delay), max_steps=k + 5))


async def treadle_acall(runner: Runner[str]) -> str:
    return (await runner.acall("Add the numbers.")).answer  # type: ignore[return-value]


async def treadle_astream(runner: Runner[str]) -> str:
    sr = runner.astream("Add the numbers.")
    async for _ in sr.stream_events():
        pass
    return sr.answer


# ------------------------------------------------------------------ timing
async def time_async(fn: Any, arg: Any, n: int) -> float:
    gc.collect()
    t0 = pc()
    for _ in range(n):
        out = await fn(arg)
    dt = pc() - t0
    assert out == f"result={K}", out
    return dt / n


def time_sync(fn: Any, arg: Any, n: int) -> float:
    gc.collect()
    t0 = pc()
    for _ in range(n):
        out = fn(arg)
    dt = pc() - t0
    assert out == f"result={K}", out
    return dt / n


def shapes() -> None:
    """Per-step overhead at K=1, 10, 40 (must stay flat), the tool inline and in a worker thread."""
    loop = asyncio.new_event_loop()
    print("acall overhead per step by history length, tool inline=True and in a worker thread (median of rounds):")
    for k in (1, 10, 40):
        runners = {"inline": make_runner(k, inline=True), "thread": make_runner(k)}
        n = max(20, N * 10 // (k + 1))
        out = {}
        for label, runner in runners.items():
            vals = []
            for _ in range(R):
                raw = loop.run_until_complete(_time_k(raw_async, k, n, k))
                t = loop.run_until_complete(_time_k(treadle_acall, runner, n, k))
                vals.append((t - raw) / k * 1e6)
            out[label] = statistics.median(vals)
        print(f"  K={k:<3} inline {out['inline']:7.1f} us   worker thread {out['thread']:7.1f} us")
    loop.close()


def hop() -> None:
    """The thread hop alone, per call: treadle's tool pool against asyncio.to_thread (the default executor)."""
    from treadle.tools._threads import run_in_thread

    async def block(call: Any, n: int) -> float:
        gc.collect()
        t0 = pc()
        for i in range(n):
            await call(add, i, 1)
        return (pc() - t0) / n * 1e6

    async def pool(fn: Any, *args: Any) -> Any:
        return await run_in_thread(fn, *args)

    async def inline(fn: Any, *args: Any) -> Any:
        return fn(*args)

    calls = {"inline": inline, "treadle pool": pool, "asyncio.to_thread": asyncio.to_thread}
    loop = asyncio.new_event_loop()
    out: dict[str, list[float]] = {k: [] for k in calls}
    n = N * 10
    for call in calls.values():  # warm-up: threads started
        loop.run_until_complete(block(call, 100))
    for _ in range(R):
        for name, call in calls.items():
            out[name].append(loop.run_until_complete(block(call, n)))
    loop.close()
    print(f"one sync call awaited from the loop, us per call (median [min - max] of {R} rounds of {n}):")
    for name, v in out.items():
        print(f"  {name:<20} {statistics.median(v):7.1f}  [{min(v):.1f} - {max(v):.1f}]")


async def _time_k(fn: Any, arg: Any, n: int, k: int) -> float:
    gc.collect()
    t0 = pc()
    for _ in range(n):
        out = await fn(arg)
    assert out == f"result={k}", out
    return (pc() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write figures to this file")
    ap.add_argument("--shapes", action="store_true", help="K=1/10/40, inline and worker-thread tools, instead")
    ap.add_argument("--hop", action="store_true", help="the thread hop alone: treadle's pool vs asyncio.to_thread")
    args = ap.parse_args()
    if args.hop:
        hop()
        return
    if args.shapes:
        shapes()
        return
    runner = make_runner(K)  # the default: the plain def runs in a worker thread
    inline = make_runner(K, inline=True)

    def call_face(r: Runner[str]) -> str:
        return r.call("Add the numbers.").answer  # type: ignore[return-value]

    rounds: dict[str, list[float]] = {"acall": [], "acall_inline": [], "thread_hop": [], "call": [], "astream": [],
                                      "astream_extra": []}
    loop = asyncio.new_event_loop()
    for _ in range(max(1, N // 10)):  # warm-up
        loop.run_until_complete(treadle_acall(runner))
        loop.run_until_complete(treadle_acall(inline))
        call_face(runner)
    for _ in range(R):
        raw_a = loop.run_until_complete(time_async(raw_async, K, N))
        t_acall = loop.run_until_complete(time_async(treadle_acall, runner, N))
        t_inline = loop.run_until_complete(time_async(treadle_acall, inline, N))
        t_stream = loop.run_until_complete(time_async(treadle_astream, runner, N))
        raw_s = time_sync(_raw_sync, K, N)
        t_call = time_sync(call_face, runner, N)
        rounds["acall"].append((t_acall - raw_a) / K * 1e6)
        rounds["acall_inline"].append((t_inline - raw_a) / K * 1e6)
        rounds["thread_hop"].append((t_acall - t_inline) / K * 1e6)
        rounds["astream"].append((t_stream - raw_a) / K * 1e6)
        rounds["astream_extra"].append((t_stream - t_acall) / K * 1e6)
        rounds["call"].append((t_call - raw_s) / K * 1e6)
        rounds.setdefault("raw_async_us_per_step", []).append(raw_a / K * 1e6)
    loop.close()
    summary = {k: {"median": statistics.median(v), "min": min(v), "max": max(v)} for k, v in rounds.items()}
    print(f"treadle loop overhead, K={K} tool steps, N={N} runs x R={R} rounds (python {sys.version.split()[0]})")
    labels = {"acall": "acall overhead per step (plain def: worker thread)",
              "acall_inline": "acall overhead per step, tool inline=True",
              "thread_hop": "worker thread minus inline, per call", "call": "call (sync) overhead per step",
              "astream": "astream overhead per step (all events consumed)",
              "astream_extra": "astream extra over acall per step",
              "raw_async_us_per_step": "hand-written loop, per step"}
    for key, label in labels.items():
        s = summary[key]
        print(f"  {label:<50} {s['median']:8.1f} us  [{s['min']:.1f} - {s['max']:.1f}]")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"K": K, "N": N, "R": R, "us_per_step": summary}, f, indent=2)


if __name__ == "__main__":
    main()
