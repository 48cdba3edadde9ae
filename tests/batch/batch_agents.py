"""Runner factories for the batch tests: importable by Ray's worker processes (this folder is
put on their PYTHONPATH), so the factories pickle by reference."""

from __future__ import annotations

import asyncio
import os
import time

from treadle import Agent, Function, Runner, ScriptedModel

STEPS = 3


def _script(messages: list[dict]) -> Function:
    """Call ``step`` STEPS times, then answer with the input and the sum of the observations."""
    task = next(m["content"] for m in messages if m["role"] == "user")  # no instructions: no system message
    observations = [m["content"] for m in messages if m["role"] == "tool"]
    done = len(observations)
    if done < STEPS:
        return Function(id=f"{task}-c{done}", name="step", kwargs={"task": task, "i": done})
    return Function(name="finish", kwargs={"answer": f"{task}|{'+'.join(observations)}"})


def make_runner(log_path: str | None = None, delay: float = 0.0, tool_delay: float = 0.0) -> Runner:
    """A scripted agent whose tool ``step`` appends one line per execution to ``log_path``."""

    async def step(task: str, i: int) -> str:
        """Not idempotent: must run at most once per call."""
        if tool_delay:
            await asyncio.sleep(tool_delay)
        if log_path:
            with open(log_path, "a") as f:  # O_APPEND: whole lines from many processes
                f.write(f"{task} {i} {os.getpid()}\n")
        return f"{task.upper()}{i}"

    model = ScriptedModel([_script], repeat_last=True, native_tools=True, delay=delay)
    model.record_requests = False
    return Runner(Agent(tools=[step], model=model, max_steps=STEPS + 2))


def make_fast_runner() -> Runner:
    return make_runner()


def burn(ms: float) -> int:
    """Burn CPU for about ``ms`` milliseconds (holds the GIL)."""
    end = time.perf_counter() + ms / 1000
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n
