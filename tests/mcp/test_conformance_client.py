"""The official MCP conformance suite (``@modelcontextprotocol/conformance`` from npm) against
treadle's client: every client scenario the suite lists, each run by the suite's own CLI, which
starts a scenario server on loopback, launches ``conformance_client.py`` against it, and checks
what the client did on the wire.

``eval "$(bash .ci/conformance.sh)"`` installs the suite and its Node 22 and sets the variables
read here. Scenarios that cannot pass yet are listed in ``EXPECTED_FAILURES`` with the reason
(also in docs/mcp.md); they are strict xfails, so a scenario that starts passing fails the test
until it is taken off the list.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

HERE = Path(__file__).parent
CLIENT = HERE / "conformance_client.py"
SRC = HERE.parent.parent / "src"
ENV_VARS = ("TREADLE_CONFORMANCE_NODE", "TREADLE_CONFORMANCE_CLI", "TREADLE_CONFORMANCE_PRELOAD")

EXPECTED_FAILURES: dict[str, str] = {
    "auth/2025-03-26-oauth-metadata-backcompat": (
        "the mcp SDK (2.3.0) holds authorization server metadata to RFC 8414 section 3.3: its issuer must be "
        "the URL it was looked up for; the scenario's legacy server serves metadata for http://host whose "
        "issuer is http://host/oauth, and the SDK stops the sign-in (treadle's MCPAuthError says so)"),
}


def _suite() -> tuple[str, str, str] | None:
    values = [os.environ.get(v) for v in ENV_VARS]
    if all(values):
        return values[0], values[1], values[2]  # type: ignore[return-value]
    return None


def _missing() -> None:
    msg = 'the MCP conformance suite is not installed: eval "$(bash .ci/conformance.sh)"'
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _client_scenarios() -> list[str]:
    suite = _suite()
    if suite is None:
        return []
    node, cli, _ = suite
    listed = subprocess.run([node, cli, "list"], capture_output=True, text=True, timeout=60, check=True).stdout
    names, in_client = [], False
    for line in listed.splitlines():
        if line.startswith("Client scenarios"):
            in_client = True
        elif line and not line.startswith(" "):
            in_client = False
        elif in_client and line.strip().startswith("- "):
            names.append(line.strip()[2:].split(" ")[0])
    return names


def _params() -> list[Any]:
    names = _client_scenarios()
    if not names:
        return [pytest.param(None, id="suite-not-installed")]
    return [pytest.param(n, id=n, marks=[pytest.mark.xfail(strict=True, reason=EXPECTED_FAILURES[n])]
                         if n in EXPECTED_FAILURES else []) for n in names]


def _run(scenario: str, command: str, out: Path) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    suite = _suite()
    assert suite is not None
    node, cli, preload = suite
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([node, "--require", preload, cli, "client", "--command", command, "--scenario", scenario,
                           "--timeout", "60000", "-o", str(out)], capture_output=True, text=True, timeout=180,
                          env=env)
    checks: list[dict[str, Any]] = []
    for found in out.rglob("checks.json"):  # an auth/... scenario saves under out/auth/
        checks.extend(json.loads(found.read_text()))
    return proc, checks


@pytest.mark.parametrize("scenario", _params())
def test_client_scenario(scenario: str | None, tmp_path: Path) -> None:
    if scenario is None:
        _missing()
        return
    proc, checks = _run(scenario, f"{sys.executable} {CLIENT}", tmp_path)
    failed = [c for c in checks if c.get("status") in ("FAILURE", "WARNING")]
    passed = [c for c in checks if c.get("status") == "SUCCESS"]
    report = "\n".join(f"  {c.get('status')} {c.get('name')}: {c.get('errorMessage') or c.get('description')}"
                       for c in failed)
    assert proc.returncode == 0 and not failed and passed, (
        f"conformance scenario {scenario}: {len(passed)} checks passed, {len(failed)} failed "
        f"(exit code {proc.returncode})\n{report}\n{proc.stderr[-3000:]}")


def test_scenario_servers_stay_on_loopback(tmp_path: Path) -> None:
    """The preload from .ci/conformance.sh keeps the suite's servers off the other interfaces."""
    if _suite() is None:
        _missing()
    probe, said = tmp_path / "probe.py", tmp_path / "probe.txt"
    probe.write_text(
        f"import pathlib\nsaid = pathlib.Path({str(said)!r})\n"
        "import socket, sys, urllib.parse\n"
        "port = urllib.parse.urlparse(sys.argv[1]).port\n"
        "socket.create_connection(('127.0.0.1', port), timeout=5).close()\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.connect(('192.0.2.1', 9))  # no packet is sent: this only picks the outward interface\n"
        "ip = s.getsockname()[0]\n"
        "assert not ip.startswith('127.'), 'no non-loopback interface to probe'\n"
        "try:\n"
        "    socket.create_connection((ip, port), timeout=5).close()\n"
        "except OSError:\n"
        "    said.write_text(f'closed on {ip}')\n"
        "else:\n"
        "    sys.exit(f'the scenario server answers on {ip}:{port}')\n")
    if socket.gethostbyname(socket.gethostname()).startswith("127.") and not _has_outward_interface():
        pytest.skip("this machine has no non-loopback interface to probe")
    proc, _ = _run("initialize", f"{sys.executable} {probe}", tmp_path)
    assert said.exists() and said.read_text().startswith("closed on"), proc.stderr[-2000:]


def _has_outward_interface() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return False
        return not s.getsockname()[0].startswith("127.")


def test_oauth_tokens_stay_out_of_the_model_the_events_and_the_journal(tmp_path: Path) -> None:
    """A journaled agent run against the suite's OAuth-protected server (auth/metadata-default): the
    sign-in works and the access token is in none of what the run records or shows."""
    if _suite() is None:
        _missing()
    report = tmp_path / "report.json"
    proc, checks = _run("auth/metadata-default", f"{sys.executable} {HERE / 'conformance_agent.py'} {report}",
                        tmp_path / "out")
    assert report.exists(), proc.stderr[-3000:]
    seen = json.loads(report.read_text())
    assert seen["status"] == "success" and seen["token_length"] > 0, seen
    assert not seen["in_messages"] and not seen["in_events"] and not seen["in_journal"] and not seen["in_repr"], seen
    assert any(c.get("id") == "valid-bearer-token" and c.get("status") == "SUCCESS" for c in checks)
