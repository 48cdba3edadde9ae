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
MAX_RESULT_BITS = 20_000
MAX_FILE_BYTES = 64_000


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise ModelRetry(f"exponent {right} is too large (max {MAX_EXPONENT})")
            if abs(left) > 1 and abs(right) * math.log2(abs(left)) > MAX_RESULT_BITS:
                raise ModelRetry(f"the result of {left} ** {right} would be too large")
        if isinstance(node.op, ast.Mult) and abs(left) > 1 and abs(right) > 1 and \
                math.log2(abs(left)) + math.log2(abs(right)) > MAX_RESULT_BITS:
            raise ModelRetry("the product would be too large")
        return _BIN[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    raise ModelRetry(f"unsupported expression element: {ast.dump(node)[:80]}; use numbers and + - * / // % **")


def calculator(expression: Annotated[str, Field(examples=["3 + 4", "(10 - 2) * 5"])]) -> str:
    """Evaluate an arithmetic expression such as "17 + 25" or "(2 ** 10) / 4".

    Args:
        expression: numbers with + - * / // % ** and parentheses
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ModelRetry(f"not an arithmetic expression: {expression!r}") from None
    try:
        value = _eval(tree)
    except ZeroDivisionError:
        raise ModelRetry("division by zero") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def current_time(timezone: Annotated[str, Field(examples=["UTC", "Europe/Paris"])] = "UTC") -> str:
    """The current date and time in ISO 8601.

    Args:
        timezone: an IANA zone name such as "UTC" or "Europe/Paris"
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ModelRetry(f"unknown time zone {timezone!r}; try 'UTC'") from None
    return _dt.datetime.now(tz).isoformat(timespec="seconds")


def read_file(path: Annotated[str, Field(examples=["report.md", "data/list.csv"])]) -> str:
    """Read a text file under the current directory (at most 64 kB).

    Args:
        path: a path relative to the current directory
    """
    root = os.path.realpath(os.getcwd())
    full = os.path.realpath(os.path.join(root, path))
    if os.path.commonpath([root, full]) != root:
        raise ModelRetry(f"{path!r} is outside the current directory")
    if not os.path.isfile(full):
        raise ModelRetry(f"no such file: {path!r}")
    with open(full, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    text = data[:MAX_FILE_BYTES].decode("utf-8", errors="replace")
    if len(data) > MAX_FILE_BYTES:
        text += f"\n… [truncated at {MAX_FILE_BYTES} bytes]"
    return text


DEMO_TOOLS = [
    FunctionTool(calculator, max_retries=3, examples=[
        {"question": "What is 3 + 4?", "kwargs": {"expression": "3 + 4"}, "result": "7"}]),
    FunctionTool(current_time, max_retries=3, examples=[
        {"question": "What time is it in Paris?", "kwargs": {"timezone": "Europe/Paris"},
         "result": "2025-01-01T10:00:00+01:00"}]),
    FunctionTool(read_file, max_retries=3, examples=[
        {"question": "What does report.md say?", "kwargs": {"path": "report.md"}, "result": "Sales rose 5%."}]),
]
