"""Fuzzing the demo tools (``treadle.tools.builtin.DEMO_TOOLS``) through the path the runner uses.

Arbitrary argument dicts (any JSON values, wrong types, extra and missing keys, huge strings,
unicode, lone surrogates, deep nesting, positional args) go through ``ToolManager.execute``,
exactly as the loop calls it, and through a whole run. A call always ends in a result or a
typed error the model can read: a wrong call is ``ToolArgumentsError``, a refusal ``ModelRetry``;
never ``ToolExecutionError`` (an exception the tool did not expect), never a hang. The
calculator is also fed hostile expressions and must stay bounded in time and memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treadle import Agent, Function, ModelRetry, Runner, ScriptedModel
from treadle.tools import builtin
from treadle.tools.builtin import DEMO_TOOLS, MAX_EXPONENT, MAX_EXPRESSION_CHARS, MAX_RESULT_BITS, calculator
from treadle.tools.manager import ToolManager

TOOLS = {t.name: t for t in DEMO_TOOLS}
PARAMS = {"calculator": ["expression"], "current_time": ["timezone"], "read_file": ["path"]}
TYPED = {"ToolArgumentsError", "ModelRetry"}
HANG_GUARD = 30.0  # seconds: only a hang fails on time; boundedness is proved by counting (see counted_ops)
# no integer the calculator computes (an operand, or the result an operation is about to make)
# may be larger than this: its result limit, plus the rounding of its power check (one bit per
# unit of exponent), plus one bit per character of the expression (an addition can add one bit)
OPERAND_BITS = MAX_RESULT_BITS + MAX_EXPONENT + MAX_EXPRESSION_CHARS


def bounded(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a daemon thread; a call still running after HANG_GUARD seconds fails the test."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # re-raised in the test's thread
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(HANG_GUARD)
    assert not t.is_alive(), f"the call did not end within {HANG_GUARD} s (a hang)"
    if "error" in out:
        raise out["error"]
    return out["value"]


def _bits(x: Any) -> int:
    if isinstance(x, int):
        return abs(x).bit_length()
    return 64  # a float: fixed size, constant time


def _size(name: str, a: Any, b: Any) -> int:
    """Bits of the largest integer the operation takes or makes (an upper bound)."""
    size = max(_bits(a), _bits(b))
    both_int = isinstance(a, int) and isinstance(b, int)
    if both_int and name == "Mult":
        size = _bits(a) + _bits(b)
    elif both_int and name == "Pow" and b > 0:
        size = _bits(a) * b
    return size


@contextlib.contextmanager
def counted_ops() -> Iterator[list[tuple[str, int]]]:
    """Record every arithmetic operation the calculator performs, as (operator, bits of the largest
    integer it takes or makes); one that would go over OPERAND_BITS fails before it is computed."""
    ops: list[tuple[str, int]] = []
    wrapped = {}
    for node_type, fn in builtin._BIN.items():
        def counting(a: Any, b: Any, fn: Callable[[Any, Any], Any] = fn, name: str = node_type.__name__) -> Any:
            size = _size(name, a, b)
            ops.append((name, size))
            if size > OPERAND_BITS:
                raise AssertionError(f"the calculator started an unbounded computation: {name} of {size} bits")
            return fn(a, b)
        wrapped[node_type] = counting
    with mock.patch.dict(builtin._BIN, wrapped):
        yield ops


def check_bounded(expr: str, ops: list[tuple[str, int]]) -> None:
    """The calculator's work was bounded: at most one operation per character of the expression,
    none of them on a number larger than OPERAND_BITS (so none could take long or much memory)."""
    assert len(ops) <= len(expr), (expr[:80], len(ops))
    assert all(bits <= OPERAND_BITS for _, bits in ops), (expr[:80], max(b for _, b in ops))
REFUSAL_CHARS = 400  # a tool's own refusal stays short, whatever it was given

HUGE = ["x" * 1_000_000, "9" * 100_000, "(" * 50_000 + "1" + ")" * 50_000, "-" * 200_000 + "1",
        "+".join(["1"] * 100_000), "../" * 20_000 + "etc/passwd", "é" * 300_000, "\udcff" * 1000]
HOSTILE_TEXT = ["", " ", "\x00", "1\x00+1", "\udcff", "a\ud800b", "\u212f", "٣ + ٤", "1_000", "\u202e1+1",
                "__import__('os').system('true')", "(1).__class__.__bases__", "(lambda: 1)()",
                "[x for x in range(10**9)]", "9**9**9", "10**10**10", "2**-1074", "1e999", "-1e999",
                "(-8) ** (1/3)", "0**-1", "1/0", "1%0", "1//0.0", "~1", "not 1", "1 if 1 else 0", "f'{1}'",
                "'a' * 10**9", "True+True", "1j**2", "..", "/etc/passwd", "~", "..\\..\\secret", "UTC\n",
                "Europe/../../etc/passwd", "Factory", "posixrules"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | \
    st.text(max_size=50) | st.sampled_from(HOSTILE_TEXT)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
strings = st.text(max_size=200) | st.sampled_from(HOSTILE_TEXT) | st.sampled_from(HUGE)


@st.composite
def tool_calls(draw: Any) -> tuple[str, list[Any], dict[str, Any]]:
    name = draw(st.sampled_from(sorted(TOOLS)))
    kwargs: dict[str, Any] = {}
    for param in PARAMS[name]:
        choice = draw(st.sampled_from(["string", "value", "missing"]))
        if choice == "string":
            kwargs[param] = draw(strings)
        elif choice == "value":
            kwargs[param] = draw(json_values)
    kwargs.update(draw(st.dictionaries(st.text(max_size=20), json_values, max_size=3)))  # extra keys
    args = draw(st.lists(json_values, max_size=2)) if draw(st.integers(0, 4)) == 0 else []
    return name, args, kwargs


def check(result: Any, name: str) -> None:
    assert result.status in ("success", "error"), result
    if result.status == "success":
        assert isinstance(result.observation, str) and result.error is None
        return
    assert result.error_type in TYPED, f"{name} crashed instead of refusing: {result.error_type}: {result.error}"
    assert isinstance(result.observation, str) and result.observation.strip()
    if result.error_type == "ToolArgumentsError":
        assert result.observation.startswith((f"invalid arguments for {name}:", f"{name}()")), result.observation
    else:
        assert len(result.observation) <= REFUSAL_CHARS, result.observation[:500]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """read_file's root (the cwd) holds one small file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.md").write_text("Sales rose 5%.")
    return tmp_path


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(call=tool_calls())
def test_any_arguments_give_a_result_or_a_typed_error(sandbox: Path, call: tuple[str, list[Any], dict[str, Any]]
                                                      ) -> None:
    name, args, kwargs = call
    manager = ToolManager(DEMO_TOOLS)
    with counted_ops() as ops:
        result = bounded(lambda: asyncio.run(manager.execute(Function(id="c1", name=name, args=args, kwargs=kwargs))))
    check_bounded(repr(kwargs) + repr(args), ops)
    check(result, name)


