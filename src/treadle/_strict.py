"""Unknown arguments are errors that name the fix, never silently ignored.

``strict`` wraps a constructor whose signature has no ``**kwargs``: a keyword it does not take
raises ``UnknownArgumentError`` ("unknown argument 'tool' for Agent; did you mean 'tools'?")
instead of Python's bare ``TypeError``. The wrapped signature is unchanged for type checkers.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeVar


from .errors import UnknownArgumentError

__all__ = ["closest", "strict", "unknown_argument"]

P = ParamSpec("P")
R = TypeVar("R")


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name a typo most likely meant (or None)."""
    valid = list(valid)
    lowered = {v.lower(): v for v in valid}
    if name.lower() in lowered:
        return lowered[name.lower()]
    found = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if found:
        return found[0]
    for v in valid:  # a prefix or a part: "answer_type" for "answer_data_type", "step" for "max_steps"
        if len(name) >= 4 and (name in v or v in name):
            return v
    return None


def unknown_argument(name: str, owner: str, valid: Iterable[str], hint: str = "",
                     what: str = "argument", list_all: bool = False) -> UnknownArgumentError:
    """The error for argument ``name`` that ``owner`` does not take."""
    valid = sorted(v for v in valid if not v.startswith("_"))
    guess = closest(name, valid)
    fix = f"; did you mean {guess!r}?" if guess else ""
    if list_all or not guess:
        fix += f" (it takes: {', '.join(valid)})"
    return UnknownArgumentError(f"unknown {what} {name!r} for {owner}{fix}{hint}")


def strict(hint: str = "") -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate an ``__init__`` (or function) so an unknown keyword raises ``UnknownArgumentError``."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        sig = inspect.signature(fn)
        names = frozenset(n for n, p in sig.parameters.items()
                          if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self")
        owner = fn.__qualname__.removesuffix(".__init__")

        @functools.wraps(fn)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            for key in kwargs:
                if key not in names:
                    raise unknown_argument(key, owner, names, hint)
            return fn(*args, **kwargs)

        return checked

    return wrap
