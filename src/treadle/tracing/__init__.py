"""OpenTelemetry tracing, built from the event stream.

``OTelTracer`` is an event handler: give it to ``Runner(event_handlers=[...])`` (or set a global
tracer provider and let ``auto_tracer()`` find it) and every run becomes a span tree::

    invoke_agent <agent>                  the run (gen_ai.operation.name = invoke_agent)
      step 0                              one planner step
        chat <model>                      the model call of that step
        execute_tool <tool>               each tool call of that step
      step 1 …
      step N                              the final answer's step (its chat span only)
      response                            the RunnerResult

Spans carry explicit start/end times taken from the events and explicit parents, so the
waterfall is right however the run was driven (``call``, ``acall``, ``astream``) and any
number of runs can be traced at once. Attribute names follow the OpenTelemetry GenAI semantic
conventions plus ``treadle.*``; ``openinference.span.kind`` is added so Phoenix shows kinds.

Prompts, tool arguments, observations and answers are recorded only when content capture is on
(``OTelTracer(include_content=True)`` or ``TREADLE_TRACE_CONTENT=1``). API keys never are:
``model_kwargs`` are read through an allow-list, and every string recorded is scrubbed of
key-shaped tokens.

Importing this module does not import opentelemetry; ``OTelTracer()`` does.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable

from ._common import CONTENT_ENV, FALSE, TRACING_ENV, content_enabled, scrub
from ._spans import response_span, runner_span, step_span, tool_span
from ._tracer import OTelTracer

__all__ = ["CONTENT_ENV", "TRACING_ENV", "OTelTracer", "auto_tracer", "content_enabled", "response_span",
           "runner_span", "scrub", "step_span", "tool_span"]

_shared: tuple[object, OTelTracer] | None = None  # (the global tracer provider, its tracer)


def auto_tracer(handlers: Iterable[object] = ()) -> OTelTracer | None:
    """An ``OTelTracer`` when a real tracer provider is set globally, else None.

    Costs a dict lookup when opentelemetry was never imported (it is not imported here then:
    a process that configured a provider has imported it already). None as well when
    ``TREADLE_TRACING=0``, or when ``handlers`` already hold an ``OTelTracer``. One tracer is
    shared by all callers while the global provider stays the same.
    """
    global _shared
    if os.environ.get(TRACING_ENV, "").strip().lower() in FALSE:
        return None
    if "opentelemetry.trace" not in sys.modules and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ:
        return None
    if any(isinstance(h, OTelTracer) for h in handlers):
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    cached = _shared
    if cached is not None and cached[0] is provider:
        return cached[1]
    tracer = OTelTracer(provider)
    _shared = (provider, tracer)
    return tracer
