"""Journals written by schemas 3 and 4 (a commit's entries in one row, positional values,
compacted events: ``fixtures/make_fixtures.py``) are brought to one JSON event a row when a
store opens them, and read back, resume and replay as before, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from treadle import Runner
from treadle.store import records
from treadle.store.base import SCHEMA_VERSION

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

from journal_agents import make_agent  # noqa: E402

EXPECTED = json.loads((FIXTURES / "journal_events.json").read_text())


def _old_rows(file: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[str]]:
    db = sqlite3.connect(FIXTURES / file)
    try:
        cols = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
        runs = db.execute(f"SELECT {', '.join(cols)} FROM runs").fetchall()
        events = db.execute("SELECT run_id, seq, name, payload, created_at, key FROM events").fetchall()
    finally:
        db.close()
    return runs, events, cols


def _install(backend: Any, file: str, version: int, tmp_path: Path) -> Any:
    """The backend holding the fixture journal ``file`` (of schema ``version``), not opened yet."""
    if backend.kind == "sqlite":
        path = Path(backend.url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / file, path)
    else:  # the same rows, in tables of that schema
        backend.open().close()
        backend.opened.clear()
        runs, events, cols = _old_rows(file)
        backend.sql("DELETE FROM {events}")
        backend.sql("UPDATE {meta} SET value = ? WHERE key = 'schema_version'", (str(version),))
        for r in runs:
            backend.sql(f"INSERT INTO {{runs}} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", r)
        for e in events:
            backend.sql("INSERT INTO {events} (run_id, seq, name, payload, created_at, key) VALUES (?, ?, ?, ?, ?, ?)",
                        e)
    return backend


@pytest.fixture(params=[3, 4])
def old_journal(request: pytest.FixtureRequest, backend: Any, tmp_path: Path) -> Any:
    """The backend holding the fixture journal of schema ``request.param``, not opened yet."""
    return _install(backend, f"journal_v{request.param}.db", request.param, tmp_path)


def test_an_old_journal_is_migrated_to_one_json_event_a_row(old_journal: Any) -> None:
    store = old_journal.open()
    assert store.schema_version == SCHEMA_VERSION
    for run_id, expected in EXPECTED.items():
        entries = store.events(run_id)
        assert [[e.seq, e.name, e.payload, e.key] for e in entries] == [[s, n, p, k] for s, n, p, _, k in expected]
        assert [e.created_at for e in entries] == pytest.approx([c for _, _, _, c, _ in expected], abs=1e-5)
        for e in entries:
            assert json.loads(records.encode(e.record)) == e.payload
            assert not isinstance(e.record, records.OtherRecord)
    if old_journal.kind == "sqlite":  # readable with the sqlite3 CLI: one JSON event a row
        db = sqlite3.connect(store.path)
        rows = db.execute("SELECT seq, name, payload FROM events WHERE run_id='ended' ORDER BY seq").fetchall()
        db.close()
        assert [r[1] for r in rows] == [e[1] for e in EXPECTED["ended"]]
        assert all(json.loads(p) for _, _, p in rows)
    again = old_journal.open()  # opened again: nothing left to migrate
    assert [e.payload for e in again.events("ended")] == [e[2] for e in EXPECTED["ended"]]


async def test_runs_of_an_old_journal_resume_and_replay(old_journal: Any) -> None:
    runner = Runner(make_agent(), store=old_journal.url)
    ended = await runner.aresume("ended")  # ended: its recorded result, nothing runs
    assert (ended.status, ended.answer) == ("success", 10)
    assert [s.observation for s in ended.step_history] == [3, 7]
    report = await runner.areplay("ended")
    assert report.same and report.steps == 2

    cut = await runner.aresume("cut")  # died inside `slow`: not run again, the model is told
    assert cut.status == "success" and cut.answer == 11
    assert cut.step_history[0].observation == 11
    assert "interrupted" in str(cut.step_history[1].observation)

    approved = await Runner(make_agent(), store=old_journal.url, suspend_for_approval=True).aresume("suspended")
    assert approved.status == "success" and approved.step_history[0].observation == "paid 5 to bob"

    forked = await Runner(make_agent(), store=old_journal.url).afork("ended", at_step=1)
    assert forked.ok and [s.observation for s in forked.step_history][:1] == [3]


def test_a_journal_with_determined_replies_keeps_them_through_the_migration(backend: Any, tmp_path: Path) -> None:
    """A schema-4 journal written after issue #34 (``make_fixture_34.py``: a reply's positional
    values carry ``finish_reason`` and ``model_ran``, its usage ``determined_replies``) migrates
    to what that treadle read back, and the typed records carry the three fields."""
    expected = json.loads((FIXTURES / "journal_events_34.json").read_text())
    store = _install(backend, "journal_v4_34.db", 4, tmp_path).open()
    assert store.schema_version == SCHEMA_VERSION
    for run_id, rows in expected.items():
        entries = store.events(run_id)
        assert [[e.seq, e.name, e.payload, e.key] for e in entries] == [[s, n, p, k] for s, n, p, _, k in rows]
        for e in entries:
            assert json.loads(records.encode(e.record)) == e.payload
    replies = [e.record for e in store.events("guess") if isinstance(e.record, records.Reply)]
    assert [(r.model_ran, r.finish_reason) for r in replies] == [(False, "tool_call"), (True, None), (False, "stop")]
    assert [r.usage.usage().determined_replies for r in replies if r.usage] == [1, 0, 1]
    steps = [e.record.item.data for e in store.events("guess") if isinstance(e.record, records.StepComplete)]
    assert [s.step_output().usage.determined_replies for s in steps] == [1, 0]


async def test_runs_with_determined_replies_resume_with_their_count_after_the_migration(backend: Any,
                                                                                         tmp_path: Path) -> None:
    url = _install(backend, "journal_v4_34.db", 4, tmp_path).url
    runner = Runner(make_agent(), store=url)
    ended = await runner.aresume("guess")  # its recorded result: two determined replies, one request
    assert (ended.status, ended.answer) == ("success", 8)
    assert (ended.usage.determined_replies, ended.usage.requests) == (2, 1)
    assert [s.usage.determined_replies for s in ended.step_history] == [1, 0]

    cut = await runner.aresume("guess-cut")  # died inside `slow`; the first step's determined reply is kept
    assert cut.status == "success" and cut.answer == 8
    assert "interrupted" in str(cut.step_history[1].observation)
    assert cut.step_history[0].usage.determined_replies == 1
    assert cut.usage.determined_replies == 2  # the journaled one and the answer given on resume
