"""A fake API key never leaks: not into results, the journal, spans, logs or exception messages.

Real components: ``OpenAIModel`` and ``AnthropicModel`` over HTTP to the loopback fault server
(with faults, so the error paths run: 401 and 500 whose bodies echo the credentials they were
sent, connection resets, timeouts), a SQLite journal, ``OTelTracer`` with content capture on
and the OpenTelemetry SDK's in-memory exporter, and every logger at DEBUG.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from recording_server import RecordingServer

from treadle import Agent, Runner
from treadle.errors import ModelError
from treadle.models._retry import RetryPolicy
from treadle.models.anthropic import AnthropicModel
from treadle.models.base import ModelRequest
from treadle.models.openai import OpenAIModel
from treadle.tracing import OTelTracer
from treadle.types import to_jsonable

KEY = "sk-test-SECRETMARKER123"
MARKER = "SECRETMARKER"
LOGGERS = ["", "treadle", "openai", "anthropic", "httpx", "httpx2", "httpcore", "httpcore2", "uvicorn", "asyncio"]
# schedule -> the run's expected status
SCHEDULES = {
    "401": (["401"], "error"),
    "500 echoing the key, retried until the retries run out": (["500key", "500key"], "error"),
    "500 echoing the key, then the answer": (["500key"], "success"),
    "reset, then the answer": (["reset"], "success"),  # a stream cut after its first event is not retried
    "timeouts until the retries run out": (["hang", "hang"], "error"),
}


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    return caplog


def make_model(provider: str, server: RecordingServer) -> Any:
    policy = RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.02)
    if provider == "openai":
        return OpenAIModel("fault-model", base_url=server.base_url, api_key=KEY, timeout=0.3, retry_policy=policy)
    return AnthropicModel("fault-model", base_url=f"http://127.0.0.1:{server.port}", api_key=KEY, timeout=0.3,
                          retry_policy=policy)


def assert_no_secret(where: str, text: str | bytes) -> None:
    found = (MARKER.encode() in text) if isinstance(text, bytes) else (MARKER in text)
    assert not found, f"the API key leaked into {where}"


def span_text(exporter: InMemorySpanExporter) -> str:
    return "\n".join(s.to_json() for s in exporter.get_finished_spans())


def journal_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


@pytest.mark.parametrize("face", ["acall", "astream"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("case", list(SCHEDULES))
async def test_the_key_never_leaks_from_a_run(server: RecordingServer, tmp_path: Path,
                                              debug_logs: pytest.LogCaptureFixture, provider: str, face: str,
                                              case: str) -> None:
    schedule, status = SCHEDULES[case]
    if schedule == ["reset"] and face == "astream":
        status = "error"
    server.reset(*schedule)
    exporter = InMemorySpanExporter()
    provider_ = TracerProvider()
    provider_.add_span_processor(SimpleSpanProcessor(exporter))
    model = make_model(provider, server)
    db = tmp_path / "runs.db"
    runner = Runner(Agent(tools=[add], model=model), store=f"sqlite:///{db}",
                    event_handlers=[OTelTracer(provider_, include_content=True)])
    try:
        if face == "acall":
            res = await asyncio.wait_for(runner.acall("What is 2 + 3?"), 30)
        else:
            sr = runner.astream("What is 2 + 3?")

            async def consume() -> Any:
                async for _ in sr.stream_events():
                    pass
                return await sr.wait_for_completion()

            res = await asyncio.wait_for(consume(), 30)
    finally:
        await model.aclose()
        provider_.shutdown()
    assert res.status == status, (res.error_type, res.error)
    assert server.requests and all(KEY in json.dumps(headers) for headers, _ in server.requests), \
        "the key was not sent: this test would prove nothing"
    assert_no_secret("the result's error", res.error or "")
    assert_no_secret("to_jsonable(result)", json.dumps(to_jsonable(res)))
    assert_no_secret("the spans", span_text(exporter))
    assert_no_secret("the logs", debug_logs.text)
    assert_no_secret("the journal file", journal_bytes(db))
    if schedule[-1] in ("401", "500key"):  # the server echoed the key: it was there to leak
        if status == "error":
            assert "[REDACTED]" in (res.error or "")
        else:  # the retry was logged with the error's message
            assert "[REDACTED]" in debug_logs.text


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", ["401", "500key"])
async def test_the_key_never_leaks_from_a_model_error(server: RecordingServer, debug_logs: pytest.LogCaptureFixture,
                                                      provider: str, fault: str, stream: bool) -> None:
    """The model called directly: the raised error, its chained cause and its traceback are clean."""
    server.reset(fault, fault)
    model = make_model(provider, server)
    request = ModelRequest(messages=[{"role": "user", "content": "hi"}])
    try:
        with pytest.raises(ModelError) as info:
            if stream:
                async for _ in model.stream(request):
                    pass
            else:
                await model.request(request)
    finally:
        await model.aclose()
    assert server.served()[0] == fault and KEY in json.dumps(server.requests[0][0])
    exc = info.value
    assert "[REDACTED]" in str(exc)
    assert_no_secret("the error message", str(exc))
    assert_no_secret("the traceback (with the SDK's error it was raised from)",
                     "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    assert_no_secret("the logs", debug_logs.text)
