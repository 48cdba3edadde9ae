"""Every ```python block of README.md and docs/*.md runs, page by page, in order, in one namespace,
as a user pasting them into a Jupyter/IPython session would (top-level ``await`` allowed): see
tests/docs_page_runner.py. Each page runs in a subprocess, in a temporary directory, with the
user's state (HOME, TREADLE_HOME…) there too and TREADLE_SEED_COMPAT removed.

External services are loopback stand-ins, reached the way a user's code reaches the real ones,
through the environment: a small OpenAI-compatible server (``OPENAI_BASE_URL``, also
``ANTHROPIC_BASE_URL``), an OTLP/HTTP sink (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``PHOENIX_COLLECTOR_ENDPOINT``), the SDK's MCP server over Streamable HTTP (``MCP_URL``), a free port
for a served app (``PORT``). PostgreSQL is the test server (``DATABASE_URL`` =
``$TREADLE_TEST_POSTGRES_DSN``); without it a block that reads ``DATABASE_URL`` is skipped, or fails
under ``CI=true`` (as the rest of the suite treats a missing service). A block importing AdalFlow
(the "before" program of the porting guide) runs only where AdalFlow is installed.

Not run, by design (each names its reason in ``NOT_RUN``): the multi-node Ray block of scale.md, which
connects to a cluster started elsewhere.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

import treadle

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("docs_page_runner.py")
MCP_HTTP_SERVER = Path(__file__).parent / "mcp" / "mcp_http_server.py"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
TITLE = re.compile(r'title="([^"]+)"')
TIMEOUT = 100  # seconds per page (the Ray page starts and stops a local cluster)
NOT_RUN: dict[tuple[str, str], str] = {  # (page, text of the block) -> why it is not run
    ("scale.md", 'ray_address="auto"'): "connects to a running multi-node Ray cluster (\"auto\" attaches to any "
    "Ray instance found on the machine); tests/batch/test_batch_ray_address.py makes that call against a head "
    "node started with `ray start` and a PostgreSQL journal",
}


def blocks(page: Path) -> list[dict[str, Any]]:
    text = page.read_text(encoding="utf-8")
    found = []
    for i, m in enumerate(BLOCK.finditer(text)):
        code = m.group(2)
        title = TITLE.search(m.group(1))
        found.append({"index": i, "lineno": text.count("\n", 0, m.start(2)), "code": code,
                      "file": title.group(1) if title else None, "skip": None,
                      "first_line": next((line for line in code.splitlines() if line.strip()), "")})
    return found


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# --- a stand-in for the OpenAI API ---------------------------------------------------------------

def _openai_reply(body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message: a tool whose required parameters are all integers is called with the
    integers of the question when they are as many; a tool result is given back as the answer;
    anything else is answered with a short text (through ``finish`` when it is offered)."""
    messages = body.get("messages", [])
    tools = {t["function"]["name"]: t["function"] for t in body.get("tools") or []}
    last = messages[-1] if messages else {"role": "user", "content": ""}
    content = last.get("content") or ""
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    if last.get("role") != "tool":
        numbers = re.findall(r"-?\d+", content)
        for name, fn in tools.items():
            props = fn.get("parameters", {}).get("properties", {})
            required = fn.get("parameters", {}).get("required", list(props))
            if (name != "finish" and required and len(required) == len(numbers)
                    and all(props.get(p, {}).get("type") == "integer" for p in required)):
                return {"tool_calls": [(name, dict(zip(required, map(int, numbers))))]}
        content = "A reply from the test's stand-in for the OpenAI API."
    if "finish" not in tools:
        return {"content": content}
    answer_schema = tools["finish"].get("parameters", {}).get("properties", {}).get("answer", {})
    answer: Any = content
    if answer_schema.get("type") in ("integer", "number"):
        answer = int(content) if re.fullmatch(r"-?\d+", content.strip()) else 0
    return {"tool_calls": [("finish", {"answer": answer})]}


