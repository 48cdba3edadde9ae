"""One journaled chat turn whose memory session has outgrown the window, started or resumed,
killed where the test says (used by test_summary_crash.py).

    python summary_crash_worker.py RUNS_DB MEMORY LOG MODE RUN_ID

MEMORY: an SQLite file, or ``postgresql://…#PREFIX`` (a PostgreSQL memory store with that table prefix).

MODE: ``during`` (SIGKILL inside the summary call, before it replies), ``after`` (SIGKILL just
after the summary was stored in the memory store, before the run journaled its compaction),
``none``. The session (60 earlier turns) is written by the first process. Every summary call
appends ``start`` then ``end`` to LOG. Prints the result and the last planner request's system
prompt as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from treadle import Agent, Compaction, ConversationMemory, Function, Runner, ScriptedModel, SlidingWindow, Summarize
from treadle.memory import PostgresMemoryStore, SessionSummary, SQLiteMemoryStore

SESSION = "long-chat"
WINDOW = 1024


class KilledAfterSaving(SQLiteMemoryStore):
    def save_summary(self, session_id: str, summary: SessionSummary) -> bool:
        kept = super().save_summary(session_id, summary)
        os.kill(os.getpid(), signal.SIGKILL)
        return kept


class PgKilledAfterSaving(PostgresMemoryStore):
    def save_summary(self, session_id: str, summary: SessionSummary) -> bool:
        kept = super().save_summary(session_id, summary)
        os.kill(os.getpid(), signal.SIGKILL)
        return kept


def open_memory(spec: str, mode: str) -> SQLiteMemoryStore | PostgresMemoryStore:
    if spec.startswith("postgresql://"):
        dsn, prefix = spec.rsplit("#", 1)
        return (PgKilledAfterSaving if mode == "after" else PostgresMemoryStore)(dsn, table_prefix=prefix)
    return (KilledAfterSaving if mode == "after" else SQLiteMemoryStore)(spec)


def main(runs: str, memory_db: str, log: str, mode: str, run_id: str) -> None:
    seen: list[str] = []

    def planner(messages: list[dict[str, Any]]) -> Function:
        seen.append(str(messages[0]["content"]))
        return Function(name="finish", kwargs={"answer": f"noted: {messages[-1]['content']}"})

    def summarize(messages: list[dict[str, Any]]) -> str:
        with open(log, "a") as f:
            f.write("start\n")
        if mode == "during":
            os.kill(os.getpid(), signal.SIGKILL)
        with open(log, "a") as f:
            f.write("end\n")
        return "The user asked to remember many numbers, 0 to 59 among them."

    store = open_memory(memory_db, mode)
    memory = ConversationMemory(store, session_id=SESSION, max_turns=None)
    if not store.load_turns(SESSION, 1):
        for i in range(60):
            memory.add_dialog_turn(f"Remember the number {i}, please.", f"I will remember the number {i}.")
    summarizer = ScriptedModel([summarize], repeat_last=True, name="summarizer")
    context = Compaction(window=WINDOW, strategies=[Summarize(model=summarizer, keep_last=4), SlidingWindow()])
    agent = Agent(model=ScriptedModel([planner], repeat_last=True), context=context)
    runner = Runner(agent, conversation_memory=memory, store=f"sqlite:///{runs}")
    assert runner.store is not None
    if runner.store.get_run(run_id) is None:
        result = runner.call("What was the first number?", id=run_id)
    else:
        result = runner.resume(run_id)
    print(json.dumps({"status": result.status, "answer": result.answer, "error": result.error,
                      "system": seen[-1] if seen else None}))


if __name__ == "__main__":
    main(*sys.argv[1:6])
