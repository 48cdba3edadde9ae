"""Append to a SQLite journal as fast as possible until killed, with WAL checkpoints forced
often (used by test_sqlite_checkpoint.py).

    python checkpoint_worker.py DB

Prints ``acked N`` once the append of seq N returned (it is durable), and ``checkpoint``
each time the checkpoint thread starts a checkpoint.
"""

from __future__ import annotations

import sys
import time

from treadle.store import JournalEntry, RunRecord, SQLiteRunStore
from treadle.store import _checkpoint as ck

ck.WAL_PAGES = 60  # a checkpoint every few dozen appends, and the catch-up pass (with the lock) often
_checkpoint = ck.Checkpointer.checkpoint


def say(line: str) -> None:  # one write per line: the two threads' lines never mix
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def announced(self: ck.Checkpointer, db: object) -> None:
    say("checkpoint")
    _checkpoint(self, db)  # type: ignore[arg-type]


ck.Checkpointer.checkpoint = announced  # type: ignore[method-assign]

store = SQLiteRunStore(sys.argv[1])
if store.get_run("r") is None:
    store.create_run(RunRecord("r", agent_name="a", status="running", created_at=1.0, prompt_kwargs={},
                               model_kwargs={}, config={}))
seq = max((e.seq for e in store.events("r")), default=0)
body = "x" * 2000
while True:
    seq += 1
    store.append([JournalEntry("r", seq, "e", {"n": seq, "body": body}, time.time())])
    say(f"acked {seq}")
