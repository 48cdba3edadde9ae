"""An MCPApp (agents, plain tools, resources, prompts) served on ``/mcp`` of a real uvicorn
server, driven by the ``mcp`` package's own client over both protocol eras: a plain tool's
call is a journaled run, its yields are progress and log notifications, its questions to the
host (``ask_host``, ``sample_host``) are elicitation and sampling requests (2025) or
``input_required`` round trips (2026-07-28); resources, prompts and completions are the app's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import httpx2
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_conformance_app import RED_PIXEL, build
from server_utils import serving

from mcp import Client
from treadle import tool
from treadle.errors import UserError
from treadle.server import create_app
from treadle.server.mcp_app import MCPApp

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    with serving(create_app(build(), store=f"sqlite:///{tmp_path / 'runs.db'}")) as url:
        yield url


class Host:
    """An MCP host: what it was asked and sent."""

    def __init__(self) -> None:
        self.questions: list[str] = []
        self.samples: list[str] = []
        self.logs: list[tuple[str, object]] = []
        self.progress: list[tuple[float, float | None]] = []

    async def elicit(self, context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.questions.append(params.message)
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.org"})

    async def sample(self, context: object, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        first = params.messages[0].content
        self.samples.append(first.text if isinstance(first, types.TextContent) else "")
        return types.CreateMessageResult(role="assistant", content=types.TextContent(text="forty-two"), model="m")

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append((params.level, params.data))

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append((progress, total))


@asynccontextmanager
async def legacy(url: str, host: Host) -> AsyncIterator[ClientSession]:
    """A 2025-era session (the initialize handshake)."""
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60)) as http, \
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write), \
            ClientSession(read, write, elicitation_callback=host.elicit, sampling_callback=host.sample,
                          logging_callback=host.log) as session:
        await session.initialize()
        yield session


def texts(result: types.CallToolResult) -> list[str]:
    return [c.text for c in result.content if isinstance(c, types.TextContent)]


async def test_a_plain_tool_call_is_a_journaled_run(base: str) -> None:
    async with Client(f"{base}/mcp") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"adder", "gate", "test_simple_text", "test_elicitation"} <= names
        result = await client.call_tool("test_simple_text", {})
        image = await client.call_tool("test_image_content", {})
        failed = await client.call_tool("test_error_handling", {})
    assert texts(result) == ["This is a simple text response for testing."] and not result.is_error
    run = httpx.get(f"{base}/runs/{result.structured_content['run_id']}").json()  # type: ignore[index]
    assert (run["agent"], run["status"]) == ("tool:test_simple_text", "success")
    assert isinstance(image.content[0], types.ImageContent) and image.content[0].data == RED_PIXEL
    assert failed.is_error and "intentionally returns an error" in texts(failed)[0]


async def test_yields_are_progress_and_log_messages(base: str) -> None:
    host = Host()
    async with legacy(base, host) as session:
        await session.call_tool("test_tool_with_progress", {}, progress_callback=host.on_progress)
        await session.call_tool("test_tool_with_logging", {})
        await session.set_logging_level("warning")  # the host wants warnings and worse only
        await session.call_tool("test_tool_with_logging", {})
    assert host.progress == [(0, 100), (50, 100), (100, 100)]
    assert host.logs == [("info", "Tool execution started"), ("info", "Tool processing data"),
                         ("info", "Tool execution completed")]


async def test_questions_of_a_tool_reach_a_2025_host(base: str) -> None:
    host = Host()
    async with legacy(base, host) as session:
        asked = await session.call_tool("test_elicitation", {"message": "Who are you?"})
        sampled = await session.call_tool("test_sampling", {"prompt": "What is six times seven?"})
    assert host.questions == ["Who are you?"] and host.samples == ["What is six times seven?"]
    assert texts(asked) == ['User response: <action: accept, content: {"username": "ada", "email": "ada@example.org"}>']
    assert texts(sampled) == ["LLM response: forty-two"]


async def test_questions_of_a_tool_are_input_required_in_2026(base: str) -> None:
    host = Host()
    async with Client(f"{base}/mcp", elicitation_callback=host.elicit, sampling_callback=host.sample) as client:
        assert client.session.protocol_version == "2026-07-28"
        asked = await client.call_tool("test_elicitation", {"message": "Who are you?"})
        sampled = await client.call_tool("test_sampling", {"prompt": "What is six times seven?"})
        first = await client.session.call_tool("test_elicitation", {"message": "Again?"}, allow_input_required=True)
    assert isinstance(first, types.InputRequiredResult) and first.request_state
    assert host.questions == ["Who are you?"] and texts(sampled) == ["LLM response: forty-two"]
    assert "ada@example.org" in texts(asked)[0]


async def test_resources_prompts_and_completions(base: str) -> None:
    async with Client(f"{base}/mcp") as client:
        listed = {r.uri for r in (await client.list_resources()).resources}
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        text = (await client.read_resource("test://static-text")).contents[0]
        blob = (await client.read_resource("test://static-binary")).contents[0]
        data = (await client.read_resource("test://template/7/data")).contents[0]
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        got = await client.get_prompt("test_prompt_with_arguments", {"arg1": "a", "arg2": "b"})
        agent_prompt = await client.get_prompt("adder")
        done = await client.complete(types.PromptReference(name="test_prompt_with_arguments"),
                                     {"name": "arg1", "value": "par"})
        ids = await client.complete(types.ResourceTemplateReference(uri="test://template/{id}/data"),
                                    {"name": "id", "value": "4"})
        with pytest.raises(MCPError) as missing:
            await client.get_prompt("test_prompt_with_arguments", {"arg1": "a"})
        with pytest.raises(MCPError) as unknown:
            await client.read_resource("test://nothing")
    assert {"test://static-text", "test://static-binary"} <= listed and "test://template/{id}/data" not in listed
    assert templates == ["test://template/{id}/data"]
    assert isinstance(text, types.TextResourceContents) and text.text.startswith("This is the content")
    assert isinstance(blob, types.BlobResourceContents) and blob.blob == RED_PIXEL
    assert isinstance(data, types.TextResourceContents) and '"id":"7"' in data.text
    assert [a.name for a in prompts["test_prompt_with_arguments"].arguments or []] == ["arg1", "arg2"]
    message = got.messages[0].content
    assert isinstance(message, types.TextContent) and message.text == "Prompt with arguments: arg1='a', arg2='b'"
    instructions = agent_prompt.messages[0].content  # an agent's instructions are a prompt
    assert isinstance(instructions, types.TextContent) and instructions.text == "Adds numbers with a calculator."
    assert done.completion.values == ["paris", "park", "party"] and ids.completion.values == ["456"]
    assert missing.value.code == types.INVALID_PARAMS and "arg2" in missing.value.error.message
    assert unknown.value.code == -32002


def test_bad_declarations_are_refused() -> None:
    app = MCPApp()
    with pytest.raises(UserError, match="must take its parts"):
        @app.resource("notes://{day}")
        def wrong(month: str) -> str:
            return month

    @tool
    def same() -> str:
        """A tool."""
        return ""

    app.add_tool(same)
    with pytest.raises(UserError, match="two tools named"):
        app.add_tool(same)


async def test_an_app_over_stdio(tmp_path: Path) -> None:
    """``treadle mcp serve module:app`` serves the whole app over stdio, its tool calls journaled."""
    import os
    import sys

    from mcp.client.stdio import StdioServerParameters, stdio_client

    here = Path(__file__).resolve().parent
    path = os.pathsep.join(os.path.abspath(p) for p in [str(here), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
                           if p)
    params = StdioServerParameters(command=sys.executable, args=["-m", "treadle.cli", "mcp", "serve",
                                                                 "mcp_conformance_app:app", "--store",
                                                                 str(tmp_path / "runs.db")],
                                   env={"PYTHONPATH": path, "TREADLE_HOME": str(tmp_path)}, cwd=str(here))
    host = Host()
    with open(tmp_path / "stderr.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write, elicitation_callback=host.elicit) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            asked = await session.call_tool("test_elicitation", {"message": "Who are you?"})
            text = (await session.read_resource("test://static-text")).contents[0]
            prompt = await session.get_prompt("test_simple_prompt")
    assert {"gate", "test_simple_text", "json_schema_2020_12_tool"} <= tools
    assert host.questions == ["Who are you?"] and "ada@example.org" in texts(asked)[0]
    assert isinstance(text, types.TextResourceContents) and text.text.startswith("This is the content")
    first = prompt.messages[0].content
    assert isinstance(first, types.TextContent) and first.text == "This is a simple prompt for testing."
    from treadle.store import SQLiteRunStore

    run = SQLiteRunStore(str(tmp_path / "runs.db")).get_run(asked.structured_content["run_id"])  # type: ignore[index]
    assert run is not None and (run.agent_name, run.status) == ("tool:test_elicitation", "success")


async def test_a_host_that_cannot_be_asked_gets_the_question_to_answer_elsewhere(base: str) -> None:
    async with Client(f"{base}/mcp") as client:  # no elicitation callback: the host cannot be asked
        waiting = await client.call_tool("test_elicitation", {"message": "Who are you?"})
    info = waiting.structured_content or {}
    assert waiting.is_error and info["status"] == "waiting_for_approval"
    assert f"GET /runs/{info['run_id']}" in texts(waiting)[0] and "run_id=" not in texts(waiting)[0]
    call_id = info["pending_approvals"][0]["call_id"]
    run = httpx.get(f"{base}/runs/{info['run_id']}").json()
    assert run["pending_approvals"][0]["question"]["message"] == "Who are you?"
    decided = httpx.post(f"{base}/runs/{info['run_id']}/approvals/{call_id}",
                         json={"decision": "edit", "kwargs": {"username": "bo", "email": "bo@example.org"}})
    assert decided.status_code == 200, decided.text
    for _ in range(100):
        run = httpx.get(f"{base}/runs/{info['run_id']}").json()
        if run["status"] == "success":
            break
        await anyio.sleep(0.05)
    assert run["status"] == "success" and "bo@example.org" in str(run["answer"])
