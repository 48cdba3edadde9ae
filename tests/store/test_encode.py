"""store._encode writes a step's events exactly as pydantic-core's to_json does."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from treadle import events as ev
from treadle.store._encode import encode, encode_end
from treadle.types import Function, FunctionOutput, RunnerResult, StepOutput, ToolOutput, Usage, _fallback


def reference(event: Any, exclude: Any = None) -> bytes:
    return to_json(event, fallback=_fallback, serialize_unknown=True, inf_nan_mode="strings", exclude=exclude)


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Opaque:
    def __repr__(self) -> str:
        return "<opaque ✓>"


# text with quotes, backslashes, control characters, non-ASCII and (rarely) lone surrogates
texts = st.text(max_size=12) | st.sampled_from(['"', "\\", "\x00\x1f\x7f", "é ✓ 𝄞", "\ud800", "line\nnext\ttab"])
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-4, 9.99e-5, 1e15, 1e16])
ints = st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
leaves = (st.none() | st.booleans() | ints | floats | texts | st.builds(Point, st.integers(), floats)
          | st.just(Opaque()) | st.binary(max_size=4)
          | st.sampled_from([ToolOutput(output=1, observation="one"), Usage(1, 2, 3, 4, 0.5)]))
values = st.recursive(leaves, lambda c: st.lists(c, max_size=3) | st.dictionaries(texts, c, max_size=3), max_leaves=8)
optional_texts = st.none() | texts
run_ids = st.none() | st.text("0123456789abcdef", min_size=1, max_size=32)  # as new_run_id makes them
functions = st.builds(Function, id=optional_texts, thought=optional_texts, name=texts,
                      args=st.lists(values, max_size=2), kwargs=st.dictionaries(texts, values, max_size=3),
                      _is_answer_final=st.none() | st.booleans(), _answer=st.none() | values)
usages = st.none() | st.builds(Usage, st.integers(0, 10 ** 6), st.integers(0, 10 ** 6), st.integers(0, 99),
                              st.integers(0, 99), floats, st.integers(0, 9))


@st.composite
def steps(draw: st.DrawFn) -> StepOutput:
    action = draw(st.none() | functions)
    function = draw(st.sampled_from(["same", "copy", "none"]))
    return StepOutput(step=draw(st.integers(0, 50)), action=action,
                      function=action if function == "same" else (action.copy() if action and function == "copy"
                                                                   else None),
                      observation=draw(values), output=draw(values), status=draw(st.sampled_from(["success", "error"])),
                      usage=draw(usages), planner_prompt=draw(optional_texts),
                      ctx=draw(st.none() | st.dictionaries(texts, values, max_size=2)))


def item_event(name: str, item: ev.RunItem, draw: Any) -> ev.RunItemStreamEvent:
    item.created_at = draw(st.floats(1e9, 3e9) | floats)
    item.error = draw(optional_texts)
    return ev.RunItemStreamEvent(name=name, item=item, run_id=draw(run_ids), seq=draw(st.integers(0, 10 ** 6)),
                                 depth=draw(st.integers(0, 3)), parent_run_id=draw(optional_texts),
                                 agent=draw(optional_texts))


@st.composite
def events(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["raw", "start", "complete", "step", "activity", "other"]))
    if kind == "raw":
        return ev.RawResponsesStreamEvent(input=draw(st.integers(0, 9) | values),
                                          data=draw(st.lists(functions, max_size=3) | values),
                                          error=draw(optional_texts), run_id=draw(run_ids),
                                          seq=draw(st.integers(0, 99)), model_name=draw(optional_texts),
                                          usage=draw(usages), text=draw(optional_texts), depth=draw(st.integers(0, 2)),
                                          parent_run_id=draw(optional_texts), agent=draw(optional_texts),
                                          finish_reason=draw(optional_texts), model_ran=draw(st.booleans()))
    if kind == "start":
        return item_event(ev.TOOL_CALL_START, ev.ToolCallRunItem(id=draw(texts), data=draw(functions)), draw)
    if kind == "complete":
        out = FunctionOutput(name=draw(texts), input=draw(st.none() | functions), parsed_input=draw(values),
                             output=draw(values), error=draw(optional_texts))
        return item_event(ev.TOOL_CALL_COMPLETE, ev.ToolOutputRunItem(id=draw(texts), data=out), draw)
    if kind == "step":
        return item_event(ev.STEP_COMPLETE, ev.StepRunItem(data=draw(steps())), draw)
    if kind == "activity":
        return item_event(ev.TOOL_CALL_ACTIVITY, ev.ToolCallActivityRunItem(data=draw(values)), draw)
    return item_event(ev.HANDOFF, ev.HandoffRunItem(data=draw(values)), draw)  # not written here: None


@settings(max_examples=400, deadline=None)
@given(events())
def test_a_steps_events_are_written_as_to_json_writes_them(event: Any) -> None:
    fast = encode(event)
    try:
        slow = reference(event)
    except Exception:  # to_json refuses it (a lone surrogate...): so must the fast path
        assert fast is None
        return
    if type(getattr(event, "item", None)) is ev.HandoffRunItem:
        assert fast is None
        return
    if fast is None:  # only for what to_json writes but the fast path leaves to it: a lone surrogate
        assert "\\ud8" in slow.decode() or "\ud800" in repr(event)
        return
    assert fast == slow
    json.loads(fast)  # strict JSON (NaN as strings)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_compact_step_leaves_out_only_its_function_when_it_is_its_action(data: st.DataObject) -> None:
    event = item_event(ev.STEP_COMPLETE, ev.StepRunItem(data=data.draw(steps())), data.draw)
    fast = encode(event, compact=True)
    step = event.item.data
    same = step.function is step.action and step.action is not None
    try:
        slow = reference(event, {"item": {"data": {"function"}}} if same else None)
    except Exception:
        assert fast is None
        return
    if fast is not None:
        assert fast == slow
        assert ("function" in json.loads(fast)["item"]["data"]) is not same


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_runs_end_is_written_as_the_journal_wrote_it_without_its_step_history(data: st.DataObject) -> None:
    from treadle.store.journal import _NO_HISTORY, _RESULT_DATA

    draw = data.draw
    result = RunnerResult(step_history=draw(st.lists(steps(), max_size=2)), answer=draw(values),
                          error=draw(optional_texts), ctx=draw(st.none() | values),
                          usage=draw(st.builds(Usage, st.integers(0, 99), st.integers(0, 99), st.integers(0, 9),
                                               st.integers(0, 9), floats)),
                          status=draw(st.sampled_from(["success", "error", "max_steps", "cancelled"])),
                          run_id=draw(run_ids), error_type=draw(optional_texts))
    event = item_event(ev.EXECUTION_COMPLETE, ev.FinalOutputItem(data=result), draw)
    n = len(result.step_history)
    fast = encode_end(event, "steps_key", n)
    try:
        slow = reference(event, _NO_HISTORY)
    except Exception:  # to_json refuses it: the fast path leaves it to the general path
        assert fast is None
        return
    at = slow.find(_RESULT_DATA) + len(_RESULT_DATA)  # what the general path does with it (journal._compact_end)
    if fast is None:
        assert "\\ud8" in slow.decode() or "\ud800" in repr(event)
        return
    assert fast == slow[:at] + b'"steps_key":%d,' % n + slow[at:]
    assert encode_end(ev.RunItemStreamEvent(name=ev.EXECUTION_COMPLETE, item=ev.FinalOutputItem(data={"x": 1})),
                      "k", 0) is None


def test_the_usual_events_take_the_fast_path() -> None:
    call = Function(id="c0", name="add", kwargs={"a": 1, "b": 2.5})
    usual = [ev.RawResponsesStreamEvent(input=0, data=[call], usage=Usage(1, 1, 1), run_id="r", seq=1, agent="a"),
             ev.RunItemStreamEvent(name=ev.TOOL_CALL_START, item=ev.ToolCallRunItem(id="c0", data=call)),
             ev.RunItemStreamEvent(name=ev.TOOL_CALL_COMPLETE,
                                   item=ev.ToolOutputRunItem(id="c0", data=FunctionOutput(name="add", input=call,
                                                                                          output=3.5))),
             ev.RunItemStreamEvent(name=ev.STEP_COMPLETE,
                                   item=ev.StepRunItem(data=StepOutput(step=0, action=call, function=call,
                                                                       observation="3.5", output=3.5,
                                                                       usage=Usage(1, 1, 1))))]
    for e in usual:
        fast = encode(e)
        assert fast is not None and fast == reference(e), e


def test_a_compact_step_on_the_careful_path_still_leaves_out_its_function() -> None:
    """An integer too long for json.loads sends the event down the careful path (every value
    made JSON-safe): it leaves out the same ``function`` the fast path does."""
    from treadle.store.journal import _json

    call = Function(id="c0", name="big", kwargs={})
    step = ev.RunItemStreamEvent(name=ev.STEP_COMPLETE, item=ev.StepRunItem(data=StepOutput(
        step=0, action=call, function=call, observation="huge", output=10 ** 5000)))
    data = json.loads(_json(step, True))["item"]["data"]
    assert "function" not in data and data["action"]["name"] == "big"
    assert isinstance(data["output"], str)  # the too-long int, as a placeholder
    assert "function" in json.loads(_json(step))["item"]["data"]


def test_group_rows_read_times_in_microseconds_and_in_seconds(tmp_path: Any) -> None:
    """Schema 4 writes the Journal's times in whole microseconds; schema 3 wrote seconds (a
    float, or an int when a writer gave one): both read back as seconds."""
    from treadle.store import SQLiteRunStore
    from treadle.store._codec import GROUP

    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    rows = '[[1,"e",1700000000,{}],[2,"e",1700000000.5,{}],[3,"e",1700000000123456,{}]]'
    store._db.execute("INSERT INTO events (run_id, seq, name, payload, created_at) VALUES ('r', 1, ?, ?, 1.0)",
                      (GROUP, rows))
    assert [e.created_at for e in store.events("r")] == [1700000000, 1700000000.5, 1700000000.123456]
    store.close()


def known_layout(event: Any) -> bool:
    def function(x: Any) -> bool:
        return x is None or type(x) is Function

    if type(event) is ev.RawResponsesStreamEvent:
        data = event.data
        return (data is None or (type(data) is list and all(type(f) is Function for f in data))) \
            and (event.usage is None or type(event.usage) is Usage)
    item = event.item
    data = item.data
    if type(item) is ev.ToolCallRunItem:
        return type(data) is Function
    if type(item) is ev.ToolOutputRunItem:
        return type(data) is FunctionOutput and function(data.input)
    if type(item) is ev.StepRunItem:
        return type(data) is StepOutput and function(data.action) and function(data.function) \
            and (data.usage is None or type(data.usage) is Usage)
    return False


@settings(max_examples=400, deadline=None)
@given(events())
def test_an_events_positional_values_make_the_same_json_again(event: Any) -> None:
    """What the journal writes for a step's usual events (their values only) reads back as the
    event's JSON, key for key and in order (a step's function left out when it is its action,
    as store._codec expects)."""
    from treadle.store._encode import positional, whole

    entry = positional(event, getattr(event, "name", "raw"), 1700000000123456)
    values = None if entry is None else json.dumps(json.loads(entry)[3]).encode()
    if entry is not None:
        assert json.loads(entry)[:3] + json.loads(entry)[4:] == [event.seq, getattr(event, "name", "raw"),
                                                                  1700000000123456, 1]
    try:
        ref = reference(event)
    except Exception:
        assert values is None
        return
    if not known_layout(event):
        assert values is None
        return
    if values is None:  # only for what to_json writes but this leaves to it: a lone surrogate
        assert "\\ud8" in ref.decode() or "\ud800" in repr(event)
        return
    step = getattr(getattr(event, "item", None), "data", None)
    if type(step) is StepOutput and step.function is step.action and step.action is not None:
        ref = reference(event, {"item": {"data": {"function"}}})
    got = whole(event.run_id, event.seq, getattr(event, "name", "raw"), json.loads(values))
    assert json.dumps(got) == json.dumps(json.loads(ref))


def test_only_an_agent_step_complete_leaves_out_its_function() -> None:
    """store._codec puts a step's function back only for agent.step_complete entries."""
    from treadle.store._encode import positional, whole

    call = Function(id="c0", name="add", kwargs={"a": 1})
    for name, kept in ((ev.STEP_COMPLETE, False), ("my.step", True)):
        event = ev.RunItemStreamEvent(name=name, item=ev.StepRunItem(data=StepOutput(step=0, action=call,
                                                                                     function=call)))
        entry = positional(event, name, 1)
        assert entry is not None
        assert ("function" in whole("r", 0, name, json.loads(entry)[3])["item"]["data"]) is kept


