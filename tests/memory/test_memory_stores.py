"""Conversation memory: one suite run against every store (in-memory, SQLite, PostgreSQL).

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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers import postgres_dsn as _postgres_dsn
from helpers import run_face
from treadle import ScriptedModel
from treadle.compat import Agent, AssistantResponse, Function, Runner, UserQuery
from treadle.errors import ModelAuthenticationError
from treadle.memory import (
    ConversationMemory,
    DialogTurn,
    InMemoryStore,
    MemoryStore,
    PostgresMemoryStore,
    SQLiteMemoryStore,
    approx_tokens,
    default_memory_path,
)

DSN_ENV = "TREADLE_TEST_POSTGRES_DSN"


def finish(answer: str) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


def postgres_dsn() -> str:
    return _postgres_dsn("PostgreSQL memory")


@dataclass
class Backend:
    """A store under test, and how to reach the same data again (a new store, another process)."""

    kind: str
    make: Callable[[], MemoryStore]
    spec: dict[str, Any] = field(default_factory=dict)  # for a child process
    opened: list[Any] = field(default_factory=list)

    def open(self) -> Any:
        store = self.make()
        self.opened.append(store)
        return store

    @property
    def store(self) -> Any:
        return self.opened[0] if self.opened else self.open()


def make_backend(kind: str, tmp_path: Path) -> Iterator[Backend]:
    if kind == "memory":
        shared = InMemoryStore()  # nothing else can reach it: "reopening" gives the same store
        yield Backend(kind, lambda: shared)
    elif kind == "sqlite":
        path = tmp_path / "sub" / "memory.db"
        b = Backend(kind, lambda: SQLiteMemoryStore(path), {"kind": kind, "path": str(path)})
        yield b
        for s in b.opened:
            s.close()
    else:
        dsn = postgres_dsn()
        prefix = f"t{uuid.uuid4().hex[:12]}"
        b = Backend(kind, lambda: PostgresMemoryStore(dsn, table_prefix=prefix),
                    {"kind": kind, "dsn": dsn, "prefix": prefix})
        yield b
        for s in b.opened:
            s.close()
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {prefix}_turns, {prefix}_sessions, {prefix}_summaries")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request.param, tmp_path)


@pytest.fixture(params=["sqlite", "postgres"])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Stores that another process can reach."""
    yield from make_backend(request.param, tmp_path)


def texts(turns: list[DialogTurn]) -> list[tuple[str | None, str]]:
    return [(t.user_query.query_str, t.assistant_response.response_str) for t in turns]


def fill(mem: ConversationMemory, n: int, fmt: str = "{:02}") -> None:
    for i in range(n):
        mem.add_dialog_turn(f"q{fmt.format(i)}", f"a{fmt.format(i)}")


# ---------------------------------------------------------------------- the seed's contract
def test_seed_contract(backend: Backend) -> None:
    mem = ConversationMemory(backend.store)
    assert mem() == "" and mem.turns == []
    with pytest.raises(ValueError, match="No pending user query"):
        mem.add_assistant_response("orphan")
    mem.add_user_query("Capital of France?")
    with pytest.raises(ValueError, match="already a pending user query"):
        mem.add_user_query("again")
    paris = mem.add_assistant_response(AssistantResponse("Paris", metadata={"status": "success"}))
    assert isinstance(paris, str) and paris  # the seed's turn id
    mem.add_user_query(UserQuery("dropped"))
    mem.reset_pending_query()  # the runner does this before writing its turn
    spain = mem.add_user_query(UserQuery("And Spain?", metadata={"context_str": None}))
    assert mem.add_assistant_response("Madrid") == spain != paris
    italy = mem.add_dialog_turn("And Italy?", "Rome")
    turns = mem.turns
    if backend.kind == "memory":  # the SQL stores do not keep turn ids
        assert [t.id for t in turns] == [paris, spain, italy]
        conv = mem.current_conversation
        assert list(conv.dialog_turns) == [0, 1, 2] and conv.dialog_turns[1].id == spain
    assert texts(turns) == [("Capital of France?", "Paris"), ("And Spain?", "Madrid"), ("And Italy?", "Rome")]
    assert [t.order for t in turns] == [0, 1, 2]
    assert turns[0].assistant_response.metadata == {"status": "success"}
    assert turns[1].user_query.metadata == {"context_str": None}
    assert turns[0].created_at <= turns[2].created_at
    mem.add_user_query("pending when cleared")
    assert mem.clear_conversation_turns() is True
    assert mem.turns == [] and mem() == ""
    mem.add_user_query("after clear")  # the pending query went too
    mem.add_assistant_response("fresh")
    assert [t.order for t in mem.turns] == [0]


