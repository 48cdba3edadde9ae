"""The tools and scripted agents the server tests serve: shared by the served modules
(``a2a_agents``, ``mcp_agents``, ``served_agents``, which ``treadle serve`` imports with
tests/server on its path) and the in-process fixtures (conftest)."""

from __future__ import annotations

import asyncio
from typing import Any

from treadle import Agent, Function, FunctionTool, tool
from treadle.models.scripted import ScriptedModel
from treadle.tools.builtin import calculator


@tool(require_approval=True)
def delete_file(path: str) -> str:
    """Delete a file (needs approval).

    Args:
        path: the file to delete
    """
    return f"deleted {path}"


def lookup(name: str, seconds: float) -> FunctionTool:
    """A tool ``name`` that looks a key up in ``seconds``."""

    async def look(key: str) -> str:
        """Look a key up (it takes a while).

        Args:
            key: what to look up
        """
        await asyncio.sleep(seconds)
        return f"value of {key}"

    return tool(look, name=name)


slow_lookup = lookup("slow_lookup", 60)


def observed(messages: list[Any]) -> Any:
    """Finish with the last observation (what the tool returned, or why it did not run)."""
    last = str(messages[-1]["content"])
    if not last.startswith("Observation:"):
        return None
    return Function(name="finish", kwargs={"answer": last.split(":", 1)[1].strip()})


def adder_script() -> list[Function]:
    """Add 17 and 25 with the calculator, then answer 42."""
    return [Function(name="calculator", kwargs={"expression": "17 + 25"}),
            Function(name="finish", kwargs={"answer": "42"})]


def adder(instructions: str | None = None) -> Agent[str]:
    return Agent(name="adder", tools=[calculator], model=ScriptedModel(adder_script(), per_run=True),
                 instructions=instructions)


def gate() -> Agent[str]:
    """Asks to delete notes.txt (needs approval) on every step until it has an observation, then
    answers with it (the deletion, or why it did not run)."""

    def reply(messages: list[Any]) -> Any:
        return observed(messages) or Function(name="delete_file", kwargs={"path": "notes.txt"}, thought="clean up")

    return Agent(name="gate", tools=[delete_file], model=ScriptedModel([reply], repeat_last=True))


def gated(name: str = "gate") -> Agent[str]:
    """Deletes notes.txt (needs approval), then answers "done": one script a run."""
    script = [Function(name="delete_file", kwargs={"path": "notes.txt"}, thought="clean up"),
              Function(name="finish", kwargs={"answer": "done"})]
    return Agent(name=name, tools=[delete_file], model=ScriptedModel(script, per_run=True))


def slow() -> Agent[str]:
    """Looks a key up for a minute (a run to cancel, or to find live)."""
    script = [Function(name="slow_lookup", kwargs={"key": "k"}), Function(name="finish", kwargs={"answer": "late"})]
    return Agent(name="slow", tools=[slow_lookup], model=ScriptedModel(script, per_run=True))
