"""Run many journaled agent runs in this process until it is killed (used by the crash test).

    python crash_worker.py DB LOG FIRST_RUN N_RUNS
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

from treadle import Agent, Function, FunctionTool, Runner, ScriptedModel

STEPS = 4


def _question(messages: list) -> str:
    """The run's input: its first user message (a native agent without instructions sends no system message)."""
    return next(m["content"] for m in messages if m["role"] == "user")


def make_agent(log_path: str) -> Agent[str]:
    def record(kind: str, run: str, i: int) -> str:
        with open(log_path, "a") as f:  # one line per execution; O_APPEND keeps lines whole
            f.write(f"{kind} {run} {i} {os.getpid()}\n")
        return f"{kind}-{i}"

    async def plain(run: str, i: int) -> str:
        """Not idempotent: must run at most once per call."""
        await asyncio.sleep(random.uniform(0, 0.02))
        return record("plain", run, i)

    async def safe(run: str, i: int) -> str:
        """Idempotent: may run again when its finish was not journaled."""
        await asyncio.sleep(random.uniform(0, 0.02))
        return record("safe", run, i)

    def script(messages: list[dict]) -> Function:
        run = _question(messages)
        done = sum(1 for m in messages if m["role"] == "tool")
        if done < STEPS:
            return Function(id=f"{run}-c{done}", name="plain" if done % 2 == 0 else "safe",
                            kwargs={"run": run, "i": done})
        return Function(name="finish", kwargs={"answer": f"done {run}"})

    model = ScriptedModel([script], repeat_last=True, native_tools=True, delay=0.005)
    model.record_requests = False
    return Agent(tools=[plain, FunctionTool(safe, idempotent=True)], model=model, max_steps=STEPS + 3)


async def main(db: str, log: str, first: int, n: int) -> None:
    runner = Runner(make_agent(log), store=f"sqlite:///{db}")
    await asyncio.gather(*(runner.acall(f"r{i}", id=f"r{i}") for i in range(first, first + n)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
