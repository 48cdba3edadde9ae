"""WAL checkpoints off the runs' path, for the SQLite store.

SQLite's own automatic checkpoint runs inside the commit that crosses the WAL's size limit:
that commit (and the run awaiting it) pays for copying the WAL into the database and two
fsyncs. The store turns it off on its connection and asks this thread instead, which
checkpoints on a connection of its own; SQLite releases the GIL while it works, so on a
machine with two cores the runs go on meanwhile. SQLite's own checkpoint stays on as a
safety net, at ``SAFETY_NET`` pages (twice the size this thread lets the WAL reach): it counts
the WAL's real frames, so it also bounds a WAL that many short-lived processes grow, none of
them writing enough to ask this thread, or one whose thread could not run. A PASSIVE checkpoint never blocks a
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
SAFETY_NET = 2 * CATCH_UP * WAL_PAGES  # the store connection's wal_autocheckpoint
IDLE_EXIT = 30.0  # seconds without a request before the thread ends (the next request starts another)


class Checkpointer:
    """Checkpoints one database file's WAL on a thread of its own, when asked (``wrote``)."""

    def __init__(self, path: str, busy_timeout_ms: int, lock: threading.Lock) -> None:
        self.path = path
        self.lock = lock  # the store's: held, no commit of this process is in the way
        self.busy_timeout_ms = busy_timeout_ms
        self.checkpoints = 0  # made so far (for tests)
        self._pages = 0.0  # WAL pages written since the last request, about
        self._mutex = threading.Lock()  # guards _thread, _pending, _closed
        self._wake = threading.Event()
        self._pending = False  # a checkpoint was asked for and not started yet
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
            try:
                self.request()
            except Exception as e:  # no thread to be had: SQLite's own checkpoint (the safety net) stays
                logger.warning("WAL checkpoint thread for %s not started: %s: %s", self.path, type(e).__name__, e)

    def request(self) -> None:
        if self._pid != os.getpid():  # in a forked child: the parent's thread and lock are not ours
            self._pid = os.getpid()
            self._mutex, self._wake, self._thread = threading.Lock(), threading.Event(), None
        with self._mutex:
            if self._closed:
                return
            self._pending = True
            thread = self._thread
            if thread is None or not thread.is_alive():  # the first request, or the last thread ended
                thread = threading.Thread(target=self._work, args=(self._wake,), name="treadle-sqlite-checkpoint",
                                          daemon=True)
                thread.start()
                self._thread = thread
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

    def _work(self, wake: threading.Event) -> None:
        db = None
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                 timeout=self.busy_timeout_ms / 1000)
            while True:
                wake.wait(IDLE_EXIT)
                with self._mutex:
                    wake.clear()
                    if self._closed or not self._pending:  # closed, or idle for IDLE_EXIT s
                        return
                    self._pending = False
                self.checkpoint(db)
        except Exception as e:  # the file cannot be opened...: the next request starts another thread
            logger.warning("WAL checkpoint thread for %s stopped: %s: %s", self.path, type(e).__name__, e)
        finally:
            with self._mutex:
                if self._thread is threading.current_thread():
                    self._thread = None
            if db is not None:
                db.close()

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            thread = self._thread
            self._wake.set()
        if thread is not None and thread is not threading.current_thread() and self._pid == os.getpid():
            thread.join(timeout=5)
