"""Agents served over MCP in tests/server/test_mcp_serve.py (``treadle mcp serve mcp_agents:make``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scripted_agents import adder, adder_script, delete_file, gate, observed, slow

from treadle import Agent, Function, tool
from treadle.models.scripted import ScriptedModel
from treadle.tools.builtin import calculator


@tool
def note(text: str) -> str:
    """Write a line to the notes file (a side effect: $TREADLE_TEST_NOTES).

    Args:
        text: the line
    """
    with Path(os.environ["TREADLE_TEST_NOTES"]).open("a") as f:
        f.write(text + "\n")
    return "noted"


def make() -> dict[str, Agent[str]]:
    def broken(messages: list[Any]) -> Any:
        raise RuntimeError("the model is down")

    def note_then_delete(messages: list[Any]) -> Any:
        done = sum(1 for m in messages if str(m["content"]).startswith("Observation:"))
        if done == 0:
            return Function(name="note", kwargs={"text": "before the question"})
        if done == 1:
            return Function(name="delete_file", kwargs={"path": "notes.txt"})
        return observed(messages)

    def delete_asked(messages: list[Any]) -> Any:  # deletes the file the input names
        return observed(messages) or Function(name="delete_file", kwargs={"path": str(messages[1]["content"])})

    return {
        "adder": adder("Adds numbers with a calculator."),
        "gate": gate(),
        "steady": Agent(name="steady", tools=[calculator], model=ScriptedModel(adder_script(), per_run=True,
                                                                               delay=0.4)),
        "slow": slow(),
        "noter": Agent(name="noter", tools=[note, delete_file], model=ScriptedModel([note_then_delete],
                                                                                     repeat_last=True)),
        "deleter": Agent(name="deleter", tools=[delete_file], model=ScriptedModel([delete_asked], repeat_last=True)),
        "broken": Agent(name="broken", tools=[calculator], model=ScriptedModel([broken], repeat_last=True),
                        max_steps=2),
    }
