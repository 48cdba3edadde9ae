"""Edited arguments, checked once for every way of deciding: the terminal prompt and
``treadle approve --args`` (CLI), ``POST /runs/{id}/approvals/{call_id}`` (HTTP, live or
suspended runs) and ``Runner.record_decision`` (the library). An edit that does not fit the
tool's schema is refused before anything is recorded, and the call stays pending.

(The loop checks an approved edit once more before the tool runs — a callback's or a
stream consumer's edit is not refused back to anyone, so there it becomes a denial.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from .errors import TreadleError, UserError

if TYPE_CHECKING:
    from .protocols import DrivenAgent

__all__ = ["InvalidEdit", "check_edit"]


class InvalidEdit(UserError):
    """Edited arguments that the tool's schema refuses; nothing was recorded."""


def check_edit(agent: DrivenAgent | None, tool_name: str, kwargs: object) -> bool:
    """Raise ``InvalidEdit`` (with a message a person can act on) unless ``kwargs`` fit the
    schema of the tool ``tool_name`` of ``agent`` (or of an agent it calls or hands off to).
    Returns False when no such tool is known here (nothing could be checked)."""
    from .nesting import find_tool

    if not isinstance(kwargs, dict):
        raise InvalidEdit(f"the edited arguments must be a JSON object, got {type(kwargs).__name__}")
    tool = find_tool(agent, tool_name) if agent is not None else None
    if tool is None:
        return False
    try:
        tool.validate([], cast("dict[str, object]", kwargs))  # a JSON object: text keys
    except (TreadleError, ValueError, TypeError) as e:
        why = str(e).removeprefix(f"invalid arguments for {tool_name}: ")  # named once
        raise InvalidEdit(f"the edited arguments are not valid for {tool_name}: {why}") from None
    return True
