"""Seed contract: FunctionTool and ToolManager as AdalFlow's code calls them (spec §4)."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from treadle.compat import Function, FunctionDefinition, FunctionOutput, FunctionTool, ToolManager, set_seed_compat
from treadle.tools import FunctionType


def add(x, y):
    return x + y


async def async_add(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x + y


def numbers(n: int):
    for i in range(n):
        yield f"item_{i}"


async def async_numbers(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        yield f"async_item_{i}"


def broken(x: int) -> int:
    raise ValueError(f"bad input {x}")


# ---------------------------------------------------------------------- FunctionTool
def test_function_type_detection() -> None:
    assert FunctionTool.detect_function_type(add) is FunctionType.SYNC
    assert FunctionTool.detect_function_type(async_add) is FunctionType.ASYNC
    assert FunctionTool.detect_function_type(numbers) is FunctionType.SYNC_GENERATOR
    assert FunctionTool.detect_function_type(async_numbers) is FunctionType.ASYNC_GENERATOR
    for fn, is_async in ((add, False), (async_add, True), (numbers, False), (async_numbers, True)):
        tool = FunctionTool(fn)
        assert tool.function_type is FunctionTool.detect_function_type(fn)
        assert tool._is_async is is_async


def test_call_returns_a_function_output_with_the_input() -> None:
    tool = FunctionTool(fn=add, definition=FunctionDefinition(func_name="plus", func_desc="adds"))
    out = tool.call(1, 2)
    assert isinstance(out, FunctionOutput)
    assert (out.name, out.output, out.error) == ("plus", 3, None)
    assert isinstance(out.input, Function) and out.input.args == (1, 2) and out.input.name == "plus"
    assert tool.call(1, y=5).input.kwargs == {"y": 5}


def test_sync_call_runs_async_functions_and_collects_async_generators() -> None:
    assert FunctionTool(async_add).call(3, 4).output == 7
    assert FunctionTool(async_numbers).call(2).output == ["async_item_0", "async_item_1"]
    gen = FunctionTool(numbers).call(2).output  # a sync generator comes back unconsumed
    assert inspect.isgenerator(gen) and list(gen) == ["item_0", "item_1"]


async def test_sync_call_works_inside_a_running_loop() -> None:
    assert FunctionTool(async_add).call(5, 6).output == 11


async def test_acall_awaits_and_returns_generators_unconsumed() -> None:
    assert (await FunctionTool(async_add).acall(3, 4)).output == 7
    assert (await FunctionTool(add).acall(3, 4)).output == 7
    agen = (await FunctionTool(async_numbers).acall(2)).output
    assert [x async for x in agen] == ["async_item_0", "async_item_1"]
    assert list((await FunctionTool(numbers).acall(1)).output) == ["item_0"]


async def test_errors_are_captured_not_raised() -> None:
    out = FunctionTool(broken).call(42)
    assert out.output is None and "bad input 42" in out.error and "ValueError" in out.error
    out = await FunctionTool(broken).acall(7)
    assert "bad input 7" in out.error


def test_direct_call_returns_the_value_unless_seed_compat() -> None:
    tool = FunctionTool(add)
    assert tool(1, 2) == 3
    set_seed_compat(True)
    try:
        out = tool(1, 2)
        assert isinstance(out, FunctionOutput) and out.output == 3
    finally:
        set_seed_compat(None)
    assert tool(2, 2) == 4


# ---------------------------------------------------------------------- ToolManager
def manager() -> ToolManager:
    return ToolManager(tools=[add, FunctionTool(async_add), numbers, async_numbers, broken],
                       additional_context={"context_variables": {"user": "alice"}})


def test_seed_attributes() -> None:
    tm = manager()
    assert list(tm._context_map) == ["add", "async_add", "numbers", "async_numbers", "broken"]
    assert all(isinstance(t, FunctionTool) for t in tm._context_map.values())
    assert tm._additional_context == {"context_variables": {"user": "alice"}}
    assert tm.context_variables == {"context_variables": {"user": "alice"}}
    assert set(tm.context) == {*tm._context_map, "context_variables"}
    assert tm.get_function_tool_by_name("add") is tm._context_map["add"]
    assert [d.func_name for d in tm.function_definitions] == list(tm._context_map)
    assert len(tm.json_definitions) == 5 and '"name": "add"' in tm.json_definitions[0]
    assert callable(tm)


def test_execute_func() -> None:
    tm = manager()
    out = tm.execute_func(Function(name="add", args=[3, 5]))
    assert isinstance(out, FunctionOutput) and (out.name, out.output) == ("add", 8)
    assert tm.execute_func(Function(name="add", args=[2], kwargs={"y": 7})).output == 9
    assert tm.execute_func(Function(name="async_add", kwargs={"x": 2, "y": 3})).output == 5
    assert list(tm.execute_func(Function(name="numbers", args=[3])).output) == ["item_0", "item_1", "item_2"]
    assert tm.execute_func(Function(name="async_numbers", args=[2])).output == ["async_item_0", "async_item_1"]
    assert isinstance(tm.execute_func(Function(name="numbers", args=[1]), stream=True), FunctionOutput)
    err = tm.execute_func(Function(name="broken", args=[42]))
    assert err.output is None and "bad input 42" in err.error
    with pytest.raises(ValueError, match="nope"):
        tm.execute_func(Function(name="nope"))


async def test_execute_func_async() -> None:
    tm = manager()
    assert (await tm.execute_func_async(Function(name="add", args=[10, 2]))).output == 12
    out = await tm.execute_func_async(Function(name="async_add", args=[2], kwargs={"y": 3}))
    assert (out.name, out.output) == ("async_add", 5)
    err = await tm.execute_func_async(Function(name="broken", args=[99]))
    assert "bad input 99" in err.error
    with pytest.raises(ValueError):
        await tm.execute_func_async(Function(name="missing"))


def test_call_and_expressions() -> None:
    tm = manager()
    fn = tm("add(1, y=2)", step="parse")
    assert (fn.name, fn.args, fn.kwargs) == ("add", [1], {"y": 2})
    assert tm(fn, step="execute").output == 3
    assert tm("add(4, 4)").output == 8
    assert tm.execute_func_expr("add(x=1, y=1)").output == 2
    with pytest.raises(ValueError):
        tm.parse_func_expr("not a call")


async def test_execute_func_expr_async() -> None:
    assert (await manager().execute_func_expr_async("async_add(1, 2)")).output == 3
