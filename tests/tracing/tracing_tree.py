"""Helpers of the tracing tests: span trees, agents, and a look at everything a span records."""

from __future__ import annotations

import itertools
from typing import Any, Iterable

from treadle import Agent, Function, ScriptedModel

ADD = Function(name="add", kwargs={"a": 1, "b": 2})
FINISH = Function(name="finish", kwargs={"answer": "3"})
TOL_NS = 1_000  # float created_at vs time_ns: timestamps compared with a microsecond of slack


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def agent(replies: list[Any], *, name: str = "calc", tools: Iterable[Any] = (add,), **model_kw: Any) -> Agent[str]:
    model_kw.setdefault("per_run", True)
    return Agent(name=name, tools=list(tools), model=ScriptedModel(replies, **model_kw), max_steps=6)


def three_step_agent(**kw: Any) -> Agent[str]:
    """Two tool calls, then the final answer."""
    return agent([ADD, ADD, FINISH], **kw)


def children(spans: list[Any], parent: Any) -> list[Any]:
    sid = parent.context.span_id
    return sorted((s for s in spans if s.parent is not None and s.parent.span_id == sid),
                  key=lambda s: (s.start_time, s.name))


def roots(spans: list[Any]) -> list[Any]:
    ids = {s.context.span_id for s in spans}
    return [s for s in spans if s.parent is None or s.parent.span_id not in ids]


def run_root(spans: list[Any], run_id: str) -> Any:
    found = [s for s in spans if s.name.startswith("invoke_agent") and s.attributes.get("treadle.run_id") == run_id]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def shape(spans: list[Any], span: Any) -> Any:
    """The tree under ``span`` as nested (name, [children]) tuples, children in time order."""
    kids = children(spans, span)
    return (span.name, [shape(spans, k) for k in kids]) if kids else span.name


def trace_of(spans: list[Any], root: Any) -> list[Any]:
    """Every span below ``root`` (and root itself)."""
    out = [root]
    for k in children(spans, root):
        out.extend(trace_of(spans, k))
    return out


def check_times(spans: list[Any], root: Any) -> None:
    """Every span ends after it starts and lies inside its parent; siblings steps do not overlap."""
    for s in trace_of(spans, root):
        assert s.end_time >= s.start_time, s.name
        for k in children(spans, s):
            assert k.start_time >= s.start_time - TOL_NS, (s.name, k.name)
            assert k.end_time <= s.end_time + TOL_NS, (s.name, k.name)
            assert k.context.trace_id == s.context.trace_id
    steps = [k for k in children(spans, root) if k.name.startswith("step ")]
    for a, b in itertools.pairwise(steps):
        assert a.end_time <= b.start_time + TOL_NS, (a.name, b.name)


def recorded_text(spans: Iterable[Any]) -> str:
    """Everything the spans would export, as one string (attributes, events, statuses, names)."""
    parts: list[str] = []
    for s in spans:
        parts.append(s.name)
        parts.extend(f"{k}={v}" for k, v in (s.attributes or {}).items())
        parts.append(str(s.status.description or ""))
        for e in s.events:
            parts.append(e.name)
            parts.extend(f"{k}={v}" for k, v in (e.attributes or {}).items())
    return "\n".join(parts)
