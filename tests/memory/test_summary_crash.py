"""A process killed while summarising its memory session asks for that summary at most once more:
killed inside the summary call, the resumed run asks for it again (once); killed after the
memory store kept it, the resumed run and every later one use the stored summary (no call)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_memory_stores import Backend, make_backend

from treadle.memory import PostgresMemoryStore, SQLiteMemoryStore
from treadle.store import open_store

HERE = Path(__file__).parent
SUMMARY = "The user asked to remember many numbers, 0 to 59 among them."


@pytest.fixture(params=["sqlite", "postgres"])
def memory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request.param, tmp_path)


def spec(backend: Backend, tmp: Path, suffix: str = "") -> str:
    """Where the worker's memory lives: an SQLite file in ``tmp``, or the backend's PostgreSQL tables."""
    if backend.kind == "postgres":
        return f"{backend.spec['dsn']}#{backend.spec['prefix']}{suffix}"
    return str(tmp / "memory.db")


@pytest.fixture
def reference_tables(memory: Backend) -> Iterator[str]:
    """The suffix of the reference run's own tables (dropped after the test)."""
    yield "_ref"
    if memory.kind == "postgres":
        import psycopg

        prefix = memory.spec["prefix"] + "_ref"
        with psycopg.connect(memory.spec["dsn"], autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {prefix}_turns, {prefix}_sessions, {prefix}_summaries")


def open_memory(where: str) -> SQLiteMemoryStore | PostgresMemoryStore:
    if where.startswith("postgresql://"):
        dsn, prefix = where.rsplit("#", 1)
        return PostgresMemoryStore(dsn, table_prefix=prefix)
    return SQLiteMemoryStore(where)


def worker(tmp: Path, where: str, mode: str, run_id: str = "chat-1") -> tuple[int, dict[str, Any]]:
    p = subprocess.run([sys.executable, str(HERE / "summary_crash_worker.py"), str(tmp / "runs.db"), where,
                        str(tmp / "log"), mode, run_id], capture_output=True, text=True, timeout=120)
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    return p.returncode, (json.loads(line) if line else {"stderr": p.stderr[-3000:]})


def calls(tmp: Path) -> tuple[int, int]:
    lines = (tmp / "log").read_text().splitlines() if (tmp / "log").exists() else []
    return lines.count("start"), lines.count("end")


def stored(where: str) -> str | None:
    store = open_memory(where)
    try:
        s = store.load_summary("long-chat")
    finally:
        store.close()
    return None if s is None else s.text


def compactions(tmp: Path, run_id: str) -> list[Any]:
    store = open_store(f"sqlite:///{tmp / 'runs.db'}")
    return [e for e in store.events(run_id) if e.name == "agent.compaction"]


def reference(tmp: Path, where: str) -> int:
    """The summary calls of the same turn never killed."""
    tmp.mkdir()
    code, out = worker(tmp, where, "none")
    assert code == 0 and out["status"] == "success", out
    started, ended = calls(tmp)
    assert started == ended >= 2  # the session is folded a summarizer's window at a time
    return started


def test_killed_during_the_summary_call(tmp_path: Path, memory: Backend, reference_tables: str) -> None:
    n = reference(tmp_path / "reference", spec(memory, tmp_path / "reference", reference_tables))
    where = spec(memory, tmp_path)
    code, out = worker(tmp_path, where, "during")
    assert code == -signal.SIGKILL, out
    assert calls(tmp_path) == (1, 0) and stored(where) is None
    code, out = worker(tmp_path, where, "none")
    assert code == 0 and out["status"] == "success", out
    assert calls(tmp_path) == (n + 1, n)  # the cut summary asked again, once
    assert stored(where) == SUMMARY and SUMMARY in out["system"]
    assert len(compactions(tmp_path, "chat-1")) == 1


def test_killed_after_the_summary_was_stored(tmp_path: Path, memory: Backend, reference_tables: str) -> None:
    n = reference(tmp_path / "reference", spec(memory, tmp_path / "reference", reference_tables))
    where = spec(memory, tmp_path)
    code, out = worker(tmp_path, where, "after")
    assert code == -signal.SIGKILL, out
    assert calls(tmp_path) == (1, 1) and stored(where) == SUMMARY
    assert not compactions(tmp_path, "chat-1")  # killed before the run journaled it
    code, out = worker(tmp_path, where, "none")
    assert code == 0 and out["status"] == "success", out
    assert calls(tmp_path) == (n, n)  # the stored summary is used, not asked again; the rest is folded as uncut
    assert SUMMARY in out["system"] and "query: Remember the number 0," not in out["system"]
    # the session reopened by another process: the summary and the newest turns, no summary call
    code, out = worker(tmp_path, where, "none", "chat-2")
    assert code == 0 and out["status"] == "success", out
    assert calls(tmp_path) == (n, n) and SUMMARY in out["system"] and "Remember the number 59" in out["system"]
