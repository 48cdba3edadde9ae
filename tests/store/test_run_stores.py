"""Run stores: one suite run against every RunStore (SQLite, PostgreSQL), then each one's specifics.

PostgreSQL: the tests connect to $TREADLE_TEST_POSTGRES_DSN (``eval "$(bash .ci/postgres.sh)"``
starts a local server and sets it). Without it they fail under CI and are skipped elsewhere.
Each test gets its own tables (a random prefix), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import to_json

from helpers import cut_journal, run_face
from treadle import Agent, Function, JournalConflictError, Runner, ScriptedModel
from treadle.store import JournalEntry, RunRecord, open_store
from treadle.store.base import SCHEMA_VERSION

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from backends import Backend, postgres_dsn  # noqa: E402
from many_writers import STEPS, expected_names, make_agent  # noqa: E402
from store_writes import append, create_run, update_run  # noqa: E402


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


def add(a: int, b: int) -> int:
    return a + b


# ---------------------------------------------------------------------- the RunStore contract
def test_create_get_and_list_runs(backend: Backend) -> None:
    store = backend.store
    assert store.get_run("nope") is None and store.list_runs() == [] and store.events("nope") == []
    for i in range(5):
        create_run(store, RunRecord(f"r{i}", agent_name=f"agent-{i}", status="success" if i % 2 else "running",
                                   created_at=1000.0 + i, prompt_kwargs={"input_str": f"q{i}"},
                                   model_kwargs={"temperature": 0.5}, config={"max_steps": 7, "model": "m"}))
    rec = store.get_run("r3")
    assert (rec.run_id, rec.agent_name, rec.status, rec.created_at, rec.steps) == ("r3", "agent-3", "success",
                                                                                    1003.0, 0)
    assert rec.prompt_kwargs == {"input_str": "q3"} and rec.model_kwargs == {"temperature": 0.5}
    assert rec.config == {"max_steps": 7, "model": "m"} and rec.result is None and rec.usage is None
    assert rec.updated_at >= time.time() - 60

    assert [r.run_id for r in store.list_runs()] == ["r4", "r3", "r2", "r1", "r0"], "newest first"
    assert [r.run_id for r in store.list_runs(status="running")] == ["r4", "r2", "r0"]
    assert [r.run_id for r in store.list_runs(status="success", limit=1)] == ["r3"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["r4", "r3"]
    assert store.list_runs(status="cancelled") == []

    # created again: refused, the row stays as it was (a run id is never reused)
    with pytest.raises(JournalConflictError, match="already in the store"):
        create_run(store, RunRecord("r0", agent_name="other", status="running", created_at=5.0,
                                   prompt_kwargs={"input_str": "final"}, config={"max_steps": 1}))
    again = store.get_run("r0")
    assert again.prompt_kwargs == {"input_str": "q0"} and again.status == "running"
    assert (again.agent_name, again.created_at, again.config) == ("agent-0", 1000.0, {"max_steps": 7, "model": "m"})
    assert len(store.list_runs()) == 5


def test_append_orders_by_seq_never_overwrites_and_is_atomic(backend: Backend) -> None:
    store = backend.store
    create_run(store, RunRecord("a"))

    def entry(seq: int, name: str, run: str = "a", **payload: Any) -> JournalEntry:
        return JournalEntry(run, seq, name, {"seq": seq, **payload}, 100.0 + seq)

    append(store, [entry(3, "c"), entry(1, "a")])
    append(store, [entry(10, "j"), entry(2, "b"), entry(1, "b-other", run="b")])
    assert [(e.seq, e.name) for e in store.events("a")] == [(1, "a"), (2, "b"), (3, "c"), (10, "j")]
    assert [(e.run_id, e.seq, e.name, e.created_at) for e in store.events("b")] == [("b", 1, "b-other", 101.0)]

    with pytest.raises(JournalConflictError, match="same seq"):  # the same seq: refused, never replaced
        append(store, [entry(2, "b2", v=2)])
    with pytest.raises(JournalConflictError):  # twice in one batch: the batch is refused whole
        append(store, [entry(4, "d1"), entry(4, "d2", v=4)])
    append(store, [entry(4, "d2", v=4)])
    assert [(e.seq, e.name) for e in store.events("a")] == [(1, "a"), (2, "b"), (3, "c"), (4, "d2"), (10, "j")]
    assert store.events("a")[1].payload == {"seq": 2} and store.events("a")[3].payload == {"seq": 4, "v": 4}

    # a batch is written whole or not at all: its last entry is refused, so none of it lands
    bad = JournalEntry("a", 12, None, {"x": 1}, 1.0)  # type: ignore[arg-type]
    with pytest.raises(Exception, match=r"(?i)null|same seq"):
        append(store, [entry(5, "e"), entry(11, "k"), entry(1, "a-again"), bad])
    assert [(e.seq, e.name) for e in store.events("a")] == [(1, "a"), (2, "b"), (3, "c"), (4, "d2"), (10, "j")]
    append(store, [])
    append(store, [entry(5, "e")])  # the store still works after a refused batch
    assert [e.seq for e in store.events("a")] == [1, 2, 3, 4, 5, 10]


def test_renewal_keeps_a_run_whose_creation_is_still_queued(backend: Backend) -> None:
    """A lease is held from the moment a run starts, but its row is written with the run's first
    commit: a heartbeat that comes in between renews nothing and must not call the run lost
    (it used to, and 100 concurrent runs in one process were fenced with RunOwnershipLostError)."""
    from treadle.store.base import Commit
    from treadle.store.writer import GroupCommitter

    store = backend.store
    store.commit([Commit("held", None, create=RunRecord("held", owner="me/1/x", epoch=1, lease_until=1.0))])
    assert store.renew([("held", 1), ("not-written-yet", 1)], 30.0) == []
    assert store.get_run("held").lease_until > time.time() + 20, "the held lease was extended"
    store.commit([Commit("moved", None, create=RunRecord("moved", owner="me/1/y", epoch=2, lease_until=1.0))])
    assert store.renew([("moved", 1), ("held", 1), ("ghost", 3)], 30.0) == ["moved"], "an older epoch is lost"

    # the writer: a run's creation queued (not committed), its lease held, then the heartbeat
    lost: list[BaseException] = []
    w = GroupCommitter(store)
    ticket = w.submit(Commit("queued", 1, create=RunRecord("queued", owner="me/1/z", epoch=1,
                                                          lease_until=time.time() + 30)), wake=False)
    w.hold("queued", 1, 30.0, lost.append)
    w._renew()
    assert lost == [] and w.live_runs == 1
    w.flush()
    assert ticket.done and ticket.error is None and store.get_run("queued").epoch == 1
    w._renew()
    assert lost == []
    w.release("queued")
    w.close()


def test_a_batch_of_commits_refuses_only_the_colliding_ones(backend: Backend) -> None:
    """One store.commit call with many runs' commits (what the group-commit writer sends): a
    commit whose entry collides, or whose run exists already, is refused whole; the others
    land, with their run-row changes, in the order given."""
    from treadle import JournalConflictError as Conflict
    from treadle.store.base import Commit

    store = backend.store
    for r in ("r1", "r2", "r3"):
        store.commit([Commit(r, None, create=RunRecord(r, owner="me/1/x", epoch=1, lease_until=time.time() + 60))])
    store.commit([Commit("r2", 1, entries=[JournalEntry("r2", 1, "a", {"v": 1}, 1.0)])])

    def e(run: str, seq: int, v: int = 0) -> JournalEntry:
        return JournalEntry(run, seq, "x", {"v": v}, 2.0)

    out = store.commit([
        Commit("r1", 1, entries=[e("r1", 1), e("r1", 2)], fields={"steps": 1}),
        Commit("r2", 1, entries=[e("r2", 2), e("r2", 1, v=9)], fields={"steps": 7}),  # seq 1 is taken
        Commit("r3", 1, entries=[e("r3", 1)], fields={"status": "success"}, release=True),
        Commit("r4", 1, create=RunRecord("r4", owner="me/1/y", epoch=1, lease_until=time.time() + 60),
               entries=[e("r4", 1)]),
        Commit("r1", None, create=RunRecord("r1")),  # exists
        Commit("r1", 1, entries=[e("r1", 3)]),  # after its run's refused commit: refused too
        Commit("r2", 1, entries=[e("r2", 3)]),  # a run's later commit after a refused one: refused
        Commit("r4", 2, entries=[e("r4", 2)]),  # an epoch this run never had
    ])
    kinds = [type(x).__name__ if x is not None else None for x in out]
    assert kinds[:4] == [None, "JournalConflictError", None, None], kinds
    assert isinstance(out[4], Conflict) and out[5] is out[4] and out[6] is out[1], kinds
    assert kinds[7] == "RunOwnershipLostError", kinds
    assert [(x.seq, x.payload) for x in store.events("r1")] == [(1, {"v": 0}), (2, {"v": 0})]
    assert [(x.seq, x.payload) for x in store.events("r2")] == [(1, {"v": 1})], "the refused commit left nothing"
    assert [x.seq for x in store.events("r3")] == [1] and [x.seq for x in store.events("r4")] == [1]
    assert store.get_run("r1").steps == 1 and store.get_run("r2").steps == 0
    assert store.get_run("r3").status == "success" and store.get_run("r3").owner is None
    assert store.get_run("r4").owner == "me/1/y"


def test_keys_and_seqs_colliding_inside_one_group_are_refused_as_one_commit_after_another_would(
        backend: Backend) -> None:
    """Two commits of one group that carry the same key (two decisions on one call) or the same
    seq: the first lands, the second is refused — even where the group's rows go in as one
    statement (PostgreSQL) — and a refused commit's rows that did land are taken out again."""
    from treadle import JournalConflictError as Conflict
    from treadle.store.base import Commit

    store = backend.store
    store.commit([Commit("k", None, create=RunRecord("k", status="waiting_for_approval"))])

    def e(seq: int, key: str | None = None, run: str = "k") -> JournalEntry:
        return JournalEntry(run, seq, "x", {"seq": seq}, 1.0, key=key)

    out = store.commit([Commit("k", None, entries=[e(1, "decision:c1")]),
                        Commit("k", None, entries=[e(2, "decision:c1")])])  # the same key: refused
    assert out[0] is None and isinstance(out[1], Conflict), out
    out = store.commit([Commit("m", None, create=RunRecord("m"), entries=[e(5, run="m")]),  # another run: lands
                        Commit("k", None, entries=[e(3), e(4), e(1)])])  # 3 and 4 are new, 1 is taken
    assert out[0] is None and isinstance(out[1], Conflict), out
    out = store.commit([Commit("k", None, entries=[e(6)]), Commit("k", None, entries=[e(6)])])
    assert out[0] is None and isinstance(out[1], Conflict), out
    assert [(x.seq, x.key) for x in store.events("k")] == [(1, "decision:c1"), (6, None)], "nothing of the refused"
    assert store.get_run("m") is not None and [x.seq for x in store.events("m")] == [5]


