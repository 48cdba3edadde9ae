"""docs/porting-from-adalflow.md: the "after" example runs as written, and differs from the
"before" (AdalFlow) example in its imports only."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import treadle

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "porting-from-adalflow.md"


def blocks() -> tuple[str, str]:
    text = GUIDE.read_text(encoding="utf-8")
    before = re.search(r"### Before \(AdalFlow\)\s+```python\n(.*?)```", text, re.S)
    after = re.search(r"<!-- after -->\s+```python\n(.*?)```", text, re.S)
    assert before and after, "the guide lost its before/after blocks"
    return before.group(1), after.group(1)


def without_imports(source: str) -> str:
    tree = ast.parse(source)
    tree.body = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    return ast.dump(tree)


def test_before_and_after_differ_only_in_imports() -> None:
    before, after = blocks()
    assert "adalflow" in before and "adalflow" not in after
    assert without_imports(before) == without_imports(after)


def test_the_after_example_runs_as_written(tmp_path: Path) -> None:
    _, after = blocks()
    script = tmp_path / "ported.py"
    script.write_text(after, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(treadle.__file__).resolve().parents[1]),
                                         env.get("PYTHONPATH", "")])
    env.pop("TREADLE_SEED_COMPAT", None)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events == ["agent.tool_call_start", "agent.tool_call_complete", "agent.step_complete",
                      "agent.tool_permission_request", "agent.tool_call_start", "agent.tool_call_complete",
                      "agent.step_complete", "agent.execution_complete"]
    assert "approval asked: book_table({'restaurant': 'Maaemo', 'people': 2}) -> yes" in lines
    assert "answer: It is raining (18°C), so I booked Maaemo for 2." in lines
    assert "answer: You booked Maaemo for 2 people." in lines
    history = "\n".join(lines[lines.index("User:"):])
    assert history == ("User:\nquery: Weather in Oslo? If it rains, book Maaemo for 2.\n"
                       "Assistant: It is raining (18°C), so I booked Maaemo for 2.\n"
                       "User:\nquery: What did I book?\nAssistant: You booked Maaemo for 2 people.")
