"""A process killed while compacting its context resumes without summarising twice.

The worker (compaction_worker.py) runs one journaled 40-step run whose context is summarised
three times (a 2 k window). It is SIGKILLed inside the N-th summary call (the summary never
returned: the resumed run asks for it once more, and only once), or at the first model
request after a summary was journaled (the resumed run rebuilds the summarised context
from the journal and asks for no summary). Then it is resumed by another process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from treadle.compaction import SUMMARY_OPEN

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from backends import Backend  # noqa: E402
from compaction_worker import RUN_ID, STEPS  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}


def run_worker(backend: Backend, log: Path, mode: str, kill_at: int = 0,
               env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    p = subprocess.run([sys.executable, str(HERE / "compaction_worker.py"), backend.url, str(log), mode, str(kill_at)],
                       env=env or ENV, capture_output=True, text=True, timeout=120)
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    return p.returncode, (json.loads(line) if line else {"stderr": p.stderr[-3000:]})


def summaries(log: Path) -> tuple[int, int]:
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(1 for x in lines if x.startswith("start")), sum(1 for x in lines if x.startswith("end"))


def compactions(backend: Backend) -> list[dict[str, Any]]:
    entries = backend.open().events(RUN_ID)
    return [e.payload["item"]["data"] for e in entries if e.name == "agent.compaction"]


def check(backend: Backend, out: dict[str, Any]) -> list[dict[str, Any]]:
    assert out.get("status") == "success" and out.get("answer") == f"fetched {STEPS} pages", out
    record = backend.open().get_run(RUN_ID)
    assert record.status == "success"
    entries = backend.open().events(RUN_ID)
    steps = [e.payload["item"]["data"]["step"] for e in entries if e.name == "agent.step_complete"]
    assert steps == list(range(STEPS + 1)) or steps == list(range(STEPS)), steps
    found = compactions(backend)
    assert found and all(c["summary"] and "summarize" in c["strategies"] for c in found)
    return found


def test_uninterrupted_reference(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "log"
    code, out = run_worker(backend, log, "none")
    assert code == 0, out
    found = check(backend, out)
    assert summaries(log) == (len(found), len(found)) == (3, 3)


@pytest.mark.parametrize("kill_at", [1, 2, 3])
def test_killed_during_a_summary_call(backend: Backend, tmp_path: Path, kill_at: int) -> None:
    log = tmp_path / "log"
    code, out = run_worker(backend, log, "during", kill_at)
    assert code == -signal.SIGKILL, out
    assert summaries(log) == (kill_at, kill_at - 1)  # the kill_at-th summary never returned
    assert len(compactions(backend)) == kill_at - 1  # ... so it is not journaled
    code, out = run_worker(backend, log, "none")
    assert code == 0, out
    found = check(backend, out)
    started, ended = summaries(log)
    # the cut summary is asked again, once; no summary that returned is asked again
    assert ended == len(found) == 3 and started == ended + 1, (started, ended, len(found))


def test_killed_after_a_summary_was_journaled(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "log"
    code, out = run_worker(backend, log, "after")
    assert code == -signal.SIGKILL, out
    assert summaries(log) == (1, 1)
    first = compactions(backend)
    assert len(first) == 1 and first[0]["summary"]
    code, out = run_worker(backend, log, "none")
    assert code == 0, out
    found = check(backend, out)
    assert summaries(log) == (3, 3) == (len(found), len(found))  # the journaled summary was not asked again
    assert found[0] == first[0]


def test_resume_rebuilds_the_compacted_context(backend: Backend, tmp_path: Path) -> None:
    """The first request after the resume holds the journaled summary, as the killed process sent it."""
    log = tmp_path / "log"
    run_worker(backend, log, "after")
    from compaction_worker import make_runner

    runner = make_runner(backend.url, str(log), "none", 0)
    seen: list[list[dict[str, Any]]] = []
    model = runner.agent.model
    model.replies = [lambda messages, f=model.replies[0]: (seen.append(list(messages)), f(messages))[1]]
    result = runner.resume(RUN_ID)
    assert result.status == "success"
    first = seen[0]
    summary = compactions(backend)[0]["summary"]
    question = next(m for m in first if m["role"] == "user")
    assert SUMMARY_OPEN in question["content"] and summary in question["content"]


SHORT = {**ENV, "COMPACT_STEPS": "10", "COMPACT_WINDOW": "1024"}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_at_every_journal_write_boundary(backend: Backend, tmp_path: Path) -> None:
    """A shorter run (10 steps, a 1 k window: summaries every few steps), killed just before each
    statement the store executes, in turn, then resumed: it ends once, with the answer; at most the
    summary cut by the kill is asked again; no journaled compaction is made twice."""
    import shutil

    reference = tmp_path / "reference"
    reference.mkdir()
    code, out = run_worker(backend, reference / "log", "boundary", 0, SHORT)
    assert code == 0 and out["status"] == "success", out
    total = out["boundaries"]
    done = compactions(backend)
    assert sum(1 for c in done if c["summary"]) >= 2, "the short run must summarize more than once"
    ended = summaries(reference / "log")[1]
    for n in range(1, total + 1):
        backend.sql("DELETE FROM {events} WHERE run_id = ?", (RUN_ID,))
        backend.sql("DELETE FROM {runs} WHERE run_id = ?", (RUN_ID,))
        log = tmp_path / f"log{n}"
        code, out = run_worker(backend, log, "boundary", n, SHORT)
        assert code == -signal.SIGKILL, (n, out)
        code, out = run_worker(backend, log, "none", 0, SHORT)  # resumes it (or starts it: killed before it was stored)
        assert code == 0 and out.get("status") == "success" and out.get("answer") == "fetched 10 pages", (n, out)
        found = compactions(backend)
        steps = [c["step"] for c in found]
        assert steps == sorted(steps) and len(set(steps)) == len(steps), (n, steps)  # none made twice
        assert [c["layout"] for c in found] == [c["layout"] for c in done], n  # the same course as uncut
        started, finished = summaries(log)
        journaled = sum(1 for c in found if c["summary"])
        assert journaled == ended and finished <= journaled + 1, (n, started, finished, journaled)
    shutil.rmtree(reference)
