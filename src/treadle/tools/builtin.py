"""Safe demo tools: a calculator, the current time, and reading a file under the cwd."""

from __future__ import annotations

import ast
import datetime as _dt
import math
import operator
import os
from typing import Annotated, Any, Callable

from pydantic import Field

from ..errors import ModelRetry
from .function_tool import FunctionTool

__all__ = ["calculator", "current_time", "read_file", "DEMO_TOOLS"]

_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPONENT = 1000
MAX_RESULT_BITS = 14_000  # about 4,200 digits: under CPython's 4,300-digit limit on int -> str
MAX_EXPRESSION_CHARS = 1000
MAX_FILE_BYTES = 64_000
MAX_PATH_CHARS = 4096
MAX_SHOWN = 100  # characters of the model's input quoted back in a refusal


def _shown(text: str) -> str:
    """The model's input, quoted back in a refusal, at most ~MAX_SHOWN characters."""
    shown = repr(text[:MAX_SHOWN + 1])
    if len(text) <= MAX_SHOWN and len(shown) <= MAX_SHOWN + 2:
        return shown
    return f"{shown[:MAX_SHOWN]}… ({len(text)} characters)"


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                shown = right if abs(right) < 10**15 else "of this size"
                raise ModelRetry(f"exponent {shown} is too large (max {MAX_EXPONENT})")
            if abs(left) > 1 and abs(right) * math.log2(abs(left)) > MAX_RESULT_BITS:
                raise ModelRetry(f"the result of a power would be too large (over {MAX_RESULT_BITS} bits)")
        if isinstance(node.op, ast.Mult) and abs(left) > 1 and abs(right) > 1 and \
                math.log2(abs(left)) + math.log2(abs(right)) > MAX_RESULT_BITS:
            raise ModelRetry("the product would be too large")
        value = _BIN[type(node.op)](left, right)
        if isinstance(value, complex):  # a negative number to a fractional power
            raise ModelRetry("the result is not a real number")
        return value  # type: ignore[no-any-return]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    raise ModelRetry(f"unsupported expression element: {ast.dump(node)[:80]}; use numbers and + - * / // % **")


def calculator(expression: Annotated[str, Field(examples=["3 + 4", "(10 - 2) * 5"])]) -> str:
    """Evaluate an arithmetic expression such as "17 + 25" or "(2 ** 10) / 4".

    Args:
        expression: numbers with + - * / // % ** and parentheses
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ModelRetry(f"the expression is too long ({len(expression)} characters, max {MAX_EXPRESSION_CHARS})")
    try:
        value = _eval(ast.parse(expression.strip(), mode="eval"))
        if isinstance(value, float) and not math.isfinite(value):
            raise OverflowError
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte (older Pythons), or too many digits to print
        raise ModelRetry(f"not an arithmetic expression: {_shown(expression)}") from None
    except ZeroDivisionError:
        raise ModelRetry("division by zero") from None
    except OverflowError:
        raise ModelRetry("the result is too large for a floating-point number") from None
    except (RecursionError, MemoryError):  # the parser and _eval recurse once per nesting level
        raise ModelRetry("the expression is nested too deeply") from None


def current_time(timezone: Annotated[str, Field(examples=["UTC", "Europe/Paris"])] = "UTC") -> str:
    """The current date and time in ISO 8601.

    Args:
        timezone: an IANA zone name such as "UTC" or "Europe/Paris"
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. a name too long for a file name
        raise ModelRetry(f"unknown time zone {_shown(timezone)}; try 'UTC'") from None
    return _dt.datetime.now(tz).isoformat(timespec="seconds")


def read_file(path: Annotated[str, Field(examples=["report.md", "data/list.csv"])]) -> str:
    """Read a text file under the current directory (at most 64 kB).

    Args:
        path: a path relative to the current directory
    """
    if "\x00" in path:
        raise ModelRetry("a path cannot contain a NUL character")
    if len(path) > MAX_PATH_CHARS:
        raise ModelRetry(f"the path is too long ({len(path)} characters, max {MAX_PATH_CHARS})")
    root = os.path.realpath(os.getcwd())
    try:
        full = os.path.realpath(os.path.join(root, path))
    except ValueError:  # e.g. a lone surrogate the file system encoding cannot take
        raise ModelRetry(f"not a valid path: {_shown(path)}") from None
    if os.path.commonpath([root, full]) != root:
        raise ModelRetry(f"{_shown(path)} is outside the current directory")
    if not os.path.isfile(full):
        raise ModelRetry(f"no such file: {_shown(path)}")
    try:
        with open(full, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:  # unreadable (permissions), or gone since the check
        raise ModelRetry(f"cannot read {_shown(path)}: {e.strerror or type(e).__name__}") from None
    text = data[:MAX_FILE_BYTES].decode("utf-8", errors="replace")
    if len(data) > MAX_FILE_BYTES:
        text += f"\n… [truncated at {MAX_FILE_BYTES} bytes]"
    return text


DEMO_TOOLS = [
    # calculator and current_time are cheap and pure (bounded by MAX_EXPONENT / MAX_RESULT_BITS):
    # they run on the loop; read_file does file I/O, in a worker thread
    FunctionTool(calculator, max_retries=3, inline=True, examples=[
        {"question": "What is 3 + 4?", "kwargs": {"expression": "3 + 4"}, "result": "7"},
        {"question": "Add 2 and 3, then multiply by 4.", "kwargs": {"expression": "(2 + 3) * 4"}, "result": "20"}]),
    FunctionTool(current_time, max_retries=3, inline=True, examples=[
        {"question": "What time is it?", "kwargs": {"timezone": "UTC"}, "result": "2025-01-01T09:00:00+00:00"}]),
    FunctionTool(read_file, max_retries=3, examples=[
        {"question": "What does report.md say?", "kwargs": {"path": "report.md"}, "result": "Sales rose 5%."}]),
]
