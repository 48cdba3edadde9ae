"""Tracing overhead: the loop benchmark's workload with and without an OTelTracer.

Same workload as bench_loop.py (a zero-latency model asking for K ``add`` calls, then
answering). Each configuration runs N runs per block, R rounds, interleaved; the figure is
the extra time per step over the untraced run, (t_config - t_untraced) / K.

    (a) untraced       no tracer at all
    (b) api-only       OTelTracer() with no SDK configured (the OpenTelemetry API's no-op)
    (c) sdk-memory     SDK TracerProvider, SimpleSpanProcessor, in-memory exporter (cleared each block)
    (d) sdk-batch      SDK TracerProvider, BatchSpanProcessor, an exporter that drops the spans
                       (what a process exporting over OTLP pays on the run's thread)
    (e) sdk-content    as (d), with include_content=True

    python bench/bench_tracing.py                    # K=10, N=200, R=5
    BENCH_N=50 BENCH_R=3 python bench/bench_tracing.py --json out.json
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_loop import BenchModel, add

from treadle import Agent, Runner
from treadle.tracing import OTelTracer, auto_tracer

K = int(os.environ.get("BENCH_K", 10))
N = int(os.environ.get("BENCH_N", 200))
R = int(os.environ.get("BENCH_R", 5))
pc = time.perf_counter


def runner(handlers: list[Any]) -> Runner[str]:
    return Runner(Agent(tools=[add], model=BenchModel(K), max_steps=K + 5), event_handlers=handlers)


def sdk(batch: bool) -> tuple[Any, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class Drop(SpanExporter):
        def export(self, spans: Any) -> Any:
            return SpanExportResult.SUCCESS

        def clear(self) -> None:
            pass

    provider = TracerProvider()
    if batch:
        exporter: Any = Drop()
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    else:
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def block(r: Runner[str], n: int) -> float:
    gc.collect()
    t0 = pc()
    for _ in range(n):
        res = await r.acall("Add the numbers.")
    dt = pc() - t0
    assert res.answer == f"result={K}", res
    return dt / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write figures to this file")
    args = ap.parse_args()

    t0 = pc()
    for _ in range(10_000):
        auto_tracer()
    auto_ns = (pc() - t0) / 10_000 * 1e9

    simple, simple_exp = sdk(batch=False)
    batch, batch_exp = sdk(batch=True)
    batch2, batch2_exp = sdk(batch=True)
    configs = {
        "untraced": runner([]),
        "api-only": runner([OTelTracer()]),
        "sdk-memory": runner([OTelTracer(simple)]),
        "sdk-batch": runner([OTelTracer(batch)]),
        "sdk-content": runner([OTelTracer(batch2, include_content=True)]),
    }
    exporters = [simple_exp, batch_exp, batch2_exp]
    loop = asyncio.new_event_loop()
    for r in configs.values():  # warm-up
        loop.run_until_complete(block(r, max(1, N // 10)))
    per_run: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(R):
        for name, r in configs.items():
            per_run[name].append(loop.run_until_complete(block(r, N)))
            batch.force_flush()
            batch2.force_flush()
            for e in exporters:
                e.clear()
    loop.close()
    spans_per_run = 2 * K + 3  # a run span, K+1 steps with their chat spans, K tool spans, a response span

    base = per_run["untraced"]
    summary: dict[str, Any] = {}
    for name, times in per_run.items():
        extra = [(t - b) / K * 1e6 for t, b in zip(times, base)]
        summary[name] = {"us_per_run": statistics.median(times) * 1e6,
                         "extra_us_per_step": statistics.median(extra), "min": min(extra), "max": max(extra)}
    print(f"treadle tracing overhead, K={K} tool steps ({spans_per_run} spans a run), N={N} runs x R={R} rounds "
          f"(python {sys.version.split()[0]}, acall)")
    print(f"  auto_tracer() with nothing configured: {auto_ns:.0f} ns a call")
    for name, s in summary.items():
        print(f"  {name:<12} {s['us_per_run']:9.1f} us/run   extra {s['extra_us_per_step']:7.1f} us/step  "
              f"[{s['min']:.1f} - {s['max']:.1f}]")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"K": K, "N": N, "R": R, "auto_tracer_ns": auto_ns, "configs": summary}, f, indent=2)


if __name__ == "__main__":
    main()
