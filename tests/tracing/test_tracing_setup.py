"""auto_tracer, lazy imports, and the seed's span helpers for user code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from tracing_tree import children, recorded_text, roots

from treadle import RunnerResult
from treadle.tracing import response_span, runner_span, step_span, tool_span

AUTO_SCRIPT = textwrap.dedent("""
    import json, os, sys
    out = {}
    import treadle
    from treadle import Agent, Function, Runner, ScriptedModel
    from treadle.tracing import OTelTracer, auto_tracer
    out["otel_after_import"] = [m for m in sys.modules if m.startswith("opentelemetry")]
    out["nothing_imported"] = auto_tracer() is None
    out["still_not_imported"] = "opentelemetry" not in sys.modules
    from opentelemetry import trace
    out["api_only"] = auto_tracer() is None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    t1, t2 = auto_tracer(), auto_tracer()
    out["with_sdk"] = isinstance(t1, OTelTracer)
    out["shared"] = t1 is t2
    out["explicit_wins"] = auto_tracer([OTelTracer(provider)]) is None
    os.environ["TREADLE_TRACING"] = "0"
    out["disabled"] = auto_tracer() is None
    del os.environ["TREADLE_TRACING"]
    agent = Agent(name="a", model=ScriptedModel([Function(name="finish", kwargs={"answer": "x"})]))
    Runner(agent, event_handlers=[t1]).call("q")
    out["spans"] = sorted(s.name for s in exporter.get_finished_spans())
    print(json.dumps(out))
""")


def test_auto_tracer_only_with_a_real_provider() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TREADLE_"))}
    proc = subprocess.run([sys.executable, "-c", AUTO_SCRIPT], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["otel_after_import"] == []
    assert out["nothing_imported"] and out["still_not_imported"]
    assert out["api_only"]
    assert out["with_sdk"] and out["shared"]
    assert out["explicit_wins"] and out["disabled"]
    assert out["spans"] == ["chat scripted", "invoke_agent a", "response", "step 0"]


def test_helpers_build_a_tree(otel: Any) -> None:
    with runner_span("run-1", max_steps=5, workflow_status="starting", agent_name="calc",
                     tracer_provider=otel.provider) as run:
        run.set_attribute("treadle.workflow_status", "completed")
        with step_span(0, action_type="planning", tracer_provider=otel.provider):
            with tool_span("add", "add", [1], {"b": 2}, tool_call_id="c1", tracer_provider=otel.provider):
                pass
        with response_span(answer="3", result_type="str", execution_metadata={"steps_executed": 1},
                           response=RunnerResult(answer="3"), tracer_provider=otel.provider):
            pass
    spans = otel.spans()
    (root,) = roots(spans)
    assert root.name == "invoke_agent calc"
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["treadle.run_id"] == "run-1"
    assert root.attributes["treadle.max_steps"] == 5
    assert root.attributes["treadle.workflow_status"] == "completed"
    step, response = children(spans, root)
    assert step.name == "step 0" and step.attributes["treadle.step.action_type"] == "planning"
    (tool,) = children(spans, step)
    assert tool.name == "execute_tool add"
    assert tool.attributes["gen_ai.tool.name"] == "add"
    assert tool.attributes["gen_ai.tool.call.id"] == "c1"
    assert "gen_ai.tool.call.arguments" not in tool.attributes  # content is opt-in here too
    assert response.attributes["treadle.steps_executed"] == 1
    assert response.attributes["treadle.workflow_status"] == "success"
    assert "output.value" not in response.attributes


def test_helpers_record_content_when_asked(otel: Any) -> None:
    with tool_span("add", function_args=[1], function_kwargs={"b": 2}, include_content=True,
                   tracer_provider=otel.provider):
        pass
    with response_span(answer={"total": 3}, include_content=True, tracer_provider=otel.provider):
        pass
    tool, response = sorted(otel.spans(), key=lambda s: s.start_time)
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"b": 2, "*args": [1]}
    assert json.loads(response.attributes["output.value"]) == {"total": 3}


def test_helpers_mark_errors(otel: Any) -> None:
    with pytest.raises(ZeroDivisionError):
        with step_span(3, tracer_provider=otel.provider):
            1 / 0  # noqa: B018
    failed = RunnerResult(error="Incorrect API key: sk-abcdefghijklmnop", status="error",
                          error_type="ModelAuthenticationError")
    with response_span(response=failed, tracer_provider=otel.provider):
        pass
    step, response = sorted(otel.spans(), key=lambda s: s.start_time)
    assert step.status.status_code.name == "ERROR"
    assert response.status.status_code.name == "ERROR"
    assert response.attributes["error.type"] == "ModelAuthenticationError"
    assert "abcdefghijklmnop" not in recorded_text([response])


def test_helpers_use_the_global_provider_by_default() -> None:
    from opentelemetry import trace

    with runner_span("r") as span:  # no SDK configured in this process: a no-op span, no error
        assert span is trace.get_current_span()


def test_runs_that_never_end_are_evicted(otel: Any) -> None:
    from treadle import RawResponsesStreamEvent
    from treadle.tracing import OTelTracer

    tracer = OTelTracer(otel.provider, max_open_runs=2)
    for rid in ("a", "b", "c"):  # model replies of runs whose last event never comes
        tracer(RawResponsesStreamEvent(input=0, data=[], run_id=rid, seq=1))
    assert tracer.open_runs == ["b", "c"]
    evicted = [s for s in otel.spans() if s.attributes.get("treadle.evicted")]
    assert sorted(s.name for s in evicted) == ["invoke_agent", "step 0"]
    assert {s.attributes["treadle.run_id"] for s in evicted} == {"a"}