def test_a_group_row_entry_the_journal_did_not_write_is_refused_clearly(tmp_path: Any) -> None:
    import pytest

    from treadle.errors import JournalError
    from treadle.store import SQLiteRunStore
    from treadle.store._codec import GROUP

    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    for bad in ('[[1,"e",1,["x"],1]]', '[[1,"e",1,["~S"],1]]', '[[1,"e",1,{"a":1},2]]'):
        store._db.execute("DELETE FROM events")
        store._db.execute("INSERT INTO events (run_id, seq, name, payload, created_at) VALUES ('r', 1, ?, ?, 1.0)",
                          (GROUP, bad))
        with pytest.raises(JournalError, match="not one the journal writes"):
            store.events("r")
    store.close()


def test_a_reply_journaled_before_finish_reason_and_model_ran_reads_back_with_their_defaults() -> None:
    """Entries written before a reply carried ``finish_reason``/``model_ran`` (ten values, a
    five-value usage) read back as a model-run reply with no finish reason."""
    from treadle.store._encode import REPLY, whole

    got = whole("r", 3, "raw", [REPLY, 0, None, None, "m", [1, 2, 1, 0, 0.0], None, 0, None, None])
    assert got["finish_reason"] is None and got["model_ran"] is True
    assert got["usage"] == {"input_tokens": 1, "output_tokens": 2, "requests": 1, "tool_calls": 0, "cost_usd": 0.0,
                            "determined_replies": 0}
