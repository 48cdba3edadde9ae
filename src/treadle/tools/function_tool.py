"""FunctionTool: a plain Python callable turned into a tool the model can call.

The JSON schema comes from the signature's type hints and the docstring (pydantic
builds and validates it). A parameter annotated ``RunContext`` receives the run
context and is left out of the schema.
"""

from __future__ import annotations

import enum
import functools
import inspect
import types
import typing
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, TypedDict, TypeVar, overload

from typing_extensions import Unpack

from .._json import is_object
from ..errors import ToolArgumentsError, UserError
from ..types import FINISH_TOOL, Function, FunctionDefinition, FunctionOutput, RunContext

if TYPE_CHECKING:
    import pydantic

__all__ = ["FunctionTool", "FunctionType", "ToolKind", "ToolOptions", "tool"]

C = TypeVar("C")
ToolFn = Callable[..., object]  # a user's tool: any signature, any return value (validated by its schema)

ToolKind = Literal["sync", "async", "generator", "async_generator"]


class FunctionType(enum.Enum):
    """The seed's names for the four kinds of tool function."""

    SYNC = "sync"
    ASYNC = "async"
    SYNC_GENERATOR = "generator"
    ASYNC_GENERATOR = "async_generator"


@dataclass(slots=True)
class _Param:
    name: str
    positional_only: bool


def _kind_of(fn: ToolFn) -> ToolKind:
    target: object = fn
    if isinstance(fn, functools.partial):  # look at what it wraps
        target = fn.func
    elif not (inspect.isfunction(fn) or inspect.ismethod(fn)):  # a callable object: its __call__
        target = type(fn).__call__
    if inspect.isasyncgenfunction(target):
        return "async_generator"
    if inspect.isgeneratorfunction(target):
        return "generator"
    if inspect.iscoroutinefunction(target):
        return "async"
    return "sync"


def _is_run_context(annotation: object) -> bool:
    if annotation is RunContext or typing.get_origin(annotation) is RunContext:
        return True
    # Optional[RunContext[...]] / RunContext | None
    return any(a is RunContext or typing.get_origin(a) is RunContext for a in typing.get_args(annotation))


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    if not doc:
        return "", {}
    import docstring_parser

    parsed = docstring_parser.parse(doc)
    parts = [p for p in (parsed.short_description, parsed.long_description) if p]
    params = {p.arg_name: p.description for p in parsed.params if p.description}
    return "\n\n".join(parts).strip(), params


