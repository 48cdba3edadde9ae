"""astream: model deltas, event payloads, errors after queued events."""

from __future__ import annotations

from typing import Any

from helpers import names
from treadle import (
    Agent,
    Function,
    ModelDelta,
    QueueCompleteSentinel,
    RawResponsesStreamEvent,
    RunItemStreamEvent,
    Runner,
    ScriptedModel,
)
from treadle.types import to_jsonable


async def test_streaming_model_deltas_become_raw_events() -> None:
    text = '{"thought": "done", "_is_answer_final": true, "_answer": "a fairly long answer"}'
    model = ScriptedModel([text], stream_chunk=10)
    sr = Runner(Agent(model=model)).astream("q")
    events = [e async for e in sr.stream_events()]
    raws = [e for e in events if isinstance(e, RawResponsesStreamEvent)]
    assert len(raws) == (len(text) + 9) // 10 + 1
    assert all(isinstance(e.data, ModelDelta) for e in raws[:-1])
    assert "".join(e.data.text for e in raws[:-1]) == text
    assert raws[-1].data[0].final_answer == "a fairly long answer", "then the parsed reply"
    assert sr.answer == "a fairly long answer"


async def test_acall_does_not_stream_the_model() -> None:
    model = ScriptedModel(['{"_is_answer_final": true, "_answer": "x"}'])
    events: list[Any] = []
    res = await Runner(Agent(model=model), event_handlers=[events.append]).acall("q")
    assert res.answer == "x" and names(events) == ["raw", "agent.execution_complete"]
    assert events[0].data[0].final_answer == "x"


async def test_events_serialise_to_json() -> None:
    def add(a: int, b: int) -> int:
        return a + b

    model = ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 2}), Function(name="finish",
                                                                                     kwargs={"answer": "3"})])
    sr = Runner(Agent(tools=[add], model=model)).astream("q")
    async for e in sr.stream_events():
        d = to_jsonable(e)
        assert d["run_id"] == sr.run_id and d["seq"] >= 1
        if isinstance(e, RunItemStreamEvent) and e.name == "agent.execution_complete":
            assert d["item"]["data"]["answer"] == "3"


async def test_put_nowait_compat_and_sentinel_ends_stream() -> None:
    model = ScriptedModel(['{"_is_answer_final": true, "_answer": "x"}'], delay=0.05)
    sr = Runner(Agent(model=model)).astream("q")
    sr.put_nowait(QueueCompleteSentinel())
    assert [e async for e in sr.stream_events()] == []
    try:
        sr.put_nowait("junk")
        raise AssertionError("expected ValueError")
    except ValueError:
        pass
    assert (await sr.wait_for_completion()).answer == "x"
