"""Compaction on the embedded model (SmolLM2-135M through llama.cpp, a real model): a 150-turn
``treadle chat``-style session on a 2 k window keeps answering, every turn live; its history is
summarised by the model into the session's summary, kept by the SQLite memory store; the store
reopened, the session goes on with that summary in the prompt. Its token counts are llama.cpp's
own, equal to the counts it reports."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from treadle import Agent, ConversationMemory, Runner
from treadle.compaction import CompactionInfo
from treadle.events import COMPACTION, RunItemStreamEvent
from treadle.memory import SessionSummary, SQLiteMemoryStore
from treadle.memory._summary import HISTORY_SUMMARY_OPEN
from treadle.models.base import ModelRequest, ModelResponse
from treadle.models.local import LocalModel
from treadle.tools.builtin import DEMO_TOOLS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # (a loaded machine makes the model slow)

TURNS = 150
AFTER = 4  # turns after the store is reopened
INSTRUCTIONS = "You are a helpful assistant. Use a tool when it helps, then give the final answer."  # treadle chat's


def question(i: int) -> str:
    """Short user turns, a chat's mix: small talk, arithmetic (the calculator), the time."""
    kinds = [f"Hi, my name is User{i}.", f"What is {i} + 17?", "Name a color, please.", f"What is {i % 12} * 7?",
             "Say hello in French.", "What time is it?", f"Remember the number {i * 3}.", "Thank you!"]
    return kinds[i % len(kinds)]


class Measured(LocalModel):
    """The embedded model, each planner request's count before sending kept beside llama.cpp's count."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.pairs: list[tuple[int, int]] = []  # (counted, reported)
        self.prompts: list[str] = []  # each planner request's first message, as the run sent it
        self.cpu = 0.0  # seconds of CPU the turns took
        self.answered = 0  # turns that ended with an answer

    async def request(self, request: ModelRequest) -> ModelResponse:
        counted = self.count_tokens(request)
        resp = await super().request(request)
        if request.output_schema is not None:
            self.prompts.append(str(request.messages[0].get("content") or ""))
        if resp.model_ran and resp.usage is not None and resp.usage.input_tokens:
            self.pairs.append((counted, resp.usage.input_tokens))
        return resp


def chat(model: Measured, path: Path, turns: range, session: str | None) -> tuple[str, list[CompactionInfo], float]:
    """``treadle chat``'s agent (the demo tools, its instructions) and memory (SQLite), turn by turn."""
    store = SQLiteMemoryStore(path)
    memory = ConversationMemory(store, session_id=session, max_turns=None)  # every turn: it outgrows the window
    events: list[Any] = []
    runner = Runner(Agent(name="cli", tools=DEMO_TOOLS, model=model, max_steps=6, instructions=INSTRUCTIONS),
                    conversation_memory=memory, event_handlers=[events.append])
    t0, c0 = time.perf_counter(), time.process_time()
    for i in turns:
        result = runner.call(question(i))
        # the context never ends a turn; the tiny model may still botch a tool call (a calculator expression
        # cut short, four times): that turn ends in an error, recorded in the session, and the chat goes on
        assert result.status == "success" or result.error_type == "ToolRetriesExceededError", (i, result.error)
        if result.status == "success":
            assert str(result.answer).strip(), i
            model.answered += 1
    store.close()
    infos = [e.item.data for e in events if isinstance(e, RunItemStreamEvent) and e.name == COMPACTION]
    model.cpu += time.process_time() - c0  # (llama.cpp runs in this process: its threads count)
    return memory.session_id, infos, time.perf_counter() - t0


def test_a_150_turn_chat_on_a_2k_window_keeps_answering_and_its_store_reopens(tmp_path: Path) -> None:
    model = Measured(n_ctx=2048, prefix_cache=None)
    path = tmp_path / "memory.db"
    session, infos, took = chat(model, path, range(TURNS), None)
    summarised = [i for i in infos if "summarize" in i.strategies]
    assert model.answered >= 0.95 * TURNS, model.answered
    assert summarised, [i.replaced for i in infos]
    assert all(i.exact and i.window == 2048 and i.tokens_after < i.tokens_before for i in infos)
    assert any("of the chat history -> a summary of" in r for i in summarised for r in i.replaced)
    with SQLiteMemoryStore(path) as store:
        stored = store.load_summary(session)
        assert len(ConversationMemory(store, session_id=session).turns) == TURNS
    assert isinstance(stored, SessionSummary) and stored.text.strip() and stored.upto > 0
    assert stored.text == summarised[-1].summary

    # reopened: the next turns' prompts hold the stored summary and only the turns after it
    sent = len(model.prompts)
    again, more, took_after = chat(model, path, range(TURNS, TURNS + AFTER), session)
    assert again == session
    after = model.prompts[sent:]
    assert after and all(HISTORY_SUMMARY_OPEN in p for p in after)
    latest = [i.summary for i in more if i.summary] or [stored.text]
    assert any(latest[-1].strip()[:40] in p for p in after)
    with SQLiteMemoryStore(path) as store:
        assert len(ConversationMemory(store, session_id=session).turns) == TURNS + AFTER

    # llama.cpp's count before sending is the count it reports (its tokenizer, the prompt as sent)
    assert model.pairs
    off = [(c, r) for c, r in model.pairs if abs(c - r) > 0.10 * r]
    assert not off, off[:5]
    print(f"\n{TURNS} live turns in {took:.0f} s ({took / TURNS:.2f} s a turn; {model.cpu:.0f} s of CPU for all "
          f"{TURNS + AFTER}), {len(infos)} compactions "
          f"({len(summarised)} summarised), {model.answered} answered, {AFTER} more after reopening in "
          f"{took_after:.0f} s")