def test_rendering_shows_metadata_only_when_asked(backend: Backend) -> None:
    mem = ConversationMemory(backend.store)
    mem.add_dialog_turn(UserQuery("hi", metadata={"secret": "s3cr3t-q"}),
                        AssistantResponse("hello", metadata={"status": "success", "note": "s3cr3t-a"}))
    mem.add_dialog_turn("two\nlines", "ok")
    assert mem() == "User:\nquery: hi\nAssistant: hello\nUser:\nquery: two\nlines\nAssistant: ok"
    assert "s3cr3t" not in mem()
    assert mem(metadata_filter=["status"]) == \
        "User:\nquery: hi\nAssistant: hello\nstatus: success\nUser:\nquery: two\nlines\nAssistant: ok"


def test_odd_content_round_trips(backend: Backend) -> None:
    mem = ConversationMemory(backend.store, session_id="ünï'; DROP TABLE x; --")
    query = UserQuery("Größe? 🚀 \"quoted\" 'single' %s $1 \\n", metadata={"nested": {"a": [1, 2.5, None, True]},
                                                                            "obj": object()})
    mem.add_dialog_turn(query, AssistantResponse({"answer": 42}, metadata={"status": "success"}))
    mem.add_dialog_turn("nul\x00byte", "ok\x00")
    t, nul = mem.turns
    assert t.user_query.query_str == query.query_str
    assert t.user_query.metadata["nested"] == {"a": [1, 2.5, None, True]}
    assert t.user_query.metadata["obj"].startswith("<object object")  # not JSON: kept as its repr
    assert t.assistant_response.response_str == '{"answer": 42}'  # non-text answers are stored as JSON
    # PostgreSQL text cannot hold U+0000: it becomes U+FFFD there; the turn is kept either way
    assert nul.user_query.query_str in ("nul\x00byte", "nul\ufffdbyte")
    assert [s.session_id for s in backend.store.list_sessions()] == [mem.session_id]


# ---------------------------------------------------------------------- bounds
def test_max_turns_keeps_the_newest(backend: Backend) -> None:
    store = backend.store
    fill(ConversationMemory(store, session_id="s"), 5)
    last2 = ConversationMemory(store, session_id="s", max_turns=2)
    assert last2() == "User:\nquery: q03\nAssistant: a03\nUser:\nquery: q04\nAssistant: a04"
    assert ConversationMemory(store, session_id="s", max_turns=0)() == ""
    assert ConversationMemory(store, session_id="s", max_turns=None)().count("User:") == 5
    assert ConversationMemory(store, session_id="s")().count("User:") == 5  # default 20
    assert len(last2.turns) == 5, "the bound is on the prompt, not on what is kept"


def test_token_budget_keeps_the_newest_whole_turns(backend: Backend) -> None:
    store = backend.store
    fill(ConversationMemory(store, session_id="s"), 100)
    cost = approx_tokens("User:\nquery: q00\nAssistant: a00")
    assert cost == 8  # 31 characters

    def shown(**kw: Any) -> list[str]:
        return [line[7:] for line in ConversationMemory(store, session_id="s", **kw)().split("\n")
                if line.startswith("query: ")]

    assert shown(max_turns=None, max_tokens=3 * cost) == ["q97", "q98", "q99"]
    assert shown(max_turns=None, max_tokens=3 * cost - 1) == ["q98", "q99"], "a turn is never cut"
    assert shown(max_turns=None, max_tokens=40 * cost) == [f"q{i}" for i in range(60, 100)]  # beyond one window
    assert shown(max_turns=None, max_tokens=10_000) == [f"q{i:02}" for i in range(100)]  # the whole session
    assert shown(max_turns=2, max_tokens=3 * cost) == ["q98", "q99"], "both bounds apply"
    assert shown(max_turns=5, max_tokens=cost - 1) == [], "a newest turn over the budget leaves no history"
    assert shown(max_turns=None, max_tokens=0) == []
    ones = shown(max_turns=None, max_tokens=20, count_tokens=lambda s: 1)
    assert ones == [f"q{i}" for i in range(80, 100)]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="MemoryStore"):
        ConversationMemory(5)  # type: ignore[arg-type]  # the seed's first argument was max_turns
    with pytest.raises(ValueError, match="max_turns"):
        ConversationMemory(max_turns=-1)
    with pytest.raises(ValueError, match="max_tokens"):
        ConversationMemory(max_tokens=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="session_id"):
        ConversationMemory(session_id="")
    with pytest.raises(ValueError, match="table prefix"):
        SQLiteMemoryStore(":memory:", table_prefix="x; DROP TABLE y")


