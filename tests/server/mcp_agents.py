"""Agents served over MCP in tests/server/test_mcp_serve.py (``treadle mcp serve mcp_agents:make``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from treadle import Agent, Function, tool
from treadle.models.scripted import ScriptedModel
from treadle.tools.builtin import calculator


@tool(require_approval=True)
def delete_file(path: str) -> str:
    """Delete a file (needs approval).

    Args:
        path: the file to delete
    """
    return f"deleted {path}"


@tool
def note(text: str) -> str:
    """Write a line to the notes file (a side effect: $TREADLE_TEST_NOTES).

    Args:
        text: the line
    """
    with Path(os.environ["TREADLE_TEST_NOTES"]).open("a") as f:
        f.write(text + "\n")
    return "noted"


@tool
async def slow_lookup(key: str) -> str:
    """Look a key up (slowly).

    Args:
        key: what to look up
    """
    await asyncio.sleep(60)
    return f"value of {key}"


def observed(messages: list[Any]) -> Any:
    """Finish with the last observation (what the tool returned, or why it did not run)."""
    last = str(messages[-1]["content"])
    if not last.startswith("Observation:"):
        return None
    return Function(name="finish", kwargs={"answer": last.split(":", 1)[1].strip()})


def make() -> dict[str, Agent[str]]:
    def gate_reply(messages: list[Any]) -> Any:
        return observed(messages) or Function(name="delete_file", kwargs={"path": "notes.txt"}, thought="clean up")

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

    adder = [Function(name="calculator", kwargs={"expression": "17 + 25"}), Function(name="finish",
                                                                                    kwargs={"answer": "42"})]
    slow = [Function(name="slow_lookup", kwargs={"key": "k"}), Function(name="finish", kwargs={"answer": "late"})]
    return {
        "adder": Agent(name="adder", tools=[calculator], model=ScriptedModel(adder, per_run=True),
                       instructions="Adds numbers with a calculator."),
        "gate": Agent(name="gate", tools=[delete_file], model=ScriptedModel([gate_reply], repeat_last=True)),
        "steady": Agent(name="steady", tools=[calculator], model=ScriptedModel(adder, per_run=True, delay=0.4)),
        "slow": Agent(name="slow", tools=[slow_lookup], model=ScriptedModel(slow, per_run=True)),
        "noter": Agent(name="noter", tools=[note, delete_file], model=ScriptedModel([note_then_delete],
                                                                                     repeat_last=True)),
        "deleter": Agent(name="deleter", tools=[delete_file], model=ScriptedModel([delete_asked], repeat_last=True)),
        "broken": Agent(name="broken", tools=[calculator], model=ScriptedModel([broken], repeat_last=True),
                        max_steps=2),
    }
