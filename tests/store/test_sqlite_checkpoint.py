"""The SQLite store's WAL checkpoints: SQLite's own (``wal_autocheckpoint``), made by the
commit that fills the WAL — on the journal's writer thread, off the runs' event loop."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from store_writes import append, create_run

from treadle.store import JournalEntry, RunRecord, SQLiteRunStore

HERE = Path(__file__).parent
PAGES = 1000  # SQLite's default wal_autocheckpoint


def _run(store: SQLiteRunStore) -> None:
    create_run(store, RunRecord("r", agent_name="a", status="running", created_at=1.0, prompt_kwargs={},
                               model_kwargs={}, config={}))


def test_the_wal_stays_bounded(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    store = SQLiteRunStore(path)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == PAGES
    _run(store)
    body = "x" * 3000
    for seq in range(1, 5 * PAGES + 1):  # ~15 000 pages written
        append(store, [JournalEntry("r", seq, "e", {"body": body}, 1.0)])
    assert os.path.getsize(path + "-wal") < 3 * PAGES * 4096
    assert [e.seq for e in store.events("r")] == list(range(1, 5 * PAGES + 1))
    store.close()


def test_short_lived_stores_beside_a_long_lived_one_keep_the_wal_bounded(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    server = SQLiteRunStore(path)  # e.g. `treadle serve`, open throughout
    _run(server)
    seq = 0
    for _ in range(40):  # e.g. CLI runs, each a process of its own
        cli = SQLiteRunStore(path)
        for _ in range(60):
            seq += 1
            append(cli, [JournalEntry("r", seq, "e", {"body": "x" * 3000}, 1.0)])
        cli.close()
    assert os.path.getsize(path + "-wal") < 3 * PAGES * 4096
    assert len(server.events("r")) == seq == 2400
    server.close()


def test_a_process_killed_while_appending_and_checkpointing_loses_no_acknowledged_append(tmp_path: Path) -> None:
    """The worker checkpoints every ~20 pages (most of its time is spent in checkpoints); it is
    SIGKILLed at random moments: every append it was told was durable is there afterwards, in
    order, and the file is sound and takes more appends."""
    db = str(tmp_path / "runs.db")
    acked = 0
    rng = random.Random(29)
    for round_ in range(6):
        proc = subprocess.Popen([sys.executable, str(HERE / "checkpoint_worker.py"), db], stdout=subprocess.PIPE,
                                text=True, cwd=HERE)
        assert proc.stdout is not None
        target = rng.randint(50, 400)
        n = 0
        for line in proc.stdout:
            if line.startswith("acked "):
                acked = int(line.split()[1])
                n += 1
                if n == target:
                    time.sleep(rng.uniform(0, 0.002))
                    os.kill(proc.pid, signal.SIGKILL)
                    break
        for line in proc.stdout.read().splitlines():  # what it printed before it died: acknowledged too
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