class _OpenAIHandler(BaseHTTPRequestHandler):
    refused: list[str] = []  # requests the stand-in could not serve: a page's run that failed quietly

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.endswith("/chat/completions"):
            self.refused.append(f"POST {self.path}")
            self._send(404, {"error": {"message": f"the stand-in serves chat completions only, not {self.path}",
                                       "type": "not_found"}})
            return
        reply = _openai_reply(body)
        calls = [{"id": f"call_{i}_{time.monotonic_ns()}", "type": "function",
                  "function": {"name": name, "arguments": json.dumps(kwargs)}}
                 for i, (name, kwargs) in enumerate(reply.get("tool_calls", []))]
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
        if calls:
            message["tool_calls"] = calls
        finish = "tool_calls" if calls else "stop"
        usage = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
        base = {"id": "chatcmpl-docs", "created": int(time.time()), "model": body.get("model", "")}
        if not body.get("stream"):
            self._send(200, {**base, "object": "chat.completion", "usage": usage,
                             "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
            return
        delta: dict[str, Any] = {"role": "assistant", "content": message["content"]}
        if calls:
            delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(calls)]
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [{**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                  {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
                  {**chunk, "choices": [], "usage": usage}]
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self._send(200, data.encode(), "text/event-stream")

    def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


# --- an OTLP/HTTP sink ----------------------------------------------------------------------------

class _OTLPHandler(BaseHTTPRequestHandler):
    received: list[int] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.received.append(len(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, str]]:
    openai_server, openai_url = _serve(_OpenAIHandler)
    otlp_server, otlp_url = _serve(_OTLPHandler)
    try:
        yield {"openai": openai_url, "otlp": otlp_url}
    finally:
        openai_server.shutdown()
        otlp_server.shutdown()


def _mcp_http_server() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(MCP_HTTP_SERVER), str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the MCP HTTP test server did not start (exit code {proc.poll()})")
            time.sleep(0.05)


def _plan(page: Path, found: list[dict[str, Any]], env: dict[str, str]) -> None:
    """Mark the blocks that cannot run here (with the reason), or fail under CI."""
    dsn = os.environ.get("TREADLE_TEST_POSTGRES_DSN", "")
    for b in found:
        for (name, line), why in NOT_RUN.items():
            if name == page.name and line in b["code"]:
                b["skip"] = why
        if "import adalflow" in b["code"] or "from adalflow" in b["code"]:
            if importlib.util.find_spec("adalflow") is None:
                b["skip"] = "an AdalFlow program: AdalFlow is not installed"
        if "DATABASE_URL" in b["code"]:
            if dsn and importlib.util.find_spec("psycopg") is not None:
                env["DATABASE_URL"] = dsn
            else:
                why = ("TREADLE_TEST_POSTGRES_DSN is not set (eval \"$(bash .ci/postgres.sh)\")" if not dsn
                       else "psycopg is not installed (pip install 'treadle[postgres]')")
                if _ci():
                    pytest.fail(f"{page.name} block {b['index']} needs PostgreSQL under CI: {why}", pytrace=False)
                b["skip"] = f"needs PostgreSQL: {why}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_python_blocks_of_a_page_run_in_order(page: Path, tmp_path: Path, services: dict[str, str]) -> None:
    found = blocks(page)
    if not found:
        pytest.skip(f"{page.name} has no python block")
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    src = str(Path(treadle.__file__).resolve().parents[1])
    ray_tmp = tempfile.mkdtemp(prefix="trd")  # short: Ray's unix sockets live under it
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TREADLE_", "OPENAI_", "ANTHROPIC_", "OTEL_", "RAY_"))
           or k in ("TREADLE_LOCAL_CACHE", "TREADLE_LOCAL_THREADS")}
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p),
        # as in an activated virtualenv: its commands (mcp-server-time, ray, treadle) on PATH
        "PATH": os.pathsep.join(p for p in (str(Path(sys.executable).parent), os.environ.get("PATH", "")) if p),
        "HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"), "TREADLE_HOME": str(home / "treadle"),
        "OPENAI_BASE_URL": f"{services['openai']}/v1", "OPENAI_API_KEY": "sk-docs-test",
        "ANTHROPIC_BASE_URL": services["openai"], "ANTHROPIC_API_KEY": "sk-ant-docs-test",
        "OTEL_EXPORTER_OTLP_ENDPOINT": services["otlp"], "PHOENIX_COLLECTOR_ENDPOINT": services["otlp"],
        "PORT": str(_free_port()),
        "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp,
        "PYTHONUNBUFFERED": "1",
    })
    _plan(page, found, env)
    mcp = None
    if any("MCP_URL" in b["code"] and not b["skip"] for b in found):
        mcp, env["MCP_URL"] = _mcp_http_server()
        env["MCP_TOKEN"] = "docs-test-token"
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps({"path": str(page), "blocks": found}), encoding="utf-8")
    sent_before, refused_before = len(_OTLPHandler.received), len(_OpenAIHandler.refused)
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(spec)], cwd=work, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    started = time.monotonic()
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    finally:
        if mcp is not None:
            mcp.terminate()
            mcp.wait(10)
        try:  # whatever the page started (servers, Ray) goes with it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(ray_tmp, ignore_errors=True)
    elapsed = time.monotonic() - started
    starts = re.findall(r"^DOCS-BLOCK-START (\d+) at ", err, re.M)
    failed = re.search(r"^DOCS-BLOCK-FAILED (\d+)$", err, re.M)
    if proc.returncode != 0 or failed:
        i = int(failed.group(1) if failed else (starts[-1] if starts else 0))
        b = found[i]
        what = "failed" if failed else (f"timed out after {TIMEOUT} s" if elapsed >= TIMEOUT
                                        else f"exited with {proc.returncode}")
        trace = err[failed.end():] if failed else err
        pytest.fail(f"{page.name} block {i} (line {b['lineno'] + 1}: {b['first_line']!r}) {what}:\n{trace}\n"
                    f"--- stdout ---\n{out}", pytrace=False)
    assert len(starts) == len(found), err
    for b in found:
        if b["skip"]:
            warnings.warn(f"{page.name} block {b['index']} ({b['first_line']!r}) not run: {b['skip']}", stacklevel=1)
    assert _OpenAIHandler.refused[refused_before:] == [], f"{page.name}: the OpenAI stand-in refused requests"
    if page.name == "tracing.md":
        assert len(_OTLPHandler.received) > sent_before, "the tracing page's spans never reached the OTLP sink"


