"""The careful parts of ``treadle.types.to_jsonable``: what JSON keeps as it is, and the slow path
that cleans anything else (cycles, depth, long integers, NaN, lone surrogates, bytes)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from typing import cast

from pydantic import JsonValue

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "fallback", "flat", "is_strict", "repr_of", "safe", "utf8"]

MAX_DEPTH = 100  # nesting kept by to_jsonable's careful path
MAX_INT_DIGITS = 4300  # CPython's default limit on int <-> str conversion (json.loads refuses longer ints)
_MAX_INT_BITS = int(MAX_INT_DIGITS / 0.30103) - 8  # comfortably under MAX_INT_DIGITS decimal digits


def fallback(obj: object) -> str:
    if isinstance(obj, (bytes, bytearray)):
        return f"<{len(obj)} bytes>"
    return repr_of(obj)


def repr_of(obj: object) -> str:
    try:
        text = repr(obj)
    except Exception:  # a __repr__ that raises (or an int too long to print)
        text = f"<{type(obj).__name__} object that cannot be shown>"
    return utf8(text)


def utf8(text: str) -> str:
    """``text``, with lone surrogates (which UTF-8 cannot encode) backslash-escaped."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def bad_scalar(t: type[object], v: object) -> bool:
    """A str, int or float value that JSON does not keep as it is (a lone surrogate, an int too
    long for ``json.loads``, NaN or an infinity)."""
    if t is str:
        text = cast(str, v)
        return not text.isascii() and utf8(text) is not text
    if t is int:
        return cast(int, v).bit_length() > _MAX_INT_BITS
    return v != v or v in (math.inf, -math.inf)


_CHECKED = (str, int, float)


def flat(d: dict[object, object]) -> bool:
    """``d`` has text keys and plain scalar values that JSON keeps as they are (strict JSON,
    UTF-8): to_jsonable would only copy it. (``is_strict``'s checks, in one pass.)"""
    for k, v in d.items():
        if type(k) is not str or (not k.isascii() and utf8(k) is not k):
            return False
        t = type(v)
        if t in _CHECKED:
            if bad_scalar(t, v):
                return False
        elif t is not bool and v is not None:
            return False
    return True


def is_strict(value: object) -> bool:
    """True when to_jsonable_python's output needs no cleaning (the usual case: one cheap pass)."""
    stack: list[object] = [value]
    while stack:
        v = stack.pop()
        t: type[object] = type(v)
        if t is dict:
            for k, x in cast("dict[object, object]", v).items():
                if type(k) is not str or (not k.isascii() and utf8(k) is not k):
                    return False
                stack.append(x)
        elif t is list:
            stack.extend(cast("list[object]", v))
        elif t in _CHECKED and bad_scalar(t, v):
            return False
    return True


def safe(obj: object, depth: int, active: set[int]) -> JsonValue:
    """The careful (slow) path of to_jsonable: one value at a time, with cycles and depth bounded."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return int(obj) if obj.bit_length() <= _MAX_INT_BITS else f"<integer of {obj.bit_length()} bits>"
    if isinstance(obj, float):
        if math.isfinite(obj):
            return float(obj)
        return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, str):
        return utf8(str(obj))
    if isinstance(obj, (bytes, bytearray)):
        try:
            return bytes(obj).decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(obj)} bytes>"
    if depth >= MAX_DEPTH:
        return "<nested too deeply>"
    key = id(obj)
    if key in active:
        return "<circular reference>"
    active.add(key)
    try:
        if isinstance(obj, dict):
            items = list(cast("dict[object, object]", obj).items())
            return {key_of(k): safe(v, depth + 1, active) for k, v in items}
        if isinstance(obj, (list, tuple, set, frozenset)):
            values = list(cast("Iterable[object]", obj))
            return [safe(v, depth + 1, active) for v in values]
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: safe(getattr(obj, f.name, None), depth + 1, active) for f in dataclasses.fields(obj)}
    finally:
        active.discard(key)
    from pydantic_core import to_jsonable_python

    try:  # anything else pydantic knows (models, datetimes, enums, UUIDs...), cleaned in turn
        value = to_jsonable_python(obj, fallback=fallback, serialize_unknown=True)
    except Exception:
        return repr_of(obj)
    return value if is_strict(value) else safe(value, depth + 1, active)


def key_of(k: object) -> str:
    if isinstance(k, str):
        return utf8(str(k))
    if k is None or isinstance(k, (bool, int, float)):
        value = safe(k, 0, set())
        return value if isinstance(value, str) else json.dumps(value)
    return repr_of(k)
