from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from treadle import FunctionTool, RunContext, tool
from treadle.errors import ToolArgumentsError, UserError


def search(query: str, limit: int = 3, ctx: RunContext[Any] | None = None) -> list[str]:
    """Search the index.

    Args:
        query: what to look for
        limit: how many hits
    """
    return [query] * limit


class Point(BaseModel):
    x: int
    y: int


def test_schema_from_hints_and_docstring() -> None:
    t = FunctionTool(search)
    assert t.name == "search"
    assert t.description == "Search the index."
    schema = t.parameters_schema
    assert schema["required"] == ["query"]
    assert schema["properties"]["query"] == {"type": "string", "description": "what to look for"}
    assert schema["properties"]["limit"]["default"] == 3
    assert schema["properties"]["limit"]["type"] == "integer"
    assert "ctx" not in schema["properties"], "the run context never reaches the schema"
    assert schema["additionalProperties"] is False


def test_ctx_param_annotated_plain_runcontext() -> None:
    def f(ctx: RunContext, x: int) -> int:
        return x

    t = FunctionTool(f)
    assert list(t.parameters_schema["properties"]) == ["x"]
    assert t._ctx_params == ["ctx"]


def test_nested_pydantic_argument() -> None:
    def dist(p: Point) -> int:
        return abs(p.x) + abs(p.y)

    t = FunctionTool(dist)
    values = t.validate([], {"p": {"x": 1, "y": -2}})
    assert values["p"] == Point(x=1, y=-2)
    assert "$defs" in t.parameters_schema or "properties" in t.parameters_schema["properties"]["p"]


def test_validation_errors_are_typed_and_readable() -> None:
    t = FunctionTool(search)
    with pytest.raises(ToolArgumentsError, match="query"):
        t.validate([], {})
    with pytest.raises(ToolArgumentsError, match="limit"):
        t.validate([], {"query": "x", "limit": "many"})
    with pytest.raises(ToolArgumentsError, match="bogus: Extra inputs"):
        t.validate([], {"query": "x", "bogus": 1})


def test_lax_coercion_and_positional_args() -> None:
    t = FunctionTool(search)
    assert t.validate([], {"query": "x", "limit": "2"})["limit"] == 2
    assert t.validate(["q", 5], {}) == {"query": "q", "limit": 5}
    with pytest.raises(ToolArgumentsError, match="multiple values"):
        t.validate(["q"], {"query": "again"})
    with pytest.raises(ToolArgumentsError, match="takes 2 arguments"):
        t.validate(["a", 1, 2], {})


def test_var_kwargs_allows_extra() -> None:
    def f(a: int, **rest: Any) -> dict[str, Any]:
        return rest

    t = FunctionTool(f)
    assert t.validate([], {"a": 1, "z": 2}) == {"a": 1, "z": 2}
    assert "rest" not in t.parameters_schema["properties"]


def test_kinds() -> None:
    async def a() -> int:
        return 1

    def g():  # type: ignore[no-untyped-def]
        yield 1

    async def ag():  # type: ignore[no-untyped-def]
        yield 1

    assert FunctionTool(search).kind == "sync"
    assert FunctionTool(a).kind == "async"
    assert FunctionTool(g).kind == "generator"
    assert FunctionTool(ag).kind == "async_generator"


def test_bound_method_keeps_its_instance() -> None:
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def bump(self, by: int) -> int:
            """Bump."""
            self.n += by
            return self.n

    c = Counter()
    t = FunctionTool(c.bump)
    t(**t.validate([], {"by": 2}))
    assert c.n == 2, "tools act on the caller's object, not a copy (seed bug B19)"


def test_finish_is_reserved_and_decorator() -> None:
    def finish(answer: str) -> str:
        return answer

    with pytest.raises(UserError):
        FunctionTool(finish)

    @tool(require_approval=True, timeout=2)
    def danger(x: int) -> int:
        return x

    assert isinstance(danger, FunctionTool)
    assert danger.require_approval and danger.timeout == 2
    assert FunctionTool(search, name="find", description="Find.").definition.func_name == "find"


def test_a_tool_is_named_by_its_function_or_what_a_wrapper_copied() -> None:
    import functools

    class Logged:  # a class-based decorator: functools.update_wrapper copies the name onto the instance
        def __init__(self, fn: Any) -> None:
            functools.update_wrapper(self, fn)
            self.fn = fn

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return self.fn(*args, **kwargs)

    class Plain:
        def __call__(self, query: str) -> str:
            return query

    assert FunctionTool(Logged(search)).name == "search"
    assert FunctionTool(functools.partial(search, limit=1)).name == "partial"
    assert FunctionTool(Plain()).name == "Plain"
    assert FunctionTool(Plain()).kind == "sync"


def test_arguments_that_are_not_an_object_are_refused_by_name() -> None:
    t = FunctionTool(search)
    with pytest.raises(ToolArgumentsError, match="arguments of search must be an object, got list"):
        t.validate([], ["x"])
    assert t.validate(["x"], {}) == {"query": "x", "limit": 3}


def test_the_decorator_takes_the_tool_options() -> None:
    @tool(require_approval=True, name="find", inline=True)
    def find(query: str) -> str:
        return query

    assert isinstance(find, FunctionTool) and find.name == "find" and find.require_approval and find.inline
