"""treadle's spans checked against the OpenTelemetry GenAI semantic conventions, as a validating
backend (Arize Phoenix, which drops a whole message payload when one message fails its schema)
reads them.

The message schemas are those of the conventions' ``gen-ai-input-messages.json`` and
``gen-ai-output-messages.json`` (semantic-conventions ``docs/gen-ai/``), written out here for the
parts treadle emits: a message is ``{role, parts}`` (+ ``finish_reason``, required, on an output
message); a ``text`` or ``reasoning`` part has a string ``content``; a ``tool_call`` part a string
``name`` and an optional string-or-null ``id``; a ``tool_call_response`` part a ``response``.
The published schemas also admit any ``GenericPart`` (``{"type": <string>, ...}``), which would
let a malformed text part through; here a part whose ``type`` is one of the four above must match
that type's own schema, so treadle's parts are checked as the typed parts they claim to be.

The span rules are the conventions' requirement levels for the ``chat``, ``invoke_agent`` and
``execute_tool`` operations (span name, kind, required and conditionally required attributes, the
attribute types), plus one rule of the readers: a span that is no GenAI operation carries no
``gen_ai.*`` attribute that makes a backend infer one (Phoenix takes a span with
``gen_ai.request.model`` or ``gen_ai.output.messages`` for an LLM call).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

_TEXT = {"type": "object", "required": ["type", "content"],
         "properties": {"type": {"const": "text"}, "content": {"type": "string"}}}
_REASONING = {"type": "object", "required": ["type", "content"],
              "properties": {"type": {"const": "reasoning"}, "content": {"type": "string"}}}
_TOOL_CALL = {"type": "object", "required": ["type", "name"],
              "properties": {"type": {"const": "tool_call"}, "id": {"type": ["string", "null"]},
                             "name": {"type": "string"}, "arguments": {}}}
_TOOL_RESPONSE = {"type": "object", "required": ["type", "response"],
                  "properties": {"type": {"const": "tool_call_response"}, "id": {"type": ["string", "null"]},
                                 "response": {}}}
_TYPED = {"text": _TEXT, "reasoning": _REASONING, "tool_call": _TOOL_CALL, "tool_call_response": _TOOL_RESPONSE}
_PART = {"allOf": [{"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}]
         + [{"if": {"properties": {"type": {"const": t}}, "required": ["type"]}, "then": schema}
            for t, schema in _TYPED.items()]}
_ROLE = {"type": "string"}  # the enum (system, user, assistant, tool) or any other string
_FINISH = {"type": "string"}  # the enum (stop, length, content_filter, tool_call, error) or any other string
INPUT_MESSAGES = {"type": "array", "items": {
    "type": "object", "required": ["role", "parts"],
    "properties": {"role": _ROLE, "parts": {"type": "array", "items": _PART}, "name": {"type": ["string", "null"]}}}}
OUTPUT_MESSAGES = {"type": "array", "items": {
    "type": "object", "required": ["role", "parts", "finish_reason"],
    "properties": {"role": _ROLE, "parts": {"type": "array", "items": _PART}, "name": {"type": ["string", "null"]},
                   "finish_reason": _FINISH}}}
FINISH_REASONS = ("stop", "length", "content_filter", "tool_call", "error")

_INT = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.request.max_tokens",
        "gen_ai.request.top_k", "gen_ai.request.seed", "server.port")
_FLOAT = ("gen_ai.request.temperature", "gen_ai.request.top_p", "gen_ai.request.frequency_penalty",
          "gen_ai.request.presence_penalty", "gen_ai.response.time_to_first_chunk")
_STR = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
        "gen_ai.agent.name", "gen_ai.conversation.id", "gen_ai.tool.name", "gen_ai.tool.call.id",
        "gen_ai.tool.type", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "error.type",
        "server.address", "gen_ai.input.messages", "gen_ai.output.messages")
_STR_LIST = ("gen_ai.response.finish_reasons", "gen_ai.request.stop_sequences")
# what makes a reader infer a GenAI operation on a span that is none
_OPERATION_MARKS = ("gen_ai.operation.name", "gen_ai.request.model", "gen_ai.input.messages",
                    "gen_ai.output.messages", "gen_ai.tool.name", "gen_ai.tool.call.id")


def _messages(problems: list[str], span: Any, key: str, schema: dict[str, Any]) -> list[Any]:
    value = span.attributes.get(key)
    if value is None:
        return []
    try:
        data = json.loads(value)
    except (TypeError, ValueError) as e:
        problems.append(f"{span.name}: {key} is not JSON ({e})")
        return []
    for error in jsonschema.Draft202012Validator(schema).iter_errors(data):
        path = "/".join(str(p) for p in error.absolute_path)
        problems.append(f"{span.name}: {key} [{path}] {error.message}")
    return data if isinstance(data, list) else []


def span_problems(span: Any) -> list[str]:
    """What in ``span`` breaks the conventions (an empty list: nothing)."""
    a = dict(span.attributes or {})
    problems: list[str] = []
    name = span.name
    for key in _INT:
        if key in a and (not isinstance(a[key], int) or isinstance(a[key], bool) or a[key] < 0):
            problems.append(f"{name}: {key}={a[key]!r} is not a non-negative int")
    for key in _FLOAT:
        if key in a and not isinstance(a[key], (int, float)):
            problems.append(f"{name}: {key}={a[key]!r} is not a number")
    for key in _STR:
        if key in a and (not isinstance(a[key], str) or not a[key]):
            problems.append(f"{name}: {key}={a[key]!r} is not a non-empty string")
    for key in _STR_LIST:
        if key in a and (isinstance(a[key], str) or not all(isinstance(v, str) for v in a[key])):
            problems.append(f"{name}: {key}={a[key]!r} is not a list of strings")
    error = span.status.status_code.name == "ERROR"
    if error and "error.type" not in a:
        problems.append(f"{name}: an ERROR span without error.type")
    if "server.address" in a and "server.port" not in a:
        problems.append(f"{name}: server.address without server.port")
    op = a.get("gen_ai.operation.name")
    if op is None:
        marks = [k for k in _OPERATION_MARKS if k in a]
        if marks:
            problems.append(f"{name}: no gen_ai.operation.name, yet {marks} make it read as a GenAI operation")
        return problems
    _messages(problems, span, "gen_ai.input.messages", INPUT_MESSAGES)
    outputs = _messages(problems, span, "gen_ai.output.messages", OUTPUT_MESSAGES)
    if op == "chat":
        model = a.get("gen_ai.request.model")
        if span.kind.name != "CLIENT":
            problems.append(f"{name}: a chat span of kind {span.kind.name}, not CLIENT")
        for key in ("gen_ai.provider.name", "gen_ai.request.model"):
            if key not in a:
                problems.append(f"{name}: chat span without {key}")
        if name != f"chat {model}":
            problems.append(f"{name}: a chat span is named 'chat {{gen_ai.request.model}}'")
        replied = "gen_ai.response.finish_reasons" in a
        if not error or replied:  # a call that answered reports what it cost and why it stopped
            for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.response.finish_reasons"):
                if key not in a:
                    problems.append(f"{name}: a chat span that got a reply, without {key}")
        if replied and outputs:
            reasons = list(a["gen_ai.response.finish_reasons"])
            if reasons != [m.get("finish_reason") for m in outputs]:
                problems.append(f"{name}: finish_reasons {reasons} differ from the output messages'")
        for reason in a.get("gen_ai.response.finish_reasons") or ():
            if reason not in FINISH_REASONS:
                problems.append(f"{name}: finish reason {reason!r} is none of {FINISH_REASONS}")
    elif op == "invoke_agent":
        agent = a.get("gen_ai.agent.name")
        if "gen_ai.provider.name" not in a:
            problems.append(f"{name}: invoke_agent span without gen_ai.provider.name")
        if name != (f"invoke_agent {agent}" if agent else "invoke_agent"):
            problems.append(f"{name}: an invoke_agent span is named 'invoke_agent {{gen_ai.agent.name}}'")
        if span.kind.name not in ("INTERNAL", "CLIENT"):
            problems.append(f"{name}: an invoke_agent span of kind {span.kind.name}")
    elif op == "execute_tool":
        tool = a.get("gen_ai.tool.name")
        if tool is None:
            problems.append(f"{name}: execute_tool span without gen_ai.tool.name")
        if name != f"execute_tool {tool}":
            problems.append(f"{name}: an execute_tool span is named 'execute_tool {{gen_ai.tool.name}}'")
        if span.kind.name != "INTERNAL":
            problems.append(f"{name}: an execute_tool span of kind {span.kind.name}, not INTERNAL")
    else:
        problems.append(f"{name}: gen_ai.operation.name={op!r} is not an operation treadle performs")
    return problems


def all_problems(spans: list[Any]) -> list[str]:
    return [p for s in spans for p in span_problems(s)]
