"""Traces in a real viewer: Arize Phoenix on loopback, fed over OTLP/HTTP, read back through its REST API.

Phoenix lives in its own venv (``eval "$(bash .ci/phoenix.sh)"`` sets ``TREADLE_PHOENIX_BIN``).
Without it this test skips locally and fails in CI (``CI`` set).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any, Iterator

import pytest
from tracing_tree import FINISH, agent, three_step_agent

from treadle import Runner
from treadle.errors import ModelAuthenticationError
from treadle.tracing import OTelTracer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
HINT = 'install it with: eval "$(bash .ci/phoenix.sh)"  (sets TREADLE_PHOENIX_BIN)'
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> Any:
    with _NO_PROXY.open(url, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base address of a Phoenix server on 127.0.0.1, its working dir in a temp dir."""
    exe = os.environ.get("TREADLE_PHOENIX_BIN")
    if not exe or not os.access(exe, os.X_OK):
        message = f"the Phoenix test needs Arize Phoenix ({exe or 'TREADLE_PHOENIX_BIN not set'}); {HINT}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    work = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    env.update(PHOENIX_HOST="127.0.0.1", PHOENIX_PORT=str(port), PHOENIX_GRPC_PORT=str(grpc_port),
               PHOENIX_WORKING_DIR=str(work), PHOENIX_TELEMETRY_ENABLED="false",
               PHOENIX_ALLOW_EXTERNAL_RESOURCES="false", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    base = f"http://127.0.0.1:{port}"
    with open(work / "phoenix.log", "wb") as log:
        proc = subprocess.Popen([exe, "serve"], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Phoenix exited with {proc.returncode}:\n{(work / 'phoenix.log').read_text()[-3000:]}",
                            pytrace=False)
            try:
                _get(f"{base}/readyz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"Phoenix not ready after 180 s:\n{(work / 'phoenix.log').read_text()[-3000:]}",
                                pytrace=False)
                time.sleep(0.25)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _provider(base: str, project: str) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "treadle-tests",
                                                        "openinference.project.name": project}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=10)))
    return provider


def _spans_of_run(base: str, project: str, run_id: str, expected: int) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"limit": 1000, "attribute": f'treadle.run_id:"{run_id}"'})
    url = f"{base}/v1/projects/{urllib.parse.quote(project)}/spans?{query}"
    deadline = time.monotonic() + 60
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # ingestion is asynchronous
        try:
            spans = _get(url)["data"]
        except OSError:  # the project appears with its first span
            spans = []
        if len(spans) >= expected:
            return spans
        time.sleep(0.25)
    pytest.fail(f"Phoenix has {len(spans)} spans of run {run_id}, expected {expected}", pytrace=False)


