from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from treadle import ModelRetry
from treadle.tools.builtin import calculator, current_time, read_file


@pytest.mark.parametrize("expr,out", [("17 + 25", "42"), ("(2 ** 10) / 4", "256"), ("7 / 2", "3.5"), ("-3 * -3", "9"),
                                      ("10 // 3 + 10 % 3", "4")])
def test_calculator(expr: str, out: str) -> None:
    assert calculator(expr) == out


@pytest.mark.parametrize("expr", ["__import__('os')", "open('x')", "1 / 0", "2 ** 100000", "x + 1", "", "1 +"])
def test_calculator_refuses_unsafe_or_bad_input(expr: str) -> None:
    with pytest.raises(ModelRetry):
        calculator(expr)


def test_current_time() -> None:
    assert current_time("UTC").endswith("+00:00")
    with pytest.raises(ModelRetry):
        current_time("Mars/Olympus")


def test_read_file_stays_under_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "big.txt").write_text("x" * 70_000)
    assert read_file("a.txt") == "hello"
    assert read_file("big.txt").endswith("[truncated at 64000 bytes]")
    for bad in ["../etc/passwd", "/etc/passwd", "missing.txt"]:
        with pytest.raises(ModelRetry):
            read_file(bad)
    os.symlink("/etc/hostname", tmp_path / "link")
    with pytest.raises(ModelRetry):
        read_file("link")


def test_calculator_refuses_results_too_large_before_computing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from treadle.tools import builtin

    sizes: list[int] = []  # bits of the largest operand of each operation the calculator performs
    for node_type, fn in list(builtin._BIN.items()):
        def counting(a: Any, b: Any, fn: Any = fn) -> Any:
            sizes.append(max(abs(x).bit_length() if isinstance(x, int) else 64 for x in (a, b)))
            return fn(a, b)
        monkeypatch.setitem(builtin._BIN, node_type, counting)
    for expr in ["((10 ** 1000) ** 1000) ** 1000", "(9 ** 999) ** 999", "(10 ** 1000) * (10 ** 1000) ** 10"]:
        with pytest.raises(ModelRetry, match="too large"):
            calculator(expr)
    # refused before computing: only a few operations were done, none on a number over the result limit
    assert 0 < len(sizes) <= 6 and max(sizes) <= builtin.MAX_RESULT_BITS, sizes
