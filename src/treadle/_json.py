"""JSON values, typed: what a journal payload, an HTTP body or a tool's arguments hold once
parsed, and the checks that narrow an ``object`` to them (no pydantic import: ``import
treadle`` stays light; the alias is the shape of ``pydantic.JsonValue``)."""

from __future__ import annotations

from typing import Dict, List, Union

from typing_extensions import TypeAlias, TypeGuard

__all__ = ["JsonObject", "JsonValue", "is_list", "is_object"]

JsonValue: TypeAlias = Union[str, int, float, bool, List["JsonValue"], Dict[str, "JsonValue"], None]
JsonObject: TypeAlias = Dict[str, JsonValue]


def is_object(value: object) -> TypeGuard[dict[str, object]]:
    """A parsed JSON object (a dict: its keys are strings)."""
    return isinstance(value, dict)


def is_list(value: object) -> TypeGuard[list[object]]:
    return isinstance(value, list)
