"""A context compaction in the trace: a span under the run with its tokens, strategies and the
summary call's usage; the summary text only when content is recorded. And in the server's trace view."""

from __future__ import annotations

import re
from typing import Any

from treadle import Agent, Compaction, Function, Runner, ScriptedModel, Summarize
from treadle.compaction import SUMMARY_INSTRUCTIONS
from treadle.events import COMPACTION, RunItemStreamEvent
from treadle.server.trace import TraceEvent, spans_from_events
from treadle.store.records import decode
from treadle.tracing import OTelTracer
from treadle.types import to_jsonable


def fetch(page: int) -> str:
    """Fetch a page."""
    return f"page {page}: " + "lorem ipsum " * 60


def script(messages: list[dict[str, Any]]) -> Any:
    if messages[0]["content"] == SUMMARY_INSTRUCTIONS:
        return "Pages fetched so far: all ok."
    pages = [int(p) for m in messages if m["role"] == "assistant" for p in re.findall(r'"page": ?(\d+)', m["content"])]
    done = max(pages, default=0)  # (the next page after the last one asked for: compaction drops old steps)
    return Function(name="fetch", kwargs={"page": done + 1}) if done < 12 else Function(name="finish",
                                                                                       kwargs={"answer": "done"})


def run(otel: Any, content: bool) -> tuple[Any, list[Any]]:
    events: list[Any] = []
    agent = Agent(tools=[fetch], model=ScriptedModel([script], repeat_last=True), max_steps=20,
                  context=Compaction(window=1024, strategies=[Summarize(keep_last=2)]))
    res = Runner(agent, event_handlers=[OTelTracer(otel.provider, include_content=content), events.append]).call("go")
    assert res.status == "success", res.error
    return res, events


def test_a_compaction_is_a_span_of_the_run(otel: Any) -> None:
    res, events = run(otel, content=False)
    infos = [e.item.data for e in events if isinstance(e, RunItemStreamEvent) and e.name == COMPACTION]
    assert infos
    spans = [s for s in otel.spans() if s.name == "compaction"]
    assert len(spans) == len(infos)
    a = spans[0].attributes
    assert a["treadle.compaction.tokens_before"] == infos[0].tokens_before
    assert a["treadle.compaction.tokens_after"] == infos[0].tokens_after
    assert list(a["treadle.compaction.strategies"]) == ["summarize"] and a["treadle.compaction.window"] == 1024
    assert a["gen_ai.usage.input_tokens"] == infos[0].usage.input_tokens > 0
    assert "treadle.compaction.summary" not in a  # content is not recorded by default
    run_span = next(s for s in otel.spans() if s.name.startswith("invoke_agent"))
    assert spans[0].parent.span_id == run_span.context.span_id


def test_the_summary_is_in_the_span_when_content_is_recorded(otel: Any) -> None:
    run(otel, content=True)
    spans = [s for s in otel.spans() if s.name == "compaction"]
    assert spans[0].attributes["treadle.compaction.summary"] == "Pages fetched so far: all ok."


def test_the_server_trace_view_shows_the_compaction(otel: Any) -> None:
    res, events = run(otel, content=False)
    typed = [TraceEvent(e.seq, getattr(getattr(e, "item", None), "created_at", 0.0) or 0.0,
                        decode(to_jsonable(e))) for e in events]
    view = spans_from_events(res.run_id, typed)
    found = [s for s in view.spans if s.kind == "compaction"]
    assert found and found[0].attributes["strategies"] == ["summarize"]
