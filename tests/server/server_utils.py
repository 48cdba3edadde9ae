"""Serving an app on a loopback port for the server tests, and reading a served journal."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def wait_journaled(home: Path, run_id: str, status: str, timeout: float = 10) -> None:
    """Until the journal of the `treadle serve` whose TREADLE_HOME is ``home`` gives the run
    ``status`` (a run's state reaches the journal a little after its events reach a reader)."""
    from treadle.store import SQLiteRunStore

    journal = SQLiteRunStore(home / "runs.db")
    deadline = time.monotonic() + timeout
    while (record := journal.get_run(run_id)) is None or record.status != status:
        assert time.monotonic() < deadline, record
        time.sleep(0.05)
