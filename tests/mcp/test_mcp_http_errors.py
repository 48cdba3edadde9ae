"""Streamable HTTP when things go wrong: the server restarts between calls (the session is
re-established), and a server that refuses with an HTTP status (a typed error naming the fix)."""

from __future__ import annotations

import asyncio
import http.server
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from treadle import Agent, Function, Runner, ScriptedModel
from treadle.tools.mcp import MCPAuthError, MCPHTTPError, MCPServerStreamableHTTP

SERVER = Path(__file__).with_name("mcp_http_server.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(SERVER), str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the MCP HTTP test server did not start (exit code {proc.poll()})")
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_a_server_restart_between_calls_starts_a_new_session(caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()
    proc = _start(port)
    # the 2025 protocol (a session per connection); on 2026-07-28 every request stands alone
    server = MCPServerStreamableHTTP(f"http://127.0.0.1:{port}/mcp", timeout=10, protocol="legacy")
    try:
        out = asyncio.run(server.call_tool("rectangle_area", {"width": 2, "height": 3}))
        assert out.output["area"] == 6
        _stop(proc)
        proc = _start(port)  # same address, a new process: it never heard of the session
        with caplog.at_level("INFO", logger="treadle.mcp"):
            out = asyncio.run(server.call_tool("rectangle_area", {"width": 4, "height": 5}))
        assert out.status == "success" and out.output["area"] == 20
        assert "no longer knows its session (HTTP 404): starting a new one" in caplog.text
        # and in an agent, after a second restart: the run sees a normal observation
        _stop(proc)
        proc = _start(port)
        model = ScriptedModel([Function(name="rectangle_area", kwargs={"width": 1, "height": 7}),
                               Function(name="finish", kwargs={"answer": "done"})])
        result = Runner(Agent(tools=server.tools(), model=model)).call("area?")
        assert result.status == "success"
        assert result.step_history[0].status == "success", result.step_history[0].observation
        assert '"area": 7' in str(result.step_history[0].observation).replace("7.0", "7")
    finally:
        server.close()
        _stop(proc)


class _Refuser(http.server.BaseHTTPRequestHandler):
    status = 401

    def do_POST(self) -> None:
        self.send_response(self.status)
        if self.status == 401:
            self.send_header("WWW-Authenticate", 'Bearer resource_metadata="http://127.0.0.1/.well-known/x"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_DELETE = do_POST

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("status, kind, words", [
    (401, MCPAuthError, "HTTP 401 to initialize - it needs authentication"),
    (503, MCPHTTPError, "HTTP 503 to initialize - the server failed"),
])
def test_an_http_error_is_typed_and_names_the_fix(status: int, kind: type, words: str) -> None:
    handler = type("Refuser", (_Refuser,), {"status": status})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = MCPServerStreamableHTTP(f"http://127.0.0.1:{httpd.server_address[1]}/mcp", connect_timeout=10)
    try:
        with pytest.raises(kind) as info:
            server.tools()
        assert words in str(info.value), str(info.value)
        assert info.value.status == status
        if status == 401:
            assert "auth=" in str(info.value) and "WWW-Authenticate: Bearer" in str(info.value)
    finally:
        server.close()
        httpd.shutdown()


def test_a_server_restart_on_the_2026_protocol_changes_nothing() -> None:
    port = _free_port()
    proc = _start(port)
    server = MCPServerStreamableHTTP(f"http://127.0.0.1:{port}/mcp", timeout=10)
    try:
        assert asyncio.run(server.call_tool("rectangle_area", {"width": 2, "height": 3})).output["area"] == 6
        _stop(proc)
        proc = _start(port)
        assert asyncio.run(server.call_tool("rectangle_area", {"width": 4, "height": 5})).output["area"] == 20
        assert server._session is not None and server._session.protocol_version == "2026-07-28"
    finally:
        server.close()
        _stop(proc)


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_the_handshake_timeout_is_honoured_exactly(transport: str, caplog: pytest.LogCaptureFixture) -> None:
    """A server that never answers the handshake: MCPServerError after connect_timeout (not after the
    transport's own teardown), and no "Future exception was never retrieved" afterwards."""
    import gc

    from treadle.tools.mcp import MCPServerError, MCPServerStdio

    silent = socket.socket()  # accepts connections (the kernel's backlog) and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    if transport == "stdio":
        server: Any = MCPServerStdio(sys.executable, ["-c", "import time; time.sleep(60)"], connect_timeout=2)
    else:
        server = MCPServerStreamableHTTP(f"http://127.0.0.1:{silent.getsockname()[1]}/mcp", connect_timeout=2)
    try:
        with caplog.at_level("ERROR", logger="asyncio"):
            started = time.monotonic()
            with pytest.raises(MCPServerError, match="did not complete the handshake within 2 s"):
                server.tools()
            elapsed = time.monotonic() - started
            server.close()
            gc.collect()
            time.sleep(0.2)
            gc.collect()
        assert 1.9 <= elapsed < 2.6, elapsed
        assert "never retrieved" not in caplog.text, caplog.text
    finally:
        server.close()
        silent.close()
