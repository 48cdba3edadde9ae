"""pyright (run by .ci/run) is strict on the public API: every module that defines a name of
``treadle.__all__`` is in ``[tool.pyright] strict`` (a module, or a folder holding it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import treadle

ROOT = Path(__file__).resolve().parents[1]


def _strict_paths() -> list[str]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - 3.10
        tomllib = pytest.importorskip("tomli")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["tool"]["pyright"]["strict"])


def test_public_modules_are_checked_strictly() -> None:
    strict = _strict_paths()
    src = Path(treadle.__file__).resolve().parent.parent
    modules = {"treadle"}
    for name in treadle.__all__:
        module = getattr(getattr(treadle, name), "__module__", None)
        if isinstance(module, str) and module.startswith("treadle."):
            modules.add(module)
    missing = []
    for module in sorted(modules):
        path = src.joinpath(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        rel = path.relative_to(src.parent).as_posix()
        if not any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in strict):
            missing.append(rel)
    assert not missing, f"public modules not in [tool.pyright] strict: {missing}"