# ---------------------------------------------------------------------- sessions
def test_sessions_are_isolated_listed_and_deleted(backend: Backend) -> None:
    store = backend.store
    a, b = ConversationMemory(store), ConversationMemory(store)
    assert a.session_id != b.session_id and len(a.session_id) >= 16  # random by default
    a.add_dialog_turn("qa", "aa")
    b.add_dialog_turn("qb1", "ab1")
    b.add_dialog_turn("qb2", "ab2")
    assert a() == "User:\nquery: qa\nAssistant: aa"
    assert texts(b.turns) == [("qb1", "ab1"), ("qb2", "ab2")]
    assert [t.order for t in b.turns] == [0, 1], "each session numbers its own turns"
    listed = store.list_sessions()
    assert [(s.session_id, s.turns) for s in listed] == [(b.session_id, 2), (a.session_id, 1)], "newest first"
    assert all(s.created_at <= s.updated_at for s in listed)
    assert store.delete_session(a.session_id) is True
    assert store.delete_session(a.session_id) is False
    assert store.delete_session("never-seen") is False
    assert a.turns == [] and len(b.turns) == 2
    assert [s.session_id for s in store.list_sessions()] == [b.session_id]
    assert store.load_turns(b.session_id, 1)[0].user_query.query_str == "qb2"
    assert store.load_turns(b.session_id, 0) == [] and store.load_turns("never-seen") == []


def test_a_session_resumes_from_a_fresh_memory(backend: Backend) -> None:
    first = ConversationMemory(backend.store, session_id="abc")
    first.add_dialog_turn("one", "1")
    first.add_dialog_turn("two", "2")
    again = ConversationMemory(backend.open(), session_id="abc")  # a new store object on the same data
    assert again() == "User:\nquery: one\nAssistant: 1\nUser:\nquery: two\nAssistant: 2"
    again.add_dialog_turn("three", "3")
    assert [t.order for t in again.turns] == [0, 1, 2]
    assert texts(first.turns)[-1] == ("three", "3")
    assert ConversationMemory(backend.open(), session_id="other")() == ""


CHILD = r"""
import json, os, sys, time
from treadle.memory import ConversationMemory, PostgresMemoryStore, SQLiteMemoryStore
spec = json.loads(sys.argv[1])
if spec["kind"] == "sqlite":
    store = SQLiteMemoryStore(spec["path"])
else:
    store = PostgresMemoryStore(spec["dsn"], table_prefix=spec["prefix"])
mem = ConversationMemory(store, session_id=spec["session"], max_turns=None)
before = mem()
if spec.get("go"):  # line up with the other writers: all start writing at once
    print("ready", flush=True)
    while not os.path.exists(spec["go"]):
        time.sleep(0.001)
for i in range(spec["write"]):
    mem.add_dialog_turn(f"{spec['tag']} q{i}", f"{spec['tag']} a{i}")
store.close()
print(json.dumps(before))
"""


