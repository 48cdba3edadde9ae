"""A memory session longer than the model's window, on SQLite and PostgreSQL: every turn is
answered (the oldest turns of the history in the prompt give way, in a compaction event), the
store keeps every turn, and the session reopened by another memory goes on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_memory_stores import Backend, make_backend

from treadle import Agent, ConversationMemory, Function, Runner, ScriptedModel
from treadle.errors import ModelContextTooLongError
from treadle.events import COMPACTION, RunItemStreamEvent


class SmallWindow(ScriptedModel):
    """Stands for the embedded model (provider "local", n_ctx 1024): refuses what does not fit."""

    provider = "local"
    n_ctx = 1024


def reply(messages: list[dict[str, Any]]) -> Any:
    n = len(json.dumps(messages)) // 4
    if n > SmallWindow.n_ctx:
        return ModelContextTooLongError(f"{n} tokens do not fit {SmallWindow.n_ctx}")
    return Function(name="finish", kwargs={"answer": f"noted: {messages[-1]['content']}"})


@pytest.fixture(params=["sqlite", "postgres"])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request.param, tmp_path)


def chat(backend: Backend, turns: range, session: str | None) -> tuple[str, int]:
    memory = ConversationMemory(backend.open(), session_id=session, max_turns=None)
    events: list[Any] = []
    runner = Runner(Agent(model=SmallWindow([reply], repeat_last=True)), conversation_memory=memory,
                    event_handlers=[events.append])
    for i in turns:
        result = runner.call(f"turn {i}: please remember the number {i * 7}")
        assert result.status == "success" and result.answer == f"noted: turn {i}: please remember the number {i * 7}"
    compactions = [e for e in events if isinstance(e, RunItemStreamEvent) and e.name == COMPACTION]
    return memory.session_id, len(compactions)


def test_a_session_past_the_window_goes_on_and_reopens(shared_backend: Backend) -> None:
    session, compacted = chat(shared_backend, range(60), None)
    assert compacted > 0
    again, more = chat(shared_backend, range(60, 70), session)  # another memory, another connection
    assert again == session and more == 10  # every turn now starts past the window
    turns = ConversationMemory(shared_backend.open(), session_id=session).turns
    assert len(turns) == 70 and turns[0].user_query.query_str == "turn 0: please remember the number 0"
