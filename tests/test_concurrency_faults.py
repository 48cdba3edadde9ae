"""1,000 concurrent runs sharing one Agent (and one Runner and one SQLite journal), with
random faults everywhere, plus a few hundred streamed runs cancelled at random.

Every run carries its own token (``token=T0042Z seed=42``). The model derives each reply
from the run's own messages, with faults drawn from a generator seeded by the run and the
step: typed provider errors (retryable ones fall back to a second model, a bad request
ends the run), malformed replies, unknown tools, slow replies, parallel calls; the tools
(async, sync inline, sync in a thread) echo the token and the run id they were given, and
randomly raise, time out or return a big output. So any state shared by mistake between
runs shows up as a foreign token, a wrong count in the answer, or usage that does not
match what the model did for that run.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import re
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from treadle import (
    Agent,
    Function,
    FunctionTool,
    ModelBadRequestError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelServerError,
    ModelTimeoutError,
    RunContext,
    RunItemStreamEvent,
    Runner,
    ScriptedModel,
)
from treadle.models.fallback import FallbackModel
from treadle.store import SQLiteRunStore

N_ACALL = 1000
N_STREAM = 300
MAX_STEPS = 8
WALL_LIMIT = 120.0  # a hang guard for everything at once (about 10 s on 2 idle cores)
TOKEN = re.compile(r"T\d{4}Z")
RUN_ID = re.compile(r"run-T\d{4}Z")
RETRYABLE = (ModelRateLimitError, ModelServerError, ModelTimeoutError, ModelConnectionError)


def token_of(i: int) -> str:
    return f"T{i:04d}Z"


class Ledger:
    """What the model did for each run: replies given and tool calls asked for."""

    def __init__(self) -> None:
        self.replies: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def note(self, token: str, calls: int) -> None:
        with self._lock:
            self.replies[token] += 1
            self.calls[token] += calls

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1


async def brain(messages: list[dict[str, Any]], *, step: int, role: str, ledger: Ledger) -> Any:
    """One reply of one run, from that run's messages only."""
    m = re.fullmatch(r"token=(T\d{4}Z) seed=(\d+)", messages[1]["content"])
    assert m, messages[1]
    token, seed = m.group(1), int(m.group(2))
    fault = random.Random(f"{seed}:{step}:{role}").random()
    if role == "primary" and fault < 0.06:
        ledger.fault("retryable provider error (fell back)")
        raise RETRYABLE[int(fault * 1000) % len(RETRYABLE)](f"{token}: try the next model")
    if role == "primary" and fault < 0.07:
        ledger.fault("bad request (ends the run)")
        raise ModelBadRequestError(f"{token}: rejected")
    if role == "backup" and fault < 0.08:
        ledger.fault("backup down too (ends the run)")
        raise ModelServerError(f"{token}: the backup is down too")
    plan = random.Random(f"{seed}:{step}:plan")
    run = random.Random(seed)
    goal, stubborn = run.randint(1, 4), run.random() < 0.03  # tool steps wanted; never answers
    if plan.random() < 0.3:
        await asyncio.sleep(plan.uniform(0, 0.02))  # a slow reply
    done = [msg for msg in messages if msg["role"] == "user" and msg["content"].startswith(f"Observation: {token}:")]
    x = plan.random()
    calls = 0
    if x < 0.05:
        reply: Any = "{ this is not json"
    elif x < 0.10:
        reply, calls = Function(name="no_such_tool", kwargs={"token": token}), 1
    elif len(done) >= goal and not stubborn:
        reply = Function(name="finish", kwargs={"answer": f"{token}:{len(done)}"})
    else:
        calls = 2 if plan.random() < 0.2 else 1
        reply = [Function(name=plan.choice(["echo", "shout", "tally"]),
                          kwargs={"token": token, "n": 10 * step + k,
                                  "mode": plan.choices(["ok", "raise", "slow", "big"], [70, 10, 10, 10])[0]})
                 for k in range(calls)]
    ledger.note(token, calls)
    return reply


def output(token: str, n: int, mode: str, ctx: RunContext[Any]) -> str:
    if mode == "raise":
        raise RuntimeError(f"boom in {token}")
    text = f"{token}:{n}:{ctx.run_id}"
    return text + " " + "x" * 30_000 if mode == "big" else text


async def echo(token: str, n: int, mode: str, ctx: RunContext[Any]) -> str:
    await asyncio.sleep(1 if mode == "slow" else 0)  # slow: past the tool's timeout
    return output(token, n, mode, ctx)


def shout(token: str, n: int, mode: str, ctx: RunContext[Any]) -> str:
    return output(token, n, mode, ctx).upper().replace("RUN-", "run-")


def tally(token: str, n: int, mode: str, ctx: RunContext[Any]) -> str:  # runs in a worker thread
    return output(token, n, mode, ctx)


def make_runner(store: SQLiteRunStore, ledger: Ledger) -> Runner[Any]:
    def model(role: str) -> ScriptedModel:
        m = ScriptedModel([partial(brain, step=k, role=role, ledger=ledger) for k in range(MAX_STEPS)],
                          per_run=True, name=role)
        m.record_requests = False
        return m

    tools = [FunctionTool(echo, timeout=0.05), shout, FunctionTool(tally, run_in_thread=True)]
    agent = Agent(tools=tools, model=FallbackModel([model("primary"), model("backup")]), max_steps=MAX_STEPS,
                  max_observation_chars=2000)
    return Runner(agent, store=store)


