"""The official MCP conformance suite's server scenarios against ``/mcp`` of a real
``treadle serve`` on loopback. ``.ci/conformance-server.sh`` installs the suite and Node 22 and
prints ``export TREADLE_CONFORMANCE=...``; without it this test is skipped (failed under CI).

The server is tests/server/mcp_conformance_app.py: the suite's reference tools, resources and
prompts written with treadle's public serve API (an MCPApp), beside the agents of mcp_agents.py.
The scenarios that cannot pass are the suite's baseline
(.ci/conformance-server-baseline.yml, each reason in docs/mcp-serve.md): the suite exits non-zero
on any other failure, and on a listed scenario that starts passing."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from test_serve_cli import free_port, wait_up
from test_serve_cli import start as start_server

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / ".ci" / "conformance-server-baseline.yml"
PASSING = {  # every scenario of the suite but server-sse-polling (the baseline's)
    "server-initialize", "ping", "tools-list", "server-sse-multiple-streams", "dns-rebinding-protection",
    "logging-set-level", "completion-complete", "json-schema-2020-12",
    *(f"tools-call-{s}" for s in ("simple-text", "image", "audio", "embedded-resource", "mixed-content",
                                  "with-logging", "error", "with-progress", "sampling", "elicitation")),
    "elicitation-sep1034-defaults", "elicitation-sep1330-enums",
    *(f"resources-{s}" for s in ("list", "read-text", "read-binary", "templates-read", "subscribe", "unsubscribe")),
    *(f"prompts-{s}" for s in ("list", "get-simple", "get-with-args", "get-embedded-resource", "get-with-image")),
}


def _suite() -> tuple[str, str]:
    path = os.environ.get("TREADLE_CONFORMANCE", "")
    preload = os.environ.get("TREADLE_CONFORMANCE_PRELOAD", "")
    why = ""
    if not path:
        why = 'TREADLE_CONFORMANCE is not set (install the suite with: eval "$(bash .ci/conformance-server.sh)")'
    elif not Path(path).exists() or not (Path(path).parent / "node").exists():
        why = f'TREADLE_CONFORMANCE={path} is not an installed suite (rerun: eval "$(bash .ci/conformance-server.sh)")'
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path, preload


@pytest.mark.timeout(300)
def test_the_server_scenarios_pass_but_the_listed_ones(tmp_path: Path) -> None:
    suite, preload = _suite()
    port = free_port()
    server = start_server(["mcp_conformance_app:app", "--port", str(port)], tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, server)
        env = {**os.environ, "PATH": f"{Path(suite).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        if preload:  # any server the suite starts stays on loopback
            env["NODE_OPTIONS"] = f"--require {preload}"
        out = subprocess.run([suite, "server", "--url", f"{url}/mcp", "--suite", "all", "--expected-failures",
                              str(BASELINE)], env=env, capture_output=True, text=True, timeout=240,
                             cwd=tmp_path)
    finally:
        server.terminate()
        server.wait(10)
    log = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert out.returncode == 0, log[-6000:]
    assert "Baseline check passed" in log
    passed = set(re.findall(r"^✓ ([a-z0-9-]+): [1-9]\d* passed, 0 failed$", log, re.M))
    assert passed == PASSING, log[-6000:]
