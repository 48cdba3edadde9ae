"""Fuzzing what treadle does with any value a tool may return or yield.

Hypothesis builds arbitrary Python values (JSON values, NaN and infinities, ints past
CPython's 4,300-digit limit, bytes, lone surrogates, sets, tuples, non-string keys,
datetimes, dataclasses, objects whose ``__repr__`` raises, cycles, deep nesting). For each:

* ``to_jsonable`` never raises, its result passes ``json.dumps(allow_nan=False)``, encodes as
  UTF-8, and is a fixed point (cleaning it again changes nothing);
* ``journal._json`` of an event carrying it (what the journal stores and the HTTP server
  sends as SSE data) is strict UTF-8 JSON that ``json.loads`` reads back;
* ``render_observation`` (what the model is shown) is UTF-8 text within the limit;
* plain JSON values come out of ``to_jsonable`` exactly as ``json`` would give them back.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from treadle.events import RunItemStreamEvent, ToolOutputRunItem
from treadle.planner import render_observation
from treadle.store.records import event_json as _json
from treadle.types import Function, to_jsonable

LIMIT = 500


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


@dataclasses.dataclass
class Box:
    value: Any
    label: str = "box"


def no_constants(name: str) -> Any:
    raise AssertionError(f"not strict JSON: {name}")


text = st.lists(st.characters() | st.integers(0xD800, 0xDFFF).map(chr), max_size=20).map("".join)
huge_ints = st.integers(4290, 5500).map(lambda n: -(10**n) if n % 2 else 10**n)  # past the int <-> str limit
scalars = (st.none() | st.booleans() | st.integers() | huge_ints |
           st.floats() | text | st.binary(max_size=20) | st.datetimes() |
           st.builds(BadRepr) | st.just(datetime.timedelta(seconds=3)))
keys = text | st.integers() | st.none() | st.booleans() | st.tuples(st.integers(), st.integers())


def containers(inner: Any) -> Any:
    return (st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(keys, inner, max_size=4) |
            st.frozensets(st.integers() | text, max_size=3) | st.builds(Box, inner) |
            st.builds(lambda v: Function(name="f", kwargs={"v": v}), inner))


def with_cycle(value: Any) -> Any:
    if isinstance(value, list):
        value.append(value)
    elif isinstance(value, dict):
        value["self"] = value
    return value


def nested(depth: int) -> list[Any]:
    out: list[Any] = []
    x = out
    for _ in range(depth):
        x.append([])
        x = x[0]
    return out


values = st.recursive(scalars, containers, max_leaves=15)
hostile = values | values.map(with_cycle) | st.integers(100, 3000).map(nested)


@settings(max_examples=400, deadline=None)
@given(value=hostile)
def test_any_value_is_serialised_strictly_and_shown_within_the_limit(value: Any) -> None:
    clean = to_jsonable(value)
    dumped = json.dumps(clean, allow_nan=False, ensure_ascii=False)
    dumped.encode("utf-8")
    assert to_jsonable(clean) == clean, "to_jsonable's output is not a fixed point"

    event = RunItemStreamEvent(name="agent.tool_call_complete", item=ToolOutputRunItem(data=value), run_id="r", seq=1)
    data = _json(event)
    loaded = json.loads(data.decode("utf-8"), parse_constant=no_constants)
    assert loaded["item"]["type"] == "tool_output"

    shown = render_observation(value, LIMIT)
    assert isinstance(shown, str) and len(shown) <= LIMIT + 60
    shown.encode("utf-8")


json_values = st.recursive(st.none() | st.booleans() | st.integers(-(10**30), 10**30) |
                           st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_plain_json_values_are_unchanged(value: Any) -> None:
    assert to_jsonable(value) == json.loads(json.dumps(value))
    event = RunItemStreamEvent(name="agent.tool_call_complete", item=ToolOutputRunItem(data=value), run_id="r", seq=1)
    assert json.loads(_json(event))["item"]["data"] == json.loads(json.dumps(value))


flat_scalars = (st.none() | st.booleans() | st.integers() | huge_ints | st.floats() | text | st.binary(max_size=8) |
                st.just(datetime.timedelta(seconds=3)))


@settings(max_examples=400, deadline=None)
@given(value=st.dictionaries(keys, flat_scalars, max_size=6))
def test_a_flat_dict_takes_the_short_path_to_the_same_value_and_text(value: dict[Any, Any]) -> None:
    """A dict of plain scalars skips pydantic (``types._flat``): the same value as the general
    path (reached here through a list), and the stores' ``dumps`` reads back as the old encoder's."""
    from treadle.store._sql import _ENCODER, dumps
    from treadle.types import Usage

    out = to_jsonable(value)
    assert out == to_jsonable([value])[0] and out is not value
    assert json.loads(dumps(out)) == json.loads(_ENCODER.encode(out))
    u = Usage(3, 4, 1, 2, 0.25)
    assert to_jsonable(u) == to_jsonable([u])[0] and list(to_jsonable(u)) == list(to_jsonable([u])[0])
