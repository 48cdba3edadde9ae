"""Compaction on the embedded model (SmolLM2-135M through llama.cpp, a real model): its token
count is llama.cpp's own, and a chat session on a 2 k window keeps answering past the window,
its memory store reopened and continued."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from treadle import Agent, ConversationMemory, Runner
from treadle.events import COMPACTION, RunItemStreamEvent
from treadle.memory import SQLiteMemoryStore
from treadle.models.base import ModelRequest, ModelResponse
from treadle.models.local import LocalModel
from treadle.tokens import estimate_request
from treadle.tools.builtin import DEMO_TOOLS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # (a loaded machine makes the model slow)

EARLIER = 60  # turns of an earlier conversation in the session: far more than the 2 k window holds
TURNS = 3  # turns then asked of the model, and one more after the store is reopened


class Measured(LocalModel):
    """The embedded model, each request's count before sending kept beside the count llama.cpp reports."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.pairs: list[tuple[int, int, int]] = []  # (counted, reported, estimated)

    async def request(self, request: ModelRequest) -> ModelResponse:
        counted = self.count_tokens(request)
        resp = await super().request(request)
        if resp.model_ran and resp.usage is not None and resp.usage.input_tokens and not (resp.raw or {}).get("direct"):
            self.pairs.append((counted, resp.usage.input_tokens, estimate_request(request)))
        return resp


def test_a_chat_on_a_2k_window_keeps_answering_and_its_store_reopens(tmp_path: Path) -> None:
    model = Measured(n_ctx=2048, threads=1, prefix_cache=None)
    path = tmp_path / "memory.db"
    asked = ["What is 17 + 25?", "What is 6 * 7?", "What is the largest ocean?", "What is 100 - 58?"]

    store = SQLiteMemoryStore(path)
    earlier = ConversationMemory(store, max_turns=None)
    for i in range(EARLIER):
        earlier.add_dialog_turn(f"Remember the number {i}, please.", f"I will remember the number {i}.")
    store.close()

    def chat(turns: range, session: str | None) -> tuple[str, list[Any]]:
        store = SQLiteMemoryStore(path)
        memory = ConversationMemory(store, session_id=session, max_turns=None)  # every turn goes to the prompt
        events: list[Any] = []
        runner = Runner(Agent(tools=DEMO_TOOLS, model=model, max_steps=4), conversation_memory=memory,
                        event_handlers=[events.append])
        for i in turns:
            result = runner.call(asked[i % len(asked)])
            assert result.status == "success" and str(result.answer).strip(), (i, result.error)
        store.close()
        return memory.session_id, events

    t0 = time.perf_counter()
    session, events = chat(range(TURNS), earlier.session_id)
    infos = [e.item.data for e in events if isinstance(e, RunItemStreamEvent) and e.name == COMPACTION]
    assert infos, "the history outgrew the window: it must have been compacted"
    assert all(i.exact and i.window == 2048 and i.tokens_after < i.tokens_before for i in infos)
    assert all(any("turns of the chat history" in r for r in i.replaced) for i in infos)
    _, more = chat(range(TURNS, TURNS + 1), session)  # reopened: the session goes on
    assert any(isinstance(e, RunItemStreamEvent) and e.name == COMPACTION for e in more)
    store = SQLiteMemoryStore(path)
    assert len(ConversationMemory(store, session_id=session).turns) == EARLIER + TURNS + 1
    store.close()
    # llama.cpp's count before sending is the count it reports (its tokenizer, the prompt as sent)
    assert model.pairs
    for counted, reported, _ in model.pairs:
        assert abs(counted - reported) <= 0.10 * reported, (counted, reported)
    print(f"\n{TURNS + 1} turns in {time.perf_counter() - t0:.1f} s, {len(infos)} compactions; counted/reported: "
          f"{model.pairs[:3]}...")
