"""A run's spans (run → step → model call / approval / tool) from its events, for the
trace waterfall. The same events the journal keeps, so a finished run draws the same."""

from __future__ import annotations

from typing import Any, Callable

from .. import events as ev
from ..store.journal import RAW

__all__ = ["MAX_DEPTH", "nested_trace", "spans_from_events"]

MAX_DEPTH = 16  # child runs drawn this deep


def _span(sid: str, parent: str | None, name: str, kind: str, start: float, **attributes: Any) -> dict[str, Any]:
    return {"id": sid, "parent": parent, "name": name, "kind": kind, "start": start, "end": None,
            "status": "ok", "attributes": attributes}


def _data(e: dict[str, Any]) -> dict[str, Any]:
    return ((e.get("item") or {}).get("data")) or {}


def spans_from_events(run_id: str, envelopes: list[dict[str, Any]], started_at: float | None = None) -> dict[str, Any]:
    """Spans of one run from its event envelopes ``{"seq", "ts", "name", "event"}``.

    A step starts when the previous one ended (or the run started) and ends at its
    ``agent.step_complete``; its model call ends at the parsed reply; a tool call spans
    ``tool_call_start`` → ``tool_call_complete``; an approval spans the request until the
    call starts or is answered. Spans still open at the end are closed at the last event.
    """
    envelopes = sorted(envelopes, key=lambda x: x["seq"])
    first = envelopes[0]["ts"] if envelopes else None
    start = min(t for t in (started_at, first) if t is not None) if (started_at or first) else 0.0
    run = _span(run_id, None, "run", "run", start)
    spans: list[dict[str, Any]] = [run]
    # keys are call ids and step numbers read from JSON events: any value (None too) may come
    steps: dict[Any, dict[str, Any]] = {}
    step_of_call: dict[Any, dict[str, Any]] = {}
    tools: dict[Any, dict[str, Any]] = {}
    approvals: dict[Any, dict[str, Any]] = {}
    cursor = start
    last = start
    for env in envelopes:
        name, e, ts = env["name"], env.get("event") or {}, env["ts"]
        last = max(last, ts)
        if name == RAW:
            data = e.get("data")
            calls = e.get("calls")
            if calls is None and isinstance(data, list):  # a full event from the journal
                calls = [{"name": f.get("name"), "id": f.get("id")} for f in data if isinstance(f, dict)]
            if calls is None:
                continue  # a streamed delta
            given = e.get("input")
            idx: int = given if isinstance(given, int) else len(steps)
            step = steps.get(idx)
            if step is None:
                step = steps[idx] = _span(f"{run_id}:step:{idx}", run["id"], f"step {idx + 1}", "step", cursor)
                spans.append(step)
            usage = e.get("usage") or {}
            model = _span(f"{run_id}:model:{env['seq']}", step["id"], "model call", "model", cursor,
                          input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"),
                          calls=[c.get("name") for c in calls])
            model["end"] = ts
            if e.get("error"):
                model["status"] = "error"
                model["attributes"]["error"] = e["error"]
            spans.append(model)
            for c in calls:
                if c.get("id"):
                    step_of_call[c["id"]] = step
        elif name == ev.TOOL_PERMISSION_REQUEST:
            d = _data(e)
            cid = d.get("id")
            parent = step_of_call.get(cid) or run
            span = _span(f"{run_id}:approval:{cid}", parent["id"], f"approval {d.get('tool_name')}", "approval", ts)
            approvals[cid] = span
            spans.append(span)
        elif name == ev.TOOL_CALL_START:
            d = _data(e)
            cid = d.get("id") or (e.get("item") or {}).get("id")
            _close(approvals.pop(cid, None), ts)
            parent = step_of_call.get(cid) or run
            span = _span(f"{run_id}:tool:{cid}", parent["id"], f"tool {d.get('name')}", "tool", ts, call_id=cid)
            tools[cid] = span
            spans.append(span)
        elif name == ev.TOOL_CALL_COMPLETE:
            d = _data(e)
            fn = d.get("input") if isinstance(d.get("input"), dict) else d
            cid = (fn or {}).get("id") or (e.get("item") or {}).get("id")
            span = tools.pop(cid, None)
            if span is not None:
                span["end"] = ts
                if d.get("error"):
                    span["status"] = "error"
                    span["attributes"]["error"] = d["error"]
        elif name == ev.STEP_COMPLETE:
            d = _data(e)
            fn = d.get("function") or {}
            step = step_of_call.get(fn.get("id")) or steps.get(d.get("step"))
            for cid in [fn.get("id")]:
                approval = approvals.pop(cid, None)
                if approval is not None:
                    approval["end"] = ts
                    approval["status"] = "error"  # answered without the call running: denied
            if step is not None:
                step["end"] = ts
                if d.get("status") not in (None, "success"):
                    step["status"] = "error"
            cursor = ts
        elif name == ev.GUARDRAIL:
            d = _data(e)
            parent = step_of_call.get(d.get("call_id")) or steps.get(d.get("step")) or run
            began = d.get("started_at") if isinstance(d.get("started_at"), (int, float)) and d["started_at"] else ts
            key = f"guardrail:{d.get('kind')}:{d.get('guardrail')}:{d.get('step') or 0}:{d.get('call_id') or ''}"
            span = _span(f"{run_id}:guardrail:{env['seq']}", parent["id"], f"guardrail {d.get('guardrail')}",
                         "guardrail", min(began, ts), guardrail_kind=d.get("kind"), tripped=d.get("tripped"),
                         action=d.get("action"), message=d.get("message"), key=key)
            span["end"] = ts
            if d.get("tripped"):
                span["status"] = "error"
            spans.append(span)
        elif name == ev.COMPACTION:
            d = _data(e)
            span = _span(f"{run_id}:compaction:{env['seq']}", run["id"], f"compaction ({d.get('reason')})",
                         "compaction", ts, tokens_before=d.get("tokens_before"), tokens_after=d.get("tokens_after"),
                         window=d.get("window"), strategies=d.get("strategies"), replaced=d.get("replaced"),
                         summary_model=d.get("summary_model"), usage=d.get("usage"))
            span["end"] = ts
            spans.append(span)
        elif name == ev.HANDOFF:
            d = _data(e)
            parent = step_of_call.get(d.get("call_id")) or steps.get(d.get("step")) or run
            span = _span(f"{run_id}:handoff:{env['seq']}", parent["id"], f"handoff → {d.get('to_agent')}", "handoff",
                         ts, from_agent=d.get("from_agent"), to_agent=d.get("to_agent"), message=d.get("message"))
            span["end"] = ts
            spans.append(span)
        elif name == ev.EXECUTION_COMPLETE:
            d = _data(e)
            run["end"] = ts
            run["attributes"]["status"] = d.get("status")
            if d.get("status") not in ("success", None):
                run["status"] = "error"
    end = run["end"] or last
    for s in spans:
        if s["end"] is None:
            s["end"] = end
        if s["kind"] == "step" and s["end"] < s["start"]:
            s["end"] = s["start"]
    return {"run_id": run_id, "start": start, "end": end, "spans": spans}


