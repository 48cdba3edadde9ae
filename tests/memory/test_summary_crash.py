"""A process killed while summarising its memory session asks for that summary at most once more:
killed inside the summary call, the resumed run asks for it again (once); killed after the
memory store kept it, the resumed run and every later one use the stored summary (no call)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from treadle.memory import SQLiteMemoryStore
from treadle.store import open_store

HERE = Path(__file__).parent
SUMMARY = "The user asked to remember many numbers, 0 to 59 among them."


def worker(tmp: Path, mode: str, run_id: str = "chat-1") -> tuple[int, dict[str, Any]]:
    p = subprocess.run([sys.executable, str(HERE / "summary_crash_worker.py"), str(tmp / "runs.db"),
                        str(tmp / "memory.db"), str(tmp / "log"), mode, run_id],
                       capture_output=True, text=True, timeout=120)
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    return p.returncode, (json.loads(line) if line else {"stderr": p.stderr[-3000:]})


def calls(tmp: Path) -> tuple[int, int]:
    lines = (tmp / "log").read_text().splitlines() if (tmp / "log").exists() else []
    return lines.count("start"), lines.count("end")


def stored(tmp: Path) -> str | None:
    with SQLiteMemoryStore(tmp / "memory.db") as store:
        s = store.load_summary("long-chat")
    return None if s is None else s.text


def compactions(tmp: Path, run_id: str) -> list[Any]:
    store = open_store(f"sqlite:///{tmp / 'runs.db'}")
    return [e for e in store.events(run_id) if e.name == "agent.compaction"]


def reference(tmp: Path) -> int:
    """The summary calls of the same turn never killed."""
    tmp.mkdir()
    code, out = worker(tmp, "none")
    assert code == 0 and out["status"] == "success", out
    started, ended = calls(tmp)
    assert started == ended >= 2  # the session is folded a summarizer's window at a time
    return started


def test_killed_during_the_summary_call(tmp_path: Path) -> None:
    n = reference(tmp_path / "reference")
    code, out = worker(tmp_path, "during")
    assert code == -signal.SIGKILL, out
    assert calls(tmp_path) == (1, 0) and stored(tmp_path) is None
    code, out = worker(tmp_path, "none")
    assert code == 0 and out["status"] == "success", out
    assert calls(tmp_path) == (n + 1, n)  # the cut summary asked again, once
    assert stored(tmp_path) == SUMMARY and SUMMARY in out["system"]
    assert len(compactions(tmp_path, "chat-1")) == 1


def test_killed_after_the_summary_was_stored(tmp_path: Path) -> None:
    n = reference(tmp_path / "reference")
    code, out = worker(tmp_path, "after")
    assert code == -signal.SIGKILL, out
    assert calls(tmp_path) == (1, 1) and stored(tmp_path) == SUMMARY
    assert not compactions(tmp_path, "chat-1")  # killed before the run journaled it
    code, out = worker(tmp_path, "none")
    assert code == 0 and out["status"] == "success", out
    assert calls(tmp_path) == (n, n)  # the stored summary is used, not asked again; the rest is folded as uncut
    assert SUMMARY in out["system"] and "query: Remember the number 0," not in out["system"]
    # the session reopened by another process: the summary and the newest turns, no summary call
    code, out = worker(tmp_path, "none", "chat-2")
    assert code == 0 and out["status"] == "success", out
    assert calls(tmp_path) == (n, n) and SUMMARY in out["system"] and "Remember the number 59" in out["system"]
