"""Cancel a run at every point where it waits, in every face, by every way of cancelling.

The run is instrumented rather than hand-enumerated: the model, each tool, the approval
callback (or the stream's consumer), the memory store, the journal (a RunStore wrapped
around the real ``SQLiteRunStore``) and an event handler each call a shared ``Probe`` at
their checkpoints. A reference run with no cancel lists every checkpoint it passes; then,
for every checkpoint ``i`` of that list, a fresh run is cancelled exactly there. A new
await point in any of these components (or a new event) therefore becomes a new case
without touching this file.

How a cancel is issued (``method``):

* ``in_task``: ``runner.cancel(run_id)`` called synchronously by whatever runs the
  checkpoint (the run's own task, a parallel tool's task, an event handler, the stream
  consumer); from a worker thread it is handed to the loop.
* ``loop``: ``runner.cancel(run_id)`` from a loop callback, outside the run's task.
* ``thread``: ``runner.cancel(run_id)`` from a new thread. At a journal write the thread is
  joined only after the write, so the cancel races with the SQLite commit.
* ``stream``: ``RunnerStreamingResult.cancel()`` from a loop callback (``astream``).
* ``task``: the ``acall`` task itself is cancelled (``Task.cancel()`` from a loop callback);
  the ``CancelledError`` must reach the caller after the run recorded its ending.

An awaited checkpoint hit by the cancel then waits ``BLOCK`` seconds: the cancel must
interrupt it. A checkpoint in a worker thread keeps the thread busy until the run ended.

What decides the expected ending (stated per checkpoint, from the reference run):

* *late*: the run's result already exists (the journal writes of ``execution_complete``,
  the memory write): the cancel is refused (``cancel()`` returns False) and the run keeps
  its completed result; a cancelled ``acall`` task still raises ``CancelledError``, after
  the memory turn was written.
* *final window*: from the final reply's ``raw`` event to the result there is no await. A
  cancel requested there at once (``in_task`` on the loop, ``thread``) is accepted and wins
  over the answer; one sent from a loop callback (``loop``, ``stream``, ``task``) runs only
  at the run's next await, so either ending is correct: the test takes what happened and
  checks that it is consistent (``acall``/``call``: the answer; ``astream``: the stream's
  consumer is woken first, so the cancel).
* everywhere else: the run ends "cancelled".

And always: ``cancel()`` returned True exactly when the run ended "cancelled"; one
``agent.execution_complete``, last, with events numbered 1..n in delivery order (the stream
and every event handler alike); ``step_history`` is the step_complete events and a prefix of
the reference's; the SQLite journal holds exactly the delivered events (deltas aside), the
same steps and the final status; memory holds one turn with that status; ``resume`` refuses
an ended run; no task, thread or tool body outlives the run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from treadle import (
    Agent,
    ConversationMemory,
    Function,
    FunctionTool,
    ModelDelta,
    ModelRetry,
    PermissionManager,
    RunItemStreamEvent,
    Runner,
    ScriptedModel,
    ToolCallActivityRunItem,
)
from treadle._sync import run_sync
from treadle.loop import CANCEL_MESSAGE
from treadle.memory import SQLiteMemoryStore
from treadle.store import SQLiteRunStore
from treadle.store.links import journaled_steps

BLOCK = 3.0  # how long a cancelled checkpoint waits if nothing interrupts it (a failure)
PROMPT = "run the whole script"
DONE = "agent.execution_complete"


def _noop() -> None:
    return None


# ------------------------------------------------------------------------------ the probe
class Probe:
    """Counts checkpoints ("model.call#3") and issues the cancel at the target one."""

    def __init__(self, method: str, target: str | None) -> None:
        self.method = method
        self.target = target
        self.labels: list[str] = []
        self.late: dict[str, bool] = {}  # label -> the run's result existed when it was reached
        self._counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self.runner: Runner[Any] | None = None
        self.run_id = ""
        self.stream: Any = None
        self.task: asyncio.Task[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0
        self.fired: str | None = None
        self.fired_late = False
        self.fired_at = 0.0
        self.accepted: bool | None = None  # what runner.cancel / stream.cancel / task.cancel returned
        self.not_interrupted: list[str] = []  # awaited checkpoints the cancel failed to interrupt
        self.release = threading.Event()  # lets a tool thread held by the cancel finish
        self.busy = 0  # tool bodies running in worker threads

    # ------------------------------------------------------------ bookkeeping
    def _hit(self, base: str) -> str | None:
        if not self.loop_thread:  # the first checkpoint on a loop is on the run's (commits: the writer thread)
            with contextlib.suppress(RuntimeError):
                self.loop = asyncio.get_running_loop()
                self.loop_thread = threading.get_ident()
        run = self.runner._last_run if self.runner is not None else None
        with self._lock:
            n = self._counts[base]
            self._counts[base] += 1
            label = f"{base}#{n}"
            self.labels.append(label)
            self.late[label] = run is not None and run.result is not None
        return label if label == self.target else None

    def _cancel_now(self) -> None:
        if self.method == "task":
            assert self.task is not None
            self.accepted = self.task.cancel()
        elif self.method == "stream":
            self.accepted = bool(self.stream.cancel())
        else:
            assert self.runner is not None
            self.accepted = bool(self.runner.cancel(self.run_id))

    def _fire(self, label: str) -> Callable[[], Any]:
        """Issue the cancel; returns what to call once the checkpoint's own work is done."""
        self.fired, self.fired_late, self.fired_at = label, self.late[label], time.perf_counter()
        if self.method == "thread":
            t = threading.Thread(target=self._cancel_now, name="test-canceller")
            t.start()
            return t.join
        on_loop = threading.get_ident() == self.loop_thread
        if self.method == "in_task" and on_loop:
            self._cancel_now()
            return _noop
        ran = threading.Event()

        def callback() -> None:
            try:
                self._cancel_now()
            finally:
                ran.set()

        if self.loop is None:  # cut before any checkpoint on the run's loop (a commit, on the writer thread)
            assert self.runner is not None and self.runner._last_run is not None
            self.loop = self.runner._last_run.cancellation.loop
        assert self.loop is not None
        self.loop.call_soon_threadsafe(callback)
        return _noop if on_loop else lambda: ran.wait(BLOCK)

    # ------------------------------------------------------------ checkpoints
    async def apoint(self, base: str) -> None:
        """An await point (a model call, an async tool, an async store...)."""
        label = self._hit(base)
        if label is None:
            await asyncio.sleep(0)  # a real suspension, like any I/O
            return
        self._fire(label)()
        if self.fired_late:
            await asyncio.sleep(0)
            return
        await asyncio.sleep(BLOCK)  # the cancel must interrupt this
        self.not_interrupted.append(label)

    def point(self, base: str) -> None:
        """A synchronous point on the loop thread (an inline tool, an event handler)."""
        label = self._hit(base)
        if label is not None:
            self._fire(label)()

    @contextlib.contextmanager
    def write(self, base: str) -> Iterator[None]:
        """A journal write: the cancel goes out before it (a thread's cancel runs during it),
        and there is a second checkpoint right after it."""
        label = self._hit(base)
        join = self._fire(label) if label is not None else _noop
        try:
            yield
        finally:
            join()
        self.point(base + ".done")

    def tpoint(self, base: str) -> None:
        """A point in a worker thread: when cut, the tool stays busy until the run ended."""
        label = self._hit(base)
        if label is None:
            return
        self._fire(label)()
        if not self.fired_late:
            self.release.wait(BLOCK)

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[None]:
        with self._lock:
            self.busy += 1
        try:
            yield
        finally:
            with self._lock:
                self.busy -= 1

    def consumer_point(self, base: str) -> bool:
        """The stream's consumer about to decide an approval; True: it was cut (no decision)."""
        label = self._hit(base)
        if label is None:
            return False
        self._fire(label)()
        return True

    def on_event(self, event: Any) -> None:
        self.point("event." + kind(event))


