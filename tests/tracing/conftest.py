"""Fixtures of the tracing tests: an SDK tracer provider with an in-memory exporter.

The OpenTelemetry SDK comes with the ``[otel]`` extra. When it is missing these tests fail
(they never skip), so a broken environment cannot pass unnoticed.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

try:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    _MISSING = None
except ImportError as e:  # pragma: no cover - depends on the environment
    _MISSING = str(e)


@pytest.fixture(autouse=True)
def _needs_sdk() -> None:
    if _MISSING is not None:
        pytest.fail(f"the tracing tests need the OpenTelemetry SDK ({_MISSING}); install it with: "
                    "pip install 'treadle[otel]'", pytrace=False)


@pytest.fixture
def otel() -> Any:
    """``otel.provider`` (an SDK TracerProvider) and ``otel.spans()`` (the finished spans so far)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ns = SimpleNamespace(provider=provider, exporter=exporter, spans=lambda: list(exporter.get_finished_spans()))
    yield ns
    provider.shutdown()
