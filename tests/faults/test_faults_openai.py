"""Model faults over the wire: OpenAIModel and the Runner against a fault-injecting server.

Every fault is tried through ``acall`` (``OpenAIModel.request``) and ``astream``
(``OpenAIModel.stream``). For each: retryable faults are retried with backoff and the
run succeeds; the others end the run with status "error" and a typed ``error_type``, or
become a recoverable step (an error observation, then the run goes on). No run may hang
(each is bounded by ``asyncio.wait_for``), no exception may escape, and the journal must
show the run's status and its events.

Nothing here asserts on elapsed time (the machine may be loaded): retries are counted in the
server's request log, and the backoff the client asked for is read from the ``sleep`` the
retry policy was given, which records each wait.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("uvicorn", reason="the fault server needs uvicorn (pip install fastapi uvicorn)")
pytest.importorskip("starlette", reason="the fault server needs starlette (pip install fastapi uvicorn)")

from fault_server import DRIP_EVERY, DRIP_FOR, HUGE_CHARS, RETRY_AFTER, FaultServer, drip_body

from treadle import Agent, Runner
from treadle.errors import ModelTimeoutError
from treadle.models._retry import RetryPolicy
from treadle.models.base import ModelRequest
from treadle.models.openai import OpenAIModel
from treadle.store import open_store
from treadle.types import RunnerResult

CLIENT_TIMEOUT = 0.5  # seconds per HTTP request; "hang" holds a request far longer
DRIP_TIMEOUT = 1.0  # the "drip" tests' client timeout: each byte comes well within it, the reply never does
RUN_BOUND = 60.0  # a hang guard only: no run may take longer than this
FACES = ["acall", "astream"]
ALL_FACES = ["call", "acall", "astream"]


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.fixture(scope="module")
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(fault_server: FaultServer) -> FaultServer:
    fault_server.reset()
    return fault_server


class Harness:
    """One model, one Runner with a sqlite journal, and the run's outcome."""

    def __init__(self, server: FaultServer, db: Path, max_retries: int = 2, max_steps: int = 5,
                 timeout: float = CLIENT_TIMEOUT) -> None:
        self.server = server
        self.store_url = f"sqlite:///{db}"
        self.sleeps: list[float] = []  # every backoff the retry policy asked for, in order
        self.model = OpenAIModel("fault-model", base_url=server.base_url, api_key="x", timeout=timeout,
                                 retry_policy=RetryPolicy(max_retries=max_retries, initial_delay=0.02,
                                                          max_delay=0.1, max_retry_after=5.0, sleep=self.sleep))
        self.runner = Runner(Agent(tools=[add], model=self.model, max_steps=max_steps), store=self.store_url)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)

    async def run(self, face: str) -> RunnerResult[Any]:
        try:
            if face == "call":  # the sync face, from a worker thread (it runs its own loop)
                result = await asyncio.wait_for(asyncio.to_thread(self.runner.call, "What is 2 + 3?"), RUN_BOUND)
            elif face == "acall":
                result = await asyncio.wait_for(self.runner.acall("What is 2 + 3?"), RUN_BOUND)
            else:
                sr = self.runner.astream("What is 2 + 3?")

                async def consume() -> RunnerResult[Any]:
                    async for _ in sr.stream_events():
                        pass
                    return await sr.wait_for_completion()

                result = await asyncio.wait_for(consume(), RUN_BOUND)
        finally:
            await self.model.aclose()
        return result

    def journal(self, run_id: str | None) -> tuple[str, list[tuple[str, Any]]]:
        """The run's status in the store and its journaled events (name, payload)."""
        assert run_id
        store = open_store(self.store_url)
        try:
            record = store.get_run(run_id)
            assert record is not None
            events = [(e.name, e.payload) for e in store.events(run_id)]
        finally:
            store.close()
        assert events and events[-1][0] == "agent.execution_complete", [n for n, _ in events]
        return record.status, events


def check_streamed(server: FaultServer, face: str) -> None:
    """Every request went through the face's path: SSE for astream, JSON for call and acall."""
    assert all(stream == (face == "astream") for _, _, stream in server.log)


def check_success(h: Harness, res: RunnerResult[Any]) -> list[tuple[str, Any]]:
    assert res.status == "success", (res.error_type, res.error)
    assert res.error is None and res.error_type is None
    status, events = h.journal(res.run_id)
    assert status == "success"
    assert events, "the journal holds no events"
    return events


def check_error(h: Harness, res: RunnerResult[Any], error_type: str) -> list[tuple[str, Any]]:
    assert res.status == "error"
    assert res.error_type == error_type, (res.error_type, res.error)
    assert res.error and res.answer is None
    status, events = h.journal(res.run_id)
    assert status == "error"
    # the failed model call is journaled with its typed error
    assert any(name == "raw" and str(p.get("error", "")).startswith(error_type) for name, p in events), events
    return events