def test_a_refused_commit_in_a_group_leaves_nothing_and_the_other_runs_commits_stand(backend: Backend) -> None:
    """Commit by commit within one group: run a's second commit collides on a decision key after
    its new rows went in (they are taken out again) and its third is refused with the same error,
    while run b's commits around them stand; a commit that creates a run and is then refused (a
    row that collides within it, or an epoch the new row does not carry) leaves no run row; a
    lease released by a commit is free for the unfenced commits after it in the same group."""
    from treadle import JournalConflictError as Conflict
    from treadle import RunLeasedError, RunOwnershipLostError
    from treadle.store.base import Commit

    store = backend.store

    def e(run: str, seq: int, key: str | None = None) -> JournalEntry:
        return JournalEntry(run, seq, "x", {"seq": seq}, 1.0, key=key)

    def rec(run: str, epoch: int = 1) -> RunRecord:
        return RunRecord(run, owner="me/1/x", epoch=epoch, lease_until=time.time() + 60)

    store.commit([Commit("a", 1, create=rec("a")), Commit("b", 1, create=rec("b"))])
    out = store.commit([
        Commit("a", 1, entries=[e("a", 1, "decision:c1")], fields={"steps": 1}),
        Commit("b", 1, entries=[e("b", 1)], fields={"steps": 1}),
        Commit("a", 1, entries=[e("a", 2), e("a", 3), e("a", 4, "decision:c1")], fields={"steps": 9}),
        Commit("b", 1, entries=[e("b", 2)], fields={"steps": 2}),
        Commit("a", 1, entries=[e("a", 5)]),
        Commit("n", 1, create=rec("n"), entries=[e("n", 1), e("n", 2), e("n", 1)]),  # seq 1 twice
        Commit("n", 1, entries=[e("n", 3)]),
        Commit("z", 2, create=rec("z", epoch=1), entries=[e("z", 1)]),  # not its epoch
        Commit("b", 1, entries=[e("b", 3)], fields={"status": "success"}, release=True),
        Commit("b", None, entries=[e("b", 4, "decision:late")]),  # b's lease was released just before
    ])
    assert out[0] is None and out[1] is None and out[3] is None and out[8] is None and out[9] is None, out
    assert isinstance(out[2], Conflict) and out[4] is out[2], out
    assert isinstance(out[5], Conflict) and out[6] is out[5] and isinstance(out[7], RunOwnershipLostError), out
    assert [(x.seq, x.key) for x in store.events("a")] == [(1, "decision:c1")], "a's refused rows taken out"
    assert store.get_run("a").steps == 1
    assert [x.seq for x in store.events("b")] == [1, 2, 3, 4] and store.get_run("b").steps == 2
    assert store.get_run("b").owner is None and store.get_run("b").status == "success"
    assert store.get_run("n") is None and store.events("n") == [], "the refused creation is undone"
    assert store.get_run("z") is None and store.events("z") == []
    # the same ids are free for a later group; an unfenced commit on a live run is refused
    assert store.commit([Commit("n", 1, create=rec("n"), entries=[e("n", 1)])]) == [None]
    out = store.commit([Commit("n", None, entries=[e("n", 2)]), Commit("a", 1, entries=[e("a", 2)])])
    assert isinstance(out[0], RunLeasedError) and out[1] is None, out
    assert [x.seq for x in store.events("n")] == [1] and [x.seq for x in store.events("a")] == [1, 2]


