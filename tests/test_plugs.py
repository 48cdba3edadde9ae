"""``fits``: a runtime Protocol's ``isinstance``, same answers, without typing's per-check cost.

Nothing may be remembered per class: ``isinstance`` looks at the instance too (an attribute set
on the instance, a method set to None), so two objects of one class can answer differently.
"""

from __future__ import annotations

import asyncio
import sys
import typing
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable
from unittest import mock

import pytest

from treadle import Agent, Runner, ScriptedModel
from treadle._context import _Configured, _Provider
from treadle._plugs import fits, protocol_members
from treadle.loop import _observes  # pyright: ignore[reportPrivateUsage]
from treadle.models.base import ModelClient, StreamingModelClient
from treadle.permissions import DecisionChannels
from treadle.protocols import EventSink, NamedProvider, RunObserver
from treadle.tokens import Tokenizing, _ModelNamed, _Named, _Sized, _Windowed
from treadle.types import Function


@runtime_checkable
class _Both(Protocol):  # a method and a data member
    size: int

    def grow(self) -> None: ...


class _Grows:
    def grow(self) -> None: ...


class _Sized2(_Grows):
    size = 3


class _Blocked(_Sized2):
    grow = None  # type: ignore[assignment]  # a method blocked by None


class _Nominal(_Both):  # a subclass of the Protocol itself, without the data member set
    def grow(self) -> None: ...


class _Raises:
    @property
    def size(self) -> int:
        raise AttributeError("no size")

    def grow(self) -> None: ...


class _Dunder:
    def __call__(self, event: object) -> None: ...


class _Everything:
    """Every member of every Protocol below, on the class."""

    native_tools = True
    context: object = "auto"
    provider = "local"
    context_window = 8192
    n_ctx = 2048
    model = "gpt-4o"
    name = "m"
    size = 1

    async def request(self, request: object) -> object: ...
    def stream(self, request: object) -> object: ...
    def count_tokens(self, request: object) -> int: return 1
    def open_channel(self, run_id: str) -> None: ...
    def close_channel(self, run_id: str) -> None: ...
    def __call__(self, event: object) -> None: ...
    def on_run_start(self, run: object) -> None: ...
    def grow(self) -> None: ...


PROTOCOLS: list[type] = [Tokenizing, _Windowed, _Sized, _ModelNamed, _Named, _Configured, _Provider, DecisionChannels,
                         StreamingModelClient, ModelClient, RunObserver, EventSink, NamedProvider, _Both]


def _objects() -> Iterator[object]:
    yield from (None, 3, "s", object(), _Grows(), _Sized2(), _Blocked(), _Nominal(), _Dunder(), _Everything())
    for proto in PROTOCOLS:  # the members on the instance only: all of them, and each one missing or None
        names = [n for n, _ in protocol_members(proto)[1]]
        yield _given({n: _value(n) for n in names})
        for left_out in names:
            yield _given({n: _value(n) for n in names if n != left_out})
            yield _given({n: None if n == left_out else _value(n) for n in names})


def _given(attrs: dict[str, object]) -> object:
    obj = _Bare()
    for name, value in attrs.items():
        setattr(obj, name, value)
    return obj


class _Bare:
    """Nothing on the class; whatever a test sets on the instance."""


def _value(name: str) -> object:
    return getattr(_Everything(), name)


def _dynamic() -> list[object]:
    """Objects whose members exist only when read (a property that raises, ``__getattr__``)."""
    return [_Raises(), mock.MagicMock(), mock.Mock(spec=_Grows)]


@pytest.mark.parametrize("proto", PROTOCOLS, ids=lambda p: p.__name__)
def test_fits_answers_as_isinstance(proto: type) -> None:
    checked = 0
    for obj in _objects():
        assert fits(obj, proto) == isinstance(obj, proto), (proto.__name__, obj)
        checked += 1
    assert checked > 20
    if sys.version_info < (3, 12):  # isinstance reads members with hasattr up to 3.11 (getattr_static since)
        for obj in _dynamic():
            assert fits(obj, proto) == isinstance(obj, proto), (proto.__name__, obj)


def test_a_member_counts_when_it_can_be_read() -> None:
    """As ``isinstance`` on Python 3.10 and 3.11, on every version: a member is there when reading it works
    (what the caller does next), whether a class attribute, an instance's or ``__getattr__``'s."""
    raises, anything, spec = _dynamic()
    assert not fits(raises, _Both)  # its size property raises AttributeError
    assert all(fits(anything, proto) for proto in PROTOCOLS)  # a MagicMock has every attribute
    assert fits(spec, EventSink) and not fits(spec, _Both) and not fits(spec, Tokenizing)  # only what _Grows has


def test_protocol_members_as_typing_collects_them() -> None:
    for proto in PROTOCOLS:
        methods_only, members = protocol_members(proto)
        names = {n for n, _ in members}
        if hasattr(typing, "_get_protocol_attrs"):  # Python 3.10 to 3.13
            assert names == set(typing._get_protocol_attrs(proto)), proto  # pyright: ignore
        assert methods_only == all(callable(getattr(proto, n, None)) for n in names)
    assert protocol_members(_Both) == (False, (("grow", True), ("size", False)))


def test_an_instance_attribute_counts_and_is_not_cached_by_class() -> None:
    """Two objects of one class: the one given the method on the instance fits, the other does not
    (whichever is asked first): a cache keyed by the class would answer both the same."""
    plain, given = _Bare(), _Bare()
    given.count_tokens = lambda request: 1  # type: ignore[attr-defined]
    for first, second in ((plain, given), (given, plain), (plain, given)):
        assert fits(first, Tokenizing) is (first is given)
        assert fits(second, Tokenizing) is (second is given)
    blocked = _Bare()  # a method set to None on the instance does not count
    blocked.count_tokens = None  # type: ignore[attr-defined]
    assert not fits(blocked, Tokenizing) and fits(given, Tokenizing)


def test_a_run_observer_is_told_by_the_instance_not_its_class() -> None:
    """The loop asks this for every sink of every run; it once remembered the answer per class."""
    sink, observer = _Dunder(), _Dunder()
    observer.on_run_start = lambda run: None  # type: ignore[attr-defined]
    assert not _observes(sink)
    assert _observes(observer)
    assert not _observes(sink)


def test_a_run_makes_no_runtime_protocol_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain run (an agent, a model, a sync tool) asks no ``isinstance`` of a runtime Protocol: each costs
    ~10 µs on Python 3.11 (typing collects the Protocol's members again every time)."""

    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    model = ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 2}), "3"], per_run=True, native_tools=True)
    runner = Runner(Agent(tools=[add], model=model))
    asked: list[str] = []
    real = type(Tokenizing).__instancecheck__

    def counted(cls: Any, instance: object) -> bool:
        if getattr(cls, "_is_protocol", False):
            asked.append(cls.__name__)
        return real(cls, instance)

    monkeypatch.setattr(type(Tokenizing), "__instancecheck__", counted)
    assert isinstance(3, _Windowed) is False and asked == ["_Windowed"]  # the counter counts
    asked.clear()
    result = asyncio.run(runner.acall("add"))
    assert result.answer == "3"

    async def streamed() -> object:
        sr = runner.astream("add")
        async for _ in sr.stream_events():
            pass
        return sr.answer

    assert asyncio.run(streamed()) is not None
    assert asked == []