@pytest.mark.parametrize("name", sorted(TOOLS))
@pytest.mark.parametrize("value", HUGE + HOSTILE_TEXT, ids=lambda v: f"{v[:12]!r}…{len(v)}")
async def test_every_hostile_string_for_every_tool(sandbox: Path, name: str, value: str) -> None:
    manager = ToolManager(DEMO_TOOLS)
    with counted_ops() as ops:
        result = bounded(lambda: asyncio.run(manager.execute(Function(id="c1", name=name,
                                                                      kwargs={PARAMS[name][0]: value}))))
    check_bounded(value, ops)
    check(result, name)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(tool_calls(), min_size=1, max_size=3))
def test_a_run_survives_any_calls_to_the_demo_tools(sandbox: Path, calls: list[tuple[str, list[Any], Any]]
                                                    ) -> None:
    """The whole loop: the model sends the calls (in parallel), every one gets an observation, the run goes on."""
    script = [[Function(name=n, args=a, kwargs=k) for n, a, k in calls],
              Function(name="finish", kwargs={"answer": "ok"})]
    model = ScriptedModel(script, native_tools=True)
    runner = Runner(Agent(tools=DEMO_TOOLS, model=model, max_steps=3, max_observation_chars=2_000))
    res = asyncio.run(asyncio.wait_for(runner.acall("go"), HANG_GUARD))
    assert res.status in ("success", "error"), (res.status, res.error)
    if res.status == "error":  # only a tool that refused too often may end the run
        assert res.error_type == "ToolRetriesExceededError", (res.error_type, res.error)
    assert len(res.step_history) == len(calls)
    observations = [m["content"] for m in model.requests[1].messages if m["role"] == "tool"] \
        if len(model.requests) > 1 else []
    for step in res.step_history:
        assert step.status in ("success", "error")
        if step.status == "error":  # a refusal or an argument error, never a crash inside the tool
            assert not str(step.observation).startswith("Error in tool"), step.observation
    for text in observations:
        assert isinstance(text, str) and len(text) <= 2_000 + 50
        text.encode("utf-8")  # what goes to a real model must encode