def kind(event: Any) -> str:
    if type(event) is RunItemStreamEvent:
        return event.name
    return "delta" if isinstance(event.data, ModelDelta) else "raw"


# ------------------------------------------------------------------------------ the instrumented run
class ProbedModel(ScriptedModel):
    def __init__(self, probe: Probe, replies: list[Any]) -> None:
        super().__init__(replies, per_run=True)
        self.record_requests = False
        self.probe = probe

    async def _resolve(self, request: Any) -> Any:
        await self.probe.apoint("model.call")
        return await super()._resolve(request)

    async def stream(self, request: Any) -> Any:
        async for chunk in super().stream(request):
            yield chunk
            if isinstance(chunk, ModelDelta):
                await self.probe.apoint("model.delta")  # mid-stream, between deltas


class ProbedRunStore:
    """The real SQLite journal, with a checkpoint before and after every write."""

    def __init__(self, inner: SQLiteRunStore, probe: Probe) -> None:
        self.inner = inner
        self.probe = probe

    def commit(self, commits: Any) -> Any:
        with self.probe.write("store.commit"):
            return self.inner.commit(commits)

    def acquire(self, run_id: str, owner: str, ttl: float) -> Any:
        with self.probe.write("store.acquire"):
            return self.inner.acquire(run_id, owner, ttl)

    def renew(self, leases: Any, ttl: float) -> Any:
        return self.inner.renew(leases, ttl)

    def get_run(self, run_id: str) -> Any:
        return self.inner.get_run(run_id)

    def list_runs(self, **kw: Any) -> Any:
        return self.inner.list_runs(**kw)

    def events(self, run_id: str) -> Any:
        return self.inner.events(run_id)

    def close(self) -> None:
        pass


