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

from typing import Any

from pydantic_core import to_json

from .. import events as ev
from ..types import Function, FunctionOutput, RunnerResult, StepOutput, Usage, _fallback

__all__ = ["TAGS", "encode", "encode_end", "positional", "whole"]

def _dump(value: Any) -> bytes:  # (a plain function: a partial with keywords costs a quarter more a call)
    return to_json(value, fallback=_fallback, serialize_unknown=True, inf_nan_mode="strings")


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
            "tool_calls": u.tool_calls, "cost_usd": u.cost_usd, "determined_replies": u.determined_replies}


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
                 "parent_run_id": event.parent_run_id, "agent": event.agent, "finish_reason": event.finish_reason,
                 "model_ran": event.model_ran}
    else:
        return None
    try:
        return _dump(value)
    except Exception:  # a lone surrogate, a cycle, a failing __repr__...: the general path decides
        return None


def encode_end(event: Any, steps_key: str, steps: int) -> bytes | None:
    """A run's ``agent.execution_complete`` as ``to_json`` writes it, its result's
    ``step_history`` replaced by ``steps_key: steps`` (the first key of the result); None when
    it is not exactly that event with a ``RunnerResult`` (the caller takes its general path)."""
    item = event.item
    data = item.data
    if (type(event) is not ev.RunItemStreamEvent or type(item) is not ev.FinalOutputItem
            or type(data) is not RunnerResult):
        return None
    value = {"name": event.name,
             "item": {"id": item.id, "type": item.type,
                      "data": {steps_key: steps, "answer": data.answer, "error": data.error, "ctx": data.ctx,
                               "usage": _usage(data.usage), "status": data.status, "run_id": data.run_id,
                               "error_type": data.error_type},
                      "error": item.error, "created_at": item.created_at},
             "type": event.type, "run_id": event.run_id, "seq": event.seq, "depth": event.depth,
             "parent_run_id": event.parent_run_id, "agent": event.agent}
    try:
        return _dump(value)
    except Exception:
        return None


# ---------------------------------------------------------------------------- positional
# A step's usual events as the list of their values only, in field order, behind a tag naming
# the layout: what every such event holds alike (the keys, the envelope's and the item's
# type, the run id, the seq and the name, which the row keeps) is not written, and the list
# is written about three times as fast as the whole event, at a quarter of its size.
# ``whole`` (used by store._codec.expand) turns it back into the event's JSON, key for key.
_RUN_ITEM, _RAW = "run_item_stream_event", "raw_response_event"
START, COMPLETE, STEP, REPLY = "~S", "~C", "~P", "~R"  # the tags (an event's own JSON is an object)
TAGS = frozenset({START, COMPLETE, STEP, REPLY})


def _fields(f: Any) -> list[Any]:
    return [f.id, f.thought, f.name, f.args, f.kwargs, f._is_answer_final, f._answer]


def _usage_fields(u: Usage) -> list[Any]:
    return [u.input_tokens, u.output_tokens, u.requests, u.tool_calls, u.cost_usd, u.determined_replies]


