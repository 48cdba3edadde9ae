"""Agents for `treadle serve served_agents:...` in tests/server/test_serve_cli.py."""

from __future__ import annotations

from treadle import Agent, Function
from treadle.models.scripted import ScriptedModel
from treadle.tools.builtin import calculator


def make() -> dict[str, Agent[str]]:
    script = [Function(name="calculator", kwargs={"expression": "17 + 25"}), Function(name="finish",
                                                                                    kwargs={"answer": "42"})]
    return {"adder": Agent(name="adder", tools=[calculator], model=ScriptedModel(script, per_run=True))}


not_an_agent = 42
