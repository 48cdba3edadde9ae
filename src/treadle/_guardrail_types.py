"""The guardrails' data: the three kinds (``InputGuardrail``, ``OutputGuardrail``, ``ToolGuardrail``),
their decorators, verdicts and decision events. Their evaluation is ``treadle.guardrails`` (which
re-exports these); this module sits below the run state in the import graph."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar, overload, runtime_checkable

from pydantic import JsonValue

from .errors import UserError
from .types import Function, Usage

__all__ = ["Check", "Guardrail", "GuardrailContext", "GuardrailDecision", "GuardrailKind", "GuardrailResult",
           "InputGuardrail", "OutputGuardrail", "ToolGuardrail", "Tripwire", "as_guardrails", "input_guardrail",
           "is_agent", "output_guardrail", "tool_guardrail"]

Check = object
"""A guardrail's check: a function ``(value)`` or ``(ctx, value)`` returning a verdict, or an Agent."""

GuardrailKind = Literal["input", "output", "tool_input", "tool_output"]


@dataclass(slots=True)
class GuardrailResult:
    """A guardrail's verdict. ``tripwire=True``: the check failed."""

    tripwire: bool = False
    message: str | None = None
    info: object = None
    replacement: object = None  # tool output guardrails: what the model sees instead of the output

    @classmethod
    def passed(cls, info: object = None) -> GuardrailResult:
        return cls(False, None, info)

    @classmethod
    def failed(cls, message: str | None = None, info: object = None) -> GuardrailResult:
        return cls(True, message, info)


@dataclass(slots=True)
class GuardrailContext:
    """What a guardrail function may look at besides the value."""

    run_id: str
    agent_name: str
    kind: GuardrailKind
    step: int
    context: object = None  # the Runner's ctx
    usage: Usage = field(default_factory=Usage)
    call: Function | None = None  # tool guardrails: the call
    depth: int = 0


@dataclass(slots=True)
class GuardrailDecision:
    """The data of an ``agent.guardrail`` event."""

    guardrail: str
    kind: GuardrailKind
    tripped: bool
    action: str  # passed | ended | retry | blocked | replaced
    message: str | None = None
    info: JsonValue = None
    call_id: str | None = None
    tool: str | None = None
    started_at: float = 0.0
    step: int = 0


