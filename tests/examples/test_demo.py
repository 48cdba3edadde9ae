from __future__ import annotations

import subprocess
import sys


def test_demo_runs_end_to_end() -> None:
    out = subprocess.run([sys.executable, "-m", "treadle.examples.demo", "What is 6 * 7?"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "call:    calculator({'expression': '6 * 7'})" in out.stdout
    assert "answer: 42" in out.stdout