class ProbedMemoryStore:
    """An async memory store over the real SQLite one: reading and writing are await points."""

    def __init__(self, inner: SQLiteMemoryStore, probe: Probe) -> None:
        self.inner = inner
        self.probe = probe

    async def append_turn(self, session_id: str, turn: Any) -> int:
        await self.probe.apoint("memory.write")
        return self.inner.append_turn(session_id, turn)

    async def load_turns(self, session_id: str, last: int | None = None) -> Any:
        await self.probe.apoint("memory.read")
        return self.inner.load_turns(session_id, last)

    def list_sessions(self) -> Any:
        return self.inner.list_sessions()

    def delete_session(self, session_id: str) -> bool:
        return self.inner.delete_session(session_id)


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


SCRIPT = [
    [Function(name="lookup", kwargs={"key": "k"}), Function(name="ticker", kwargs={"n": 2})],  # parallel calls
    Function(name="inline", kwargs={"x": 4}),  # sync, on the loop
    Function(name="threaded", kwargs={"x": 5}),  # sync, run_in_thread=True
    Function(name="progress", kwargs={"n": 2}),  # generator with progress, in a thread
    Function(name="guarded", kwargs={"x": "g"}),  # needs approval
    Function(name="flaky", kwargs={"x": 7}),  # raises ModelRetry
    Function(name="flaky", kwargs={"x": 7}),  # the retry succeeds
    final("done"),
]


def build_agent(probe: Probe) -> Agent[Any]:
    retried: list[int] = []

    async def lookup(key: str) -> str:
        await probe.apoint("tool.async")
        return f"lookup:{key}"

    async def ticker(n: int):  # type: ignore[no-untyped-def]
        for k in range(n):
            yield ToolCallActivityRunItem(data={"tick": k})
            await probe.apoint("tool.async_gen")
        yield f"ticked:{n}"

    def inline(x: int) -> int:
        probe.point("tool.sync")
        return 2 * x

    def threaded(x: int) -> int:
        with probe.in_thread():
            probe.tpoint("tool.thread")
            return x + 1

    def progress(n: int):  # type: ignore[no-untyped-def]
        with probe.in_thread():
            for k in range(n):
                yield ToolCallActivityRunItem(data={"step": k})
                probe.tpoint("tool.gen")
            yield f"generated:{n}"

    async def guarded(x: str) -> str:
        return f"guarded:{x}"

    async def flaky(x: int) -> int:
        await probe.apoint("tool.retry")
        if not retried:
            retried.append(1)
            raise ModelRetry("try again")
        return x

    tools = [lookup, ticker, FunctionTool(inline, inline=True), FunctionTool(threaded, run_in_thread=True),
             FunctionTool(progress, run_in_thread=True), FunctionTool(guarded, require_approval=True), flaky]
    return Agent(tools=tools, model=ProbedModel(probe, SCRIPT), max_steps=12)


# ------------------------------------------------------------------------------ one run
@dataclass
class Env:
    store: SQLiteRunStore
    memory: SQLiteMemoryStore