def child(spec: dict[str, Any], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finished(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.splitlines()[-1])


def all_at_once(specs: list[dict[str, Any]], go: Path) -> None:
    """Start a writer per spec, wait until each is ready, then let them all write together."""
    procs = [child({**spec, "go": str(go)}) for spec in specs]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.communicate(timeout=60)[1]
    go.touch()
    for p in procs:
        finished(p)


def test_a_session_resumes_in_another_process(shared_backend: Backend) -> None:
    mem = ConversationMemory(shared_backend.store, session_id="abc")
    mem.add_dialog_turn("from parent", "ok")
    seen = finished(child({**shared_backend.spec, "session": "abc", "write": 1, "tag": "child"}))
    assert seen == "User:\nquery: from parent\nAssistant: ok"
    assert texts(ConversationMemory(shared_backend.open(), session_id="abc").turns) == [
        ("from parent", "ok"), ("child q0", "child a0")]


def test_processes_writing_one_session_at_once_keep_every_turn(shared_backend: Backend, tmp_path: Path) -> None:
    shared_backend.store  # noqa: B018  # the schema exists before the children race
    all_at_once([{**shared_backend.spec, "session": "busy", "write": 25, "tag": f"p{n}"} for n in range(4)],
                tmp_path / "go")
    turns = shared_backend.open().load_turns("busy")
    assert [t.order for t in turns] == list(range(100))
    for n in range(4):
        mine = [t.user_query.query_str for t in turns if t.user_query.query_str.startswith(f"p{n} ")]
        assert mine == [f"p{n} q{i}" for i in range(25)], "each writer's turns in its own order"


def test_processes_creating_a_new_sqlite_file_at_once(tmp_path: Path) -> None:
    spec = {"kind": "sqlite", "path": str(tmp_path / "new" / "m.db"), "session": "s", "write": 3}
    procs = [child({**spec, "tag": f"p{n}"}) for n in range(4)]  # each creates the file and schema if missing
    for p in procs:
        finished(p)
    with SQLiteMemoryStore(spec["path"]) as store:
        assert len(store.load_turns("s")) == 12 and store.journal_mode == "wal"


# ---------------------------------------------------------------------- through a real Runner
async def test_runs_of_every_ending_are_recorded(backend: Backend, face: str) -> None:
    mem = ConversationMemory(backend.store, session_id="runs")
    model = ScriptedModel([finish("x"), ModelAuthenticationError("x"), finish("never"), finish("y")],
                          delay=[0, 0, 30, 0])
    runner = Runner(Agent(model=model), conversation_memory=mem)
    ok, _ = await run_face(runner, face, {"input_str": "first"})
    failed, _ = await run_face(runner, face, {"input_str": "second"})

    def cancel_once_the_model_waits() -> None:  # from a thread: works while `call` blocks this loop too
        deadline = time.monotonic() + 30  # a hang guard
        while model.calls < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        runner.cancel("run-3")

    canceller = threading.Thread(target=cancel_once_the_model_waits)
    canceller.start()
    cancelled, _ = await run_face(runner, face, {"input_str": "third"}, id="run-3")
    canceller.join()
    assert (ok.status, failed.status, cancelled.status) == ("success", "error", "cancelled")

    turns = mem.turns
    assert [t.user_query.query_str for t in turns] == ["first", "second", "third"]
    assert [t.assistant_response.metadata["status"] for t in turns] == ["success", "error", "cancelled"]
    assert [t.assistant_response.metadata["run_id"] for t in turns] == [ok.run_id, failed.run_id, "run-3"]
    assert turns[0].assistant_response.response_str == "x"
    assert turns[1].assistant_response.response_str == f"(the run ended without an answer: {failed.error})"
    assert "ModelAuthenticationError" in failed.error or "x" in failed.error
    assert turns[2].assistant_response.response_str == "(the run was cancelled before an answer)"

    last, _ = await run_face(runner, face, {"input_str": "fourth"})
    assert last.answer == "y"
    history = ("User:\nquery: first\nAssistant: x\n"
               f"User:\nquery: second\nAssistant: (the run ended without an answer: {failed.error})\n"
               "User:\nquery: third\nAssistant: (the run was cancelled before an answer)")
    assert history in model.requests[-1].messages[0]["content"], "the next run sees every ending"
    assert ConversationMemory(backend.open(), session_id="runs", max_turns=3)() == \
        history.split("\n", 3)[3] + "\nUser:\nquery: fourth\nAssistant: y"


async def test_concurrent_runs_sharing_one_memory_keep_whole_turns(backend: Backend, face: str) -> None:
    mem = ConversationMemory(backend.store, session_id="shared")
    model = ScriptedModel([lambda msgs: finish("A:" + msgs[-1]["content"])], repeat_last=True, delay=0.02)
    runner = Runner(Agent(model=model), conversation_memory=mem)
    queries = [f"q{i}" for i in range(6)]
    if face == "call":  # sync callers on several threads at once
        await asyncio.gather(*(asyncio.to_thread(runner.call, q) for q in queries))
    else:
        await asyncio.gather(*(run_face(runner, face, q) for q in queries))
    turns = mem.turns
    assert sorted(texts(turns)) == [(q, f"A:{q}") for q in queries]
    assert sorted(t.order for t in turns) == list(range(6))
    assert len({t.assistant_response.metadata["run_id"] for t in turns}) == 6


class AsyncStore:
    """A store whose methods are coroutines (each call runs the wrapped store in a thread)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    async def _call(self, name: str, *args: Any) -> Any:
        self.calls += 1
        await asyncio.sleep(0.005)  # let concurrent runs interleave
        return await asyncio.to_thread(getattr(self.inner, name), *args)

    def append_turn(self, session_id: str, turn: DialogTurn) -> Any:
        return self._call("append_turn", session_id, turn)

    def load_turns(self, session_id: str, last: int | None = None) -> Any:
        return self._call("load_turns", session_id, last)

    def list_sessions(self) -> Any:
        return self._call("list_sessions")

    def delete_session(self, session_id: str) -> Any:
        return self._call("delete_session", session_id)


async def test_an_async_store_is_awaited_and_safe_under_concurrent_runs(backend: Backend, face: str) -> None:
    store = AsyncStore(backend.store)
    mem = ConversationMemory(store, session_id="async", max_turns=None, max_tokens=10_000)
    model = ScriptedModel([lambda msgs: finish("A:" + msgs[-1]["content"])], repeat_last=True, delay=0.01)
    runner = Runner(Agent(model=model), conversation_memory=mem)
    await asyncio.gather(*(run_face(runner, face, f"q{i}") for i in range(4)))
    turns = await mem.turns
    assert sorted(texts(turns)) == [(f"q{i}", f"A:q{i}") for i in range(4)]
    assert sorted(t.order for t in turns) == [0, 1, 2, 3]
    assert (await mem()).count("User:\nquery: ") == 4
    assert isinstance(await mem.add_dialog_turn("q", "a"), str)
    assert [t.order for t in (await mem.current_conversation).dialog_turns.values()][-1] == 4
    assert await mem.clear_conversation_turns() is True and await mem() == ""
    assert store.calls > 0


# ---------------------------------------------------------------------- store specifics
def test_sqlite_file_uses_wal_and_is_created_with_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "memory.db"
    with SQLiteMemoryStore(path) as store:
        assert store.journal_mode == "wal" and path.exists()
        ConversationMemory(store, session_id="s").add_dialog_turn("q", "a")
    with pytest.raises(RuntimeError, match="closed"):
        store.load_turns("s")


def test_sqlite_store_survives_a_fork(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    store = SQLiteMemoryStore(tmp_path / "m.db")
    store.load_turns("s")  # the parent's connection is open
    pid = os.fork()
    if pid == 0:  # the child opens its own connection
        code = 0
        try:
            ConversationMemory(store, session_id="s").add_dialog_turn("from child", "ok")
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert texts(store.load_turns("s")) == [("from child", "ok")]
    store.close()


def test_default_memory_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TREADLE_MEMORY_DB", raising=False)
    path = default_memory_path()
    assert path.name == "memory.db" and path.parent.name == "treadle"
    try:
        from platformdirs import user_data_dir
    except ImportError:
        pass
    else:
        assert path == Path(user_data_dir("treadle", appauthor=False)) / "memory.db"
    monkeypatch.setenv("TREADLE_MEMORY_DB", str(tmp_path / "chat" / "m.db"))
    assert default_memory_path() == tmp_path / "chat" / "m.db"
    with SQLiteMemoryStore() as store:  # no path: the default, here redirected by the variable
        assert store.path == str(tmp_path / "chat" / "m.db") and (tmp_path / "chat" / "m.db").exists()


@pytest.fixture
def pg_backend(tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend("postgres", tmp_path)


def test_postgres_reconnects_after_the_server_drops_the_connection(pg_backend: Backend) -> None:
    import psycopg

    store = pg_backend.store
    mem = ConversationMemory(store, session_id="s")
    mem.add_dialog_turn("before", "1")
    with psycopg.connect(pg_backend.spec["dsn"], autocommit=True) as admin:  # as a server restart would
        admin.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))
    assert mem() == "User:\nquery: before\nAssistant: 1"  # a read on a dead connection: reconnected and retried
    mem.add_dialog_turn("after", "2")
    assert [t.order for t in mem.turns] == [0, 1]
    assert "@" not in repr(store), "the DSN's password stays out of reprs"


def test_postgres_store_without_a_server_fails_clearly() -> None:
    pytest.importorskip("psycopg")
    import psycopg

    with pytest.raises(psycopg.OperationalError):
        PostgresMemoryStore("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)
