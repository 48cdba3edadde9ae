"""Durable runs: the journal, resume after a crash, and the guarantees around tool calls."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import cut_journal
from treadle import Agent, Function, FunctionTool, Runner, ScriptedModel, UserError
from treadle.store import SQLiteRunStore
from treadle.store.base import SCHEMA_VERSION

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from crash_worker import STEPS, make_agent  # noqa: E402


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


def add(a: int, b: int) -> int:
    return a + b


async def test_every_step_is_journaled(tmp_path: Path) -> None:
    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    runner = Runner(Agent(tools=[add], model=ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 2}),
                                                            final("3")])), store=store)
    res = await runner.acall("q", id="run-1")
    names = [e.name for e in store.events("run-1")]
    assert names == ["raw", "agent.tool_call_start", "agent.tool_call_complete", "agent.step_complete", "raw",
                     "agent.execution_complete"]
    rec = store.get_run("run-1")
    assert rec.status == "success" and rec.steps == 1 and rec.result["answer"] == "3"
    assert rec.prompt_kwargs["input_str"] == "q" and rec.usage["requests"] == 2
    assert rec.config["max_steps"] == 10 and rec.config["memory_session_id"] is None
    assert [r.run_id for r in store.list_runs()] == ["run-1"]
    again = await runner.aresume("run-1")  # an ended run: its recorded result, nothing runs
    assert (again.status, again.answer, again.run_id) == ("success", "3", "run-1")
    assert [s.observation for s in again.step_history] == [3] and len(store.events("run-1")) == len(names)
    assert res.ok and store.schema_version == SCHEMA_VERSION


async def test_store_url_and_unknown_run(tmp_path: Path) -> None:
    runner = Runner(Agent(model=ScriptedModel([final("x")])), store=f"sqlite:///{tmp_path}/r.db")
    assert (await runner.acall("q")).ok
    with pytest.raises(UserError, match="no run"):
        await runner.aresume("nope")
    with pytest.raises(UserError, match="needs a store"):
        await Runner(Agent(model=ScriptedModel([]))).aresume("x")


def _lines(log: Path) -> list[tuple[str, str, int]]:
    if not log.exists():
        return []
    return [(k, r, int(i)) for k, r, i, _ in (line.split() for line in log.read_text().splitlines())]


def test_killed_processes_resume_without_rerunning_finished_steps(tmp_path: Path) -> None:
    db, log = tmp_path / "runs.db", tmp_path / "tools.log"
    SQLiteRunStore(str(db)).close()  # create the schema once
    n_procs, per_proc = int(os.environ.get("CRASH_PROCS", 20)), int(os.environ.get("CRASH_RUNS", 10))
    rng = random.Random(1234)
    procs = []
    for p in range(n_procs):
        procs.append(subprocess.Popen([sys.executable, str(HERE / "crash_worker.py"), str(db), str(log),
                                       str(p * per_proc), str(per_proc)]))
    # each process is killed at a random moment after its runs got going (its first tool call)
    deadline: dict[int, float] = {}
    while any(p.poll() is None for p in procs):
        started = {int(line.split()[3]) for line in log.read_text().splitlines()} if log.exists() else set()
        for p in procs:
            if p.pid in started and p.pid not in deadline:
                deadline[p.pid] = time.monotonic() + rng.uniform(0.0, 0.25)
            if p.poll() is None and time.monotonic() > deadline.get(p.pid, float("inf")):
                p.send_signal(signal.SIGKILL)
        time.sleep(0.005)
    killed = sum(1 for p in procs if p.returncode == -signal.SIGKILL)
    before = _lines(log)
    store = SQLiteRunStore(str(db))
    unfinished = [r.run_id for r in store.list_runs(limit=10_000) if r.status not in ("success",)]
    runner = Runner(make_agent(str(log)), store=store)

    async def resume_all() -> list[Any]:
        return await asyncio.gather(*(runner.aresume(r) for r in unfinished))

    results = asyncio.run(resume_all())
    total = n_procs * per_proc
    records = store.list_runs(limit=10_000)
    never_started = total - len(records)
    assert never_started == 0 or killed > 0
    for i in range(total):  # runs whose process died before they were journaled start afresh
        if store.get_run(f"r{i}") is None:
            results.append(asyncio.run(runner.acall(f"r{i}", id=f"r{i}")))
    assert all(r.status == "success" for r in results), [r.error for r in results if not r.ok][:3]
    assert all(store.get_run(f"r{i}").status == "success" for i in range(total))
    after = _lines(log)
    per_call = collections.Counter((k, r, i) for k, r, i in after)
    plain_twice = [c for c, n in per_call.items() if c[0] == "plain" and n > 1]
    assert plain_twice == [], "a non-idempotent call ran twice"
    # every run's history has all its steps, each exactly once
    for i in range(total):
        steps = [e for e in store.events(f"r{i}") if e.name == "agent.step_complete"]
        assert sorted(e.payload["item"]["data"]["step"] for e in steps) == list(range(STEPS))
    resumed_reruns = sum(n - 1 for c, n in per_call.items() if c[0] == "safe" and n > 1)
    interrupted = sum(1 for i in range(total) for e in store.events(f"r{i}")
                      if e.name == "agent.tool_call_complete" and "interrupted" in str(e.payload["item"].get("error")))
    print(f"\ncrash test: {total} runs in {n_procs} processes, {killed} killed; {len(unfinished)} resumed, "
          f"{never_started} restarted; tool executions {len(before)} before / {len(after)} after resume; "
          f"idempotent re-runs {resumed_reruns}; interrupted calls reported to the model {interrupted}")
    assert killed > 0, "the test must actually kill processes"


async def test_interrupted_call_policies(tmp_path: Path) -> None:
    """A call journaled as started but not finished: interrupt-observation / retry / fail / idempotent."""
    ran: list[str] = []

    async def hang(x: int) -> str:
        ran.append(f"hang {x}")
        await asyncio.sleep(30)
        return "never"

    def make(idempotent: bool = False) -> Agent[Any]:
        model = ScriptedModel([Function(id="c1", name="hang", kwargs={"x": 1}), final("ok")], per_run=True)
        return Agent(tools=[FunctionTool(hang, idempotent=idempotent)], model=model)

    for policy, idem, expect_runs, status in [("interrupt-observation", False, 1, "success"),
                                               ("retry", False, 2, "success"), ("fail", False, 1, None),
                                               ("interrupt-observation", True, 2, "success")]:
        ran.clear()
        db = str(tmp_path / f"{policy}-{idem}.db")
        first = Runner(make(idem), store=db if False else f"sqlite:///{db}")
        task = asyncio.ensure_future(first.acall("go", id="r"))
        while not ran:
            await asyncio.sleep(0.005)
        task.cancel()  # an outside cancel, like a dying process: the journal keeps the started call
        with pytest.raises(asyncio.CancelledError):
            await task
        store = SQLiteRunStore(db)
        # make it look like the process died mid-call: drop what came after the start
        cut_journal(store, "r", lambda e: e.name in ("raw", "agent.tool_call_start"))
        second = Runner(make(idem), store=store)
        if status is None:
            with pytest.raises(UserError, match="interrupted"):
                await second.aresume("r", policy=policy)
            continue
        if expect_runs == 2:  # the call runs again: let it finish quickly this time
            second.agent.tool_manager.get("hang").timeout = 0.05
        res = await second.aresume("r", policy=policy)
        assert res.status == status and len(ran) == expect_runs, (policy, idem, ran)
        obs = res.step_history[0].observation
        if expect_runs == 1:
            assert "interrupted" in obs and "may or may not have taken effect" in obs
        assert res.usage.requests == 2, "the cut step's model call is counted once, plus the final one"


async def test_a_run_suspended_for_approval_resumes_in_another_process_with_the_decision(tmp_path: Path) -> None:
    ran: list[tuple[str, int]] = []

    def pay(to: str, amount: int) -> str:
        ran.append((to, amount))
        return f"paid {amount} to {to}"

    def make_runner() -> Runner[Any]:
        model = ScriptedModel([Function(name="pay", kwargs={"to": "bob", "amount": 50}),
                               Function(name="pay", kwargs={"to": "eve", "amount": 9}), final("done")],
                              per_run=True)
        return Runner(Agent(tools=[FunctionTool(pay, require_approval=True)], model=model),
                      store=f"sqlite:///{tmp_path}/runs.db", suspend_for_approval=True)

    first = await make_runner().acall("pay people", id="p1")
    assert first.status == "waiting_for_approval" and ran == []
    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    assert store.get_run("p1").status == "waiting_for_approval"
    call_1 = next(e.payload["item"]["id"] for e in store.events("p1") if e.name == "agent.tool_permission_request")
    runner = make_runner()  # a new process would build the same runner
    with pytest.raises(UserError, match="not waiting"):
        runner.record_decision("p1", "some-other-call", approve=True)
    runner.record_decision("p1", call_1, approve=True, kwargs={"to": "bob", "amount": 40})  # an edit
    second = await runner.aresume("p1")
    assert second.status == "waiting_for_approval" and ran == [("bob", 40)], "the second payment waits in turn"
    call_2 = [e.payload["item"]["id"] for e in store.events("p1") if e.name == "agent.tool_permission_request"][-1]
    with pytest.raises(UserError, match="already decided"):
        runner.record_decision("p1", call_1, approve=True)  # no replay of the first decision
    runner.record_decision("p1", call_2, approve=False, reason="eve is not a customer")
    done = await runner.aresume("p1")
    assert done.status == "success" and ran == [("bob", 40)]
    assert [s.observation for s in done.step_history] == [
        "paid 40 to bob", "Tool execution cancelled by user: eve is not a customer"]
    assert store.get_run("p1").status == "success"


async def test_replay_reports_changed_tool_observations_and_fork_continues_from_a_step(tmp_path: Path) -> None:
    rates = {"EUR": 2}

    def convert(amount: int, currency: str) -> int:
        return amount * rates[currency]

    def runner_with(model: ScriptedModel) -> Runner[Any]:
        return Runner(Agent(tools=[convert], model=model, answer_data_type=int), store=f"sqlite:///{tmp_path}/r.db")

    script = [Function(name="convert", kwargs={"amount": 10, "currency": "EUR"}),
              Function(name="convert", kwargs={"amount": 3, "currency": "EUR"}), final(26)]
    original = await runner_with(ScriptedModel(script)).acall("convert", id="orig")
    assert [s.observation for s in original.step_history] == [20, 6]
    same = await runner_with(ScriptedModel([])).areplay("orig")
    assert same.same and same.steps == 2, "no model call is made: the empty script is never asked"
    rates["EUR"] = 3  # the tool changed behaviour
    changed = await runner_with(ScriptedModel([])).areplay("orig")
    assert [(d.step, d.tool, d.journaled, d.replayed) for d in changed.differences] == [
        (0, "convert", 20, 30), (1, "convert", 6, 9)]
    forked = await runner_with(ScriptedModel([final(99)], per_run=False)).afork("orig", at_step=1)
    assert forked.run_id != "orig" and forked.answer == 99
    assert [s.observation for s in forked.step_history] == [20], "step 0 kept from the journal, not re-run"
    store = SQLiteRunStore(str(tmp_path / "r.db"))
    assert store.get_run(forked.run_id).config["forked_from"] == "orig"


async def test_resume_shows_the_model_its_unparseable_reply_again(tmp_path: Path) -> None:
    started: list[int] = []

    async def slow(x: int) -> str:
        started.append(x)
        await asyncio.sleep(30)
        return "never"

    def make() -> Agent[Any]:
        model = ScriptedModel(["this is not JSON", Function(id="c1", name="slow", kwargs={"x": 1}), final("ok")],
                              per_run=True)
        return Agent(tools=[FunctionTool(slow)], model=model)

    db = str(tmp_path / "r.db")
    task = asyncio.ensure_future(Runner(make(), store=f"sqlite:///{db}").acall("go", id="r"))
    while not started:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store = SQLiteRunStore(db)
    start = min(e.seq for e in store.events("r") if e.name == "agent.tool_call_start")
    cut_journal(store, "r", lambda e: e.seq <= start)
    agent = make()
    res = await Runner(agent, store=store).aresume("r")
    assert res.ok and res.usage.requests == 3
    seen = agent.model.requests[0].messages
    assert {"role": "assistant", "content": "this is not JSON"} in seen


def test_many_processes_opening_one_new_file_at_once(tmp_path: Path) -> None:
    """Switching a new file to WAL takes an exclusive lock that SQLite may refuse without
    waiting; every opener must still succeed (found by the Ray kill test)."""
    db = tmp_path / "fresh.db"
    go = tmp_path / "go"
    code = ("import os, sys, time\nfrom treadle.store import SQLiteRunStore\n"
            "while not os.path.exists(sys.argv[2]): time.sleep(0.001)\n"
            "s = SQLiteRunStore(sys.argv[1]); print(s.schema_version)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), str(go)], stdout=subprocess.PIPE, text=True)
             for _ in range(12)]
    time.sleep(0.5)
    go.write_text("")
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 12 and outs == [str(SCHEMA_VERSION)] * 12


@pytest.mark.parametrize(("start", "changed"), [(1, None), (1, True), (1, 1.0), (1, 2), (0.0, -0.0)])
async def test_the_run_row_keeps_the_prompt_as_the_model_saw_it(tmp_path: Path, start: Any, changed: Any) -> None:
    """The run row is written at the start; the prompt is written again at the first reply only
    when it changed since — a change that compares equal in Python (1 == 1.0 == True, 0.0 == -0.0)
    included."""

    class Change:
        def on_run_start(self, run: Any) -> None:  # after the journal made the row
            if changed is not None:
                run.prompt_kwargs["n"] = changed

        def __call__(self, event: Any) -> None:
            pass

    store = SQLiteRunStore(tmp_path / "runs.db")
    agent = Agent(tools=[], model=ScriptedModel([final("ok")]), template="n = {{ n }}")
    runner = Runner(agent, store=store, event_handlers=[Change()])
    result = await runner.acall({"input_str": "q", "n": start})
    assert result.ok
    stored = store.get_run(result.run_id).prompt_kwargs["n"]
    want = start if changed is None else changed
    assert stored == want and type(stored) is type(want) and repr(stored) == repr(want)


@pytest.mark.parametrize("face", ["acall", "astream"])
async def test_the_journaled_prompt_has_the_memory_the_model_saw(tmp_path: Path, face: str) -> None:
    """The prompt is journaled again at the run's first model reply (memory is read by then),
    also when streamed deltas came before that reply."""
    from treadle.memory import ConversationMemory, InMemoryStore

    memory = ConversationMemory(InMemoryStore(), session_id="s")
    store = SQLiteRunStore(tmp_path / "runs.db")
    first = Runner(Agent(tools=[], model=ScriptedModel(["the first answer is Ada"], native_tools=True)),
                   conversation_memory=memory, store=store)
    await first.acall("my name is Ada")
    model = ScriptedModel(['{"thought": "recall", "_is_answer_final": true, "_answer": "Ada"}'], stream_chunk=4)
    runner = Runner(Agent(tools=[], model=model), conversation_memory=memory, store=store)
    if face == "astream":
        stream = runner.astream("what is my name?")
        async for _ in stream.stream_events():
            pass
        result = await stream.wait_for_completion()
    else:
        result = await runner.acall("what is my name?")
    assert result.answer == "Ada"
    history = store.get_run(result.run_id).prompt_kwargs.get("chat_history_str") or ""
    assert "my name is Ada" in history


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_journals_with_writers_of_its_own(tmp_path: Path) -> None:
    """A child forked while the parent's journal writer has a thread, queued commits and leases
    starts with none of them (the parent's thread does not exist in the child), and journals."""
    from treadle.store.base import Commit, RunRecord
    from treadle.store.writer import committer_for

    store = SQLiteRunStore(str(tmp_path / "parent.db"))
    runner = Runner(Agent(tools=[], model=ScriptedModel([Function(name="finish", kwargs={"answer": 1})])),
                    store=store)
    assert runner.call("q").ok
    w = committer_for(store)
    w.hold("held", 1, 30.0, lambda e: None)  # a lease this process holds, and the thread renewing it
    w.submit(Commit("queued", None, create=RunRecord("queued")), wake=False)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never raise
        code = 1
        try:
            ok = w._thread is None and w._queue == [] and w.live_runs == 0
            child = Runner(Agent(tools=[], model=ScriptedModel([Function(name="finish", kwargs={"answer": 2})])),
                           store=SQLiteRunStore(str(tmp_path / "child.db")))
            res = child.call("q")
            code = 0 if ok and res.ok and str(res.answer) == "2" else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    w.release("held")
    w.flush()
    assert store.get_run("queued") is not None, "the parent's queued commit is still the parent's to write"
    assert len(SQLiteRunStore(str(tmp_path / "child.db")).list_runs()) == 1


class _HeldEndStore(SQLiteRunStore):
    """SQLite written by the writer thread (as a network store is), its run-ending commit held
    until the test lets it go."""

    commits_inline = False

    def __init__(self, path: str) -> None:
        super().__init__(path)
        import threading

        self.ending = threading.Event()  # the ending commit has come
        self.go = threading.Event()

    def commit(self, commits: Any) -> Any:
        if any(c.fields.get("status") == "success" for c in commits):
            self.ending.set()
            self.go.wait(30)
        return super().commit(commits)


async def test_a_run_cancelled_while_its_ending_is_written_waits_for_it_then_is_cancelled(tmp_path: Path) -> None:
    store = _HeldEndStore(str(tmp_path / "runs.db"))
    runner = Runner(Agent(tools=[add], model=ScriptedModel([final("3")])), store=store)
    task = asyncio.ensure_future(runner.acall("q", id="run-end"))
    assert await asyncio.to_thread(store.ending.wait, 30)
    task.cancel()  # the caller gives up while the run waits for its ending to be durable
    await asyncio.sleep(0.05)
    task.cancel()  # twice: still waiting
    assert not task.done()
    store.go.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    rec = store.get_run("run-end")
    assert rec is not None and rec.status == "success" and rec.result["answer"] == "3"
    assert [e.name for e in store.events("run-end")][-1] == "agent.execution_complete"


async def test_every_commit_is_made_by_the_writer_thread_never_on_the_event_loop(tmp_path: Path) -> None:
    import threading

    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    threads: list[str] = []
    commit = store.commit

    def recording(commits: Any) -> Any:
        threads.append(threading.current_thread().name)
        return commit(commits)

    store.commit = recording  # type: ignore[method-assign]
    runner = Runner(Agent(tools=[add], model=ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 2}),
                                                            final("3")], per_run=True)), store=store)
    results = await asyncio.gather(runner.acall("q"), *(runner.acall("q") for _ in range(9)))
    assert all(r.ok for r in results) and threads
    assert set(threads) == {"treadle-journal-writer"}, threads
