"""WAL checkpoints off the runs' path, for the SQLite store.

SQLite's own automatic checkpoint runs inside the commit that crosses the WAL's size limit:
that commit (and the run awaiting it) pays for copying the WAL into the database and two
fsyncs. The store turns it off on its connection and asks this thread instead, which
checkpoints on a connection of its own; SQLite releases the GIL while it works, so on a
machine with two cores the runs go on meanwhile. A PASSIVE checkpoint never blocks a
writer; the WAL starts over from its beginning only once a checkpoint has caught up with
it, which writes that keep coming can prevent: when the WAL has grown past
``CATCH_UP`` x ``WAL_PAGES`` frames, the thread checkpoints again with the store's writes
held (the few frames written meanwhile), so the next commit starts the WAL over.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

__all__ = ["Checkpointer"]

logger = logging.getLogger("treadle")
WAL_PAGES = 1000  # about how many pages the WAL grows by between checkpoints (SQLite's own default)
CATCH_UP = 3
PAGE = 4096


class Checkpointer:
    """Checkpoints one database file's WAL on a thread of its own, when asked (``wrote``)."""

    def __init__(self, path: str, busy_timeout_ms: int, lock: threading.Lock) -> None:
        self.path = path
        self.lock = lock  # the store's: held, no commit of this process is in the way
        self.busy_timeout_ms = busy_timeout_ms
        self.checkpoints = 0  # made so far (for tests)
        self._pages = 0.0  # WAL pages written since the last request, about
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def wrote(self, rows: int, nbytes: int) -> None:
        """A commit wrote ``rows`` rows holding ``nbytes`` bytes: ask for a checkpoint when the
        WAL has grown by about ``WAL_PAGES`` pages (each commit writes a table leaf, an index
        leaf and often a run row's page)."""
        self._pages += 3 + rows * 0.1 + nbytes / PAGE
        if self._pages >= WAL_PAGES:
            self._pages = 0.0
            self.request()

    def request(self) -> None:
        if self._closed:
            return
        if self._thread is None or self._pid != os.getpid():  # first time, or in a forked child
            self._pid = os.getpid()
            self._wake = threading.Event()
            self._thread = threading.Thread(target=self._work, name="treadle-sqlite-checkpoint", daemon=True)
            self._thread.start()
        self._wake.set()

    def checkpoint(self, db: sqlite3.Connection) -> None:
        try:
            # frames: the WAL's length when the checkpoint began (commits made meanwhile add more)
            frames = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0][1]  # all: the statement ends
            if frames >= CATCH_UP * WAL_PAGES:
                with self.lock:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as e:  # busy or locked: the next request tries again
            logger.debug("WAL checkpoint of %s skipped: %s", self.path, e)

    def _work(self) -> None:
        wake = self._wake
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                             timeout=self.busy_timeout_ms / 1000)
        try:
            while True:
                wake.wait()
                wake.clear()
                if self._closed:
                    return
                self.checkpoint(db)
        finally:
            db.close()

    def close(self) -> None:
        self._closed = True
        thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread() and self._pid == os.getpid():
            thread.join(timeout=5)
