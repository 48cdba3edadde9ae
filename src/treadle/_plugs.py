"""The plug-point check: does an object have every method a Protocol lists?

Lives low in the import graph (it needs only ``errors``) so that every module owning a plug
point (memory, store, permissions) can check what it is given; the Protocols themselves are
gathered in ``treadle.protocols``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import PlugError

__all__ = ["check_plug", "describe", "missing_methods", "protocol_methods"]

_PROTOCOL_BASES = frozenset({"Protocol", "Generic", "object"})


def protocol_methods(proto: type) -> tuple[str, ...]:
    """The methods a Protocol lists (its own and its Protocol bases'), in definition order.
    Public names and ``__call__``; properties and data attributes are not methods."""
    names: list[str] = []
    for klass in reversed(proto.__mro__):
        if klass.__name__ in _PROTOCOL_BASES or not getattr(klass, "_is_protocol", False):
            continue
        for name, value in vars(klass).items():
            if (name == "__call__" or not name.startswith("_")) and callable(value) and name not in names:
                names.append(name)
    return tuple(names)


def missing_methods(obj: object, names: Iterable[str]) -> list[str]:
    """The names among ``names`` that ``obj`` has no callable for."""
    return [n for n in names if not callable(getattr(obj, n, None))]


def describe(obj: object) -> str:
    """The object's type, as an error message names it."""
    kind = type(obj)
    if kind.__module__ in ("builtins", "__main__"):
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _name(proto: type) -> str:
    return f"the {proto.__name__} protocol (treadle.protocols)"


def check_plug(obj: object, proto: type, what: str, *, any_of: tuple[str, ...] = (), hint: str = "") -> None:
    """Raise ``PlugError`` (a ``UserError``) unless ``obj`` has every method of ``proto``.

    ``any_of``: alternatives instead (``call`` or ``acall``): one of them is enough."""
    if any_of:
        if missing_methods(obj, any_of) != list(any_of):
            return
        wanted = " or ".join(f"{n}()" for n in any_of)
        raise PlugError(f"{what} {describe(obj)} does not fit {_name(proto)}: it has no method {wanted}{hint}")
    missing = missing_methods(obj, protocol_methods(proto))
    if missing:
        raise PlugError(f"{what} {describe(obj)} does not fit {_name(proto)}: missing method"
                        f"{'s' if len(missing) > 1 else ''} {', '.join(f'{n}()' for n in missing)}{hint}")