class FunctionTool:
    """A tool made from a sync, async, generator or async-generator function.

    Args:
        fn: the callable.
        name: the name the model uses (default: the function's ``__name__``).
        description: what the model reads (default: the docstring).
        require_approval: a permission manager must approve each call.
        timeout: seconds a call may take; past that it becomes an error observation.
        max_retries: how often the tool may raise ``ModelRetry`` in one run.
        inline: run a sync (or sync-generator) tool on the event loop instead of in a worker
            thread: for cheap, pure, non-blocking functions only. While it runs, every other run,
            stream and request of the process waits, and a cancel or a timeout cannot stop it
            (so ``inline=True`` with a ``timeout`` is refused). No effect on async tools.
        run_in_thread: kept for compatibility: sync tools run in a worker thread unless ``inline``.
        idempotent: safe to re-run after a crash (used by durable resume).
        examples: worked examples ``{"question", "kwargs", "result"}``; small local models
            are shown them as demonstrations.
    """

    def __init__(
        self,
        fn: ToolFn,
        *,
        name: str | None = None,
        description: str | None = None,
        require_approval: bool = False,
        timeout: float | None = None,
        max_retries: int = 1,
        run_in_thread: bool = False,
        inline: bool = False,
        idempotent: bool = False,
        pre_execute_callback: ToolFn | None = None,
        definition: FunctionDefinition | None = None,
        examples: Sequence[ToolExample] | None = None,
    ) -> None:
        if not callable(fn):
            raise UserError(f"FunctionTool needs a callable, got {fn!r}")
        self.fn = fn
        self.kind: ToolKind = _kind_of(fn)
        self.require_approval = require_approval
        self.timeout = timeout
        self.max_retries = max_retries
        if inline and run_in_thread:
            raise UserError("a tool cannot be both inline=True and run_in_thread=True")
        if inline and timeout is not None and self.kind in ("sync", "generator"):
            raise UserError("an inline sync tool runs on the event loop and cannot be timed out: "
                            "drop inline=True or the timeout")
        self.inline = inline
        self.idempotent = idempotent
        self.pre_execute_callback = pre_execute_callback
        self._build(name, description)
        if examples:
            for ex in examples:
                self.validate([], ex.get("kwargs", {}))  # an example must be a valid call
            self.definition.examples = [dict(ex) for ex in examples]
        if definition is not None:
            self.definition = definition
            self.name = definition.func_name
        if self.name == FINISH_TOOL:
            raise UserError("'finish' is reserved for the final answer; name the tool differently")

    # ------------------------------------------------------------------ schema
    def _build(self, name: str | None, description: str | None) -> None:
        fn = self.fn
        self.name = name or _name_of(fn)
        doc_desc, param_docs = _parse_docstring(inspect.getdoc(fn))
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError) as e:  # pragma: no cover - builtins without signature
            raise UserError(f"cannot read the signature of {fn!r}: {e}") from e
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception:
            hints = {}
        import pydantic  # imported on first use: `import treadle` stays light
        from pydantic import ConfigDict, Field

        fields: dict[str, Any] = {}  # create_model's own: (annotation, FieldInfo)
        self._params: list[_Param] = []
        self._ctx_params: list[str] = []
        self._var_keyword = False
        for p in sig.parameters.values():
            ann = hints.get(p.name, p.annotation)
            if ann is inspect.Parameter.empty:
                ann = Any
            if _is_run_context(ann):
                self._ctx_params.append(p.name)
                continue
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                self._var_keyword = True
                continue
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (ann, Field(default, description=param_docs.get(p.name)))
            self._params.append(_Param(p.name, p.kind is inspect.Parameter.POSITIONAL_ONLY))
        config = ConfigDict(extra="allow" if self._var_keyword else "forbid", arbitrary_types_allowed=True)
        self.args_model: type[pydantic.BaseModel] = pydantic.create_model(  # type: ignore[call-overload]
            f"{self.name}_arguments", __config__=config, **fields)
        self._validator = self.args_model.__pydantic_validator__
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        if not self._var_keyword:
            schema["additionalProperties"] = False
        self.description = (description or doc_desc or "").strip()
        self.definition = FunctionDefinition(func_name=self.name, func_desc=self.description,
                                             func_parameters=schema)
        self._positional_only = any(p.positional_only for p in self._params)

    @property
    def parameters_schema(self) -> dict[str, Any]:  # the definition's (types.FunctionDefinition)
        return self.definition.func_parameters

    @property
    def run_in_thread(self) -> bool:
        """True when calls run in a worker thread: a sync or sync-generator tool not ``inline``."""
        return not self.inline and self.kind in ("sync", "generator")

    @run_in_thread.setter
    def run_in_thread(self, value: bool) -> None:
        self.inline = not value

    @property
    def is_async(self) -> bool:
        return self.kind in ("async", "async_generator")

    @property
    def takes_context(self) -> bool:
        """True when the function declares a ``RunContext`` parameter (the run's ``ctx`` is passed)."""
        return bool(self._ctx_params)

    # ------------------------------------------------------------------ calling
    def validate(self, args: Sequence[object], kwargs: Mapping[str, object] | object) -> dict[str, object]:
        """Validate the model's arguments (``kwargs``: what it sent, an object unless it erred);
        returns the keyword arguments to call with.

        Raises ToolArgumentsError with a message the model can act on.
        """
        if not is_object(kwargs):
            raise ToolArgumentsError(f"arguments of {self.name} must be an object, got {type(kwargs).__name__}")
        data = kwargs
        if args:
            if len(args) > len(self._params):
                raise ToolArgumentsError(
                    f"{self.name}() takes {len(self._params)} arguments but {len(args)} were given")
            data = dict(kwargs)
            for p, value in zip(self._params, args):
                if p.name in data:
                    raise ToolArgumentsError(f"{self.name}() got multiple values for argument '{p.name}'")
                data[p.name] = value
        try:
            model = self._validator.validate_python(data)
        except _validation_error() as e:
            raise ToolArgumentsError(_describe_validation_error(self.name, e)) from None
        values: dict[str, object] = dict(model.__dict__)
        extra = model.__pydantic_extra__
        if extra:
            values.update(extra)
        return values

    def bind(self, values: dict[str, object], ctx: RunContext[C] | None
             ) -> tuple[tuple[object, ...], dict[str, object]]:
        """Arguments for the underlying function, with the run context injected."""
        if self._ctx_params:
            values = dict(values)
            for name in self._ctx_params:
                values[name] = ctx
        if not self._positional_only:
            return (), values
        pos = tuple(values.pop(p.name) for p in self._params if p.positional_only and p.name in values)
        return pos, values

    # ------------------------------------------------------------------ the seed's direct calls
    @staticmethod
    def detect_function_type(fn: ToolFn) -> FunctionType:
        return FunctionType(_kind_of(fn))

    @property
    def function_type(self) -> FunctionType:
        return FunctionType(self.kind)

    @property
    def _is_async(self) -> bool:
        return self.is_async

    def _output(self, args: tuple[object, ...], kwargs: dict[str, object], output: object = None,
                error: BaseException | None = None) -> FunctionOutput:
        fn_input = Function(name=self.name, args=args, kwargs=kwargs)  # type: ignore[arg-type]  # the seed's tuple
        if error is not None:
            return FunctionOutput(name=self.name, input=fn_input, output=None,
                                  error=f"Error at calling {self.fn!r}: {type(error).__name__}: {error}")
        return FunctionOutput(name=self.name, input=fn_input, output=output)

    def call(self, *args: object, **kwargs: object) -> FunctionOutput:
        """Call the function directly (no validation); returns a FunctionOutput whose ``error``
        holds any exception. Async functions run to completion and async generators are
        collected into a list; a sync generator is returned unconsumed (as in the seed)."""
        try:
            result = self.fn(*args, **kwargs)
            if inspect.isawaitable(result) or inspect.isasyncgen(result):
                from .._sync import run_sync

                result = run_sync(_settle(result))
        except Exception as e:
            return self._output(args, kwargs, error=e)
        return self._output(args, kwargs, result)

    async def acall(self, *args: object, **kwargs: object) -> FunctionOutput:
        """Like ``call`` from async code: coroutines are awaited, generators of both kinds
        are returned unconsumed (as in the seed)."""
        try:
            result = self.fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as e:
            return self._output(args, kwargs, error=e)
        return self._output(args, kwargs, result)

    def __call__(self, *args: object, **kwargs: object) -> object:
        """The function's own return value; with the seed-compatibility switch on, ``call()``'s
        FunctionOutput (as in the seed)."""
        from ..compat import seed_compat

        if seed_compat():
            return self.call(*args, **kwargs)
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool(name={self.name!r}, kind={self.kind!r})"