AGENT_ARGS = {"name", "tools", "model", "max_steps", "answer_data_type", "instructions", "template", "planner_mode",
              "model_kwargs", "examples", "max_observation_chars", "handoffs", "input_guardrails",
              "output_guardrails", "tool_guardrails", "context"}
RUNNER_ARGS = {"agent", "ctx", "max_steps", "permission_manager", "conversation_memory", "event_handlers",
               "usage_limits", "store", "run_metadata", "suspend_for_approval", "lease_ttl"}
ADALFLOW_ONLY = {"GeneratorOutput", "UserQuery", "AssistantResponse", "AdalFlowClient", "AdalFlowModel"}
PORTING_PAGES = {"porting-from-adalflow.md", "seed-deviations.md"}


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in PORTING_PAGES],
                         ids=[p.name for p in PAGES if p.name not in PORTING_PAGES])
def test_the_blocks_use_treadles_own_arguments(page: Path) -> None:
    """Outside the porting pages the examples use only treadle's core Agent and Runner arguments,
    and none of the names kept for AdalFlow programs (model_client=, role_desc=, GeneratorOutput…)."""
    wrong = []
    for b in blocks(page):
        for node in ast.walk(ast.parse(b["code"])):
            if isinstance(node, ast.Call):
                fn = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                allowed = {"Agent": AGENT_ARGS, "Runner": RUNNER_ARGS}.get(fn)
                if allowed is not None:
                    wrong += [f"block {b['index']}: {fn}({k.arg}=)" for k in node.keywords
                              if k.arg is not None and k.arg not in allowed]
            name = node.id if isinstance(node, ast.Name) else getattr(node, "name", None)
            if isinstance(node, (ast.Name, ast.alias)) and name in ADALFLOW_ONLY:
                wrong.append(f"block {b['index']}: {name}")
    assert wrong == [], f"{page.name}: {wrong}"


def test_every_page_is_collected() -> None:
    names = [p.name for p in PAGES]
    assert names[0] == "README.md" and "models.md" in names and len(names) == len(set(names))
