"""JSON values, typed: what a journal payload, an HTTP body or a tool's arguments hold once
parsed (``pydantic.JsonValue``), and the checks that narrow an ``object`` to them. pydantic is
imported on first use of the names only: ``import treadle`` stays light."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typing_extensions import TypeGuard

if TYPE_CHECKING:
    from pydantic import JsonValue

    JsonObject = dict[str, JsonValue]

__all__ = ["JsonObject", "JsonValue", "is_list", "is_object"]


def __getattr__(name: str) -> object:
    if name == "JsonValue":
        from pydantic import JsonValue

        return JsonValue
    if name == "JsonObject":
        from pydantic import JsonValue

        return dict[str, JsonValue]
    raise AttributeError(name)


def is_object(value: object) -> TypeGuard[dict[str, object]]:
    """A parsed JSON object (a dict: its keys are strings)."""
    return isinstance(value, dict)


def is_list(value: object) -> TypeGuard[list[object]]:
    return isinstance(value, list)
