"""Typed empty containers for dataclass fields.

``field(default_factory=list[X])`` calls a generic alias, which costs about 15 times what
``list()`` does (it tries, and fails, to tag the new list with its type): these are plain
calls that type checkers still read as typed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["new_dict", "new_list", "new_set"]


def new_list() -> list[Any]:
    return []


def new_dict() -> dict[Any, Any]:
    return {}


def new_set() -> set[Any]:
    return set()
