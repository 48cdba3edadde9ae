"""The Anthropic Messages API's wire shapes, built from the run's OpenAI-shaped chat
messages and tool definitions (pure functions: no SDK, no I/O)."""

from __future__ import annotations

import json
from typing import Any

from ..types import FunctionDefinition
from ._schema import compact_schema

Message = dict[str, Any]


def to_anthropic_tools(tools: list[FunctionDefinition]) -> list[dict[str, Any]]:
    """Tool definitions in the Messages API shape (compact schemas: no titles)."""
    out = []
    for d in tools:
        schema = compact_schema(d.func_parameters or {"type": "object", "properties": {}})
        tool: dict[str, Any] = {"name": d.func_name}
        if d.func_desc:
            tool["description"] = d.func_desc
        tool["input_schema"] = schema
        out.append(tool)
    return out


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for p in content:
        if isinstance(p, str):
            parts.append(p)
        elif isinstance(p, dict) and p.get("type") == "text":
            parts.append(p.get("text") or "")
    return "".join(parts)


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    url = str(url or "")
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if isinstance(part, str):
            if part:
                blocks.append({"type": "text", "text": part})
        elif isinstance(part, dict):
            kind = part.get("type")
            if kind == "text":
                if part.get("text"):
                    blocks.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                blocks.append(_image_block(part))
            else:  # already an Anthropic block (image, document, tool_result…)
                blocks.append(part)
    return blocks


def _tool_input(arguments: Any) -> Any:
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def to_anthropic_messages(messages: list[Message], thinking_for: Any = None) -> tuple[str | None, list[Message]]:
    """Convert OpenAI-shaped chat messages into ``(system, messages)`` for the Messages API.

    ``thinking_for(tool_call_id)`` may return thinking blocks to put back in front of the
    assistant turn that made that call. Consecutive turns of one role are merged (tool
    results first, as the API requires); empty turns are dropped.
    """
    system: list[str] = []
    out: list[Message] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": list(blocks)})

    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            text = _text_of(m.get("content"))
            if text:
                system.append(text)
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            calls = m.get("tool_calls") or []
            if calls and thinking_for is not None:
                first_id = calls[0].get("id")
                cached = thinking_for(first_id) if first_id else None
                if cached:
                    blocks.extend(dict(b) for b in cached)
            blocks.extend(_content_blocks(m.get("content")))
            for call in calls:
                fn = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                               "input": _tool_input(fn.get("arguments"))})
            add("assistant", blocks)
        elif role == "tool":
            content = m.get("content")
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.get("tool_call_id")}
            if isinstance(content, list):
                result["content"] = _content_blocks(content)
            elif content is not None:
                result["content"] = str(content)
            if m.get("is_error"):
                result["is_error"] = True
            if out and out[-1]["role"] == "user":
                # tool results go before any other content of the user turn
                prev = out[-1]["content"]
                n = 0
                while n < len(prev) and prev[n].get("type") == "tool_result":
                    n += 1
                prev.insert(n, result)
            else:
                out.append({"role": "user", "content": [result]})
        else:  # user, and anything unknown, speaks as the user
            add("user", _content_blocks(m.get("content")))
    for m in out:  # a turn of one text block reads better (and suits more servers) as a string
        c = m["content"]
        if len(c) == 1 and c[0].get("type") == "text" and set(c[0]) == {"type", "text"}:
            m["content"] = c[0]["text"]
    return ("\n\n".join(system) or None), out