# ------------------------------------------------------------------ retryable faults
@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("fault", ["500", "503"])
async def test_server_errors_are_retried_and_the_run_succeeds(server: FaultServer, tmp_path: Path,
                                                              face: str, fault: str) -> None:
    server.reset(fault, fault)
    h = Harness(server, tmp_path / "runs.db")
    res = await h.run(face)
    check_success(h, res)
    assert res.answer == "5"
    assert server.served() == [fault, fault, "final"]
    check_streamed(server, face)
    # backoff: the client waited before each retry (not hammered back at once), growing
    assert len(h.sleeps) == 2 and all(0.01 <= s <= 0.1 for s in h.sleeps), h.sleeps


@pytest.mark.parametrize("face", FACES)
async def test_rate_limit_waits_for_retry_after_and_the_run_succeeds(server: FaultServer, tmp_path: Path,
                                                                     face: str) -> None:
    server.reset("429")
    h = Harness(server, tmp_path / "runs.db")
    res = await h.run(face)
    check_success(h, res)
    assert server.served() == ["429", "final"]
    # Retry-After honoured: the one wait is the header's 0.2 s (plus at most 5 % jitter), not the backoff
    assert len(h.sleeps) == 1 and RETRY_AFTER <= h.sleeps[0] <= RETRY_AFTER * 1.05, h.sleeps


@pytest.mark.parametrize("face", FACES)
async def test_a_hang_past_the_timeout_is_retried_and_the_run_succeeds(server: FaultServer, tmp_path: Path,
                                                                       face: str) -> None:
    server.reset("hang")
    h = Harness(server, tmp_path / "runs.db")
    res = await h.run(face)
    check_success(h, res)
    # the client gave up on the hang (which answers after 10 s) and retried once: had it waited,
    # the hang's own answer would have ended the run after one request
    assert server.served() == ["hang", "final"]
    assert len(h.sleeps) == 1


async def test_a_connection_reset_before_the_reply_is_retried(server: FaultServer, tmp_path: Path) -> None:
    server.reset("reset")
    h = Harness(server, tmp_path / "runs.db")
    res = await h.run("acall")
    check_success(h, res)
    assert server.served() == ["reset", "final"]


async def test_a_tool_step_then_an_error_then_success(server: FaultServer, tmp_path: Path) -> None:
    # faults in a later step do not lose the earlier one
    server.reset("tool", "503", "final")
    h = Harness(server, tmp_path / "runs.db")
    res = await h.run("acall")
    check_success(h, res)
    assert [s.observation for s in res.step_history if s.function is not None][0] in (5, "5")


# ------------------------------------------------------------------ faults that end the run cleanly
@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("fault, error_type", [("503", "ModelServerError"), ("429", "ModelRateLimitError"),
                                               ("hang", "ModelTimeoutError")])
async def test_retries_run_out_and_the_run_ends_with_a_typed_error(server: FaultServer, tmp_path: Path,
                                                                   face: str, fault: str, error_type: str) -> None:
    server.reset(*[fault] * 3)
    h = Harness(server, tmp_path / "runs.db", max_retries=1)
    res = await h.run(face)
    check_error(h, res, error_type)
    assert server.served() == [fault, fault]  # one try and one retry, no more
    assert len(h.sleeps) == 1


async def test_a_connection_reset_mid_stream_ends_the_run(server: FaultServer, tmp_path: Path) -> None:
    server.reset("reset")
    h = Harness(server, tmp_path / "runs.db")
    res = await h.run("astream")
    check_error(h, res, "ModelConnectionError")
    assert server.served() == ["reset"]  # after the first chunk a stream is not retried


async def test_a_truncated_stream_ends_the_run(server: FaultServer, tmp_path: Path) -> None:
    server.reset("truncated")
    h = Harness(server, tmp_path / "runs.db")
    res = await h.run("astream")
    check_error(h, res, "ModelResponseError")
    assert "before the reply was complete" in (res.error or "")
    assert server.served() == ["truncated"]


async def test_a_truncated_json_body_is_retried_like_a_dropped_connection(server: FaultServer, tmp_path: Path
                                                                         ) -> None:
    server.reset("truncated")
    h = Harness(server, tmp_path / "runs.db")
    res = await h.run("acall")
    assert res.ok and res.answer == "5", (res.error_type, res.error)
    assert server.served()[0] == "truncated" and len(server.served()) >= 2
    status, events = h.journal(res.run_id)
    assert status == "success" and events