def test_a_batch_of_live_runs_steps_refuses_only_the_runs_taken_over(backend: Backend) -> None:
    """A batch made only of live runs' appends (the usual group commit, one statement on
    SQLite): a run taken over by another owner, or one with no row, loses all its commits in
    the batch; the others land. A seq taken in such a batch refuses that commit alone."""
    from treadle.store.base import Commit

    store = backend.store
    for r in ("r1", "r2", "r3"):
        store.commit([Commit(r, None, create=RunRecord(r, owner="me/1/x", epoch=1, lease_until=time.time() - 1))])
    assert store.acquire("r2", "them/2/y", 60).epoch == 2  # the lease had lapsed: another process took r2

    def e(run: str, seq: int, v: int = 0) -> JournalEntry:
        return JournalEntry(run, seq, "x", {"v": v}, 2.0)

    out = store.commit([
        Commit("r1", 1, entries=[e("r1", 1), e("r1", 2)]),
        Commit("r2", 1, entries=[e("r2", 1)]),  # the old owner's write: fenced
        Commit("r3", 1, entries=[e("r3", 1)]),
        Commit("r2", 1, entries=[e("r2", 2)]),
        Commit("r9", 1, entries=[e("r9", 1)]),  # no such run
        Commit("r1", 1, entries=[e("r1", 3)]),
    ])
    kinds = [type(x).__name__ if x is not None else None for x in out]
    assert kinds == [None, "RunOwnershipLostError", None, "RunOwnershipLostError", "RunOwnershipLostError", None]
    assert [x.seq for x in store.events("r1")] == [1, 2, 3] and [x.seq for x in store.events("r3")] == [1]
    assert store.events("r2") == [] and store.events("r9") == []
    out = store.commit([Commit("r1", 1, entries=[e("r1", 4)]), Commit("r3", 1, entries=[e("r3", 1, v=5)]),
                        Commit("r2", 2, entries=[e("r2", 1)])])  # r3's seq 1 is taken
    assert [type(x).__name__ if x is not None else None for x in out] == [None, "JournalConflictError", None]
    assert [x.seq for x in store.events("r1")] == [1, 2, 3, 4] and [x.payload for x in store.events("r3")] == [{"v": 0}]
    assert [x.seq for x in store.events("r2")] == [1]


