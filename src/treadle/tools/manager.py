"""ToolManager: looks tools up by exact name, validates arguments and runs them.

Every failure becomes a ``ToolResult`` with ``status="error"`` and an observation the
model can act on; nothing here raises except cancellation.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, TypeVar, overload, runtime_checkable

from typing_extensions import Never

from .._json import is_object
from ..errors import ModelRetry, RunSuspension, ToolArgumentsError, ToolError, UserError
from ..events import ToolCallActivityRunItem
from ..types import Function, FunctionDefinition, FunctionOutput, RunContext, ToolOutput
from ._threads import run_in_thread
from .function_tool import FunctionTool, ToolFn

__all__ = ["ToolManager", "ToolResult", "Toolset"]

C = TypeVar("C")
R = TypeVar("R")

ActivitySink = Callable[[ToolCallActivityRunItem], None]


@dataclass(slots=True)
class ToolResult:
    """What one tool call produced.

    ``observation`` is what the model is shown (a ToolOutput's observation, the raw
    return value, or the error text); ``output`` is the raw return value.
    """

    output: object = None
    observation: object = None
    status: str = "success"
    error: str | None = None
    error_type: str | None = None
    retry: bool = False
    tool_output: ToolOutput | None = None


@runtime_checkable
class Toolset(Protocol):
    """Many tools from one object (an MCP server): ``treadle_tools()`` lists them (each a
    callable or a FunctionTool); a true ``tools_changed`` attribute makes the next run list them
    again. The shape of ``treadle.protocols.Toolset`` (that module imports this one)."""

    def treadle_tools(self) -> Iterable[object]: ...


def _as_tool(obj: object) -> FunctionTool:
    if isinstance(obj, FunctionTool):
        return obj
    if callable(obj):
        return FunctionTool(obj)
    raise UserError(f"not a tool: {obj!r} (give a callable, a FunctionTool, or a Toolset: an object with a "
                    "treadle_tools() method, see treadle.protocols)")


class ToolManager:
    """Holds an agent's tools and executes calls to them.

    ``additional_context`` (the seed's) is kept as ``context_variables``; it is not passed to tools.
    """

    def __init__(self, tools: Iterable[object] = (), additional_context: dict[str, object] | None = None) -> None:
        self._tools: dict[str, FunctionTool] = {}
        self._additional_context: dict[str, object] = dict(additional_context or {})
        self.version = 0  # bumped on every change, so cached schemas know to rebuild
        self._toolsets: dict[int, tuple[Toolset, list[str]]] = {}  # toolset -> the names it contributed
        for t in tools:
            self.add(t)

    @overload
    def add(self, obj: Toolset) -> list[FunctionTool]: ...

    @overload
    def add(self, obj: ToolFn) -> FunctionTool: ...

    @overload
    def add(self, obj: object) -> FunctionTool | list[FunctionTool]: ...

    def add(self, obj: object) -> FunctionTool | list[FunctionTool]:
        """Add a tool (a callable or FunctionTool), or every tool of a toolset such as an
        MCP server (an object with ``treadle_tools()``, ``treadle.protocols.Toolset``)."""
        if isinstance(obj, Toolset) and not isinstance(obj, FunctionTool):
            added = [self._add_one(t) for t in obj.treadle_tools()]
            self._toolsets[id(obj)] = (obj, [t.name for t in added])
            return added
        return self._add_one(obj)

    def _add_one(self, obj: object) -> FunctionTool:
        t = _as_tool(obj)
        if t.name in self._tools:
            raise UserError(f"two tools are named {t.name!r}; tool names must be unique")
        self._tools[t.name] = t
        self.version += 1
        return t

    def refresh(self) -> None:
        """Re-list the toolsets whose tools changed (an MCP server's ``tools/list_changed``).
        Called at the start of every run; costs nothing without toolsets."""
        for key, (toolset, names) in list(self._toolsets.items()):
            if not getattr(toolset, "tools_changed", False):  # optional in the protocol: a plain toolset never changes
                continue
            fresh = toolset.treadle_tools()
            for name in names:
                self._tools.pop(name, None)
            self._toolsets[key] = (toolset, [])
            added: list[str] = []
            for t in fresh:
                tool = _as_tool(t)
                if tool.name in self._tools:
                    raise UserError(f"two tools are named {tool.name!r}; tool names must be unique")
                self._tools[tool.name] = tool
                added.append(tool.name)
            self._toolsets[key] = (toolset, added)
            self.version += 1

    @property
    def tools(self) -> list[FunctionTool]:
        return list(self._tools.values())

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> FunctionTool | None:
        return self._tools.get(name)

    get_function_tool_by_name = get

    @property
    def function_definitions(self) -> list[FunctionDefinition]:
        return [t.definition for t in self._tools.values()]

    def __len__(self) -> int:
        return len(self._tools)

    # ------------------------------------------------------------------ the seed's surface
    @property
    def _context_map(self) -> dict[str, FunctionTool]:
        return self._tools

    @property
    def context(self) -> dict[str, object]:
        return {**self._tools, **self._additional_context}

    @property
    def context_variables(self) -> dict[str, object]:
        return self._additional_context

    @property
    def json_definitions(self) -> list[str]:
        return [d.fn_schema_str("json") for d in self.function_definitions]

    yaml_definitions = json_definitions  # JSON is valid YAML; treadle never renders YAML

    def _lookup(self, func: Function) -> FunctionTool:
        tool = self._tools.get(func.name)
        if tool is None:
            raise ValueError(f"Error: unknown tool {func.name!r} executing function: {func!r}")
        return tool

    def execute_func(self, func: Function, map_fn: object = None, stream: bool = False) -> FunctionOutput:
        """Call one tool directly with ``func``'s args and kwargs (no validation, no approval).

        Raises ValueError for an unknown tool name; an exception inside the tool comes back in
        ``FunctionOutput.error``. ``map_fn`` and ``stream`` are accepted for the seed's signature.
        """
        return self._lookup(func).call(*(func.args or ()), **(func.kwargs or {}))

    async def execute_func_async(self, func: Function, map_fn: object = None) -> FunctionOutput:
        """``execute_func`` from async code (coroutines awaited, generators returned unconsumed)."""
        return await self._lookup(func).acall(*(func.args or ()), **(func.kwargs or {}))

    def parse_func_expr(self, expr: str) -> Function:
        """The seed's ``"add(1, b=2)"`` expression style, as a Function (literal arguments only)."""
        import ast

        try:
            node = ast.parse(expr.strip(), mode="eval").body
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                raise ValueError("not a call of a tool name")
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
        except (SyntaxError, ValueError) as e:
            raise ValueError(f"Error {e} parsing function expression: {expr!r}") from None
        return Function(name=node.func.id, args=args, kwargs=kwargs)

    def execute_func_expr(self, expr: str) -> FunctionOutput:
        return self.execute_func(self.parse_func_expr(expr))

    async def execute_func_expr_async(self, expr: str) -> FunctionOutput:
        return await self.execute_func_async(self.parse_func_expr(expr))

    def __call__(self, expr_or_fun: str | Function, step: str = "execute") -> Function | FunctionOutput:
        """The seed's entry point: ``step="parse"`` turns an expression into a Function,
        ``"execute"`` runs a Function (or an expression)."""
        if step == "parse":
            return self.parse_func_expr(expr_or_fun) if isinstance(expr_or_fun, str) else expr_or_fun
        if isinstance(expr_or_fun, str):
            return self.execute_func_expr(expr_or_fun)
        return self.execute_func(expr_or_fun)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    # ------------------------------------------------------------------ execution
    async def execute(self, call: Function, make_ctx: Callable[[], RunContext[C]] | None = None,
                      on_activity: ActivitySink | None = None) -> ToolResult:
        """Run one call; never raises except ``asyncio.CancelledError``.

        ``make_ctx`` builds the RunContext for tools that take one.
        """
        tool = self._tools.get(call.name)
        if tool is None:
            known = ", ".join(self._tools) or "(none)"
            msg = f"Unknown tool {call.name!r}. Available tools: {known}."
            return ToolResult(observation=msg, status="error", error=msg, error_type="ToolNotFoundError")
        try:
            sent: object = call.kwargs  # the model's JSON: an object unless it erred
            values = tool.validate(call.args, sent if is_object(sent) else {})
        except ToolArgumentsError as e:
            return ToolResult(observation=str(e), status="error", error=str(e), error_type="ToolArgumentsError")
        ctx = make_ctx() if (make_ctx is not None and tool.takes_context) else None
        args, kwargs = tool.bind(values, ctx)
        try:
            if tool.timeout is not None:
                result = await asyncio.wait_for(self._invoke(tool, args, kwargs, call.id, on_activity), tool.timeout)
            else:
                result = await self._invoke(tool, args, kwargs, call.id, on_activity)
        except asyncio.TimeoutError:
            msg = f"Tool {tool.name} timed out after {tool.timeout:g} s."
            return ToolResult(observation=msg, status="error", error=msg, error_type="ToolTimeoutError")
        except RunSuspension:  # the run waits (a question asked during the call): not the tool's failure
            raise
        except ModelRetry as e:
            return ToolResult(observation=e.message, status="error", error=e.message, error_type="ModelRetry",
                              retry=True)
        except ToolError as e:
            msg = f"Error in tool {tool.name}: {e}"
            return ToolResult(observation=msg, status="error", error=msg, error_type=type(e).__name__)
        except Exception as e:
            msg = f"Error in tool {tool.name}: {type(e).__name__}: {e}"
            return ToolResult(observation=msg, status="error", error=msg, error_type="ToolExecutionError")
        if isinstance(result, ToolOutput):
            status = result.status
            err = result.observation if status == "error" else None
            return ToolResult(output=result.output, observation=result.observation, status=status, error=err,
                              tool_output=result)
        return ToolResult(output=result, observation=result)

    async def _invoke(self, tool: FunctionTool, args: tuple[object, ...], kwargs: dict[str, object],
                      call_id: str | None, on_activity: ActivitySink | None) -> object:
        fn = tool.fn
        kind = tool.kind
        if tool.inline or kind == "async" or kind == "async_generator":
            result = fn(*args, **kwargs)  # on the loop
        elif kind == "sync":  # in a worker thread (see treadle.tools._threads)
            result = await run_in_thread(_call, fn, args, kwargs)
        else:  # a sync generator: its body runs in a worker thread, item by item
            return await _drain_in_thread(fn, args, kwargs, call_id, on_activity)
        if inspect.isawaitable(result):
            result = await result
        if inspect.isasyncgen(result):
            return await _drain_async(result, call_id, on_activity)
        if inspect.isgenerator(result):
            if tool.inline:
                return _drain_sync(result, call_id, on_activity)
            return await _drain_in_thread(_same, (result,), {}, call_id, on_activity)
        return result


def _call(fn: Callable[..., R], args: tuple[object, ...], kwargs: dict[str, object]) -> R:
    return fn(*args, **kwargs)


def _same(value: R) -> R:
    return value


_NOTHING = object()


def _activity(item: ToolCallActivityRunItem, call_id: str | None, sink: ActivitySink | None) -> None:
    if call_id is not None:
        item.id = call_id
    if sink is not None:
        sink(item)


def _drain_sync(gen: Generator[object, Never, object], call_id: str | None, sink: ActivitySink | None,
                stopped: Callable[[], bool] | None = None) -> object:
    last = _NOTHING
    try:
        for item in gen:
            if stopped is not None and stopped():  # cancelled, or timed out: stop at this yield
                return None
            if isinstance(item, ToolCallActivityRunItem):
                _activity(item, call_id, sink)
            else:
                last = item
    finally:
        gen.close()  # runs the generator's finally blocks when it was stopped early
    return None if last is _NOTHING else last


async def _drain_async(agen: AsyncGenerator[object, Never], call_id: str | None, sink: ActivitySink | None) -> object:
    last = _NOTHING
    try:
        async for item in agen:
            if isinstance(item, ToolCallActivityRunItem):
                _activity(item, call_id, sink)
            else:
                last = item
    finally:
        await agen.aclose()
    return None if last is _NOTHING else last


async def _drain_in_thread(make: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object],
                           call_id: str | None, sink: ActivitySink | None) -> object:
    """Make the generator and drain it in a worker thread; its activity items are emitted on
    the loop. Cancelled (the run, or the tool's timeout), it is closed at its next yield."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def deliver(item: ToolCallActivityRunItem) -> None:  # on the loop
        if not stop.is_set():
            _activity(item, call_id, sink)

    def relay(item: ToolCallActivityRunItem) -> None:  # in the thread
        try:
            loop.call_soon_threadsafe(deliver, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            stop.set()

    def drain() -> object:
        gen = make(*args, **kwargs)
        if not inspect.isgenerator(gen):  # a generator function's call: a generator (or a tool that lied)
            raise TypeError(f"a generator tool returned {type(gen).__name__}, not a generator")
        return _drain_sync(gen, None, relay, stop.is_set)

    try:
        return await run_in_thread(drain)
    except asyncio.CancelledError:
        stop.set()
        raise
