"""Agents for `treadle serve served_agents:...` in tests/server/test_serve_cli.py."""

from __future__ import annotations

from typing import Any

from scripted_agents import adder, gated, lookup

from treadle import Agent, Function
from treadle.models.scripted import ScriptedModel


def make() -> dict[str, Agent[str]]:
    return {"adder": adder()}


not_an_agent = 42


def make_slow() -> Agent[str]:
    import asyncio

    from treadle import ToolCallActivityRunItem, tool

    @tool
    async def wait_long(key: str) -> Any:
        """Wait a minute, telling how it goes.

        Args:
            key: anything
        """
        for i in range(3):  # progress events are not committed one by one: a crash loses them
            yield ToolCallActivityRunItem(data={"progress": i})
        await asyncio.sleep(60)
        yield key

    script = [Function(name="wait_long", kwargs={"key": "k"}), Function(name="finish", kwargs={"answer": "late"})]
    return Agent(name="slow", tools=[wait_long], model=ScriptedModel(script, per_run=True))


def make_gated() -> dict[str, Agent[str]]:
    """An agent whose one tool needs approval (for a server killed while a run waits)."""
    return {"gate": gated()}


def make_faces() -> dict[str, Agent[str]]:
    """For the protocol faces' client tests: a calculator agent, an agent whose tool needs approval,
    and one whose tool takes a moment (for a reconnect mid-run)."""
    pause = [Function(name="look_up", kwargs={"key": "k"}), Function(name="finish", kwargs={"answer": "found"})]
    return {"adder": adder(), "gate": gated(),
            "pause": Agent(name="pause", tools=[lookup("look_up", 1.5)], model=ScriptedModel(pause, per_run=True))}