def test_a_batch_of_new_runs_steps_and_endings_is_applied_or_refused_commit_by_commit(backend: Backend) -> None:
    """The journal's usual group commit holds new runs' rows, steps and endings (run-row changes)
    at once (a few statements for all of them on SQLite). Each commit is applied whole or refused:
    a run taken over loses its steps and its ending, and a run-row change alone is refused too; a
    run id already taken refuses that create (and that run's commits) alone; the others land."""
    from treadle.store.base import Commit

    store = backend.store

    def e(run: str, seq: int) -> JournalEntry:
        return JournalEntry(run, seq, "x", {"v": seq}, 2.0)

    def rec(run: str, **kw: Any) -> RunRecord:
        return RunRecord(run, status="running", owner="me/1/x", epoch=1, lease_until=time.time() + 60, **kw)

    store.commit([Commit("r1", 1, create=rec("r1")), Commit("r2", 1, create=rec("r2"))])
    store.renew([("r2", 1)], -1.0)  # r2's lease lapses: another process takes it over
    assert store.acquire("r2", "them/2/y", 60).epoch == 2
    out = store.commit([
        Commit("n1", 1, create=rec("n1", prompt_kwargs={"q": 1})),
        Commit("n1", 1, entries=[e("n1", 1)]),
        Commit("r1", 1, entries=[e("r1", 1)], fields={"status": "success", "steps": 1, "usage": {"requests": 1}},
               release=True),
        Commit("r2", 1, entries=[e("r2", 1)], fields={"status": "success", "steps": 1}, release=True),
        Commit("r2", 1, fields={"status": "waiting_for_approval"}),
    ])
    kinds = [type(x).__name__ if x is not None else None for x in out]
    assert kinds == [None, None, None, "RunOwnershipLostError", "RunOwnershipLostError"]
    r1, r2, n1 = store.get_run("r1"), store.get_run("r2"), store.get_run("n1")
    assert (r1.status, r1.steps, r1.usage, r1.owner) == ("success", 1, {"requests": 1}, None)
    assert (r2.status, r2.steps, r2.owner, r2.epoch) == ("running", 0, "them/2/y", 2) and store.events("r2") == []
    assert (n1.status, n1.prompt_kwargs, n1.owner, n1.epoch) == ("running", {"q": 1}, "me/1/x", 1)
    assert [x.seq for x in store.events("n1")] == [1] and [x.seq for x in store.events("r1")] == [1]
    # run-row changes alone: the stale owner's is refused, the live one's lands
    out = store.commit([Commit("r2", 1, fields={"steps": 9}), Commit("n1", 1, fields={"steps": 1})])
    assert [type(x).__name__ if x is not None else None for x in out] == ["RunOwnershipLostError", None]
    assert store.get_run("r2").steps == 0 and store.get_run("n1").steps == 1
    # a run id already taken: that create and its run's commits are refused, the others land
    out = store.commit([Commit("n1", 1, create=rec("n1", prompt_kwargs={"q": 2})),
                        Commit("n1", 1, entries=[e("n1", 2)]),
                        Commit("n2", 1, create=rec("n2")), Commit("n2", 1, entries=[e("n2", 1)])])
    assert [type(x).__name__ if x is not None else None for x in out] == ["JournalConflictError",
                                                                          "JournalConflictError", None, None]
    assert store.get_run("n1").prompt_kwargs == {"q": 1} and [x.seq for x in store.events("n1")] == [1]
    assert [x.seq for x in store.events("n2")] == [1] and store.get_run("n2").status == "running"