async def _settle(result: Awaitable[object] | AsyncIterator[object]) -> object:
    if isinstance(result, AsyncIterator):
        return [item async for item in result]
    return await result


def _name_of(fn: ToolFn) -> str:
    """A callable's own name: a function's, a method's, a class's; else its type's (a
    ``functools.partial``, a callable object)."""
    named = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, type)
    if isinstance(fn, named):
        return fn.__name__
    inner: object = inspect.unwrap(fn)  # a wrapper made by functools.update_wrapper: the name it copied
    if inner is not fn and isinstance(inner, named):
        return inner.__name__
    return type(fn).__name__


def _validation_error() -> type[pydantic.ValidationError]:
    from pydantic import ValidationError

    return ValidationError


def _describe_validation_error(name: str, e: pydantic.ValidationError) -> str:
    lines: list[str] = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(arguments)"
        lines.append(f"{loc}: {err.get('msg')}")
    return f"invalid arguments for {name}: " + "; ".join(lines)


class ToolExample(TypedDict, total=False):
    """A worked example of a tool: the question, the call's arguments, what it returned."""

    question: str
    kwargs: Mapping[str, object]
    result: object


class ToolOptions(TypedDict, total=False):
    """The keyword options of ``FunctionTool`` (and of ``@tool(...)``)."""

    name: str | None
    description: str | None
    require_approval: bool
    timeout: float | None
    max_retries: int
    run_in_thread: bool
    inline: bool
    idempotent: bool
    pre_execute_callback: ToolFn | None
    definition: FunctionDefinition | None
    examples: Sequence[ToolExample] | None


@overload
def tool(fn: ToolFn, **options: Unpack[ToolOptions]) -> FunctionTool: ...


@overload
def tool(fn: None = None, **options: Unpack[ToolOptions]) -> Callable[[ToolFn], FunctionTool]: ...


def tool(fn: ToolFn | None = None, **options: Unpack[ToolOptions]) -> FunctionTool | Callable[[ToolFn], FunctionTool]:
    """Decorator form of FunctionTool: ``@tool`` or ``@tool(require_approval=True, inline=True)``."""
    if fn is None:
        def decorate(f: ToolFn) -> FunctionTool:
            return FunctionTool(f, **options)

        return decorate
    return FunctionTool(fn, **options)