class Guardrail:
    kind: GuardrailKind

    def __init__(self, check: Check, *, name: str | None = None) -> None:
        if not callable(check) and not is_agent(check):
            raise UserError(f"a guardrail is a function or an Agent, not {check!r}")
        self.check: Check = check
        self.name: str = name or _name_of(check)
        self.with_ctx = False
        if callable(check) and not is_agent(check):
            try:
                params = [p for p in inspect.signature(check).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            except (TypeError, ValueError):
                params = []
            self.with_ctx = len(params) >= 2

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class InputGuardrail(Guardrail):
    """Checks the run's input. ``parallel=False`` (default): before the first model call;
    ``parallel=True``: beside it (the call is cancelled if the tripwire fires first; no tool
    runs and no answer is returned before the check passed)."""

    kind: GuardrailKind = "input"

    def __init__(self, check: Check, *, name: str | None = None, parallel: bool = False) -> None:
        super().__init__(check, name=name)
        self.parallel = parallel


class OutputGuardrail(Guardrail):
    """Checks the final answer. ``max_retries``: how often a failed answer goes back to the
    model (with the message) before the run ends with ``OutputGuardrailTripwireTriggered``."""

    kind: GuardrailKind = "output"

    def __init__(self, check: Check, *, name: str | None = None, max_retries: int = 0) -> None:
        super().__init__(check, name=name)
        self.max_retries = int(max_retries)


class ToolGuardrail(Guardrail):
    """Checks a tool call: ``when="before"`` on its arguments (a failed call does not run),
    ``when="after"`` on its output (the model sees the message, or ``replacement``, instead).
    ``tools``: the tool names it applies to (default: all). ``halt=True``: a failure ends the
    run (``ToolGuardrailTripwireTriggered``) instead of being reported to the model."""

    def __init__(self, check: Check, *, name: str | None = None, when: Literal["before", "after"] = "before",
                 tools: list[str] | None = None, halt: bool = False) -> None:
        if when not in ("before", "after"):
            raise UserError(f"a tool guardrail runs 'before' or 'after' the call, not {when!r}")
        super().__init__(check, name=name)
        self.when = when
        self.kind = "tool_input" if when == "before" else "tool_output"
        self.tools = set(tools) if tools is not None else None
        self.halt = halt

    def applies(self, tool_name: str) -> bool:
        return self.tools is None or tool_name in self.tools


@overload
def input_guardrail(fn: Check, /) -> InputGuardrail: ...
@overload
def input_guardrail(fn: None = None, /, *, name: str | None = None,
                    parallel: bool = False) -> Callable[[Check], InputGuardrail]: ...
def input_guardrail(fn: Check | None = None, /, *, name: str | None = None,
                    parallel: bool = False) -> InputGuardrail | Callable[[Check], InputGuardrail]:
    """``@input_guardrail`` or ``@input_guardrail(parallel=True, name=...)``."""
    def make(f: Check) -> InputGuardrail:
        return InputGuardrail(f, name=name, parallel=parallel)
    return make if fn is None else make(fn)


@overload
def output_guardrail(fn: Check, /) -> OutputGuardrail: ...
@overload
def output_guardrail(fn: None = None, /, *, name: str | None = None,
                     max_retries: int = 0) -> Callable[[Check], OutputGuardrail]: ...
def output_guardrail(fn: Check | None = None, /, *, name: str | None = None,
                     max_retries: int = 0) -> OutputGuardrail | Callable[[Check], OutputGuardrail]:
    """``@output_guardrail`` or ``@output_guardrail(max_retries=1)``."""
    def make(f: Check) -> OutputGuardrail:
        return OutputGuardrail(f, name=name, max_retries=max_retries)
    return make if fn is None else make(fn)


@overload
def tool_guardrail(fn: Check, /) -> ToolGuardrail: ...
@overload
def tool_guardrail(fn: None = None, /, *, name: str | None = None, when: Literal["before", "after"] = "before",
                   tools: list[str] | None = None, halt: bool = False) -> Callable[[Check], ToolGuardrail]: ...
def tool_guardrail(fn: Check | None = None, /, *, name: str | None = None,
                   when: Literal["before", "after"] = "before", tools: list[str] | None = None,
                   halt: bool = False) -> ToolGuardrail | Callable[[Check], ToolGuardrail]:
    """``@tool_guardrail`` (before the call) or ``@tool_guardrail(when="after", tools=[...])``."""
    def make(f: Check) -> ToolGuardrail:
        return ToolGuardrail(f, name=name, when=when, tools=tools, halt=halt)
    return make if fn is None else make(fn)


G = TypeVar("G", bound="Guardrail")


def as_guardrails(items: Iterable[object] | None, cls: type[G]) -> list[G]:
    """Agent(...)'s guardrail lists: plain functions and agents wrapped in ``cls``."""
    out: list[G] = []
    for g in items or ():
        if isinstance(g, cls):
            out.append(g)
        elif isinstance(g, Guardrail):
            raise UserError(f"{g!r} is not a {cls.__name__}")
        else:
            out.append(cls(g))
    return out


@runtime_checkable
class _AgentParts(Protocol):
    tool_manager: object
    planner: object
    answer_data_type: object


@runtime_checkable
class _Named(Protocol):
    name: str


@runtime_checkable
class Tripwire(Protocol):
    """An agent guardrail's structured answer (a model with ``tripwire`` and maybe ``message``)."""

    tripwire: object


def is_agent(obj: object) -> bool:
    """An Agent (by its shape: the guardrail module sits below treadle.agent)."""
    return isinstance(obj, _AgentParts)


def _name_of(check: object) -> str:
    if inspect.isfunction(check) or inspect.ismethod(check) or inspect.isbuiltin(check):
        return check.__name__
    if is_agent(check) and isinstance(check, _Named):
        return check.name
    return type(check).__name__
