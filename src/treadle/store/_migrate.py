"""Journals of schemas 3 and 4 brought to one JSON event per row (schema 5), once, when a
store opens them.

Schemas 3 and 4 kept a commit's entries in one row (name ``treadle.entries``, a JSON array of
``[seq, name, created, event]``; ``created`` in seconds in 3, whole microseconds in 4), wrote a
step's usual events as their values only (``[seq, name, created, values, 1]``, ``values`` behind
a tag ``~S``/``~C``/``~P``/``~R``), left a step's ``function`` out when it was its ``action`` and a
run's ending's ``step_history`` out (``"treadle_steps_from_journal": N``). ``upgrade`` gives a
run's rows back as whole events, one a row, as the schema-4 treadle read them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence

from pydantic import JsonValue

from .. import events as ev

__all__ = ["GROUP", "upgrade"]

GROUP = "treadle.entries"
_STEPS = "treadle_steps_from_journal"
_SECONDS = 10 ** 13  # a time above it is in microseconds
_RUN_ITEM, _RAW = "run_item_stream_event", "raw_response_event"

Row = tuple[int, str, "str | bytes", float, "str | None"]  # seq, name, payload (JSON text), created_at, key
Json = JsonValue


def upgrade(run_id: str, rows: Sequence[Row]) -> list[tuple[int, str, str, float, str | None]] | None:
    """``run_id``'s rows as schema 5 writes them (payload as JSON text), or None when they are
    already so."""
    out: list[tuple[int, str, Json, float, str | None]] = []
    changed = False
    for seq, name, payload, created_at, key in rows:
        data: Json = json.loads(payload)
        if name == GROUP and isinstance(data, list):
            changed = True
            for entry in data:
                if not isinstance(entry, list) or len(entry) < 4:
                    raise ValueError(f"run {run_id!r}: a shared row of seq {seq} holds a malformed entry")
                s, n, c, p = entry[:4]
                if not isinstance(s, int) or not isinstance(n, str) or not isinstance(c, (int, float)):
                    raise ValueError(f"run {run_id!r}: a shared row of seq {seq} holds a malformed entry")
                if len(entry) > 4 and isinstance(p, list):
                    p = _whole(run_id, s, n, p)
                out.append((s, n, p, c / 1e6 if type(c) is int and c > _SECONDS else float(c), None))
        else:
            out.append((seq, name, data, created_at, key))
    out.sort(key=lambda r: r[0])
    changed = _restore(out) or changed
    if not changed:
        return None
    return [(s, n, json.dumps(p, ensure_ascii=False, separators=(",", ":")), c, k) for s, n, p, c, k in out]


def _restore(rows: list[tuple[int, str, Json, float, str | None]]) -> bool:
    steps: list[Json] = []
    changed = False
    for _, name, payload, _, _ in rows:
        item = payload.get("item") if isinstance(payload, dict) else None
        data = item.get("data") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(data, dict):
            continue
        if name == ev.STEP_COMPLETE:
            if "function" not in data and "action" in data:
                whole: dict[str, Json] = {}
                for k, v in data.items():
                    whole[k] = v
                    if k == "action":
                        whole["function"] = copy.deepcopy(v)
                item["data"] = data = whole
                changed = True
            steps.append(data)
        elif name == ev.EXECUTION_COMPLETE and _STEPS in data:
            n = data.pop(_STEPS)
            kept = steps if not isinstance(n, int) or n == len(steps) else steps[:n]
            item["data"] = {"step_history": copy.deepcopy(kept), **data}
            changed = True
    return changed


def _function(f: Json) -> Json:
    if not isinstance(f, list):
        return None
    return {"id": f[0], "thought": f[1], "name": f[2], "args": f[3], "kwargs": f[4], "_is_answer_final": f[5],
            "_answer": f[6]}


def _usage(u: Json) -> Json:
    if not isinstance(u, list):
        return None
    out: dict[str, Json] = {"input_tokens": u[0], "output_tokens": u[1], "requests": u[2], "tool_calls": u[3],
                            "cost_usd": u[4]}
    if len(u) > 5:  # written by a treadle with ``determined_replies`` (issue #34)
        out["determined_replies"] = u[5]
    return out


def _whole(run_id: str, seq: int, name: str, p: list[Json]) -> Json:
    """An event's JSON from its positional values (schema 4's ``store._encode.positional``)."""
    tag = p[0]
    if tag == "~R":
        _, given, calls, error, model_name, usage, text, depth, parent, agent = p[:10]
        reply: dict[str, Json] = {
            "input": given, "data": [_function(f) for f in calls] if isinstance(calls, list) else None, "type": _RAW,
            "error": error, "run_id": run_id, "seq": seq, "model_name": model_name,
            "usage": _usage(usage), "text": text, "depth": depth, "parent_run_id": parent, "agent": agent}
        if len(p) > 10:  # written by a treadle with ``finish_reason`` and ``model_ran`` (issue #34)
            reply.update(finish_reason=p[10], model_ran=p[11])
        return reply
    error, created_at, depth, parent, agent = p[-5:]
    if tag == "~S":
        item: dict[str, Json] = {"id": p[1], "type": "tool_call_start", "data": _function(p[2])}
    elif tag == "~C":
        item = {"id": p[1], "type": "tool_output", "data": {
            "name": p[2], "input": _function(p[3]), "parsed_input": p[4], "output": p[5], "error": p[6]}}
    elif tag == "~P":
        data: dict[str, Json] = {"step": p[2], "action": _function(p[3])}
        if p[4] != 0:
            data["function"] = _function(p[4])
        data.update(observation=p[5], output=p[6], status=p[7], usage=_usage(p[8]), planner_prompt=p[9], ctx=p[10])
        item = {"id": p[1], "type": "step", "data": data}
    else:
        raise ValueError(f"run {run_id!r}: entry {seq} has an unknown layout {tag!r}")
    item.update(error=error, created_at=created_at)
    return {"name": name, "item": item, "type": _RUN_ITEM, "run_id": run_id, "seq": seq, "depth": depth,
            "parent_run_id": parent, "agent": agent}
