"""The journal's JSON for the events a step emits, twice as fast.

pydantic-core's ``to_json`` finds its way through a dataclass by inspecting it each time;
for the handful of types a step's events are made of (the events, their items, ``Function``,
``FunctionOutput``, ``StepOutput``, ``Usage``) the layout is known, so they are handed to it
as plain dicts with the same keys in the same order, which it writes about twice as fast.
Every value (a call's arguments, a tool's output, floats, text) is still written by
``to_json``: the text is the same (``tests/store/test_encode.py`` checks it). Anything else
(a subclass, another item type) is left to the caller's general path (``encode`` returns None).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pydantic_core import to_json

from .. import events as ev
from ..types import Function, FunctionOutput, StepOutput, Usage, _fallback

__all__ = ["encode"]

_dump = partial(to_json, fallback=_fallback, serialize_unknown=True, inf_nan_mode="strings")
# (not the run's end: its result's step history is written once a run, by the general path)
_ITEMS = frozenset({ev.ToolCallRunItem, ev.ToolOutputRunItem, ev.StepRunItem, ev.ToolCallActivityRunItem})


def _function(f: Any) -> Any:
    if type(f) is not Function:
        return f
    return {"id": f.id, "thought": f.thought, "name": f.name, "args": f.args, "kwargs": f.kwargs,
            "_is_answer_final": f._is_answer_final, "_answer": f._answer}


def _usage(u: Any) -> Any:
    if type(u) is not Usage:
        return u
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "requests": u.requests,
            "tool_calls": u.tool_calls, "cost_usd": u.cost_usd}


def _data(x: Any, compact: bool) -> Any:
    t = type(x)
    if t is Function:
        return _function(x)
    if t is FunctionOutput:
        return {"name": x.name, "input": _function(x.input), "parsed_input": x.parsed_input, "output": x.output,
                "error": x.error}
    if t is StepOutput:
        action, function = x.action, x.function
        out = {"step": x.step, "action": _function(action)}
        if not compact or function is not action or action is None:  # else store._codec puts it back
            out["function"] = _function(function)
        out.update(observation=x.observation, output=x.output, status=x.status, usage=_usage(x.usage),
                   planner_prompt=x.planner_prompt, ctx=x.ctx)
        return out
    if t is list:
        return [_function(y) for y in x]
    return x


def encode(event: Any, compact: bool = False) -> bytes | None:
    """``event`` as ``to_json`` writes it (``compact``: an ``agent.step_complete`` without its
    ``function`` when that is its ``action``), or None when it is not one of the types known
    here or holds a value to_json refuses (the caller takes its general path)."""
    t = type(event)
    if t is ev.RunItemStreamEvent:
        item = event.item
        if type(item) not in _ITEMS:
            return None
        value: dict[str, Any] = {
            "name": event.name,
            "item": {"id": item.id, "type": item.type, "data": _data(item.data, compact), "error": item.error,
                     "created_at": item.created_at},
            "type": event.type, "run_id": event.run_id, "seq": event.seq, "depth": event.depth,
            "parent_run_id": event.parent_run_id, "agent": event.agent}
    elif t is ev.RawResponsesStreamEvent:
        value = {"input": event.input, "data": _data(event.data, False), "type": event.type, "error": event.error,
                 "run_id": event.run_id, "seq": event.seq, "model_name": event.model_name,
                 "usage": _usage(event.usage), "text": event.text, "depth": event.depth,
                 "parent_run_id": event.parent_run_id, "agent": event.agent}
    else:
        return None
    try:
        return _dump(value)
    except Exception:  # a lone surrogate, a cycle, a failing __repr__...: the general path decides
        return None
