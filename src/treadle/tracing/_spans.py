"""The seed's span helpers (``runner_span``, ``step_span``, ``tool_span``, ``response_span``) on the OTel API."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Generator, Mapping, Sequence

from ..models._guards import is_dict, is_list, is_tuple
from ..types import RunnerResult
from ._common import SCOPE, content_enabled, error_kind, load_api, scrub, version
from ._state import Attributes, AttributeValue

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider


def _tracer_for(tracer_provider: TracerProvider | None) -> Tracer:
    trace, _ = load_api()
    if tracer_provider is not None:
        return tracer_provider.get_tracer(SCOPE, version())
    return trace.get_tracer(SCOPE, version())


def _homogeneous(values: Sequence[object]) -> AttributeValue | None:
    """A list of one primitive type as an attribute value (strings scrubbed), else None."""
    first = values[0]
    for kind in (bool, str, int, float):  # bool first: it is an int too
        if type(first) is kind and all(type(v) is kind for v in values):
            if kind is str:
                return [scrub(v) for v in values if isinstance(v, str)]
            if kind is bool:
                return [v for v in values if isinstance(v, bool)]
            if kind is int:
                return [v for v in values if isinstance(v, int)]
            return [v for v in values if isinstance(v, float)]
    return None


def _attr_value(value: object) -> AttributeValue:
    if isinstance(value, (str, bool, int, float)):
        return scrub(value) if isinstance(value, str) else value
    if (is_list(value) or is_tuple(value)) and value and all(isinstance(v, (str, bool, int, float)) for v in value):
        same = _homogeneous(value)
        if same is not None:
            return same
    from ..types import to_jsonable

    try:
        return scrub(json.dumps(to_jsonable(value), ensure_ascii=False))
    except Exception:
        return scrub(repr(value))


def _attrs(base: Attributes, extra: Mapping[str, object]) -> Attributes:
    for key, value in extra.items():
        if value is not None:
            base[key] = _attr_value(value)
    return base


def _content(include_content: bool | None) -> bool:
    return content_enabled() if include_content is None else include_content


@contextmanager
def runner_span(runner_id: str | None = None, max_steps: int | None = None, workflow_status: str | None = None,
                *, agent_name: str | None = None, tracer_provider: TracerProvider | None = None,
                **attributes: object) -> Generator[Span, None, None]:
    """A current ``invoke_agent`` span for code that drives agents itself (the seed's ``runner_span``).

    Yields the OpenTelemetry span; an exception inside marks it ERROR and is re-raised.
    """
    attrs = _attrs({"gen_ai.operation.name": "invoke_agent"},
                   {"gen_ai.agent.name": agent_name, "treadle.run_id": runner_id, "treadle.max_steps": max_steps,
                    "treadle.workflow_status": workflow_status})
    name = f"invoke_agent {agent_name}" if agent_name else "invoke_agent"
    with _tracer_for(tracer_provider).start_as_current_span(name, attributes=_attrs(attrs, attributes)) as span:
        yield span


@contextmanager
def step_span(step_number: int, action_type: str | None = None, *, tracer_provider: TracerProvider | None = None,
              **attributes: object) -> Generator[Span, None, None]:
    """A current ``step <n>`` span (the seed's ``step_span``)."""
    attrs = _attrs({"treadle.step": step_number, "openinference.span.kind": "CHAIN"},
                   {"treadle.step.action_type": action_type})
    with _tracer_for(tracer_provider).start_as_current_span(f"step {step_number}",
                                                           attributes=_attrs(attrs, attributes)) as span:
        yield span


@contextmanager
def tool_span(tool_name: str, function_name: str | None = None, function_args: Sequence[object] | None = None,
              function_kwargs: Mapping[str, object] | None = None, *, tool_call_id: str | None = None,
              include_content: bool | None = None, tracer_provider: TracerProvider | None = None,
              **attributes: object) -> Generator[Span, None, None]:
    """A current ``execute_tool <name>`` span (the seed's ``tool_span``).

    The arguments are recorded only when content capture is on.
    """
    attrs = _attrs({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool_name,
                    "gen_ai.tool.type": "function"},
                   {"gen_ai.tool.call.id": tool_call_id,
                    "treadle.function_name": function_name if function_name != tool_name else None})
    if _content(include_content) and (function_args or function_kwargs):
        args: dict[str, object] = dict(function_kwargs or {})
        if function_args:
            args["*args"] = list(function_args)
        attrs["gen_ai.tool.call.arguments"] = _attr_value(args)
    with _tracer_for(tracer_provider).start_as_current_span(f"execute_tool {tool_name}",
                                                           attributes=_attrs(attrs, attributes)) as span:
        yield span


@contextmanager
def response_span(answer: object = None, result_type: str | None = None, execution_metadata: object = None,
                  response: RunnerResult[object] | None = None, *, include_content: bool | None = None,
                  tracer_provider: TracerProvider | None = None, **attributes: object) -> Generator[Span, None, None]:
    """A current ``response`` span for a final result (the seed's ``response_span``).

    ``execution_metadata`` (a dict) becomes ``treadle.<key>`` attributes; a ``response`` that is a
    RunnerResult sets ``treadle.workflow_status`` and, on failure, the ERROR status. The answer is
    recorded only when content capture is on.
    """
    attrs = _attrs({"openinference.span.kind": "CHAIN"}, {"treadle.answer_type": result_type})
    if is_dict(execution_metadata):
        _attrs(attrs, {f"treadle.{k}": v for k, v in execution_metadata.items()})
    if response is not None:
        attrs["treadle.workflow_status"] = response.status
    if _content(include_content) and answer is not None:
        attrs["output.value"] = answer if isinstance(answer, str) else _attr_value(answer)
        attrs["output.value"] = scrub(str(attrs["output.value"]))
    with _tracer_for(tracer_provider).start_as_current_span("response", attributes=_attrs(attrs, attributes)) as span:
        error = response.error if response is not None else None
        if error:
            trace, _ = load_api()
            span.set_attribute("error.type", (response.error_type if response is not None else None)
                               or error_kind(error))
            span.set_status(trace.Status(trace.StatusCode.ERROR, scrub(error)))
        yield span
