"""The local Ray cluster a batch starts opens no port to the network, and wants a token.

While the batch runs, every listening TCP socket and every bound UDP socket of the cluster's
processes (this driver's new ones, and every process Ray started: GCS, raylet, agents, workers)
must be on a loopback address; and a client with a wrong token is refused by the GCS.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
psutil: Any = pytest.importorskip("psutil")  # (Ray ships it)

from treadle.batch import BatchProgress, batch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from batch_agents import STEPS  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1 (an IPv6 socket bound to an IPv4 address)
    return (mapped or addr).is_loopback


def _open_sockets(proc: Any) -> set[tuple[str, str, int]]:
    out: set[tuple[str, str, int]] = set()
    try:
        conns = proc.net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.ZombieProcess):  # ended meanwhile
        return out
    for c in conns:
        if c.status == psutil.CONN_LISTEN:
            out.add(("tcp", c.laddr.ip, c.laddr.port))
        elif c.type == __import__("socket").SOCK_DGRAM and not c.raddr:
            out.add(("udp", c.laddr.ip, c.laddr.port))
    return out


def _cluster_processes(temp_dir: str) -> list[Any]:
    """The processes Ray started: this driver's descendants, and any process naming the cluster's
    temp dir (one that was re-parented)."""
    me = psutil.Process()
    found = {p.pid: p for p in me.children(recursive=True)}
    for p in psutil.process_iter(["cmdline"]):
        if p.pid != me.pid and any(temp_dir in str(a) for a in p.info["cmdline"] or ()):
            found.setdefault(p.pid, p)
    return list(found.values())


def test_a_local_cluster_listens_on_loopback_only_and_wants_its_token(
        ray_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not ray.is_initialized()
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # (the fixture turns auth off): treadle's default
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # so a token written to ~/.ray would be seen
    driver = psutil.Process()
    before = _open_sockets(driver)
    seen: dict[str, Any] = {}

    def look(p: BatchProgress) -> None:  # while the cluster runs (after the first task came back)
        if p.finished != 1:
            return
        sockets = {("driver", *s) for s in _open_sockets(driver) - before}
        names = set()
        for proc in _cluster_processes(ray_env):
            found = _open_sockets(proc)
            if found:
                try:
                    name = proc.name()
                except psutil.Error:
                    name = str(proc.pid)
                names.add(name)
                sockets |= {(name, *s) for s in found}
        seen["sockets"], seen["names"] = sockets, names
        seen["gcs"] = ray.get_runtime_context().gcs_address
        seen["auth"] = (os.environ.get("RAY_AUTH_MODE"), os.environ.get("RAY_AUTH_TOKEN"))
        code = ("from ray._raylet import GcsClient\n"
                f"GcsClient(address={seen['gcs']!r}).internal_kv_keys(b'', None, timeout=10)\n")
        for token in ("not-the-token", os.environ.get("RAY_AUTH_TOKEN", "")):
            env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
            seen[token == "not-the-token"] = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                                            text=True, timeout=120)

    res = batch("batch_agents:make_fast_runner", ["a", "b", "c"], backend="ray", workers=1, concurrency=1,
                ray_init_kwargs={"_temp_dir": ray_env}, progress=look)
    want = [f"{t}|" + "+".join(f"{t.upper()}{i}" for i in range(STEPS)) for t in "abc"]
    assert [r.answer for r in res] == want
    assert not ray.is_initialized()

    sockets = seen["sockets"]
    assert {"gcs_server", "raylet"} <= seen["names"] and len(sockets) >= 5, sockets  # the cluster was looked at
    assert any(n == "driver" for n, *_ in sockets), sockets  # this process's core worker server too
    exposed = sorted(s for s in sockets if not _loopback(s[2]))
    assert exposed == [], f"sockets of the local Ray cluster open beyond loopback: {exposed}"
    assert seen["gcs"].startswith("127.0.0.1:")

    mode, token = seen["auth"]
    assert mode == "token" and token and len(token) >= 32  # a token made for this cluster...
    assert not (tmp_path / ".ray").exists()  # ...and written nowhere
    wrong, right = seen[True], seen[False]
    assert wrong.returncode != 0 and "AuthenticationError" in wrong.stderr, wrong.stderr[-2000:]
    assert right.returncode == 0, right.stderr[-2000:]
    assert "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ  # put back as they were
