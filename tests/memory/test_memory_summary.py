"""A memory session past the model's window is summarised, not only trimmed: its older turns
become the session's summary, kept by the store (in-process, SQLite, PostgreSQL), shown as a
compaction event; the session reopened renders the summary and the newest turns, and asks for
no summary again until the history outgrows the window once more."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_memory_stores import Backend, make_backend

from treadle import Agent, ConversationMemory, Function, Runner, ScriptedModel
from treadle.compaction import CompactionInfo
from treadle.errors import ModelContextTooLongError
from treadle.events import COMPACTION, RunItemStreamEvent
from treadle.memory import SessionSummary, SQLiteMemoryStore, SummaryStore
from treadle.memory._fold import CHAT_SUMMARY_INSTRUCTIONS

WINDOW = 1024


class Chat:
    """A model with a small window (provider "local": compaction is on by default) that refuses
    what does not fit, answers summary requests with the facts the turns hold, and echoes the rest."""

    def __init__(self) -> None:
        self.summaries = 0
        self.requests: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]]) -> Any:
        n = len(json.dumps(messages)) // 4
        if n > WINDOW:
            return ModelContextTooLongError(f"{n} tokens do not fit {WINDOW}")
        if messages[0]["content"] == CHAT_SUMMARY_INSTRUCTIONS:
            self.summaries += 1
            numbers = [int(x) for x in re.findall(r"\d+", messages[1]["content"])]  # the turns' and the summary's
            return f"The user asked to remember the numbers {min(numbers)} to {max(numbers)}."
        self.requests.append(messages)
        return Function(name="finish", kwargs={"answer": f"noted: {messages[-1]['content']}"})


class Small(ScriptedModel):
    provider = "local"
    n_ctx = WINDOW


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request.param, tmp_path)


def chat(backend: Backend, model: Chat, turns: range, session: str | None) -> tuple[str, list[CompactionInfo]]:
    memory = ConversationMemory(backend.open(), session_id=session, max_turns=None)
    events: list[Any] = []
    runner = Runner(Agent(model=Small([model], repeat_last=True)), conversation_memory=memory,
                    event_handlers=[events.append])
    for i in turns:
        result = runner.call(f"turn {i}: remember the number {i}.")
        assert result.status == "success" and result.answer == f"noted: turn {i}: remember the number {i}.", result
    infos = [e.item.data for e in events if isinstance(e, RunItemStreamEvent) and e.name == COMPACTION]
    return memory.session_id, infos


def test_a_long_session_is_summarised_and_reopens_with_its_summary(backend: Backend) -> None:
    model = Chat()
    session, infos = chat(backend, model, range(80), None)
    summarised = [i for i in infos if "summarize" in i.strategies]
    # each compaction's summary calls (usage.requests), one per summarizer's window of turns, are all the calls
    assert summarised and model.summaries == sum(i.usage.requests for i in summarised if i.usage is not None)
    assert all(i.history_upto is not None and i.summary for i in summarised)
    assert any("of the chat history -> a summary of" in r for i in summarised for r in i.replaced)
    store = backend.open()
    assert isinstance(store, SummaryStore)
    stored = store.load_summary(session)
    assert isinstance(stored, SessionSummary) and stored.upto == summarised[-1].history_upto
    assert stored.text == summarised[-1].summary
    # the summary folds the earlier ones in: it speaks of the first turns too
    assert stored.text.startswith("The user asked to remember the numbers 0 to ")
    # every turn is still in the store
    assert len(ConversationMemory(store, session_id=session).turns) == 80

    # reopened: the first run's prompt is the summary plus the turns after it, with no summary call
    before = model.summaries
    again, more = chat(backend, model, range(80, 81), session)
    assert again == session and model.summaries == before and not more
    system = model.requests[-1][0]["content"]
    assert stored.text in system and "turn 79: remember" in system and "turn 0: remember" not in system
    # the session goes on, summarised again when it has outgrown the window once more
    _, later = chat(backend, model, range(81, 160), session)
    assert any("summarize" in i.strategies for i in later) and model.summaries > before
    final = store.load_summary(session)
    assert isinstance(final, SessionSummary) and final.upto > stored.upto


def test_a_summary_is_kept_only_over_a_smaller_one(tmp_path: Path) -> None:
    with SQLiteMemoryStore(tmp_path / "m.db") as store:
        assert store.load_summary("s") is None
        assert store.save_summary("s", SessionSummary(upto=10, text="ten"))
        assert not store.save_summary("s", SessionSummary(upto=8, text="eight"))  # a stale writer changes nothing
        got = store.load_summary("s")
        assert got is not None and (got.upto, got.text) == (10, "ten")
        store.delete_session("s")
        assert store.load_summary("s") is None


def test_a_rendered_history_starts_with_the_summary() -> None:
    memory = ConversationMemory(max_turns=None)
    for i in range(5):
        memory.add_dialog_turn(f"q{i}", f"a{i}")
    assert isinstance(memory.store, SummaryStore)
    memory.store.save_summary(memory.session_id, SessionSummary(upto=3, text="q0 to q2 were asked."))
    history = memory()
    assert history.startswith("<SUMMARY_OF_EARLIER_TURNS>\nq0 to q2 were asked.\n</SUMMARY_OF_EARLIER_TURNS>\nUser:")
    assert "query: q3" in history and "query: q4" in history and "query: q2" not in history
