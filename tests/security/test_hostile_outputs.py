"""Huge, binary and non-JSON-serialisable tool outputs, through a journaled run over the wire.

A real ``OpenAIModel`` talks to the loopback fault server, which asks for one tool call
(``add``) and then answers. ``add`` returns (or, as a generator tool, yields as progress and
then returns) a hostile value. For each value and each face (``acall``, ``astream``):

* the run ends, successfully, and no exception escapes;
* the observation the server received is text, UTF-8, truncated to ``max_observation_chars``;
* the SQLite journal holds strict JSON (no NaN), reads back, and ends with the result;
* every event, through ``treadle.store.records.event_json`` (what the HTTP server sends as SSE
  data), is strict UTF-8 JSON, and ``to_jsonable(result)`` passes ``json.dumps``;
* the OpenTelemetry spans (content capture on) are all ended and survive OTLP encoding.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from recording_server import RecordingServer

from helpers import run_face
from treadle import Agent, FunctionTool, Runner, ToolCallActivityRunItem
from treadle.models._retry import RetryPolicy
from treadle.models.openai import OpenAIModel
from treadle.store.records import event_json as _json
from treadle.tracing import OTelTracer
from treadle.types import to_jsonable

LIMIT = 1_000  # Agent.max_observation_chars
SLACK = 60  # the truncation marker


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")

    __str__ = __repr__


def recursive_list() -> list[Any]:
    x: list[Any] = [1]
    x.append(x)
    return x


def recursive_dict() -> dict[str, Any]:
    x: dict[str, Any] = {"a": 1}
    x["self"] = x
    return x


def deep(n: int) -> list[Any]:
    out: list[Any] = []
    x = out
    for _ in range(n):
        x.append([])
        x = x[0]
    return out


VALUES: dict[str, Callable[[], Any]] = {
    "10 MB string": lambda: "x" * 10_000_000,
    "bytes, not UTF-8": lambda: b"\xff\xfe\x00binary\x80",
    "bytes, UTF-8": lambda: "café".encode(),
    "object whose __repr__ raises": BadRepr,
    "set": lambda: {1, 2, 3},
    "datetime": lambda: datetime.datetime(2025, 1, 1, 12, 30, tzinfo=datetime.timezone.utc),
    "recursive list": recursive_list,
    "recursive dict": recursive_dict,
    "NaN": lambda: float("nan"),
    "infinities": lambda: {"up": float("inf"), "down": float("-inf")},
    "lone surrogate": lambda: "file-\udcff-name",
    "int of 5000 digits": lambda: 10**4999,
    "5000 levels of nesting": lambda: deep(5000),
    "non-string keys": lambda: {(1, 2): "tuple", None: 1, 3.5: "float"},
    "mixed bad things": lambda: {"k": [BadRepr(), {1, 2}, b"\xff", float("nan"), "\ud800", 10**5000]},
    "an exception object": lambda: ValueError("tool returned its error"),
}


def make_tool(value: Callable[[], Any], kind: str) -> FunctionTool:
    def add(a: int, b: int) -> Any:
        """Add two integers."""
        return value()

    def add_progress(a: int, b: int) -> Any:
        """Add two integers."""
        yield ToolCallActivityRunItem(data=value())
        yield value()

    return FunctionTool(add if kind == "return" else add_progress, name="add")


def strict_json(data: bytes | str) -> Any:
    def no_constants(name: str) -> Any:
        raise AssertionError(f"not strict JSON: {name}")

    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return json.loads(text, parse_constant=no_constants)


def check_spans(exporter: InMemorySpanExporter, tracer: OTelTracer) -> None:
    assert tracer.open_runs == [], "a run's span was never ended"
    spans = exporter.get_finished_spans()
    tools = [s for s in spans if s.name == "execute_tool add"]
    assert tools and all("gen_ai.tool.call.result" in s.attributes for s in tools)
    encoded = encode_spans(spans)  # what the OTLP exporter sends; it drops attributes it cannot encode
    kept = {(s.name, a.key) for rs in encoded.resource_spans for ss in rs.scope_spans for s in ss.spans
            for a in s.attributes}
    assert {(s.name, k) for s in spans for k in s.attributes} <= kept, "the OTLP encoding dropped attributes"


@pytest.mark.parametrize("face", ["acall", "astream"])
@pytest.mark.parametrize("kind", ["return", "progress"])
@pytest.mark.parametrize("label", list(VALUES))
async def test_a_hostile_tool_output_is_shown_truncated_journaled_and_serialised(
        server: RecordingServer, tmp_path: Path, label: str, kind: str, face: str) -> None:
    server.reset("tool", "final")
    model = OpenAIModel("fault-model", base_url=server.base_url, api_key="x", timeout=5,
                        retry_policy=RetryPolicy(max_retries=0))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = OTelTracer(provider, include_content=True)
    db = tmp_path / "runs.db"
    runner = Runner(Agent(tools=[make_tool(VALUES[label], kind)], model=model, max_observation_chars=LIMIT),
                    store=f"sqlite:///{db}", event_handlers=[tracer])
    try:
        res, events = await asyncio.wait_for(run_face(runner, face, "What is 2 + 3?"), 30)
    finally:
        await model.aclose()
    # the run went on past the tool and ended well
    assert res.status == "success" and res.answer == "5", (res.error_type, res.error)
    assert [s.status for s in res.step_history] == ["success"]
    # what the model was shown
    assert len(server.requests) == 2
    shown = [m["content"] for m in server.requests[1][1]["messages"] if m["role"] == "tool"]
    assert len(shown) == 1 and isinstance(shown[0], str) and 0 < len(shown[0]) <= LIMIT + SLACK
    shown[0].encode("utf-8")
    # the journal: strict JSON on disk, read back, ending with the result
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT name, payload FROM events WHERE run_id=? ORDER BY seq", (res.run_id,)).fetchall()
        run_row = con.execute("SELECT status, result FROM runs WHERE run_id=?", (res.run_id,)).fetchone()
    for _, payload in rows:
        strict_json(payload)
    assert run_row[0] == "success" and strict_json(run_row[1])["answer"] == "5"
    entries = runner.store.events(res.run_id)
    assert [e.name for e in entries] == [name for name, _ in rows]  # one event a row
    assert entries[-1].name == "agent.execution_complete"
    assert "agent.tool_call_complete" in [e.name for e in entries]
    if kind == "progress":
        assert "agent.tool_call_activity" in [e.name for e in entries]
    # every event as the HTTP server sends it, and the result as an API returns it
    for event in events:
        json.dumps(strict_json(_json(event)), allow_nan=False)
    json.dumps(to_jsonable(res), allow_nan=False, ensure_ascii=False).encode("utf-8")
    provider.shutdown()
    check_spans(exporter, tracer)


@pytest.mark.parametrize("face", ["acall", "astream"])
async def test_a_tool_error_text_that_is_not_utf8_still_ends_the_run_in_the_journal(
        server: RecordingServer, tmp_path: Path, face: str) -> None:
    """A refusal whose text holds a lone surrogate (a file name decoded with surrogateescape), repeated
    until the retries run out: the run ends with a typed error, and the journal records that end."""
    from treadle import ModelRetry

    def add(a: int, b: int) -> int:
        """Add two integers."""
        raise ModelRetry("no such file: report-\udcff.txt")

    server.reset("tool", "tool")
    model = OpenAIModel("fault-model", base_url=server.base_url, api_key="x", timeout=5,
                        retry_policy=RetryPolicy(max_retries=0))
    db = tmp_path / "runs.db"
    runner = Runner(Agent(tools=[FunctionTool(add, max_retries=1)], model=model, max_observation_chars=LIMIT),
                    store=f"sqlite:///{db}")
    try:
        res, events = await asyncio.wait_for(run_face(runner, face, "What is 2 + 3?"), 30)
    finally:
        await model.aclose()
    assert res.status == "error" and res.error_type == "ToolRetriesExceededError", (res.error_type, res.error)
    record = runner.store.get_run(res.run_id)
    assert record.status == "error" and record.result["error_type"] == "ToolRetriesExceededError"
    json.dumps(record.result, allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert runner.store.events(res.run_id)[-1].name == "agent.execution_complete"
    for m in server.requests[1][1]["messages"]:
        json.dumps(m, ensure_ascii=False).encode("utf-8")
    json.dumps(to_jsonable(res), allow_nan=False, ensure_ascii=False).encode("utf-8")