def check_run(i: int, res: Any, ledger: Ledger, cancelled_ok: bool) -> None:
    token, run_id = token_of(i), f"run-{token_of(i)}"
    where = f"[{run_id}]"
    assert res.run_id == run_id, where
    assert res.status in ("success", "error", "max_steps", "cancelled"), where
    if res.status == "cancelled":
        assert cancelled_ok, f"{where} cancelled without a cancel"
    for s in res.step_history:
        text = str(s.observation)
        assert set(TOKEN.findall(text.upper())) <= {token}, f"{where} a foreign token in {text[:80]!r}"
        assert set(RUN_ID.findall(text)) <= {run_id}, f"{where} a foreign run id in {text[:80]!r}"
        if s.function is not None:  # the calls the model made for this run carry its token
            assert s.function.kwargs.get("token") == token, where
    ok = [s for s in res.step_history if s.status == "success" and str(s.observation).upper().startswith(token)]
    if res.status == "success":
        assert res.answer == f"{token}:{len(ok)}", f"{where} answer {res.answer!r}, {len(ok)} observations"
    else:
        assert res.answer is None and res.error_type, where
    if res.status == "cancelled":  # a reply may have been made and the run cancelled before it counted
        assert ledger.replies[token] - 1 <= res.usage.requests <= ledger.replies[token], where
        assert res.usage.tool_calls <= ledger.calls[token], where
    else:
        assert res.usage.requests == ledger.replies[token], f"{where} usage {res.usage} vs {ledger.replies[token]}"
        assert res.usage.tool_calls == ledger.calls[token], f"{where} usage {res.usage} vs {ledger.calls[token]}"


async def test_1000_concurrent_runs_with_random_faults_and_cancels(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="treadle.models")  # one warning per fallback otherwise
    before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    ledger = Ledger()
    runner = make_runner(store, ledger)
    loop = asyncio.get_running_loop()

    def prompt(i: int) -> str:
        return f"token={token_of(i)} seed={i}"

    cancels: dict[int, Any] = {}  # run -> what its cancel request returned (None: not sent yet)
    ways: collections.Counter[str] = collections.Counter()

    async def streamed(i: int) -> tuple[Any, list[Any]]:
        run_id = f"run-{token_of(i)}"
        sr = runner.astream(prompt(i), id=run_id)
        rng = random.Random(f"cancel:{i}")
        way = rng.choice(["consumer", "timer", "thread", "none"])
        ways[way] += 1
        after = rng.randint(1, 15)

        def cancel_now() -> None:
            cancels[i] = bool(runner.cancel(run_id))

        if way in ("timer", "thread"):
            cancels[i] = None  # sent for sure, maybe after the run ended
        if way == "timer":
            loop.call_later(rng.uniform(0, 0.1), cancel_now)
        elif way == "thread":
            threading.Timer(rng.uniform(0, 0.1), cancel_now).start()
        events = []
        async for e in sr.stream_events():
            events.append(e)
            if way == "consumer" and len(events) == after:
                cancels[i] = sr.cancel()
        return await sr.wait_for_completion(), events

    t0 = time.perf_counter()
    jobs = [runner.acall(prompt(i), id=f"run-{token_of(i)}") for i in range(N_ACALL)]
    jobs += [streamed(i) for i in range(N_ACALL, N_ACALL + N_STREAM)]
    outcomes = await asyncio.wait_for(asyncio.gather(*jobs), WALL_LIMIT)
    wall = time.perf_counter() - t0
    deadline = time.monotonic() + 30  # a hang guard: a timer thread may still be about to send a cancel
    while any(v is None for v in cancels.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)

    statuses: collections.Counter[str] = collections.Counter()
    faces: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for i, out in enumerate(outcomes):
        res, events = out if i >= N_ACALL else (out, None)
        check_run(i, res, ledger, cancelled_ok=i in cancels)
        statuses[res.status] += 1
        faces["acall" if i < N_ACALL else "astream"][res.status] += 1
        if i in cancels:
            accepted = cancels[i]
            assert accepted is not None, f"run {i}: its cancel was never sent"
            assert accepted == (res.status == "cancelled"), f"run {i}: accepted={accepted}, ended {res.status}"
        if events is not None:
            names = [e.name if type(e) is RunItemStreamEvent else "raw" for e in events]
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert names.count("agent.execution_complete") == 1 and names[-1] == "agent.execution_complete"
            steps = [e.item.data for e in events if type(e) is RunItemStreamEvent and e.name == "agent.step_complete"]
            assert steps == res.step_history

    # the journal, read back: every run, its ending, each of its steps once
    runs = {r.run_id: r for r in store.list_runs(limit=10 * (N_ACALL + N_STREAM))}
    assert len(runs) == N_ACALL + N_STREAM, "lost runs"
    for i, out in enumerate(outcomes):
        res = out[0] if i >= N_ACALL else out
        rec = runs[res.run_id]
        assert rec.status == res.status and rec.result["status"] == res.status, res.run_id
        assert rec.steps == len(res.step_history) and rec.prompt_kwargs["input_str"] == prompt(i)
        names = [e.name for e in store.events(res.run_id)]
        assert names.count("agent.step_complete") == len(res.step_history), res.run_id
        assert names.count("agent.execution_complete") == 1 and names[-1] == "agent.execution_complete"

    assert runner.active_runs == []
    await asyncio.sleep(0)
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} <= before, "tasks left running"
    assert statuses["success"] > 0.6 * (N_ACALL + N_STREAM) and statuses["error"] > 0 and statuses["cancelled"] > 0
    print(f"\n{N_ACALL} acall + {N_STREAM} astream runs in {wall:.1f} s: {dict(statuses)} "
          f"(acall {dict(faces['acall'])}, astream {dict(faces['astream'])}); "
          f"cancel requests {dict(ways)}, accepted {sum(1 for v in cancels.values() if v)}; "
          f"model faults {dict(ledger.faults)}")
    store.close()