# ------------------------------------------------------------------ recoverable steps
@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("fault", [
    "bad_args", "unknown_tool",
    "empty",
])
async def test_a_bad_reply_becomes_an_error_observation_and_the_run_goes_on(server: FaultServer, tmp_path: Path,
                                                                            face: str, fault: str) -> None:
    server.reset(fault)
    h = Harness(server, tmp_path / "runs.db")
    res = await h.run(face)
    check_success(h, res)
    assert res.answer == "5"
    assert server.served() == [fault, "final"]
    first = res.step_history[0]
    assert first.status == "error" and first.observation, first
    _, events = h.journal(res.run_id)
    steps = [p["item"]["data"] for name, p in events if name == "agent.step_complete"]
    assert steps[0]["status"] == "error" and steps[0]["observation"]  # the journal shows the recovered step
    check_streamed(server, face)


@pytest.mark.parametrize("face", FACES)
async def test_an_enormous_reply_is_taken_without_hanging(server: FaultServer, tmp_path: Path, face: str) -> None:
    server.reset("huge")
    h = Harness(server, tmp_path / "runs.db")
    res = await h.run(face)
    check_success(h, res)
    assert isinstance(res.answer, str) and len(res.answer) == HUGE_CHARS


@pytest.mark.parametrize("face", FACES)
async def test_bad_replies_every_step_end_at_max_steps(server: FaultServer, tmp_path: Path, face: str) -> None:
    server.reset(*["unknown_tool", "bad_args"] * 2)
    h = Harness(server, tmp_path / "runs.db", max_steps=3)
    res = await h.run(face)
    assert res.status == "max_steps" and res.error_type == "MaxStepsExceeded"
    assert len(res.step_history) == 3 and all(s.status == "error" for s in res.step_history)
    status, events = h.journal(res.run_id)
    assert status == "max_steps" and events




# ------------------------------------------------------------------ the overall deadline
def drip_seconds(face: str) -> float:
    """How long the whole drip-fed reply would take to arrive."""
    return len(drip_body(face == "astream")) * DRIP_EVERY


@pytest.mark.parametrize("face", ALL_FACES)
async def test_a_drip_feed_is_cut_off_by_the_overall_deadline(server: FaultServer, tmp_path: Path,
                                                                 face: str) -> None:
    # a byte every 0.2 s: no read ever waits 1 s, so only an overall deadline per attempt ends
    # it; the whole reply would take far longer than RUN_BOUND (and than the two attempts)
    assert drip_seconds(face) > RUN_BOUND and DRIP_FOR > RUN_BOUND
    server.reset("drip", "drip", "drip")
    h = Harness(server, tmp_path / "runs.db", max_retries=1, timeout=DRIP_TIMEOUT)
    res = await h.run(face)
    events = check_error(h, res, "ModelTimeoutError")
    assert "timed out" in (res.error or "")
    # one try and one retry (the retry policy's max_retries=1), no more: the third drip was never asked for
    assert server.served() == ["drip", "drip"] and server.schedule == ["drip"]
    assert len(h.sleeps) == 1
    check_streamed(server, face)
    assert [n for n, _ in events].count("raw") == 1  # the failed model call, journaled once


@pytest.mark.parametrize("face", ALL_FACES)
async def test_a_drip_feed_then_an_answer_is_retried_and_the_run_succeeds(server: FaultServer, tmp_path: Path,
                                                                          face: str) -> None:
    server.reset("drip")
    h = Harness(server, tmp_path / "runs.db", max_retries=2, timeout=DRIP_TIMEOUT)
    res = await h.run(face)
    check_success(h, res)
    assert res.answer == "5"
    assert server.served() == ["drip", "final"] and len(h.sleeps) == 1


async def test_the_stream_deadline_covers_the_whole_stream_not_each_event(server: FaultServer,
                                                                         tmp_path: Path) -> None:
    # the drip's first SSE event arrives byte by byte; a deadline per event, or per read, would
    # never fire. Straight on the model: the attempt's budget runs out, ModelTimeoutError, retried.
    server.reset("drip", "drip")
    h = Harness(server, tmp_path / "runs.db", max_retries=1, timeout=DRIP_TIMEOUT)

    async def consume() -> None:
        async for _ in h.model.stream(ModelRequest(messages=[{"role": "user", "content": "hi"}])):
            pass

    try:
        with pytest.raises(ModelTimeoutError, match="timed out"):
            await asyncio.wait_for(consume(), RUN_BOUND)
    finally:
        await h.model.aclose()
    assert server.served() == ["drip", "drip"]


# ------------------------------------------------------------------ replies of the wrong shape
@pytest.mark.parametrize("face", ALL_FACES)
@pytest.mark.parametrize("fault", ["null_message", "empty_choices", "missing_choices"])
async def test_a_reply_without_a_usable_choice_ends_the_run_with_a_typed_error(server: FaultServer, tmp_path: Path,
                                                                               face: str, fault: str) -> None:
    server.reset(fault, fault)
    h = Harness(server, tmp_path / "runs.db")
    res = await h.run(face)
    check_error(h, res, "ModelResponseError")  # never an AttributeError / TypeError
    assert server.served() == [fault]  # a malformed reply is not retried
    check_streamed(server, face)
