"""Fuzzing the stores' group commit against "one commit after another".

A group of commits (new runs' rows, steps, run-row changes, endings, each with its lease's
epoch) is one transaction; its outcome must be that of committing them one by one, each in a
transaction of its own, a run's commits after a refused one refused too (the reference: a
SQLite store given one commit at a time). Hypothesis builds groups with runs taken over by
another owner, runs that do not exist, run ids already taken and seqs already taken, and
applies each group to a store under test and to the reference, both in the same state: the
same commits must be refused with the same errors, and the stores must end the same.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from treadle.store import SQLiteRunStore
from treadle.store.base import Commit, JournalEntry, RunRecord

RUNS = ["a", "b", "c", "d", "e"]  # a, b, c exist (c was taken over: epoch 2); d, e do not


sys.path.insert(0, str(Path(__file__).parent.parent / "store"))
from backends import Backend, make_backend  # noqa: E402


def _setup(store: Any) -> Any:
    for r in ("a", "b", "c"):
        store.commit([Commit(r, None, create=RunRecord(r, status="running", owner="me/1/x", epoch=1,
                                                       lease_until=time.time() - 1))])
        store.commit([Commit(r, 1, entries=[JournalEntry(r, 1, "x", {"v": "first"}, 1.0)])])
    assert store.acquire("c", "them/2/y", 60).epoch == 2
    return store


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request.param, tmp_path)


@st.composite
def groups(draw: Any) -> list[Commit]:
    # mostly one writer per run (one epoch a run), its seqs one after another from where it believes the
    # run is (seq 1 is taken in a, b and c: a writer starting there collides)
    epochs = {r: draw(st.sampled_from([1, 1, 2])) for r in RUNS}
    seqs = {r: draw(st.sampled_from([1, 2, 2])) for r in RUNS}
    out = []
    for _ in range(draw(st.integers(1, 7))):
        run = draw(st.sampled_from(RUNS))
        epoch = epochs[run] if draw(st.integers(0, 9)) else 3 - epochs[run]  # now and then: another writer's
        create = None
        if draw(st.integers(0, 3)) == 0:
            create = RunRecord(run, status="running", owner="me/1/z", lease_until=time.time() + 60,
                               epoch=epoch if draw(st.integers(0, 5)) else 3 - epoch, prompt_kwargs={"q": run})
        first, n = seqs[run], draw(st.integers(0, 2))
        seqs[run] += n
        entries = [JournalEntry(run, seq, "x", {"v": draw(st.integers(0, 9))}, 2.0) for seq in range(first, first + n)]
        fields: dict[str, Any] = {}
        if draw(st.booleans()):
            fields = {"status": draw(st.sampled_from(["running", "success", "waiting_for_approval"])),
                      "steps": draw(st.integers(0, 5))}
            if draw(st.booleans()):
                fields["usage"] = {"requests": draw(st.integers(0, 3))}
        out.append(Commit(run, epoch, entries, fields, create, draw(st.booleans())))
    return out


def _state(store: Any) -> dict[str, Any]:
    runs = {}
    for r in RUNS:
        rec = store.get_run(r)
        runs[r] = None if rec is None else (rec.status, rec.steps, rec.owner, rec.epoch, rec.usage, rec.prompt_kwargs)
    return {"runs": runs, "events": {r: [(e.seq, e.payload) for e in store.events(r)] for r in RUNS}}


def _new(run: str) -> RunRecord:
    return RunRecord(run, status="running", owner="me/1/z", epoch=1, lease_until=time.time() + 60)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(group=groups())
# the cases that tell joined statements from one-by-one, always tried:
@example(group=[Commit("c", 1, [], {"status": "success", "steps": 1})])  # a taken-over run's row change alone
@example(group=[Commit("c", 1, [JournalEntry("c", 2, "x", {}, 2.0)], {"steps": 1}, None, True)])  # its ending
@example(group=[Commit("b", 1, [JournalEntry("b", 2, "x", {}, 2.0)]),
                Commit("a", 1, [JournalEntry("a", 1, "x", {}, 2.0)])])  # a seq taken
@example(group=[Commit("d", 1), Commit("d", 1, create=_new("d"))])  # a commit before its run's row
@example(group=[Commit("d", 1, [JournalEntry("d", 1, "x", {}, 2.0)]), Commit("d", 1, create=_new("d"))])
@example(group=[Commit("d", 1, create=_new("d")), Commit("a", 1, create=_new("a")),
                Commit("d", 1, [], {"steps": 2})])  # a run id taken
@example(group=[Commit("c", 1, [JournalEntry("c", 2, "x", {}, 2.0)]),
                Commit("c", 2, [JournalEntry("c", 3, "x", {}, 2.0)])])  # a run at two epochs
@example(group=[Commit("c", 1, [], {"steps": 1}), Commit("c", 2, [], {"steps": 2})])
@example(group=[Commit("d", 2, [JournalEntry("d", 1, "x", {}, 2.0)], create=_new("d"))])  # created at epoch 1
@example(group=[Commit("d", 2, create=_new("d"))])
def test_a_group_lands_or_is_refused_as_commit_by_commit_would(backend: Backend, group: list[Commit]) -> None:
    store = backend.store
    backend.sql("DELETE FROM {events}")
    backend.sql("DELETE FROM {runs}")
    _setup(store)
    with tempfile.TemporaryDirectory() as tmp:
        each = _setup(SQLiteRunStore(str(Path(tmp) / "each.db")))
        try:
            got = store.commit(group)
            want: list[Any] = []
            failed: dict[str, Any] = {}
            for c in group:  # one commit after another, each a transaction of its own
                err = failed.get(c.run_id) or each.commit([c])[0]
                if err is not None:
                    err = failed.setdefault(c.run_id, err)
                want.append(err)
            assert [type(x).__name__ for x in got] == [type(x).__name__ for x in want]
            assert _state(store) == _state(each)
        finally:
            each.close()
