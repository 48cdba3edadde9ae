"""A runnable demo agent on the scripted model (no API key, no weights needed).

    python -m treadle.examples.demo "What is 17 + 25?"

The scripted model stands in for a real one: it picks the calculator for arithmetic
questions and the clock for time questions, then answers from the observation. The
run itself (prompt, tool calls, events, typed answer) is the real treadle loop.
"""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Any

from treadle import Agent, Function, RunItemStreamEvent, Runner, ScriptedModel
from treadle.tools.builtin import DEMO_TOOLS

_ARITH = re.compile(r"[-+*/%().\d\s]*\d[-+*/%().\d\s]*")


def demo_policy(messages: list[dict[str, Any]]) -> Function:
    """Decide the next action from the conversation, the way a model would."""
    question = messages[1]["content"]
    observations = [m["content"] for m in messages if m["role"] == "user" and m["content"].startswith("Observation")]
    if observations:
        return Function(thought="I have what I need.", name="finish",
                        kwargs={"answer": observations[-1].split(": ", 1)[1]})
    if "time" in question.lower() or "date" in question.lower():
        return Function(thought="The clock tool knows.", name="current_time", kwargs={"timezone": "UTC"})
    match = max(_ARITH.findall(question), key=len, default="").strip()
    if match:
        return Function(thought="This is arithmetic: use the calculator.", name="calculator",
                        kwargs={"expression": match})
    return Function(thought="No tool needed.", name="finish",
                    kwargs={"answer": "I can do arithmetic and tell the time."})


def build_agent() -> Agent[str]:
    model = ScriptedModel([demo_policy], repeat_last=True, name="scripted-demo")
    return Agent(name="demo", tools=DEMO_TOOLS, model=model, max_steps=4,
                 instructions="You answer with the help of a calculator and a clock.")


async def main(question: str) -> int:
    runner = Runner(build_agent())
    stream = runner.astream({"input_str": question})
    async for event in stream.stream_events():
        if not isinstance(event, RunItemStreamEvent):
            continue
        if event.name == "agent.tool_call_start":
            fn = event.item.data
            print(f"  thought: {fn.thought}\n  call:    {fn.name}({fn.kwargs})")
        elif event.name == "agent.step_complete":
            print(f"  observed: {event.item.data.observation}")
    result = await stream.wait_for_completion()
    print(f"answer: {result.answer}" if result.ok else f"error: {result.error}")
    print(f"steps: {len(result.step_history)}, model requests: {result.usage.requests}, status: {result.status}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(" ".join(sys.argv[1:]) or "What is 17 + 25?")))
