"""One journaled run that compacts its context, started or resumed, killed where the test says
(used by test_compaction_crash.py).

    python compaction_worker.py STORE_URL LOG MODE KILL_AT

MODE: ``during`` (SIGKILL inside the KILL_AT-th summary call, before it replies), ``after``
(SIGKILL at the first model request after a summary was journaled: the compaction is
committed, the next reply is not), ``boundary`` (SIGKILL just before the store's KILL_AT-th
statement, ``treadle.store.base.boundary``; 0: never, and the count is printed), ``none``.
``COMPACT_STEPS`` and ``COMPACT_WINDOW`` in the environment make the run shorter. The planner's
script is computed from the messages (the next page after the last one fetched), so a resumed
process goes on alike; the tool is idempotent, so a call cut off runs again.
Every summary call appends ``start PID`` then ``end PID`` to LOG. Prints the result as JSON.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from typing import Any

from treadle import Agent, Compaction, Function, FunctionTool, Runner, ScriptedModel, Summarize
from treadle.compaction import SUMMARY_OPEN

STEPS = int(os.environ.get("COMPACT_STEPS", "40"))
WINDOW = int(os.environ.get("COMPACT_WINDOW", "2048"))
RUN_ID = "compacting-run"
_PAGE = re.compile(r'"page": ?(\d+)')


def fetch(page: int) -> str:
    """Fetch a page."""
    return f"page {page}: " + "lorem ipsum dolor sit amet " * 12 + "ok"


def make_runner(url: str, log: str, mode: str, kill_at: int) -> Runner[Any]:
    flag = log + ".killed"

    def planner(messages: list[dict[str, Any]]) -> Function:
        if mode == "after" and not os.path.exists(flag) and any(SUMMARY_OPEN in str(m.get("content"))
                                                                for m in messages):
            open(flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        pages = [int(p) for m in messages if m["role"] == "assistant" for p in _PAGE.findall(str(m["content"]))]
        nxt = max(pages, default=0) + 1
        if nxt > STEPS:
            return Function(name="finish", kwargs={"answer": f"fetched {STEPS} pages"})
        return Function(name="fetch", kwargs={"page": nxt})

    def summarize(messages: list[dict[str, Any]]) -> str:
        with open(log, "a") as f:
            f.write(f"start {os.getpid()}\n")
        with open(log) as f:
            started = sum(1 for line in f if line.startswith("start"))
        if mode == "during" and started == kill_at and not os.path.exists(flag):
            open(flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        with open(log, "a") as f:
            f.write(f"end {os.getpid()}\n")
        last = max((int(p) for p in _PAGE.findall(str(messages[-1]["content"]))), default=0)
        return f"Pages 1 to {last} were fetched; each said ok."

    model = ScriptedModel([planner], repeat_last=True)
    summarizer = ScriptedModel([summarize], repeat_last=True, name="summarizer")
    context = Compaction(window=WINDOW, strategies=[Summarize(model=summarizer, keep_last=4)])
    # idempotent: a call cut off by a kill runs again (the same observation, so the same course as uncut)
    agent = Agent(tools=[FunctionTool(fetch, idempotent=True)], model=model, max_steps=STEPS + 5, context=context)
    runner = Runner(agent, store=url)
    # completions travel with the next write: the same boundaries every run
    runner._journal.max_delay = 3600.0  # pyright: ignore
    return runner


def main(url: str, log: str, mode: str, kill_at: int) -> None:
    runner = make_runner(url, log, mode, kill_at)
    store = runner.store
    assert store is not None
    count = [0]
    if mode == "boundary":
        from treadle.store import base

        def hook(label: str) -> None:
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        base.boundary_hook = hook
    if store.get_run(RUN_ID) is None:
        result = runner.call("Fetch the pages in order, from page 1.", id=RUN_ID)
    else:
        result = runner.resume(RUN_ID)
    print(json.dumps({"status": result.status, "answer": result.answer, "error": result.error,
                      "steps": len(result.step_history), "boundaries": count[0]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
