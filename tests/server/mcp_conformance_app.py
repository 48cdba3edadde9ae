"""The conformance suite's reference server, written with treadle's public serve API (an
``MCPApp``): served by ``treadle serve mcp_conformance_app:app`` in
tests/server/test_mcp_conformance.py. Each tool, resource and prompt is the one a scenario of
``@modelcontextprotocol/conformance`` calls by name (its expected content is the scenario's)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import wave
from collections.abc import AsyncIterator

import mcp_types as types
from mcp_agents import make

from treadle import FunctionDefinition, RunContext, tool
from treadle.events import ToolCallActivityRunItem
from treadle.server.mcp_app import MCPApp, ask_host, content, log, progress, sample_host
from treadle.tools.function_tool import FunctionTool

RED_PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def _silence() -> str:
    """A tenth of a second of 8 kHz mono silence, as WAV."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * 800)
    return base64.b64encode(out.getvalue()).decode()


@tool
def test_simple_text() -> str:
    """A simple text response."""
    return "This is a simple text response for testing."


@tool
def test_image_content() -> object:
    """An image."""
    return content(types.ImageContent(data=RED_PIXEL, mime_type="image/png"))


@tool
def test_audio_content() -> object:
    """An audio clip."""
    return content(types.AudioContent(data=_silence(), mime_type="audio/wav"))


@tool
def test_embedded_resource() -> object:
    """An embedded resource."""
    return content(types.EmbeddedResource(resource=types.TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content.")))


@tool
def test_multiple_content_types() -> object:
    """Text, an image and a resource."""
    return content(types.TextContent(text="Multiple content types test:"),
                   types.ImageContent(data=RED_PIXEL, mime_type="image/png"),
                   types.EmbeddedResource(resource=types.TextResourceContents(
                       uri="test://mixed-content-resource", mime_type="application/json",
                       text=json.dumps({"test": "data", "value": 123}))))


@tool
async def test_tool_with_logging() -> AsyncIterator[ToolCallActivityRunItem | str]:
    """Sends three log messages while it runs."""
    yield log("info", "Tool execution started")
    await asyncio.sleep(0.05)
    yield log("info", "Tool processing data")
    await asyncio.sleep(0.05)
    yield log("info", "Tool execution completed")
    yield "Tool with logging executed successfully"


@tool
async def test_tool_with_progress() -> AsyncIterator[ToolCallActivityRunItem | str]:
    """Reports its progress: 0, 50 and 100 of 100."""
    for done in (0, 50, 100):
        yield progress(done, 100)
        if done < 100:
            await asyncio.sleep(0.05)
    yield "Tool with progress executed successfully"


@tool
def test_error_handling() -> str:
    """Always fails."""
    raise RuntimeError("This tool intentionally returns an error for testing")


@tool
async def test_sampling(prompt: str, ctx: RunContext[object]) -> str:
    """Asks the host's model.

    Args:
        prompt: the prompt to send to the model
    """
    reply = await sample_host(ctx, prompt, max_tokens=100)
    return f"LLM response: {reply}"


@tool
async def test_elicitation(message: str, ctx: RunContext[object]) -> str:
    """Asks the host's user.

    Args:
        message: the message to show the user
    """
    answer = await ask_host(ctx, message, {
        "type": "object",
        "properties": {"username": {"type": "string", "description": "User's response"},
                       "email": {"type": "string", "description": "User's email address"}},
        "required": ["username", "email"]})
    return f"User response: <action: {answer.action}, content: {json.dumps(answer.content)}>"


@tool
async def test_elicitation_sep1034_defaults(ctx: RunContext[object]) -> str:
    """Asks with a default for every primitive type."""
    answer = await ask_host(ctx, "Please review the defaults", {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"],
                       "default": "active"},
            "verified": {"type": "boolean", "description": "Verification status", "default": True}},
        "required": []})
    return f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content)}"


@tool
async def test_elicitation_sep1330_enums(ctx: RunContext[object]) -> str:
    """Asks with the five kinds of enum."""
    answer = await ask_host(ctx, "Please pick options", {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "oneOf": [{"const": "value1", "title": "First Option"},
                                                         {"const": "value2", "title": "Second Option"},
                                                         {"const": "value3", "title": "Third Option"}]},
            "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                           "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "items": {"anyOf": [{"const": "value1", "title": "First Choice"},
                                                                 {"const": "value2", "title": "Second Choice"},
                                                                 {"const": "value3", "title": "Third Choice"}]}}},
        "required": []})
    return f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content)}"


def _json_schema_2020_12(name: str | None = None, address: dict[str, str] | None = None) -> str:
    return json.dumps({"name": name, "address": address})


JSON_SCHEMA_TOOL = FunctionTool(_json_schema_2020_12, definition=FunctionDefinition(
    func_name="json_schema_2020_12_tool", func_desc="Tool with JSON Schema 2020-12 features",
    func_parameters={"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                     "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"},
                                                                            "city": {"type": "string"}}}},
                     "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
                     "additionalProperties": False}))


def build() -> MCPApp:
    app = MCPApp("treadle-conformance", agents=make(), tools=[
        test_simple_text, test_image_content, test_audio_content, test_embedded_resource,
        test_multiple_content_types, test_tool_with_logging, test_tool_with_progress, test_error_handling,
        test_sampling, test_elicitation, test_elicitation_sep1034_defaults, test_elicitation_sep1330_enums,
        JSON_SCHEMA_TOOL])

    @app.resource("test://static-text", name="static-text", description="A static text resource")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @app.resource("test://static-binary", name="static-binary", description="A static binary resource",
                  mime_type="image/png")
    def static_binary() -> bytes:
        return base64.b64decode(RED_PIXEL)

    @app.resource("test://watched-resource", name="watched-resource", description="A resource to subscribe to")
    def watched() -> str:
        return "Watched resource content."

    @app.resource("test://template/{id}/data", name="template-data", description="Data of an id",
                  mime_type="application/json", complete={"id": ["123", "456"]})
    def template_data(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}, separators=(",", ":"))

    @app.prompt(description="A simple prompt without arguments")
    def test_simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @app.prompt(description="A prompt with arguments", complete={"arg1": ["paris", "park", "party"]})
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        """A prompt with arguments.

        Args:
            arg1: First test argument
            arg2: Second test argument
        """
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @app.prompt(description="A prompt with an embedded resource")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[str | types.ContentBlock]:
        """A prompt with an embedded resource.

        Args:
            resourceUri: URI of the resource to embed
        """
        return [types.EmbeddedResource(resource=types.TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing.")),
            "Please process the embedded resource above."]

    @app.prompt(description="A prompt with an image")
    def test_prompt_with_image() -> list[str | types.ContentBlock]:
        return [types.ImageContent(data=RED_PIXEL, mime_type="image/png"), "Please analyze the image above."]

    return app


app = build()
