"""Model faults over the wire: OpenAIModel and the Runner against a fault-injecting server.

Every fault is tried through ``acall`` (``OpenAIModel.request``) and ``astream``
(``OpenAIModel.stream``). For each: retryable faults are retried with backoff and the
run succeeds; the others end the run with status "error" and a typed ``error_type``, or
become a recoverable step (an error observation, then the run goes on). No run may hang
(each is bounded by ``asyncio.wait_for``), no exception may escape, and the journal must
show the run's status and its events.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("uvicorn", reason="the fault server needs uvicorn (pip install fastapi uvicorn)")
pytest.importorskip("starlette", reason="the fault server needs starlette (pip install fastapi uvicorn)")

from fault_server import HUGE_CHARS, RETRY_AFTER, FaultServer

from treadle import Agent, Runner
from treadle.models._retry import RetryPolicy
from treadle.models.openai import OpenAIModel
from treadle.store.journal import open_store
from treadle.types import RunnerResult

CLIENT_TIMEOUT = 0.5  # seconds per HTTP request; "hang" holds a request far longer
RUN_BOUND = 15.0  # no run may take longer than this
FACES = ["acall", "astream"]


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

    def __init__(self, server: FaultServer, db: Path, max_retries: int = 2, max_steps: int = 5) -> None:
        self.server = server
        self.store_url = f"sqlite:///{db}"
        self.model = OpenAIModel("fault-model", base_url=server.base_url, api_key="x", timeout=CLIENT_TIMEOUT,
                                 retry_policy=RetryPolicy(max_retries=max_retries, initial_delay=0.02,
                                                          max_delay=0.1, max_retry_after=5.0))
        self.runner = Runner(Agent(tools=[add], model=self.model, max_steps=max_steps), store=self.store_url)

    async def run(self, face: str) -> tuple[RunnerResult[Any], float]:
        start = time.monotonic()
        try:
            if face == "acall":
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
        return result, time.monotonic() - start

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
    """Every request went through the face's path: SSE for astream, JSON for acall."""
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
    res, _ = await h.run(face)
    check_success(h, res)
    assert res.answer == "5"
    assert server.served() == [fault, fault, "final"]
    check_streamed(server, face)
    assert all(gap >= 0.01 for gap in server.gaps()[:2])  # backoff: not hammered back at once


@pytest.mark.parametrize("face", FACES)
async def test_rate_limit_waits_for_retry_after_and_the_run_succeeds(server: FaultServer, tmp_path: Path,
                                                                     face: str) -> None:
    server.reset("429")
    h = Harness(server, tmp_path / "runs.db")
    res, _ = await h.run(face)
    check_success(h, res)
    assert server.served() == ["429", "final"]
    assert server.gaps()[0] >= RETRY_AFTER  # Retry-After honoured


@pytest.mark.parametrize("face", FACES)
async def test_a_hang_past_the_timeout_is_retried_and_the_run_succeeds(server: FaultServer, tmp_path: Path,
                                                                       face: str) -> None:
    server.reset("hang")
    h = Harness(server, tmp_path / "runs.db")
    res, took = await h.run(face)
    check_success(h, res)
    assert server.served() == ["hang", "final"]
    assert server.gaps()[0] >= CLIENT_TIMEOUT * 0.9
    assert took < 5


async def test_a_connection_reset_before_the_reply_is_retried(server: FaultServer, tmp_path: Path) -> None:
    server.reset("reset")
    h = Harness(server, tmp_path / "runs.db")
    res, _ = await h.run("acall")
    check_success(h, res)
    assert server.served() == ["reset", "final"]


async def test_a_tool_step_then_an_error_then_success(server: FaultServer, tmp_path: Path) -> None:
    # faults in a later step do not lose the earlier one
    server.reset("tool", "503", "final")
    h = Harness(server, tmp_path / "runs.db")
    res, _ = await h.run("acall")
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
    res, took = await h.run(face)
    check_error(h, res, error_type)
    assert server.served() == [fault, fault]  # one try and one retry, no more
    assert took < 5


async def test_a_connection_reset_mid_stream_ends_the_run(server: FaultServer, tmp_path: Path) -> None:
    server.reset("reset")
    h = Harness(server, tmp_path / "runs.db")
    res, _ = await h.run("astream")
    check_error(h, res, "ModelConnectionError")
    assert server.served() == ["reset"]  # after the first chunk a stream is not retried


async def test_a_truncated_stream_ends_the_run(server: FaultServer, tmp_path: Path) -> None:
    server.reset("truncated")
    h = Harness(server, tmp_path / "runs.db")
    res, _ = await h.run("astream")
    check_error(h, res, "ModelResponseError")
    assert "before the reply was complete" in (res.error or "")
    assert server.served() == ["truncated"]


async def test_a_truncated_json_body_is_retried_like_a_dropped_connection(server: FaultServer, tmp_path: Path
                                                                         ) -> None:
    server.reset("truncated")
    h = Harness(server, tmp_path / "runs.db")
    res, _ = await h.run("acall")
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
    res, _ = await h.run(face)
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
    res, took = await h.run(face)
    check_success(h, res)
    assert isinstance(res.answer, str) and len(res.answer) == HUGE_CHARS
    assert took < 10


@pytest.mark.parametrize("face", FACES)
async def test_bad_replies_every_step_end_at_max_steps(server: FaultServer, tmp_path: Path, face: str) -> None:
    server.reset(*["unknown_tool", "bad_args"] * 2)
    h = Harness(server, tmp_path / "runs.db", max_steps=3)
    res, _ = await h.run(face)
    assert res.status == "max_steps" and res.error_type == "MaxStepsExceeded"
    assert len(res.step_history) == 3 and all(s.status == "error" for s in res.step_history)
    status, events = h.journal(res.run_id)
    assert status == "max_steps" and events