@dataclass
class Outcome:
    probe: Probe
    runner: Runner[Any]
    result: Any
    events: list[Any]  # what the consumer saw (the stream, or an event handler)
    handled: list[Any]  # what an event handler saw
    raised: bool = False  # the caller got CancelledError
    returned: Any = None  # what call / acall / wait_for_completion returned
    ended_at: float = 0.0
    resumed: Any = None  # what resume returned afterwards


def make_runner(probe: Probe, env: Env, variant: str, run_id: str, handled: list[Any]) -> Runner[Any]:
    async def decide(request: Any) -> bool:
        await probe.apoint("approval.callback")  # an approver that takes its time
        return True

    pm = PermissionManager() if variant == "consumer" else PermissionManager(decide)
    memory = ConversationMemory(ProbedMemoryStore(env.memory, probe), session_id=f"session-{run_id}")
    runner = Runner(build_agent(probe), permission_manager=pm, conversation_memory=memory,
                    store=ProbedRunStore(env.store, probe), event_handlers=[probe.on_event, handled.append])
    runner._journal.max_delay = 3600.0  # completions travel with the next commit: the same commits every run
    probe.runner, probe.run_id = runner, run_id
    return runner


async def run_async(face: str, method: str, target: str | None, env: Env, run_id: str) -> Outcome:
    probe = Probe(method, target)
    handled: list[Any] = []
    variant = "consumer" if face == "astream-consumer" else "callback"
    runner = make_runner(probe, env, variant, run_id, handled)
    raised, returned = False, None
    if face == "acall":
        task = asyncio.ensure_future(runner.acall(PROMPT, id=run_id))
        probe.task = task
        try:
            returned = await task
        except asyncio.CancelledError:
            raised = True
        events = handled
    else:
        sr = runner.astream(PROMPT, id=run_id)
        probe.stream = sr
        events = []
        async for e in sr.stream_events():
            events.append(e)
            if variant == "consumer" and kind(e) == "agent.tool_permission_request":
                if not probe.consumer_point("approval.consumer"):
                    assert sr.approve(e.item.id)
        returned = await sr.wait_for_completion()
    ended = time.perf_counter()
    out = Outcome(probe, runner, terminal(events), events, handled, raised, returned, ended)
    out.resumed = await runner.aresume(run_id)
    return out


def run_call(method: str, target: str | None, env: Env, run_id: str) -> Outcome:
    probe = Probe(method, target)
    handled: list[Any] = []
    runner = make_runner(probe, env, "callback", run_id, handled)
    returned = runner.call(PROMPT, id=run_id)
    ended = time.perf_counter()
    out = Outcome(probe, runner, terminal(handled), handled, handled, False, returned, ended)
    out.resumed = runner.resume(run_id)
    return out


def run_threads() -> set[threading.Thread]:
    """Live threads, less the store's journal writer and SQLite checkpointer (one each per
    store, for its whole life)."""
    return {t for t in threading.enumerate() if t.name not in ("treadle-journal-writer", "treadle-sqlite-checkpoint")}


def terminal(events: list[Any]) -> Any:
    done = [e for e in events if kind(e) == DONE]
    return done[-1].item.data if done else None


def settle_threads(probe: Probe) -> None:
    """Let a tool thread held by the cancel finish, and wait for it."""
    probe.release.set()
    deadline = time.monotonic() + BLOCK
    while probe.busy and time.monotonic() < deadline:
        time.sleep(0.001)
    assert probe.busy == 0, "a tool thread is still running after the run ended"


# ------------------------------------------------------------------------------ the checks
def signature(steps: list[Any]) -> list[tuple[Any, ...]]:
    return [(s.step, s.function.name if s.function else None, s.observation, s.status) for s in steps]


@dataclass
class Reference:
    labels: list[str]
    late: dict[str, bool]
    result: Any
    window_start: int  # index of the final reply's raw event: from there to the result, no await


def reference(out: Outcome) -> Reference:
    res = out.result
    assert res is not None and res.status == "success" and res.answer == "done", res
    labels = out.probe.labels
    raws = [i for i, label in enumerate(labels) if label.startswith("event.raw#")]
    ref = Reference(list(labels), dict(out.probe.late), res, raws[-1])
    bases = {label.split("#")[0] for label in labels}
    expected = {"model.call", "tool.async", "tool.async_gen", "tool.sync", "tool.thread", "tool.gen",
                "tool.retry", "memory.read", "memory.write", "store.commit",
                "store.commit.done", "event.agent.step_complete"}
    assert expected <= bases, f"the reference run misses checkpoints: {expected - bases}"
    assert "approval.callback" in bases or "approval.consumer" in bases
    assert len(labels) == len(set(labels))
    return ref


