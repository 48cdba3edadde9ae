"""The SQLite store's WAL checkpoints, made by a thread of its own (store._checkpoint)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from treadle.store import JournalEntry, RunRecord, SQLiteRunStore
from treadle.store._checkpoint import SAFETY_NET, WAL_PAGES

HERE = Path(__file__).parent


def test_sqlite_checkpoints_the_wal_on_its_own_thread(tmp_path: Path) -> None:
    """The commit that fills the WAL does not checkpoint it (autocheckpoint is off on the
    store's connection); the store's checkpoint thread does, and the WAL stops growing."""
    path = str(tmp_path / "runs.db")
    store = SQLiteRunStore(path)
    # SQLite's own checkpoint only as a safety net, far above the size the thread keeps the WAL at
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SAFETY_NET > 2 * WAL_PAGES
    store.create_run(RunRecord("r", agent_name="a", status="running", created_at=1.0, prompt_kwargs={},
                               model_kwargs={}, config={}))
    body = "x" * 3000
    seq = 0

    def write(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            seq += 1
            store.append([JournalEntry("r", seq, "e", {"body": body}, 1.0)])

    write(WAL_PAGES)  # about 2 000 pages written: past the checkpoint's threshold
    assert store._ckpt is not None
    deadline = time.monotonic() + 120
    while store._ckpt.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store._ckpt.checkpoints >= 1, "the checkpoint thread never checkpointed"
    write(WAL_PAGES * 4)  # the WAL is reused once checkpointed: it stays far smaller than what was written
    wal = os.path.getsize(path + "-wal")
    assert store._ckpt.checkpoints >= 2
    # each commit wrote 3 pages or more to the WAL (a 3 kB row's leaf, the key's index, the run row)
    assert wal < WAL_PAGES * 5 * 3 * 4096 / 2, wal
    assert [e.seq for e in store.events("r")] == list(range(1, seq + 1))
    assert all(e.payload == {"body": body} for e in store.events("r"))
    store.close()
    assert store._ckpt._thread is None or not store._ckpt._thread.is_alive()


def test_a_process_killed_while_checkpointing_loses_no_acknowledged_append(tmp_path: Path) -> None:
    """SIGKILL lands while the checkpoint thread copies the WAL into the database (the worker
    says when one starts; a checkpoint takes milliseconds): every append the worker was told
    was durable is there afterwards, in order, and the file opens and takes more appends."""
    db = str(tmp_path / "runs.db")
    acked = 0
    kills_in_checkpoint = 0
    for round_ in range(6):
        proc = subprocess.Popen([sys.executable, str(HERE / "checkpoint_worker.py"), db], stdout=subprocess.PIPE,
                                text=True, cwd=HERE)
        assert proc.stdout is not None
        checkpoints = 0
        for line in proc.stdout:
            if line.startswith("acked "):
                acked = int(line.split()[1])
            elif line.startswith("checkpoint"):
                checkpoints += 1
                if checkpoints == 1 + round_ % 3:  # the first, second or third checkpoint of this process
                    os.kill(proc.pid, signal.SIGKILL)
                    kills_in_checkpoint += 1
                    break
        rest = proc.stdout.read()  # what it printed before it died: acknowledged too
        for line in rest.splitlines():
            if line.startswith("acked "):
                acked = int(line.split()[1])
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        store = SQLiteRunStore(db)
        seqs = [e.seq for e in store.events("r")]
        assert seqs == list(range(1, len(seqs) + 1)), "a gap or a duplicate"
        assert len(seqs) >= acked, f"round {round_}: {acked} acknowledged, {len(seqs)} in the journal"
        assert all(e.payload["n"] == e.seq for e in store.events("r"))
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        store.close()
    assert kills_in_checkpoint == 6


def test_the_checkpoint_thread_ends_when_idle_and_comes_back_when_asked(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from treadle.store import _checkpoint as ck

    monkeypatch.setattr(ck, "IDLE_EXIT", 0.1)
    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    c = store._ckpt
    assert c is not None and c._thread is None, "no thread before the first checkpoint is due"

    def wait_for(cond: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + 60
        while not cond() and time.monotonic() < deadline:
            time.sleep(0.01)
        return cond()

    for n in (1, 2):  # the thread ends idle; a later request starts another
        c.request()
        first = c._thread
        assert first is not None and first.name == "treadle-sqlite-checkpoint"
        assert wait_for(lambda n=n: c.checkpoints >= n), "the request was not carried out"
        assert wait_for(lambda t=first: not t.is_alive() and c._thread is None), "the idle thread did not end"
    store.close()
    c.request()  # closed: nothing starts
    assert c._thread is None


def test_short_lived_stores_beside_a_long_lived_one_keep_the_wal_bounded(tmp_path: Path) -> None:
    """Each of many short-lived stores writes too little to ask for a checkpoint, and the one
    kept open stops SQLite from checkpointing when they close: SQLite's own checkpoint, kept
    as a safety net, bounds the WAL by its real size."""
    path = str(tmp_path / "runs.db")
    server = SQLiteRunStore(path)  # e.g. `treadle serve`, open throughout
    server.create_run(RunRecord("r", agent_name="a", status="running", created_at=1.0, prompt_kwargs={},
                                model_kwargs={}, config={}))
    seq = 0
    for _ in range(40):  # e.g. CLI runs, each a process of its own
        cli = SQLiteRunStore(path)
        for _ in range(60):
            seq += 1
            cli.append([JournalEntry("r", seq, "e", {"body": "x" * 3000}, 1.0)])
        assert cli._ckpt is not None and cli._ckpt.checkpoints == 0, "none of them asks its thread"
        cli.close()
    assert os.path.getsize(path + "-wal") < (SAFETY_NET + 200) * 4096
    assert len(server.events("r")) == seq == 2400
    server.close()


def test_a_checkpoint_thread_that_fails_is_replaced_and_never_fails_a_commit(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from treadle.store import _checkpoint as ck

    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    c = store._ckpt
    assert c is not None
    real_connect = ck.sqlite3.connect
    monkeypatch.setattr(ck.sqlite3, "connect", lambda *a, **k: (_ for _ in ()).throw(
        ck.sqlite3.OperationalError("unable to open database file")))
    c.request()
    dead = c._thread
    assert dead is not None
    dead.join(60)
    assert not dead.is_alive() and c._thread is None, "the failed thread is forgotten"
    monkeypatch.setattr(ck.sqlite3, "connect", real_connect)
    c.request()  # another thread, which works
    deadline = time.monotonic() + 60
    while c.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.checkpoints == 1

    # no thread can be started at all: the commit that asked for one still succeeds
    monkeypatch.setattr(ck, "WAL_PAGES", 1)
    c.close()
    c._closed = False
    monkeypatch.setattr(ck.threading.Thread, "start", lambda self: (_ for _ in ()).throw(RuntimeError("no threads")))
    store.create_run(RunRecord("r", agent_name="a", status="running", created_at=1.0, prompt_kwargs={},
                               model_kwargs={}, config={}))
    store.append([JournalEntry("r", 1, "e", {"n": 1}, 1.0)])
    assert [e.payload for e in store.events("r")] == [{"n": 1}]
    monkeypatch.undo()
    store.close()