def test_update_run_sets_status_and_steps_and_keeps_usage_and_result_when_none(backend: Backend) -> None:
    store = backend.store
    create_run(store, RunRecord("u", prompt_kwargs={"input_str": "q"}))
    update_run(store, "u", status="running", steps=1, usage={"requests": 1, "input_tokens": 5})
    rec = store.get_run("u")
    assert (rec.status, rec.steps, rec.usage, rec.result) == ("running", 1, {"requests": 1, "input_tokens": 5}, None)
    first_update = rec.updated_at
    time.sleep(0.002)
    update_run(store, "u", status="waiting_for_approval", steps=2)
    rec = store.get_run("u")
    assert (rec.status, rec.steps, rec.usage, rec.result) == ("waiting_for_approval", 2,
                                                              {"requests": 1, "input_tokens": 5}, None)
    assert rec.updated_at > first_update
    update_run(store, "u", status="success", steps=3, result={"answer": "ä", "error": None, "status": "success"})
    rec = store.get_run("u")
    assert rec.usage == {"requests": 1, "input_tokens": 5}, "usage kept when None"
    assert rec.result == {"answer": "ä", "error": None, "status": "success"}
    update_run(store, "u", status="success", steps=3, usage={"requests": 2})
    rec = store.get_run("u")
    assert rec.usage == {"requests": 2} and rec.result["answer"] == "ä", "result kept when None"
    assert rec.prompt_kwargs == {"input_str": "q"}
    update_run(store, "ghost", status="success", steps=1)  # an unknown run: nothing happens
    assert store.get_run("ghost") is None


def test_payloads_round_trip_from_bytes_str_and_dicts(backend: Backend) -> None:
    store = backend.store
    run_id = "run-é-日本-🎉"
    data = {"zeta": "naïve café — 日本語 🎉 \u2028", "nul": "a\x00b", "quote": 'he said "hi"\n\t\\',
            "alpha": [1, 2.5, None, True, {"b": 1, "a": [], "": {}}], "big": 2**53 + 1, "empty": ""}
    create_run(store, RunRecord(run_id, agent_name="агент", prompt_kwargs={"input_str": data["zeta"], "nul": "\x00"},
                               config={"session": "ß"}))
    entries = [
        JournalEntry(run_id, 1, "dict", data, 1.5),
        JournalEntry(run_id, 2, "bytes", json.dumps(data, ensure_ascii=False).encode(), 2.25),
        JournalEntry(run_id, 3, "str", json.dumps(data), 1e9 + 0.123456),  # \u escapes
        JournalEntry(run_id, 4, "pydantic", to_json(data), time.time()),  # what the journal writes
        JournalEntry(run_id, 5, "list", [data, "x"], 5.0),
    ]
    append(store, entries)
    reopened = backend.open()
    for s in (store, reopened):
        got = s.events(run_id)
        assert [(e.run_id, e.seq, e.name, e.created_at) for e in got] == [
            (e.run_id, e.seq, e.name, e.created_at) for e in entries]
        for e in got[:4]:
            assert e.payload == data and list(e.payload) == list(data), "a dict, keys in their order"
            assert isinstance(e.payload["alpha"][4], dict)
        assert got[4].payload == [data, "x"]
        rec = s.get_run(run_id)
        assert rec.agent_name == "агент" and rec.prompt_kwargs == {"input_str": data["zeta"], "nul": "\x00"}
        assert rec.config == {"session": "ß"} and [r.run_id for r in s.list_runs()] == [run_id]