def expected_ending(ref: Reference, target: str) -> str:
    if ref.late[target]:
        return "late"
    return "window" if ref.labels.index(target) >= ref.window_start else "cancel"


def check(out: Outcome, ref: Reference, env: Env, face: str, method: str, target: str) -> str:
    """Every invariant of one cancelled run; returns the run's status."""
    probe, res, events = out.probe, out.result, out.events
    where = f"[{face}/{method} cancelled at {target}]"
    assert probe.fired == target, f"{where} the checkpoint was never reached"
    assert not probe.not_interrupted, f"{where} the cancel did not interrupt {probe.not_interrupted}"
    expect = expected_ending(ref, target)
    if expect == "window" and method in ("in_task", "thread") and probe.accepted is not None:
        expect = "cancel"  # requested at once, before the result exists: an accepted cancel always wins
    assert res is not None, f"{where} no agent.execution_complete"
    status = res.status
    if expect == "late":
        assert status == ref.result.status, where
        if method != "task":
            assert probe.accepted is False, f"{where} a cancel after the result must be refused"
    elif expect == "cancel":
        assert status == "cancelled", f"{where} ended {status}"
    else:
        assert status in ("cancelled", ref.result.status), where
    if method == "task":
        assert out.raised == bool(probe.accepted), f"{where} the caller's CancelledError"
    else:
        assert not out.raised
    if not out.raised:
        assert out.returned is res, f"{where} the face returned another result than the terminal event's"
    if method != "task":
        assert probe.accepted == (status == "cancelled"), f"{where} accepted={probe.accepted}, ended {status}"
    if status == "cancelled":
        assert out.ended_at - probe.fired_at < 1.0, f"{where} the cancel took {out.ended_at - probe.fired_at:.2f} s"
        assert res.error == CANCEL_MESSAGE and res.error_type == "RunCancelled" and res.answer is None, where
    else:
        assert res.answer == ref.result.answer and res.error is None, where

    # the events: one ordered stream, one ending, last
    names = [kind(e) for e in events]
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), f"{where} events out of order: {names}"
    assert names.count(DONE) == 1 and names[-1] == DONE, f"{where} {names[-3:]}"
    assert all(e.run_id == probe.run_id for e in events)
    if face.startswith("astream"):
        assert events == out.handled, f"{where} the stream and the event handlers saw different events"
    if status == "cancelled":
        assert names[-2] == "runner.cancelled" and names.count("runner.cancelled") == 1, where
        received = names.count("runner.cancel_received")
        assert received == (0 if method == "task" else 1), f"{where} cancel_received x{received}"
        if received:
            assert names.index("runner.cancel_received") < names.index("runner.cancelled")
    else:
        assert "runner.cancelled" not in names, where
    steps = [e.item.data for e in events if kind(e) == "agent.step_complete"]
    assert len(steps) == len(res.step_history) and all(a is b for a, b in zip(steps, res.step_history)), where
    sig = signature(res.step_history)
    assert sig == signature(ref.result.step_history)[:len(sig)], f"{where} steps differ from the reference"
    assert res.usage.requests <= ref.result.usage.requests

    # the journal, read back from the SQLite file
    rec = env.store.get_run(probe.run_id)
    assert rec.status == status and rec.result["status"] == status and rec.steps == len(res.step_history), where
    entries = env.store.events(probe.run_id)
    journaled = [(e.seq, e.name) for e in entries]
    delivered = [(e.seq, kind(e)) for e in events if kind(e) != "delta"]
    assert journaled == delivered, f"{where} journal and events differ"
    assert signature(journaled_steps(entries)) == sig, where

    # memory: the turn is recorded, whole, with this ending
    turns = env.memory.load_turns(f"session-{probe.run_id}")
    assert len(turns) == 1, f"{where} {len(turns)} turns in memory"
    turn = turns[0]
    assert turn.user_query.query_str == PROMPT
    assert turn.assistant_response.metadata == {"status": status, "run_id": probe.run_id}, where
    text = "done" if status == "success" else "(the run was cancelled before an answer)"
    assert turn.assistant_response.response_str == text, where

    # resume: an ended run is not run again; resume returns its recorded result (docs/durability.md)
    again = out.resumed
    assert again.status == status and again.run_id == probe.run_id, where
    assert signature(again.step_history) == sig and again.answer == res.answer, where
    assert [e.name for e in env.store.events(probe.run_id)] == [e.name for e in entries], f"{where} resume wrote"
    assert out.runner.active_runs == []
    assert out.runner.permission_manager.pending() == [], f"{where} an approval request is left pending"
    return status