async def test_phoenix_receives_the_run_tree(phoenix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    project = f"treadle-{uuid.uuid4().hex[:8]}"
    provider = _provider(phoenix, project)
    tracer = OTelTracer(provider)
    ok = await Runner(three_step_agent(), event_handlers=[tracer]).acall("what is 1+2?")
    failed = await Runner(agent([ModelAuthenticationError("bad key"), FINISH]), event_handlers=[tracer]).acall("q")
    assert provider.force_flush(30_000)
    provider.shutdown()

    spans = _spans_of_run(phoenix, project, ok.run_id, 10)
    by_id = {s["context"]["span_id"]: s for s in spans}
    assert len(by_id) == 10
    assert len({s["context"]["trace_id"] for s in spans}) == 1
    (root,) = [s for s in spans if s["parent_id"] is None]
    assert root["name"] == "invoke_agent calc"
    assert root["span_kind"] == "AGENT"  # Phoenix reads the GenAI conventions
    assert root["attributes"]["treadle.workflow_status"] == "success"

    def kids(span: dict[str, Any]) -> list[str]:
        return sorted(s["name"] for s in spans if s["parent_id"] == span["context"]["span_id"])

    assert kids(root) == ["response", "step 0", "step 1", "step 2"]
    steps = {s["name"]: s for s in spans if s["parent_id"] == root["context"]["span_id"]}
    assert kids(steps["step 0"]) == ["chat scripted", "execute_tool add"]
    assert kids(steps["step 2"]) == ["chat scripted"]
    chats = [s for s in spans if s["name"] == "chat scripted"]
    assert {s["span_kind"] for s in chats} == {"LLM"}
    assert all(s["attributes"]["gen_ai.usage.input_tokens"] > 0 for s in chats)
    tools = [s for s in spans if s["name"] == "execute_tool add"]
    assert {s["span_kind"] for s in tools} == {"TOOL"}
    assert {s["attributes"]["gen_ai.tool.name"] for s in tools} == {"add"}
    assert "gen_ai.tool.call.arguments" not in tools[0]["attributes"]  # no content by default

    bad = _spans_of_run(phoenix, project, failed.run_id, 4)
    (bad_root,) = [s for s in bad if s["parent_id"] is None]
    assert bad_root["status_code"] == "ERROR"
    assert "bad key" in bad_root["status_message"]
    assert bad_root["attributes"]["error.type"] == "ModelAuthenticationError"


async def test_phoenix_shows_every_llm_spans_output(phoenix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #34: with content on, Phoenix reads each chat span's output messages (it drops the
    whole payload when a message lacks ``finish_reason``, and then shows ``{"model": ...}``); a
    reply no model ran for is not an LLM span."""
    from test_tracing_semconv import mixed_runner

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    project = f"treadle-{uuid.uuid4().hex[:8]}"
    provider = _provider(phoenix, project)
    res = await mixed_runner(provider).acall("add, break, wipe, delegate")
    assert res.status == "success", res.error
    assert provider.force_flush(30_000)
    provider.shutdown()

    spans = _spans_of_run(phoenix, project, res.run_id, 18)  # 6 steps, 6 chats, 4 tool calls, run, response
    llm = [s for s in spans if s["span_kind"] == "LLM"]
    assert sorted(s["name"] for s in llm) == ["chat outer-model"] * 6
    for s in llm:  # the OpenInference attributes Phoenix made of gen_ai.output.messages
        a = s["attributes"]
        out = {k[len("llm.output_messages.0.message."):]: v for k, v in a.items()
               if k.startswith("llm.output_messages.0.message.")}
        assert out.get("role") == "assistant" and out.get("finish_reason"), \
            f"{s['name']} step {a['treadle.step']}: Phoenix read no output message: {sorted(a)}"
        assert out.get("content") or out.get("tool_calls.0.tool_call.function.name"), out
        assert not str(a.get("output.value", "")).startswith('{"model"'), a.get("output.value")
    by_step = {s["attributes"]["treadle.step"]: s["attributes"] for s in llm}
    assert by_step[5]["llm.output_messages.0.message.content"] == '{"total": 3, "note": "done"}'
    assert by_step[5]["output.value"] == '{"total": 3, "note": "done"}'
    assert by_step[5]["llm.output_messages.0.message.finish_reason"] == "stop"
    assert by_step[0]["llm.output_messages.0.message.tool_calls.0.tool_call.function.name"] == "add"
    assert by_step[0]["llm.output_messages.0.message.finish_reason"] == "tool_call"
    assert by_step[2]["llm.output_messages.0.message.content"] == "this is not the JSON I was asked for"
    # the nested agent (its own run id): one model call, then its determined answer, which is no LLM span
    query = urllib.parse.urlencode({"limit": 1000})
    every = _get(f"{phoenix}/v1/projects/{urllib.parse.quote(project)}/spans?{query}")["data"]
    inner = [s for s in every if s["attributes"].get("treadle.run_id") != res.run_id]
    assert sorted(s["name"] for s in inner if s["span_kind"] == "LLM") == ["chat inner-model"]
    (reply,) = [s for s in inner if s["name"] == "determined_reply"]
    assert reply["span_kind"] == "CHAIN" and reply["attributes"]["treadle.model_ran"] is False
    assert reply["attributes"]["output.value"] == "3"
