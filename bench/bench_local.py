"""Success rate and speed of the embedded model (llama.cpp via xllamacpp) on small agent tasks.

    python bench/bench_local.py                        # 34 tasks, four kinds, the default model
    python bench/bench_local.py --threads 2 --json out.json --verbose
    python bench/bench_local.py --model /path/to/other.gguf
    python bench/bench_local.py --set few_shot=false   # switch one of LocalModel's helps off
    python bench/bench_local.py --cold                 # no saved prompt prefix (a fresh machine)
    python bench/bench_local.py --tasks user           # user-style tools (bench/user_tasks.py)
    python bench/bench_local.py --tasks heldout        # other user-style tools, never tuned on

Kinds: calculator (one- and two-step, some in words), clock/date, read a file, and questions
that need no tool at all. A task succeeds when the right tool was called (or, for a no-tool
question, no tool was called) and the final answer holds one of the expected texts.

Also reported: seconds per task (median), the first model call of a run against a later
one (wall seconds and prompt tokens llama.cpp actually evaluated, i.e. not reused from its
prompt cache), generation / prompt-processing tokens/s, the load average.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from user_tasks import FILES as USER_FILES
from user_tasks import SETS

CALC = [  # (question, expected answers)
    ("What is 17 + 25?", ["42"]), ("What is 12 * 12?", ["144"]), ("What is 100 - 58?", ["42"]),
    ("Compute 81 / 9.", ["9"]), ("What is 2 ** 10?", ["1024"]), ("What is 15 % 4?", ["3"]),
    ("What is 7 times 8?", ["56"]), ("What is 250 plus 250?", ["500"]),
    ("What is 90 divided by 3?", ["30"]), ("What is 1000 minus 1?", ["999"]),
    ("What is (3 + 4) * 5?", ["35"]), ("Add 10 and 20, then multiply the sum by 3.", ["90"]),
    ("What is 6 * 7 + 8?", ["50"]),
]
CLOCK = ["What time is it?", "What is today's date?", "What year is it now?", "Tell me the current time in UTC.",
         "What day is it today?", "What is the current date and time?"]
FILES = {"notes.txt": "The door code is 4711.", "todo.txt": "Buy milk and eggs.",
         "city.txt": "The capital of Norway is Oslo.", "pet.txt": "My cat is called Tiger.",
         "color.txt": "The favourite colour is teal.", "year.txt": "The project started in 1999.",
         "recipe.md": "Mix flour, water and salt."}
READ = [("What does notes.txt say?", ["4711"]), ("Read todo.txt and tell me what to buy.", ["milk"]),
        ("Read city.txt.", ["Oslo"]), ("What is in pet.txt?", ["Tiger"]),
        ("Open color.txt and tell me the colour.", ["teal"]), ("What year is written in year.txt?", ["1999"]),
        ("Show me recipe.md.", ["flour"])]
NO_TOOL = [("Say hello in French.", ["bonjour"]), ("Hello!", ["hello", "hi"]),
           ("What is the capital of France?", ["paris"]), ("What colour is the sky on a clear day?", ["blue"]),
           ("Say thank you in Spanish.", ["gracias"]), ("What is the opposite of hot?", ["cold"]),
           ("How many legs does a dog have?", ["4", "four"]), ("Name a primary colour.", ["red", "blue", "yellow"])]


def _expand(expected: str) -> str:
    """``<time ZONE>`` / ``<weekday ZONE>``: the hour ("14:") / weekday name there now."""
    m = re.fullmatch(r"<(time|weekday) ([\w/+-]+)>", expected)
    if not m:
        return expected
    from zoneinfo import ZoneInfo

    now = dt.datetime.now(ZoneInfo(m.group(2)))
    return now.strftime("%H:") if m.group(1) == "time" else now.strftime("%A")


def user_tasks(name: str) -> list[tuple[str, str, str | None, list[str], list[str]]]:
    """A set of bench/user_tasks.py, interleaved by kind."""
    out = [(k, q, t, [_expand(e) for e in exp], absent) for k, q, t, exp, absent in SETS[name][1]]
    kinds: dict[str, list[Any]] = {}
    for t in out:
        kinds.setdefault(t[0], []).append(t)
    mixed = []
    while any(kinds.values()):
        for k in list(kinds):
            if kinds[k]:
                mixed.append(kinds[k].pop(0))
    return mixed


def contains(answer: str, expected: str) -> bool:
    """Case-insensitive; a number must appear as a whole number ("3" is not in "3.75")."""
    if expected.replace(".", "").isdigit():
        return re.search(rf"(?<![\d.]){re.escape(expected)}(?![\d]|\.\d)", answer) is not None
    if not expected.isalpha():
        return expected.lower() in answer.lower()
    return re.search(rf"\b{re.escape(expected.lower())}\b", answer.lower()) is not None


def tasks() -> list[tuple[str, str, str | None, list[str]]]:
    """(kind, question, tool that must be called or None for no tool, expected answers)."""
    now = dt.datetime.now(dt.timezone.utc)
    clock_expect = {"What time is it?": [now.strftime("%H:")], "What is today's date?": [now.strftime("%Y-%m-%d")],
                    "What year is it now?": [str(now.year)], "Tell me the current time in UTC.": [now.strftime("%H:")],
                    "What day is it today?": [now.strftime("%Y-%m-%d"), now.strftime("%A")],
                    "What is the current date and time?": [now.strftime("%Y-%m-%d")]}
    out: list[tuple[str, str, str | None, list[str]]] = [("calculator", q, "calculator", a) for q, a in CALC]
    out += [("clock", q, "current_time", clock_expect[q]) for q in CLOCK]
    out += [("file", q, "read_file", a) for q, a in READ]
    out += [("no_tool", q, None, a) for q, a in NO_TOOL]
    # interleaved by kind (as a user would mix them), so the prompt cache is not flattered by runs of one kind
    kinds: dict[str, list[tuple[str, str, str | None, list[str]]]] = {}
    for t in out:
        kinds.setdefault(t[0], []).append(t)
    mixed = []
    while any(kinds.values()):
        for k in list(kinds):
            if kinds[k]:
                mixed.append(kinds[k].pop(0))
    return mixed


class TimedLocal(LocalModel):
    """Keeps llama.cpp's timings and the wall time of every request."""

    calls: list[dict[str, Any]]

    async def request(self, request: Any) -> Any:
        t = time.perf_counter()
        resp = await super().request(request)
        timings = (resp.raw or {}).get("timings") or {}
        self.calls.append({"step": request.step, "wall_s": time.perf_counter() - t,
                           "forced": bool((resp.raw or {}).get("forced")),
                           "prompt_evaluated": timings.get("prompt_n"), "prompt_cached": timings.get("cache_n"),
                           "prompt_tokens": resp.usage.input_tokens, "generated": timings.get("predicted_n"),
                           "prompt_per_second": timings.get("prompt_per_second"),
                           "predicted_per_second": timings.get("predicted_per_second")})
        return resp


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        return text


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default=None, help="a GGUF path (default: the embedded SmolLM2-135M)")
    ap.add_argument("--set", action="append", default=[], help="a LocalModel argument, NAME=VALUE")
    ap.add_argument("--kinds", default=None, help="comma-separated kinds to run")
    ap.add_argument("--tasks", default="demo", choices=["demo", *SETS],
                    help="demo: the demo tools' 34 tasks; user / heldout: user-style tools (bench/user_tasks.py)")
    ap.add_argument("--cold", action="store_true",
                    help="start with an empty prefix cache (as on a fresh machine), not ~/.cache's")
    ap.add_argument("--json")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    out_path = os.path.abspath(args.json) if args.json else None
    work = tempfile.mkdtemp(prefix="treadle-bench-")
    for name, text in (FILES if args.tasks == "demo" else {**FILES, **USER_FILES}).items():
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    os.chdir(work)
    kwargs = dict(kv.split("=", 1) for kv in args.set)
    if args.cold:
        kwargs["prefix_cache"] = tempfile.mkdtemp(prefix="treadle-bench-prefix-")
    model = TimedLocal(args.model, threads=args.threads, **{k: _value(v) for k, v in kwargs.items()})
    model.calls = []
    t0 = time.perf_counter()
    model.load()
    load_s = time.perf_counter() - t0
    tools = DEMO_TOOLS if args.tasks == "demo" else [*SETS[args.tasks][0], *DEMO_TOOLS]
    agent = Agent(tools=tools, model=model, max_steps=4)
    runner = Runner(agent)
    rows = []
    all_tasks = [(*t, []) for t in tasks()] if args.tasks == "demo" else user_tasks(args.tasks)
    selected = [t for t in all_tasks if not args.kinds or t[0] in args.kinds.split(",")]
    load_before = os.getloadavg()[0]
    for kind, question, tool, expected, absent in selected:
        first_call = len(model.calls)
        t = time.perf_counter()
        res = runner.call(question)
        wall = time.perf_counter() - t
        called = [s.function.name for s in res.step_history if s.function and not s.function.is_final]
        answer = str(res.answer)
        right_tool = (not called) if tool is None else (tool in called)
        ok = res.ok and right_tool and any(contains(answer, e) for e in expected) \
            and not any(a in answer for a in absent)
        calls = model.calls[first_call:]
        args_shown = [s.function.kwargs for s in res.step_history if s.function and not s.function.is_final]
        rows.append({"kind": kind, "question": question, "ok": ok, "status": res.status, "calls": called,
                     "kwargs": args_shown, "answer": res.answer, "wall_s": round(wall, 3),
                     "requests": res.usage.requests, "model_calls": calls})
        if args.verbose:
            ev = [c["prompt_evaluated"] for c in calls]
            print(("OK  " if ok else "BAD ") + f"[{kind}] {question!r} -> {called} {args_shown} -> {res.answer!r} "
                  f"({wall:.2f} s, prompt tokens evaluated per step {ev})", flush=True)
    load_after = os.getloadavg()[0]
    # replies the grammar forced (no model run) are left out of the first/later comparison
    firsts = [r["model_calls"][0] for r in rows if r["model_calls"] and not r["model_calls"][0]["forced"]]
    laters = [c for r in rows for c in r["model_calls"][1:] if not c["forced"]]
    by_kind: dict[str, list[bool]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r["ok"])
    gen = [c["predicted_per_second"] for c in model.calls if (c["generated"] or 0) > 5]
    pp = [c["prompt_per_second"] for c in model.calls if (c["prompt_evaluated"] or 0) > 50]
    summary = {
        "model": model.name, "tasks": len(rows), "succeeded": sum(r["ok"] for r in rows),
        "by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in by_kind.items()},
        "threads": args.threads or default_threads(), "cpu_count": os.cpu_count(), "load_s": round(load_s, 2),
        "loadavg_before_after": [round(load_before, 2), round(load_after, 2)],
        "seconds_per_task": _median([r["wall_s"] for r in rows]),
        "first_call_s": _median([c["wall_s"] for c in firsts]),
        "later_call_s": _median([c["wall_s"] for c in laters]),
        "first_call_prompt_evaluated": _median([c["prompt_evaluated"] or 0 for c in firsts]),
        "later_call_prompt_evaluated": _median([c["prompt_evaluated"] or 0 for c in laters]),
        "prompt_tokens_per_call": _median([c["prompt_tokens"] for c in model.calls if not c["forced"]]),
        "model_runs_per_task": _median([sum(not c["forced"] for c in r["model_calls"]) for r in rows]),
        "forced_replies": sum(c["forced"] for c in model.calls),
        "very_first_call": model.calls[0] if model.calls else None,
        "generation_tokens_per_s": _median(gen), "prompt_tokens_per_s": _median(pp),
        "settings": kwargs,
    }
    print(f"{model.name} via xllamacpp, {summary['threads']} thread(s), {os.cpu_count()} cores, "
          f"python {sys.version.split()[0]}, load average {summary['loadavg_before_after']}")
    print(f"  success: {summary['succeeded']}/{summary['tasks']}  "
          + "  ".join(f"{k}: {v}" for k, v in summary["by_kind"].items()))
    print(f"  median {summary['seconds_per_task']} s per task; first call of a run {summary['first_call_s']} s "
          f"({summary['first_call_prompt_evaluated']} prompt tokens evaluated), later call "
          f"{summary['later_call_s']} s ({summary['later_call_prompt_evaluated']} evaluated); "
          f"prompt {summary['prompt_tokens_per_call']} tokens per call; {summary['forced_replies']} replies forced "
          f"by the grammar (no model run); {summary['model_runs_per_task']} model runs per task")
    vf = summary["very_first_call"] or {}
    print(f"  very first call after loading: {vf.get('wall_s', 0):.2f} s, {vf.get('prompt_evaluated')} evaluated; "
          f"load {summary['load_s']} s; generation {summary['generation_tokens_per_s']} tok/s; "
          f"prompt {summary['prompt_tokens_per_s']} tok/s")
    if out_path:
        with open(out_path, "w") as f:
            json.dump({"summary": summary, "tasks": rows}, f, indent=2, default=str)


if __name__ == "__main__":
    main()
