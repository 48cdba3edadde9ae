"""Run the same scenario through each of the Runner's three faces."""

from __future__ import annotations

from typing import Any

from treadle import Runner


async def run_face(runner: Runner[Any], face: str, prompt: Any = "question", **kw: Any) -> tuple[Any, list[Any]]:
    """Run through one face; return (RunnerResult, every event of the run in order)."""
    events: list[Any] = []
    if face == "astream":
        sr = runner.astream(prompt, **kw)
        async for e in sr.stream_events():
            events.append(e)
        res = await sr.wait_for_completion()
        assert sr.result is res
        return res, events
    runner.event_handlers.append(events.append)
    try:
        if face == "acall":
            res = await runner.acall(prompt, **kw)
        else:
            # inside a running loop (this test is async): exercises the helper-thread path
            res = runner.call(prompt, **kw)
    finally:
        runner.event_handlers.remove(events.append)
    return res, events


def names(events: list[Any]) -> list[str]:
    """Event names, with the parsed model reply shown as 'raw' (streamed deltas are left out)."""
    from treadle import ModelDelta

    out = []
    for e in events:
        if e.type == "run_item_stream_event":
            out.append(e.name)
        elif not isinstance(e.data, ModelDelta):
            out.append("raw")
    return out


POSTGRES_DSN_ENV = "TREADLE_TEST_POSTGRES_DSN"


def postgres_dsn(what: str = "PostgreSQL") -> str:
    """The test server's DSN: a failure under CI when it is missing, a skip elsewhere."""
    import os

    import pytest

    why = ""
    dsn = os.environ.get(POSTGRES_DSN_ENV, "")
    if not dsn:
        why = f"{POSTGRES_DSN_ENV} is not set (start a server and set it with: eval \"$(bash .ci/postgres.sh)\")"
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            why = "psycopg is not installed (pip install 'treadle[postgres]')"
    if why:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{what} tests cannot run under CI: {why}", pytrace=False)
        pytest.skip(why)
    return dsn


def cut_journal(store: Any, run_id: str, keep: Any, *, status: str = "running") -> list[Any]:
    """Leave in ``run_id``'s journal only the entries ``keep(entry)`` accepts, one row each, and
    mark the run ``status`` with no result: what a process that died at that point leaves
    behind (tests of resume). Works on the SQLite and PostgreSQL stores; returns the kept entries."""
    import json

    kept = [e for e in store.events(run_id) if keep(e)]
    rows = [(run_id, e.seq, e.name, json.dumps(e.payload), e.created_at, e.key) for e in kept]
    prefix = getattr(store, "table_prefix", None)
    if prefix is None:  # SQLite
        import sqlite3

        db = sqlite3.connect(store.path, isolation_level=None, timeout=30)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM events WHERE run_id=?", (run_id,))
            db.executemany("INSERT INTO events (run_id, seq, name, payload, created_at, key) VALUES (?, ?, ?, ?, ?, ?)",
                           rows)
            db.execute("UPDATE runs SET status=?, result=NULL WHERE run_id=?", (status, run_id))
            db.execute("COMMIT")
        finally:
            db.close()
    else:
        def rewrite(conn: Any) -> None:
            with conn.transaction():
                conn.execute(f"DELETE FROM {prefix}events WHERE run_id = %s", (run_id,))
                with conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {prefix}events (run_id, seq, name, payload, created_at, key) "
                                    "VALUES (%s, %s, %s, %s::json, %s, %s)", rows)
                conn.execute(f"UPDATE {prefix}runs SET status = %s, result = NULL WHERE run_id = %s", (status, run_id))

        import psycopg

        with psycopg.connect(store.dsn, autocommit=True) as conn:  # a connection of its own, as SQLite's
            rewrite(conn)
    return kept