def positional(event: Any, name: str, created_us: int) -> bytes | None:
    """``event`` as a group row's entry of its values (see above): ``[seq, name, created_us,
    values, 1]``, a step's ``function`` left out (0) when it is its ``action``; None when it is
    not exactly one of the layouts (the caller writes it whole)."""
    t = type(event)
    if t is ev.RunItemStreamEvent:
        if event.type != _RUN_ITEM:
            return None
        item = event.item
        it, data = type(item), item.data
        dt = type(data)
        if it is ev.ToolCallRunItem and dt is Function and item.type == "tool_call_start":
            value: list[Any] = [START, item.id, _fields(data)]
        elif it is ev.ToolOutputRunItem and dt is FunctionOutput and item.type == "tool_output":
            given = data.input
            if given is not None and type(given) is not Function:
                return None
            value = [COMPLETE, item.id, data.name, None if given is None else _fields(given), data.parsed_input,
                     data.output, data.error]
        elif it is ev.StepRunItem and dt is StepOutput and item.type == "step":
            action, function, usage = data.action, data.function, data.usage
            if ((action is not None and type(action) is not Function)
                    or (function is not None and type(function) is not Function)
                    or (usage is not None and type(usage) is not Usage)):
                return None
            # left out only where store._codec puts it back: an agent.step_complete
            same = function is action and action is not None and name == ev.STEP_COMPLETE
            value = [STEP, item.id, data.step, None if action is None else _fields(action),
                     0 if same else None if function is None else _fields(function), data.observation,
                     data.output, data.status, None if usage is None else _usage_fields(usage), data.planner_prompt,
                     data.ctx]
        else:
            return None
        value += (item.error, item.created_at, event.depth, event.parent_run_id, event.agent)
    elif t is ev.RawResponsesStreamEvent:
        data, usage = event.data, event.usage
        if event.type != _RAW or (usage is not None and type(usage) is not Usage):
            return None
        if data is not None:
            if type(data) is not list or any(type(f) is not Function for f in data):
                return None
            data = [_fields(f) for f in data]
        value = [REPLY, event.input, data, event.error, event.model_name,
                 None if usage is None else _usage_fields(usage), event.text, event.depth, event.parent_run_id,
                 event.agent, event.finish_reason, event.model_ran]
    else:
        return None
    try:
        return to_json([event.seq, name, created_us, value, 1], fallback=_fallback, serialize_unknown=True,
                       inf_nan_mode="strings")
    except Exception:
        return None


def _function_dict(f: list[Any] | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {"id": f[0], "thought": f[1], "name": f[2], "args": f[3], "kwargs": f[4], "_is_answer_final": f[5],
            "_answer": f[6]}


def _usage_dict(u: list[Any] | None) -> dict[str, Any] | None:
    if u is None:
        return None
    # (entries written before ``determined_replies`` have five values)
    return {"input_tokens": u[0], "output_tokens": u[1], "requests": u[2], "tool_calls": u[3], "cost_usd": u[4],
            "determined_replies": u[5] if len(u) > 5 else 0}


def whole(run_id: str, seq: int, name: str, p: list[Any]) -> dict[str, Any]:
    """The event's JSON (as parsed) from its ``positional`` values; a step whose ``function``
    was left out gets none (``store._codec`` puts it back, as for a whole compact step)."""
    tag = p[0]
    if tag == REPLY:
        _, given, calls, error, model_name, usage, text, depth, parent, agent = p[:10]
        finish_reason, model_ran = p[10:12] if len(p) > 10 else (None, True)  # (older entries have ten values)
        return {"input": given, "data": None if calls is None else [_function_dict(f) for f in calls],
                "type": _RAW, "error": error, "run_id": run_id, "seq": seq, "model_name": model_name,
                "usage": _usage_dict(usage), "text": text, "depth": depth, "parent_run_id": parent, "agent": agent,
                "finish_reason": finish_reason, "model_ran": model_ran}
    error, created_at, depth, parent, agent = p[-5:]
    if tag == START:
        item: dict[str, Any] = {"id": p[1], "type": "tool_call_start", "data": _function_dict(p[2])}
    elif tag == COMPLETE:
        item = {"id": p[1], "type": "tool_output", "data": {
            "name": p[2], "input": _function_dict(p[3]), "parsed_input": p[4], "output": p[5], "error": p[6]}}
    elif tag == STEP:
        data: dict[str, Any] = {"step": p[2], "action": _function_dict(p[3])}
        if p[4] != 0:
            data["function"] = _function_dict(p[4])
        data.update(observation=p[5], output=p[6], status=p[7], usage=_usage_dict(p[8]), planner_prompt=p[9],
                    ctx=p[10])
        item = {"id": p[1], "type": "step", "data": data}
    else:
        raise ValueError(f"unknown positional layout {tag!r}")
    item.update(error=error, created_at=created_at)
    return {"name": name, "item": item, "type": _RUN_ITEM, "run_id": run_id, "seq": seq, "depth": depth,
            "parent_run_id": parent, "agent": agent}
