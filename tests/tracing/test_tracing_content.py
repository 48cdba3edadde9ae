"""Prompts, arguments, observations and answers: out of spans unless asked for."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tracing_tree import agent, children, recorded_text, run_root

from helpers import run_face
from treadle import Function, Runner
from treadle.tracing import CONTENT_ENV, OTelTracer

PROMPT = "PROMPT-7f3a what is in the box?"
ARG = "ARG-91c2"
OBS = "OBS-55de"
ANSWER = "ANSWER-c0ffee"


def peek(item: str) -> str:
    """Look into a box."""
    return f"{OBS}: the box holds {item}"


def content_agent() -> Any:
    return agent([Function(name="peek", kwargs={"item": ARG}), Function(name="finish", kwargs={"answer": ANSWER})],
                 tools=[peek])


async def test_no_content_by_default(otel: Any, face: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONTENT_ENV, raising=False)
    runner = Runner(content_agent(), event_handlers=[OTelTracer(otel.provider)])
    res, _ = await run_face(runner, face, PROMPT)
    assert res.answer == ANSWER
    text = recorded_text(otel.spans())
    for secret in ("PROMPT-7f3a", ARG, OBS, ANSWER):
        assert secret not in text
    assert "execute_tool peek" in text  # the structure is all there


async def test_content_when_opted_in(otel: Any, face: str) -> None:
    runner = Runner(content_agent(), event_handlers=[OTelTracer(otel.provider, include_content=True)])
    res, _ = await run_face(runner, face, PROMPT)
    spans = otel.spans()
    root = run_root(spans, res.run_id)
    assert root.attributes["input.value"] == PROMPT
    assert json.loads(root.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
    assert root.attributes["output.value"] == ANSWER
    step0, step1, response = children(spans, root)
    chat0, tool = children(spans, step0)
    messages = json.loads(chat0.attributes["gen_ai.input.messages"])
    assert messages[0]["role"] == "system"
    assert any(PROMPT in p.get("content", "") for m in messages for p in m["parts"])
    output = chat0.attributes["gen_ai.output.messages"]
    assert "peek" in output and ARG in output
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"item": ARG}
    assert tool.attributes["gen_ai.tool.call.result"] == f"{OBS}: the box holds {ARG}"
    chat1 = children(spans, step1)[0]
    assert OBS in chat1.attributes["gen_ai.input.messages"]  # the observation went back to the model
    assert ANSWER in chat1.attributes["gen_ai.output.messages"]
    assert response.attributes["output.value"] == ANSWER


async def test_content_from_the_environment(otel: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONTENT_ENV, "1")
    runner = Runner(content_agent(), event_handlers=[OTelTracer(otel.provider)])
    await runner.acall(PROMPT)
    assert ARG in recorded_text(otel.spans())
    otel.exporter.clear()
    runner = Runner(content_agent(), event_handlers=[OTelTracer(otel.provider, include_content=False)])
    await runner.acall(PROMPT)  # an explicit False wins over the environment
    assert ARG not in recorded_text(otel.spans())


async def test_long_content_is_cut(otel: Any) -> None:
    def big(n: int) -> str:
        """A long result."""
        return "x" * n

    runner = Runner(agent([Function(name="big", kwargs={"n": 5000}), Function(name="finish", kwargs={"answer": "ok"})],
                          tools=[big]),
                    event_handlers=[OTelTracer(otel.provider, include_content=True, max_content_chars=100)])
    res = await runner.acall("q")
    spans = otel.spans()
    tool = children(spans, children(spans, run_root(spans, res.run_id))[0])[1]
    result = tool.attributes["gen_ai.tool.call.result"]
    assert result.startswith("x" * 100) and result.endswith("[4900 more chars]")


async def test_activity_events(otel: Any) -> None:
    from treadle import ToolCallActivityRunItem

    def progress(n: int) -> Any:
        """Reports progress."""
        for i in range(n):
            yield ToolCallActivityRunItem(data=f"PROGRESS-{i}")
        yield "done"

    for content in (False, True):
        otel.exporter.clear()
        runner = Runner(agent([Function(name="progress", kwargs={"n": 2}),
                               Function(name="finish", kwargs={"answer": "ok"})], tools=[progress]),
                        event_handlers=[OTelTracer(otel.provider, include_content=content)])
        res = await runner.acall("q")
        spans = otel.spans()
        tool = children(spans, children(spans, run_root(spans, res.run_id))[0])[1]
        assert [e.name for e in tool.events] == ["treadle.tool_call_activity"] * 2
        assert ("PROGRESS-1" in recorded_text([tool])) is content
