"""Success rate and speed of the embedded model (SmolLM2-135M via llama.cpp) on small tool tasks.

    python bench/bench_local.py                 # 22 tasks: calculator, clock, reading a file
    python bench/bench_local.py --threads 2 --json out.json

A task succeeds when the right tool was called and the final answer contains the
expected text. Also reports structure validity (every step a valid call of a known
tool), generation and prompt-processing tokens/s (llama.cpp timings) and seconds per step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import sys
import tempfile
import time
from typing import Any

from treadle import Agent, Runner
from treadle.models.local import LocalModel, default_threads
from treadle.tools.builtin import DEMO_TOOLS

ARITH = [("What is 17 + 25?", "42"), ("What is 12 * 12?", "144"), ("What is 100 - 58?", "42"),
         ("What is 81 / 9?", "9"), ("Compute 7 * 8.", "56"), ("What is 2 ** 10?", "1024"),
         ("Calculate 999 + 1.", "1000"), ("What is 15 % 4?", "3"), ("What is 3.5 * 2?", "7"),
         ("How much is 250 + 250?", "500"), ("What is 64 / 8?", "8"), ("What is 13 * 3?", "39")]
FILES = {"notes.txt": "The door code is 4711.", "todo.txt": "Buy milk and eggs.",
         "city.txt": "The capital of Norway is Oslo.", "pet.txt": "My cat is called Tiger.",
         "color.txt": "The favourite colour is teal.", "year.txt": "The project started in 1999."}
READ = [("What does notes.txt say?", "notes.txt", "4711"),
        ("Read todo.txt and tell me what to buy.", "todo.txt", "milk"),
        ("Read city.txt.", "city.txt", "Oslo"), ("What is in pet.txt?", "pet.txt", "Tiger"),
        ("Open color.txt and tell me the colour.", "color.txt", "teal"),
        ("What year is written in year.txt?", "year.txt", "1999")]
NOW = [("What time is it?", "current_time"), ("What is today's date?", "current_time"),
       ("What year is it now?", "current_time"), ("Tell me the current time in UTC.", "current_time")]


class TimedLocal(LocalModel):
    """Keeps llama.cpp's timings of every request."""

    timings: list[dict[str, Any]]

    async def request(self, request: Any) -> Any:
        resp = await super().request(request)
        if resp.raw and resp.raw.get("timings"):
            self.timings.append(resp.raw["timings"])
        return resp


def contains(answer: str, expected: str) -> bool:
    """Case-insensitive; a number must appear as a whole number ("3" is not in "3.75")."""
    if expected.replace(".", "").isdigit():
        return re.search(rf"(?<![\d.]){re.escape(expected)}(?![\d]|\.\d)", answer) is not None
    return expected.lower() in answer.lower()


def tasks() -> list[tuple[str, str, str]]:
    year = str(dt.datetime.now(dt.timezone.utc).year)
    out = [(q, "calculator", a) for q, a in ARITH]
    out += [(q, "read_file", a) for q, _, a in READ]
    out += [(q, tool, year) for q, tool in NOW]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    out_path = os.path.abspath(args.json) if args.json else None
    work = tempfile.mkdtemp(prefix="treadle-bench-")
    for name, text in FILES.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    os.chdir(work)
    model = TimedLocal(threads=args.threads)
    model.timings = []
    t0 = time.perf_counter()
    model.load()
    load_s = time.perf_counter() - t0
    agent = Agent(tools=DEMO_TOOLS, model=model, max_steps=4)
    runner = Runner(agent)
    rows = []
    step_times: list[float] = []
    for question, tool, expected in tasks():
        t = time.perf_counter()
        res = runner.call(question)
        wall = time.perf_counter() - t
        called = [s.function.name for s in res.step_history if s.function]
        valid = all(s.function is not None and s.function.name in agent.tool_manager for s in res.step_history)
        ok = res.ok and tool in called and contains(str(res.answer), expected)
        step_times.append(wall / max(1, res.usage.requests))
        rows.append({"question": question, "ok": ok, "valid": valid, "status": res.status, "calls": called,
                     "answer": res.answer, "wall_s": round(wall, 3), "requests": res.usage.requests})
        if args.verbose:
            print(("OK  " if ok else "BAD ") + f"{question!r} -> {called} -> {res.answer!r} ({wall:.2f} s)")
    gen = [t["predicted_per_second"] for t in model.timings if t.get("predicted_n", 0) > 5]
    pp = [t["prompt_per_second"] for t in model.timings if t.get("prompt_n", 0) > 50]
    summary = {
        "tasks": len(rows), "succeeded": sum(r["ok"] for r in rows),
        "valid_structure": sum(r["valid"] for r in rows),
        "threads": args.threads or default_threads(), "cpu_count": os.cpu_count(), "load_s": round(load_s, 2),
        "generation_tokens_per_s": round(statistics.median(gen), 1) if gen else None,
        "prompt_tokens_per_s": round(statistics.median(pp), 1) if pp else None,
        "seconds_per_model_call": round(statistics.median(step_times), 2),
        "seconds_per_task": round(statistics.median(r["wall_s"] for r in rows), 2),
    }
    by_tool: dict[str, list[bool]] = {}
    for (_, tool, _), r in zip(tasks(), rows):
        by_tool.setdefault(tool, []).append(r["ok"])
    print(f"embedded model: SmolLM2-135M-Instruct Q4_1 via xllamacpp, {summary['threads']} thread(s), "
          f"python {sys.version.split()[0]}")
    print(f"  success: {summary['succeeded']}/{summary['tasks']}  "
          + "  ".join(f"{k}: {sum(v)}/{len(v)}" for k, v in by_tool.items()))
    print(f"  valid structure: {summary['valid_structure']}/{summary['tasks']}")
    print(f"  load {summary['load_s']} s; generation {summary['generation_tokens_per_s']} tok/s; prompt "
          f"{summary['prompt_tokens_per_s']} tok/s; {summary['seconds_per_model_call']} s per model call; "
          f"{summary['seconds_per_task']} s per task")
    if out_path:
        with open(out_path, "w") as f:
            json.dump({"summary": summary, "tasks": rows}, f, indent=2, default=str)


if __name__ == "__main__":
    main()