def test_schema_is_versioned_and_migrated(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    store = backend.store
    assert store.schema_version == SCHEMA_VERSION
    create_run(store, RunRecord("m", prompt_kwargs={"input_str": "kept"}))
    store.close()
    # the next version adds a column: reopening migrates once, the data stays
    module = sys.modules[type(store).__module__]
    nxt = SCHEMA_VERSION + 1
    runs = "{p}runs" if backend.kind == "postgres" else "runs"
    monkeypatch.setattr(module, "SCHEMA_VERSION", nxt)
    monkeypatch.setitem(module.MIGRATIONS, nxt, [f"ALTER TABLE {runs} ADD COLUMN note TEXT"])
    migrated = backend.open()
    assert migrated.schema_version == nxt and migrated.get_run("m").prompt_kwargs == {"input_str": "kept"}
    backend.sql("UPDATE {runs} SET note = ? WHERE run_id = ?", ("added", "m"))  # the column exists
    migrated.close()
    again = backend.open()  # already migrated: the ALTER is not run a second time
    assert again.schema_version == nxt and again.get_run("m") is not None


def test_a_reopened_store_and_a_second_one_see_everything(backend: Backend) -> None:
    first = backend.store
    create_run(first, RunRecord("x", created_at=1.0))
    append(first, [JournalEntry("x", 1, "n", b'{"k":"v"}', 1.0)])
    second = backend.open()  # open at the same time
    update_run(second, "x", status="success", steps=1, result={"answer": 1})
    append(second, [JournalEntry("x", 2, "m", "{}", 2.0)])
    assert first.get_run("x").status == "success" and [e.payload for e in first.events("x")] == [{"k": "v"}, {}]
    first.close()
    second.close()
    third = backend.open()
    assert third.get_run("x").result == {"answer": 1} and [e.name for e in third.events("x")] == ["n", "m"]
    assert open_store(third) is third
    from_url = open_store(backend.url)
    backend.opened.append(from_url)
    assert type(from_url) is type(third) and from_url.get_run("x").steps == 1


# ---------------------------------------------------------------------- through a real Runner
async def test_a_run_is_journaled(backend: Backend, face: str) -> None:
    store = backend.store
    runner = Runner(Agent(tools=[add], model=ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 2}),
                                                            final("3")])), store=store)
    res, _ = await run_face(runner, face, "q", id="run-1")
    assert res.ok and res.answer == "3"
    for s in (store, backend.open()):
        assert [e.name for e in s.events("run-1")] == expected_names(1)
        seqs = [e.seq for e in s.events("run-1")]
        assert seqs == sorted(set(seqs))
        rec = s.get_run("run-1")
        assert rec.status == "success" and rec.steps == 1 and rec.result["answer"] == "3"
        assert rec.prompt_kwargs["input_str"] == "q" and rec.usage["requests"] == 2
        assert [r.run_id for r in s.list_runs()] == ["run-1"]
    n = len(backend.store.events("run-1"))
    again = await resume_face(runner, face, "run-1")  # ended: the recorded result, nothing runs
    assert (again.status, again.answer, again.run_id) == ("success", "3", "run-1")
    assert len(backend.store.events("run-1")) == n


async def test_the_journal_reads_back_every_event_as_it_was_streamed(backend: Backend) -> None:
    """One row an event, its payload the streamed event's JSON, whole, in order — also for a
    resumed run and an error step; each entry decodes to its typed record and encodes back."""
    from treadle.models.base import ModelDelta
    from treadle.store import records
    from treadle.store.records import event_json as _json

    def journaled(e: Any) -> bool:  # streamed pieces of a reply are not journaled
        return type(getattr(e, "data", None)) is not ModelDelta

    store = backend.store
    model = ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 2}), Function(name="nope", kwargs={}),
                           Function(name="add", kwargs={"a": "x"}), final("3")])
    runner = Runner(Agent(tools=[add], model=model), store=store)
    stream = runner.astream("q", id="whole")
    streamed = [json.loads(_json(e)) async for e in stream.stream_events() if journaled(e)]
    res = await stream.wait_for_completion()
    assert res.ok and len(res.step_history) == 3
    for s in (store, backend.open()):
        entries = s.events("whole")
        assert [e.payload for e in entries] == streamed
        assert entries[-1].payload["item"]["data"]["step_history"] == [
            e["item"]["data"] for e in streamed if e.get("name") == "agent.step_complete"]
    if backend.kind == "sqlite":  # the rows as written
        import sqlite3

        with sqlite3.connect(Path(store.path)) as db:
            rows = db.execute("SELECT seq, name, payload FROM events WHERE run_id = 'whole' ORDER BY seq").fetchall()
        assert [json.loads(p) for _, _, p in rows] == streamed, "one readable JSON event a row"
    kinds = {records.Reply, records.CallStart, records.CallComplete, records.StepComplete, records.End}
    for e in store.events("whole"):
        assert type(e.record) in kinds and json.loads(records.encode(e.record)) == e.payload

    # a resumed run: cut after the first tool call started, then resumed to the end
    start = next(e.seq for e in store.events("whole") if e.name == "agent.tool_call_start")
    cut_journal(store, "whole", lambda e: e.seq <= start)
    again = Runner(Agent(tools=[add], model=ScriptedModel([Function(name="add", kwargs={"a": 2, "b": 2}),
                                                           final("4")])), store=store)
    stream = again.astream_resume("whole")
    streamed2 = [json.loads(_json(e)) async for e in stream.stream_events() if journaled(e)]
    res2 = await stream.wait_for_completion()
    assert res2.ok and res2.answer == "4"
    entries = backend.open().events("whole")
    kept = [e for e in streamed if e.get("seq", 0) <= start]
    assert [e.payload for e in entries] == kept + streamed2
    assert entries[-1].payload == streamed2[-1] and len(entries[-1].payload["item"]["data"]["step_history"]) == 2


