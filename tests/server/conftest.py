"""A real uvicorn server on a loopback port, serving agents on scripted models."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest
from server_utils import serving

from treadle import Agent, Function, tool
from treadle.models.scripted import ScriptedModel
from treadle.tools.builtin import calculator


@tool
async def slow_lookup(key: str) -> str:
    """Look a key up (slowly).

    Args:
        key: what to look up
    """
    await asyncio.sleep(30)
    return f"value of {key}"


@tool(require_approval=True)
def delete_file(path: str) -> str:
    """Delete a file (needs approval).

    Args:
        path: the file to delete
    """
    return f"deleted {path}"


def echo_model(delay: float = 0.0) -> ScriptedModel:
    """Calls calculator on the first step, then answers with the observation and the
    token in the user's input: a run's answer names its own input, so results cannot mix."""

    def reply(messages: list[Any]) -> Any:
        text = str(messages[1]["content"]) if len(messages) > 1 else ""
        last = str(messages[-1]["content"])
        if not last.startswith("Observation:"):
            return Function(name="calculator", kwargs={"expression": "6 * 7"}, thought="compute first")
        token = text.split("TOKEN:")[-1].split()[0] if "TOKEN:" in text else "none"
        return Function(name="finish", kwargs={"answer": f"{last.split(':', 1)[1].strip()} for {token}"})

    return ScriptedModel([reply], repeat_last=True, delay=delay, name="echo-model")


@pytest.fixture
def agents() -> dict[str, Agent[Any]]:
    approve_script = [Function(name="delete_file", kwargs={"path": "notes.txt"}, thought="clean up"),
                      Function(name="finish", kwargs={"answer": "done"})]
    slow_script = [Function(name="slow_lookup", kwargs={"key": "k"}), Function(name="finish", kwargs={"answer": "x"})]
    return {
        "echo": Agent(name="echo", tools=[calculator], model=echo_model(), max_steps=4),
        "approver": Agent(name="approver", tools=[delete_file], model=ScriptedModel(approve_script, per_run=True)),
        "slow": Agent(name="slow", tools=[slow_lookup], model=ScriptedModel(slow_script, per_run=True)),
    }


@pytest.fixture
def store_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def memory_store(tmp_path: Any) -> Any:
    from treadle.memory import SQLiteMemoryStore

    return SQLiteMemoryStore(tmp_path / "memory.db")


@pytest.fixture
def server(agents: dict[str, Agent[Any]], store_url: str, memory_store: Any) -> Iterator[str]:
    from treadle.server import create_app

    with serving(create_app(agents, store=store_url, memory_store=memory_store)) as url:
        yield url
