"""Resources and prompts of ``@modelcontextprotocol/server-everything``: listed, read and got from
code, and browsed and read by an agent through ``resource_tools()``."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

pytest.importorskip("mcp")

from test_mcp_everything import _entry

from treadle import Agent, Function, Runner, ScriptedModel
from treadle.tools.mcp import MCPServerError, MCPServerStdio

DOC = "demo://resource/static/document/architecture.md"


@pytest.fixture(scope="module")
def server() -> Any:
    s = MCPServerStdio("node", [_entry(), "stdio"], errlog=subprocess.DEVNULL, name="everything", prefix="ev_",
                       timeout=20)
    yield s
    s.close()


async def test_resources_and_templates_are_listed_and_read(server: MCPServerStdio) -> None:
    resources = await server.list_resources()
    assert {"uri": DOC, "name": "architecture.md", "description": resources[0]["description"],
            "mime_type": "text/markdown"} in resources
    templates = await server.list_resource_templates()
    assert any(t["uri_template"] == "demo://resource/dynamic/text/{resourceId}" for t in templates)
    doc = await server.read_resource(DOC)
    assert doc.observation.startswith("# Everything Server") and "Architecture" in doc.observation.splitlines()[0]
    assert doc.metadata["contents"][0]["mimeType"] == "text/markdown"
    blob = await server.read_resource("demo://resource/dynamic/blob/1")
    assert blob.observation.startswith("[resource: demo://resource/dynamic/blob/1,") and "bytes]" in blob.observation
    with pytest.raises(MCPServerError, match="could not read demo://nowhere"):
        await server.read_resource("demo://nowhere")


async def test_prompts_are_listed_and_rendered(server: MCPServerStdio) -> None:
    prompts = {p["name"]: p for p in await server.list_prompts()}
    assert [a["name"] for a in prompts["args-prompt"]["arguments"]] == ["city", "state"]
    assert await server.get_prompt("simple-prompt") == "This is a simple prompt without arguments."
    text = await server.get_prompt("args-prompt", {"city": "Lyon", "state": "Rhône"})
    assert "Lyon" in text
    with pytest.raises(MCPServerError, match="could not get the prompt nope"):
        await server.get_prompt("nope")


def test_an_agent_browses_and_reads_resources(server: MCPServerStdio) -> None:
    model = ScriptedModel([Function(name="ev_list_resources", kwargs={}),
                           Function(name="ev_read_resource", kwargs={"uri": DOC}),
                           Function(name="finish", kwargs={"answer": "read it"})])
    result = Runner(Agent(tools=server.resource_tools(), model=model)).call("what is the architecture?")
    assert result.status == "success", result.error
    listed, read = result.step_history[0], result.step_history[1]
    assert listed.status == "success" and DOC in str(listed.observation)
    assert read.status == "success" and "### Multi" in str(read.observation)


def test_a_prompt_as_an_agents_instructions(server: MCPServerStdio) -> None:
    import asyncio

    instructions = asyncio.run(server.get_prompt("simple-prompt"))
    seen: list[Any] = []

    def reply(messages: list[Any]) -> Function:
        seen.append(messages)
        return Function(name="finish", kwargs={"answer": "ok"})

    Runner(Agent(instructions=instructions, model=ScriptedModel([reply]))).call("hi")
    assert "This is a simple prompt without arguments." in str(seen[0])
