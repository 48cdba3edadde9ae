"""The examples of docs/multi-agent.md, docs/guardrails.md and docs/events.md run as written and print what
the page says they print (``{child}`` in an expected output stands for a run id)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import treadle

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ["multi-agent.md", "guardrails.md", "events.md"]
EXAMPLE = re.compile(r"<!-- example: ([\w-]+) -->\s*```python\n(.*?)```\s*<!-- output -->\s*```text\n(.*?)```", re.S)


def examples() -> list[tuple[str, str, str]]:
    found = []
    for page in PAGES:
        for name, code, output in EXAMPLE.findall((DOCS / page).read_text(encoding="utf-8")):
            found.append((f"{page}:{name}", code, output))
    return found


def test_the_pages_have_their_examples() -> None:
    names = [n for n, _, _ in examples()]
    assert names == ["multi-agent.md:agent-as-tool", "multi-agent.md:handoff", "multi-agent.md:nested-approval",
                     "guardrails.md:input", "guardrails.md:output", "guardrails.md:tools", "guardrails.md:agent",
                     "events.md:speaking-agent"]


@pytest.mark.parametrize("name,code,expected", examples(), ids=[n for n, _, _ in examples()])
def test_an_example_runs_as_written(name: str, code: str, expected: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(treadle.__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    env.pop("TREADLE_SEED_COMPAT", None)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    pattern = "".join(re.escape(part) if part != "{child}" else "[0-9a-f]{32}"
                      for part in re.split(r"(\{child\})", expected.rstrip("\n")))
    assert re.fullmatch(pattern, out.stdout.rstrip("\n")), f"{name} printed:\n{out.stdout}\nexpected:\n{expected}"