@pytest.mark.parametrize("name", sorted(TOOLS))
async def test_a_run_survives_every_hostile_string_at_once(sandbox: Path, name: str) -> None:
    calls = [Function(name=name, kwargs={PARAMS[name][0]: v}) for v in HUGE + HOSTILE_TEXT]
    model = ScriptedModel([calls, Function(name="finish", kwargs={"answer": "ok"})], native_tools=True)
    runner = Runner(Agent(tools=DEMO_TOOLS, model=model, max_observation_chars=2_000))
    res = await asyncio.wait_for(runner.acall("go"), HANG_GUARD)
    assert res.ok or res.error_type == "ToolRetriesExceededError", (res.error_type, res.error)
    assert len(res.step_history) == len(calls)
    for step in res.step_history:
        assert not str(step.observation).startswith("Error in tool"), step.observation


# ---------------------------------------------------------------------------- the calculator
def _numbers() -> Any:
    return st.integers(-10**6, 10**6).map(str) | st.sampled_from(
        ["0", "1", "2", "9", "10", "999", "1000", "0.5", "1e308", "1e-320", "2.5", "7", "1e3", "10**999"])


expressions = st.recursive(
    _numbers(),
    lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**"]), inner)
    .map(lambda t: f"({t[0]}){t[1]}({t[2]})") | inner.map(lambda x: f"-({x})"),
    max_leaves=8)


@settings(max_examples=500, deadline=None)
@given(expr=expressions)
def test_calculator_on_random_arithmetic_is_bounded_and_answers_or_refuses(expr: str) -> None:
    with counted_ops() as ops:
        try:
            out = bounded(lambda: calculator(expr))
        except ModelRetry as e:
            assert e.message and len(e.message) <= REFUSAL_CHARS
        else:
            assert out and len(out) <= 4300
            float(out) if "." in out or "e" in out else int(out)
    check_bounded(expr, ops)


@pytest.mark.parametrize("expr", [
    "9**9**9", "10**10**10", "2**1000**1000", "((10**1000)**1000)**1000", "(2**1000)**20",
    "(10**999)*(10**999)*(10**999)*(10**999)*(10**999)",
    "((2**1000)**13)**2", "*".join(["(2**999)"] * 15),
    "(" * 500 + "1" + ")" * 500, "-" * 999 + "1", "-(" * 300 + "1" + ")" * 300,
    "1" * 5000, "1+" * 5000 + "1", "10**999 / 10**-5", "1e308 ** 2", "1e308 * 10", "1e999 - 1e999", "(-8) ** 0.5",
    "10**1000 * 1.0", "(10**1000) // 1e-300", "__import__('os').system('true')", "(1).__class__.__mro__",
    "(lambda: 9**9**9)()", "open('/etc/passwd').read()", "[1] * 10**9", "'a' * 10**9", "globals()",
])
def test_calculator_refuses_hostile_expressions_with_bounded_work_and_memory(expr: str) -> None:
    tracemalloc.start()
    try:
        with counted_ops() as ops, pytest.raises(ModelRetry) as info:
            bounded(lambda: calculator(expr))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = info.value.message
    assert message and len(message) <= REFUSAL_CHARS, message[:500]
    check_bounded(expr, ops)  # refused before any large computation, not after a long one
    assert peak < 20_000_000, f"{expr[:40]} used {peak / 1e6:.0f} MB"