# ------------------------------------------------------------------------------ the matrix
MATRIX = [
    ("call", "in_task"), ("call", "loop"), ("call", "thread"),
    ("acall", "in_task"), ("acall", "loop"), ("acall", "thread"), ("acall", "task"),
    ("astream", "in_task"), ("astream", "loop"), ("astream", "thread"), ("astream", "stream"),
    ("astream-consumer", "in_task"), ("astream-consumer", "thread"), ("astream-consumer", "stream"),
]
TOTALS: dict[str, collections.Counter[str]] = {}


def report(face: str, method: str, ref: Reference, statuses: collections.Counter[str]) -> None:
    TOTALS[f"{face}/{method}"] = statuses
    print(f"\n{face}/{method}: {len(ref.labels)} checkpoints -> {dict(statuses)}")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(SQLiteRunStore(str(tmp_path / "runs.db")), SQLiteMemoryStore(tmp_path / "memory.db"))
    yield e
    e.store.close()
    e.memory.close()


def baseline_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def fill_pool() -> None:
    """Start every worker of the loop's default executor and of the sync tools' pool now, so
    that neither can grow later and any thread beyond the baseline is a stray one."""
    from treadle.tools._threads import default_pool

    n = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default size
    barrier = threading.Barrier(n)
    await asyncio.gather(*(asyncio.to_thread(barrier.wait, BLOCK) for _ in range(n)))
    pool = default_pool()
    tools = threading.Barrier(pool.max_workers)
    await asyncio.gather(*(pool.submit(tools.wait, BLOCK) for _ in range(pool.max_workers)))


@pytest.mark.parametrize(("face", "method"), [m for m in MATRIX if m[0] != "call"],
                         ids=[f"{f}-{m}" for f, m in MATRIX if f != "call"])
async def test_cancel_at_every_checkpoint(face: str, method: str, env: Env) -> None:
    await fill_pool()
    ref_out = await run_async(face, method, None, env, "reference")
    settle_threads(ref_out.probe)
    ref = reference(ref_out)
    tasks = baseline_tasks()
    threads = run_threads()
    statuses: collections.Counter[str] = collections.Counter()
    for i, target in enumerate(ref.labels):
        out = await asyncio.wait_for(run_async(face, method, target, env, f"{face}-{method}-{i}"), 4 * BLOCK)
        settle_threads(out.probe)
        status = check(out, ref, env, face, method, target)
        statuses[f"{expected_ending(ref, target)}->{status}"] += 1
        assert baseline_tasks() <= tasks, f"[{target}] tasks left running: {baseline_tasks() - tasks}"
        assert run_threads() <= threads, f"[{target}] stray threads"
    report(face, method, ref, statuses)


@pytest.mark.parametrize("method", ["in_task", "loop", "thread"])
def test_cancel_sync_call_at_every_checkpoint(method: str, env: Env) -> None:
    run_sync(fill_pool())  # the loop that runner.call uses in this thread
    ref_out = run_call(method, None, env, "reference")
    settle_threads(ref_out.probe)
    ref = reference(ref_out)
    threads = run_threads()
    statuses: collections.Counter[str] = collections.Counter()
    for i, target in enumerate(ref.labels):
        out = run_call(method, target, env, f"call-{method}-{i}")
        settle_threads(out.probe)
        status = check(out, ref, env, "call", method, target)
        statuses[f"{expected_ending(ref, target)}->{status}"] += 1
        loop = out.probe.loop
        assert loop is not None and not [t for t in asyncio.all_tasks(loop) if not t.done()], target
        assert run_threads() <= threads, f"[{target}] stray threads"
    report("call", method, ref, statuses)