async def test_a_determined_reply_keeps_model_ran_finish_reason_and_its_count_in_the_journal(backend: Backend) -> None:
    """What issue #34 added to a reply (``model_ran``, ``finish_reason``, ``Usage.determined_replies``)
    is journaled, read back on the typed records, and counted again by a resumed run."""
    from treadle.models import ModelResponse
    from treadle.store import records
    from treadle.types import Usage

    def determined(fn: Function, why: str) -> ModelResponse:
        return ModelResponse(tool_calls=[fn], usage=Usage(determined_replies=1), model_ran=False, finish_reason=why)

    def script() -> ScriptedModel:
        return ScriptedModel([determined(Function(name="add", kwargs={"a": 1, "b": 2}), "tool_call"),
                              Function(name="add", kwargs={"a": 3, "b": 4}), determined(final("10"), "stop")],
                             per_run=True)

    res = await Runner(Agent(tools=[add], model=script()), store=backend.store).acall("q", id="det")
    assert res.ok and (res.usage.determined_replies, res.usage.requests) == (2, 1)
    entries = backend.open().events("det")
    replies = [e.record for e in entries if isinstance(e.record, records.Reply)]
    assert [(r.model_ran, r.finish_reason, r.usage.usage().determined_replies) for r in replies] == [
        (False, "tool_call", 1), (True, None, 0), (False, "stop", 1)]
    assert backend.open().get_run("det").usage["determined_replies"] == 2
    again = await Runner(Agent(tools=[add], model=script()), store=backend.store).aresume("det")
    assert again.usage.determined_replies == 2 and [s.usage.determined_replies for s in again.step_history] == [1, 0]

    # cut after the second step's call started: the resumed run keeps the first step's count
    start = [e.seq for e in entries if e.name == "agent.tool_call_start"][1]
    cut_journal(backend.store, "det", lambda e: e.seq <= start)
    resumed = await Runner(Agent(tools=[add], model=ScriptedModel([determined(final("10"), "stop")])),
                           store=backend.store).aresume("det")
    assert resumed.ok and resumed.step_history[0].usage.determined_replies == 1
    assert resumed.usage.determined_replies == 2

async def resume_face(runner: Runner[Any], face: str, run_id: str) -> Any:
    if face == "astream":
        sr = runner.astream_resume(run_id)
        events = [e async for e in sr.stream_events()]
        assert events
        return await sr.wait_for_completion()
    if face == "acall":
        return await runner.aresume(run_id)
    return runner.resume(run_id)  # inside a running loop: the helper-thread path


async def test_an_interrupted_run_resumes_from_the_store(backend: Backend, face: str) -> None:
    ran: list[str] = []

    def counted_add(a: int, b: int) -> int:
        ran.append("add")
        return a + b

    async def hang(x: int) -> str:
        ran.append("hang")
        await asyncio.sleep(30)
        return "never"

    def make_runner(store: Any) -> Runner[Any]:
        model = ScriptedModel([Function(id="c0", name="counted_add", kwargs={"a": 1, "b": 2}),
                               Function(id="c1", name="hang", kwargs={"x": 1}), final("ok")], per_run=True)
        return Runner(Agent(tools=[counted_add, hang], model=model), store=store)

    first = make_runner(backend.store)
    task = asyncio.ensure_future(first.acall("go", id="r"))
    deadline = time.monotonic() + 10
    while "hang" not in ran and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
    task.cancel()  # an outside cancel, like a dying process: the journal keeps the started call
    with pytest.raises(asyncio.CancelledError):
        await task
    # make it look like the process died mid-call: drop what came after the start
    start = next(e.seq for e in backend.store.events("r")
                 if e.name == "agent.tool_call_start" and e.payload["item"]["id"] == "c1")
    cut_journal(backend.store, "r", lambda e: e.seq <= start)

    store = backend.open()  # as a new process would
    second = make_runner(store)
    res = await resume_face(second, face, "r")
    assert res.status == "success" and res.answer == "ok"
    assert ran == ["add", "hang"], "the finished step is not re-run, the interrupted call is not repeated"
    assert [r.step for r in second.agent.model.requests] == [2], "one model call: the one after the cut"
    assert res.step_history[0].observation == 3
    assert "interrupted" in res.step_history[1].observation
    rec = store.get_run("r")
    assert rec.status == "success" and rec.steps == 2 and rec.result["answer"] == "ok"
    events = store.events("r")
    assert [e.seq for e in events] == sorted({e.seq for e in events}) and events[0].seq <= start < events[-1].seq
    names = [e.name for e in events]
    assert names.count("agent.tool_call_start") == 2 and names.count("agent.step_complete") == 2
    assert names[-1] == "agent.execution_complete" and names.count("agent.execution_complete") == 1
    again = await resume_face(second, face, "r")  # ended: the recorded result, no model call, no tool
    assert (again.status, again.answer) == ("success", "ok") and ran == ["add", "hang"]
    assert [r.step for r in second.agent.model.requests] == [2] and len(store.events("r")) == len(events)


