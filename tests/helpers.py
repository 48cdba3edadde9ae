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
