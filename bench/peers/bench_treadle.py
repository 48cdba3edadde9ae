"""treadle on the shared peer workload (../shared/bench-peers), side by side with the
numbers recorded there for OpenAI Agents SDK, PydanticAI, LangGraph and AdalFlow.

    bash bench/peers/run_all.sh treadle            # this one only; `bash bench/peers/run_all.sh` for all
    PB_N=5 PB_R=2 PB_M=30 PB_R_CONC=1 PB_R_IMPORT=2 PB_N_TTFE=5 python bench/peers/bench_treadle.py  # smoke

The harness (workload.py, report.py) is the shared peer benchmark's, copied here; it runs
the same scripted conversation and times the hand-written loop in the same process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workload as W

from treadle import Agent, Function, ModelRequest, ModelResponse, Runner, Usage


class PeerModel:
    """Stateless native-tools model: derives the turn from the tool results in the history."""

    native_tools = True

    def __init__(self, k: int, delay: float) -> None:
        self.k = k
        self.delay = delay

    async def request(self, request: ModelRequest) -> ModelResponse:
        if self.delay:
            await asyncio.sleep(self.delay)
        msgs = request.messages
        n_done = 0
        last = None
        for m in msgs:
            if m["role"] == "tool":
                n_done += 1
                last = m["content"]
        act = W.next_action(n_done, self.k, last)
        if act[0] == "call":
            return ModelResponse(tool_calls=[Function(id=act[1], name=W.TOOL_NAME, kwargs=act[2])],
                                 usage=Usage(1, 1, 1))
        return ModelResponse(text=act[1], usage=Usage(1, 1, 1))


_runners: dict[tuple[int, float, bool], Runner[str]] = {}


def runner_for(k: int, delay: float, async_tool: bool = False) -> Runner[str]:
    key = (k, delay, async_tool)
    if key not in _runners:
        tool = W.aadd if async_tool else W.add
        tool_fn: Any = tool
        if tool.__name__ != W.TOOL_NAME:
            from treadle import FunctionTool

            tool_fn = FunctionTool(tool, name=W.TOOL_NAME)
        _runners[key] = Runner(Agent(tools=[tool_fn], model=PeerModel(k, delay), max_steps=k + 5,
                                     instructions="You add numbers."))
    return _runners[key]


def run_sync(k: int) -> str:
    return runner_for(k, 0.0).call(W.PROMPT).answer  # type: ignore[return-value]


async def run(k: int, delay: float) -> str:
    return (await runner_for(k, delay).acall(W.PROMPT)).answer  # type: ignore[return-value]


async def run_async_tool(k: int, delay: float) -> str:
    return (await runner_for(k, delay, True).acall(W.PROMPT)).answer  # type: ignore[return-value]


async def stream(k: int, delay: float, on_event: Any) -> str:
    sr = runner_for(k, delay).astream(W.PROMPT)
    async for ev in sr.stream_events():
        on_event(ev)
    return sr.answer


spec = W.Spec(
    name="treadle",
    import_stmt="import treadle",
    packages=["treadle", "pydantic", "jinja2"],
    sync={"call": run_sync},
    async_={"acall": run, "acall[async_tool]": run_async_tool},
    stream={"astream": stream},
    primary_async="acall",
    conc=["acall"],
    notes=["the sync tool runs in a worker thread, treadle's default (FunctionTool(fn, inline=True) keeps a cheap "
           "one on the loop); acall[async_tool] has no thread hop",
           "fake model = a ModelClient with native_tools=True deriving the turn from the history"],
)

if __name__ == "__main__":
    W.main(spec)
