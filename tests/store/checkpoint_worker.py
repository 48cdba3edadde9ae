"""Append to a SQLite journal as fast as possible until killed, with SQLite's WAL checkpoint
made every ~20 pages (used by test_sqlite_checkpoint.py).

    python checkpoint_worker.py DB

Prints ``acked N`` once the append of seq N returned (it is durable).
"""

from __future__ import annotations

import sys
import time

from store_writes import append, create_run

from treadle.store import JournalEntry, RunRecord, SQLiteRunStore

store = SQLiteRunStore(sys.argv[1])
store._db.execute("PRAGMA wal_autocheckpoint=20")
if store.get_run("r") is None:
    create_run(store, RunRecord("r", agent_name="a", status="running", created_at=1.0, prompt_kwargs={},
                               model_kwargs={}, config={}))
seq = max((e.seq for e in store.events("r")), default=0)
body = "x" * 2000
while True:
    seq += 1
    append(store, [JournalEntry("r", seq, "e", {"n": seq, "body": body}, time.time())])
    sys.stdout.write(f"acked {seq}\n")
    sys.stdout.flush()