def check_complete(store: Any, run_ids: list[str]) -> None:
    """Every run finished and journaled event by event."""
    records = {r.run_id: r for r in store.list_runs(limit=10_000)}
    assert sorted(records) == sorted(run_ids)
    assert {(r.status, r.steps) for r in records.values()} == {("success", STEPS)}
    want = expected_names()
    for run_id in run_ids:
        events = store.events(run_id)
        assert [e.name for e in events] == want, run_id
        assert [e.seq for e in events] == sorted({e.seq for e in events}), run_id
        steps = [e.payload["item"]["data"]["step"] for e in events if e.name == "agent.step_complete"]
        assert steps == list(range(STEPS)), run_id


async def test_200_concurrent_runs_write_one_store(backend: Backend) -> None:
    runner = Runner(make_agent(delay=0.001), store=backend.store)
    ids = [f"c{i:03}" for i in range(200)]
    t0 = time.perf_counter()
    results = await asyncio.gather(*(runner.acall(f"q{i}", id=run_id) for i, run_id in enumerate(ids)))
    elapsed = time.perf_counter() - t0
    assert [r.status for r in results] == ["success"] * 200, [r.error for r in results if not r.ok][:3]
    check_complete(backend.open(), ids)
    print(f"\n{backend.kind}: 200 concurrent runs x {STEPS} steps in {elapsed:.2f} s")


async def test_runs_on_many_threads_share_one_store(backend: Backend) -> None:
    runner = Runner(make_agent(delay=0.001), store=backend.store)
    ids = [f"t{i:02}" for i in range(24)]
    results = await asyncio.gather(*(asyncio.to_thread(runner.call, f"q{i}", id=run_id)
                                     for i, run_id in enumerate(ids)))
    assert {r.status for r in results} == {"success"}
    check_complete(backend.store, ids)


def test_processes_write_one_store_at_once(backend: Backend, tmp_path: Path) -> None:
    """4 processes x 50 concurrent runs; for SQLite the file does not exist until they create it."""
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, str(HERE / "many_writers.py"), backend.url, str(n * 50), "50", str(go)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(4)]
    time.sleep(0.3)  # let them import and open the store, then start them together
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in outs]
    check_complete(backend.open(), [f"w{i:04}" for i in range(200)])


# ---------------------------------------------------------------------- PostgreSQL specifics
def test_postgres_reconnects_after_the_server_drops_the_connection(pg_backend: Backend) -> None:
    import psycopg

    store = pg_backend.store
    create_run(store, RunRecord("r", created_at=1.0))

    def drop() -> None:  # as a server restart would
        with psycopg.connect(postgres_dsn(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))

    drop()
    append(store, [JournalEntry("r", 1, "n", {"a": 1}, 1.0)])  # a write: sent again on a new one
    drop()
    assert [e.payload for e in store.events("r")] == [{"a": 1}]  # a read
    drop()
    update_run(store, "r", status="success", steps=1)
    assert store.get_run("r").status == "success"
    assert "treadle_test@" not in repr(store) and ":treadle_test" not in repr(store), "no password in reprs"
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.get_run("r")


def test_postgres_schema_created_by_many_at_once_and_newer_versions_refused(pg_backend: Backend) -> None:
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            pg_backend.open()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(pg_backend.opened) == 6
    assert {s.schema_version for s in pg_backend.opened} == {SCHEMA_VERSION}
    pg_backend.sql("UPDATE {meta} SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(RuntimeError, match="newer"):
        pg_backend.open()


def test_postgres_url_big_batches_and_bad_input(pg_backend: Backend) -> None:
    from treadle.store.postgres import PostgresRunStore

    store = open_store(pg_backend.url)  # ?table_prefix= picks the tables; the rest of the URL goes to libpq
    pg_backend.opened.append(store)
    assert isinstance(store, PostgresRunStore) and store.table_prefix == pg_backend.tables["runs"][:-4]
    append(store, [JournalEntry("big", i, "n", {"i": i}, float(i)) for i in range(25_000)])
    assert [e.payload["i"] for e in store.events("big")] == list(range(25_000))
    with pytest.raises(ValueError, match="plain identifier"):
        PostgresRunStore(postgres_dsn(), table_prefix="x; DROP TABLE y")


def test_postgres_store_without_a_server_fails_clearly() -> None:
    pytest.importorskip("psycopg")
    import psycopg

    from treadle.store.postgres import PostgresRunStore

    with pytest.raises(psycopg.OperationalError):
        PostgresRunStore("postgresql://nobody@127.0.0.1:1/none", connect_timeout=1)


def test_the_stores_do_not_import_psycopg_until_used() -> None:
    code = ("import sys, treadle, treadle.store, treadle.store.postgres; from treadle.store import open_store; "
            "assert 'psycopg' not in sys.modules, 'psycopg imported early'")
    subprocess.run([sys.executable, "-c", code], check=True)

