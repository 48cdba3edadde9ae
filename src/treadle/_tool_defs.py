"""The tools' definitions as the planner shows them to the model, from a treadle ``ToolManager``
or a seed-style tool manager (declared by the Protocols here, not probed)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .tools.manager import ToolManager
from .types import FunctionDefinition

__all__ = ["tool_definitions"]


@runtime_checkable
class _DefinesFunctions(Protocol):
    @property
    def function_definitions(self) -> list[FunctionDefinition]: ...


@runtime_checkable
class _SeedToolManager(Protocol):
    """A seed-style tool manager: its tools by name."""

    _context_map: dict[str, object]


@runtime_checkable
class _Defined(Protocol):
    @property
    def definition(self) -> FunctionDefinition: ...


def tool_definitions(tm: object) -> list[FunctionDefinition]:
    """The definitions of the tools of ``tm``: a treadle ``ToolManager``, or a seed-style one (those of
    its ``_context_map``)."""
    if isinstance(tm, ToolManager):
        return list(tm.function_definitions)
    if isinstance(tm, _DefinesFunctions):
        return list(tm.function_definitions)
    if isinstance(tm, _SeedToolManager):
        tools = tm._context_map  # pyright: ignore[reportPrivateUsage]  # the seed's name
        return [t.definition for t in tools.values() if isinstance(t, _Defined)]
    return []
