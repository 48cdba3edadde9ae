"""``isinstance`` for containers whose items are not known: the items come out as ``object``
(a plain ``isinstance(x, list)`` on an ``object`` leaves them unknown to the type checker)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterator

from typing_extensions import TypeGuard

__all__ = ["is_async_iterable", "is_dict", "is_iterator", "is_list", "is_tuple"]


def is_list(value: object) -> TypeGuard[list[object]]:
    """``isinstance(value, list)``."""
    return isinstance(value, list)


def is_dict(value: object) -> TypeGuard[dict[object, object]]:
    """``isinstance(value, dict)``."""
    return isinstance(value, dict)


def is_tuple(value: object) -> TypeGuard[tuple[object, ...]]:
    """``isinstance(value, tuple)``."""
    return isinstance(value, tuple)


def is_async_iterable(value: object) -> TypeGuard[AsyncIterable[object]]:
    """``isinstance(value, AsyncIterable)`` (it has ``__aiter__``)."""
    return isinstance(value, AsyncIterable)


def is_iterator(value: object) -> TypeGuard[Iterator[object]]:
    """``isinstance(value, Iterator)`` (it has ``__iter__`` and ``__next__``: generators too)."""
    return isinstance(value, Iterator)