def _close(span: dict[str, Any] | None, ts: float) -> None:
    if span is not None:
        span["end"] = ts


def nested_trace(run_id: str, started_at: float | None, read: Callable[[str], tuple[list[dict[str, Any]],
                 list[dict[str, Any]]]], *, created: Callable[[str], float | None] = lambda rid: None
                 ) -> dict[str, Any]:
    """The trace of ``run_id`` with each child run's spans (an agent called as a tool, or
    used as a guardrail) under the parent's tool call (or guardrail) span, recursively.
    ``read(run_id)`` gives a run's event envelopes and its child links
    (``treadle.store.links.child_links``); ``created(run_id)`` its start time."""

    def build(rid: str, start: float | None, depth: int, seen: frozenset[str]) -> dict[str, Any]:
        envelopes, links = read(rid)
        trace = spans_from_events(rid, envelopes, start)
        if depth >= MAX_DEPTH:
            return trace
        ids = {s["id"] for s in trace["spans"]}
        guard_spans = {s["attributes"].get("key"): s["id"] for s in trace["spans"] if s["kind"] == "guardrail"}
        for link in links:
            child = link["run_id"]
            if child in seen:
                continue
            sub = build(child, created(child), depth + 1, seen | {child})
            root = sub["spans"][0]
            if link.get("kind") == "guardrail":
                parent = guard_spans.get(link.get("parent_call_id")) or rid
            else:
                tool = f"{rid}:tool:{link.get('call_id')}"
                parent = tool if tool in ids else rid
            root["parent"] = parent
            root["name"] = f"agent {link.get('agent') or 'run'}"
            root["attributes"].update(run_id=child, agent=link.get("agent"), depth=depth + 1,
                                      parent_call_id=link.get("parent_call_id"))
            trace["spans"].extend(sub["spans"])
            trace["start"] = min(trace["start"], sub["start"])
            trace["end"] = max(trace["end"], sub["end"])
        return trace

    return build(run_id, started_at, 0, frozenset({run_id}))
