"""JSON schemas as a provider receives them: compact, and the same bytes on every request.

``compact_schema`` drops what a capable model does not need: ``title`` keywords (pydantic puts
one on every model and field), ``"default": null`` and treadle's own ``x-treadle-*`` keys (hints
for the embedded small model). Property *names* are never touched (a field may be called
``title``). ``WireCache`` converts a request's tool list once and hands back the same objects
for every later request carrying the same list (the planner reuses one list per agent and tool
version), so the tools serialise to identical bytes and a provider's prompt cache keeps hitting.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, TypeVar, cast

__all__ = ["WireCache", "compact_schema"]

T = TypeVar("T")

# keywords whose value is a map of name -> schema (the names are data, not keywords)
_NAMED = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})
# keywords whose value is a schema, or a list of schemas
_SUB = frozenset({"items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
                  "unevaluatedItems", "unevaluatedProperties", "additionalItems"})
_SUBS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})


def compact_schema(schema: Any) -> Any:
    """A copy of ``schema`` without ``title``, ``"default": null`` and ``x-treadle-*`` keys."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for k, v in cast("dict[str, Any]", schema).items():
        if k == "title" and isinstance(v, str):
            continue
        if k == "default" and v is None:
            continue
        if k.startswith("x-treadle"):
            continue
        if k in _NAMED and isinstance(v, dict):
            out[k] = {name: compact_schema(sub) for name, sub in cast("dict[str, Any]", v).items()}
        elif k in _SUBS and isinstance(v, list):
            out[k] = [compact_schema(sub) for sub in cast("list[Any]", v)]
        elif k in _SUB:
            out[k] = [compact_schema(s) for s in cast("list[Any]", v)] if isinstance(v, list) else compact_schema(v)
        else:
            out[k] = v
    return out


class WireCache(Generic[T]):
    """The provider form of a request's tools (or answer format), made once per source object.

    Keyed by the identity of the source (the planner's cached tool list, or its AnswerFormat),
    which the cache holds on to, so an id is never reused while its entry lives.
    """

    def __init__(self, convert: Callable[[Any], T], size: int = 32) -> None:
        self._convert = convert
        self._size = size
        self._entries: dict[int, tuple[Any, T]] = {}
        self._lock = threading.Lock()

    def get(self, source: Any) -> T:
        key = id(source)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is source:
            return entry[1]
        value = self._convert(source)
        with self._lock:
            if len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[key] = (source, value)
        return value
