"""A real uvicorn server on a loopback port, serving agents on scripted models."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from scripted_agents import gated, slow
from server_utils import serving

from treadle import Agent, Function
from treadle.models.scripted import ScriptedModel
from treadle.tools.builtin import calculator


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
    return {"echo": Agent(name="echo", tools=[calculator], model=echo_model(), max_steps=4),
            "approver": gated("approver"), "slow": slow()}


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
