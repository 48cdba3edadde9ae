"""`import treadle` stays light: no optional heavy dependency is imported."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["openai", "anthropic", "fastapi", "ray", "uvicorn", "xllamacpp", "mcp", "psycopg", "opentelemetry",
         "typer", "rich", "httpx", "json_repair", "docstring_parser"]


def test_import_treadle_does_not_import_heavy_dependencies() -> None:
    code = ("import sys, json, treadle; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_public_names_importable() -> None:
    import treadle

    for name in treadle.__all__:
        assert hasattr(treadle, name), name
