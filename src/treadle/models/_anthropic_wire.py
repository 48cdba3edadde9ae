"""The Anthropic Messages API's wire shapes, built from the run's OpenAI-shaped chat
messages and tool definitions (pure functions: no SDK, no I/O)."""

from __future__ import annotations

import json
from typing import Callable, Mapping, Sequence

from ..types import FunctionDefinition
from ._guards import is_dict, is_list
from ._schema import compact_schema

Block = dict[str, object]  # a content block, a tool, a message of the Messages API (JSON for the SDK)
ThinkingFor = Callable[[str], Sequence[Mapping[str, object]] | None]


def to_anthropic_tools(tools: list[FunctionDefinition]) -> list[Block]:
    """Tool definitions in the Messages API shape (compact schemas: no titles)."""
    out: list[Block] = []
    for d in tools:
        schema = compact_schema(d.func_parameters or {"type": "object", "properties": {}})
        tool: Block = {"name": d.func_name}
        if d.func_desc:
            tool["description"] = d.func_desc
        tool["input_schema"] = schema
        out.append(tool)
    return out


def _text_of(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for p in content if is_list(content) else ():
        if isinstance(p, str):
            parts.append(p)
        elif is_dict(p) and p.get("type") == "text":
            parts.append(str(p.get("text") or ""))
    return "".join(parts)


def _image_block(part: Mapping[object, object]) -> Block:
    spec = part.get("image_url")
    url = spec.get("url") if is_dict(spec) else spec
    url = str(url or "")
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content_blocks(content: object) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[Block] = []
    for part in content if is_list(content) else ():
        if isinstance(part, str):
            if part:
                blocks.append({"type": "text", "text": part})
        elif is_dict(part):
            kind = part.get("type")
            if kind == "text":
                if part.get("text"):
                    blocks.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                blocks.append(_image_block(part))
            else:  # already an Anthropic block (image, document, tool_result…)
                blocks.append({str(k): v for k, v in part.items()})
    return blocks


def _tool_input(arguments: object) -> object:
    if is_dict(arguments):
        return arguments
    if not arguments:
        return {}
    if not isinstance(arguments, (str, bytes, bytearray)):
        return {"arguments": arguments}
    try:
        value: object = json.loads(arguments)
    except ValueError:
        return {"arguments": arguments}
    return value if is_dict(value) else {"arguments": value}


def to_anthropic_messages(messages: Sequence[Mapping[str, object]], thinking_for: ThinkingFor | None = None
                          ) -> tuple[str | None, list[Block]]:
    """Convert OpenAI-shaped chat messages into ``(system, messages)`` for the Messages API.

    ``thinking_for(tool_call_id)`` may return thinking blocks to put back in front of the
    assistant turn that made that call. Consecutive turns of one role are merged (tool
    results first, as the API requires); empty turns are dropped.
    """
    system: list[str] = []
    turns: list[tuple[str, list[Block]]] = []  # (role, content blocks)

    def add(role: str, blocks: list[Block]) -> None:
        if not blocks:
            return
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, list(blocks)))

    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            text = _text_of(m.get("content"))
            if text:
                system.append(text)
        elif role == "assistant":
            blocks: list[Block] = []
            tool_calls = m.get("tool_calls")
            calls = [c for c in tool_calls if is_dict(c)] if is_list(tool_calls) else []
            if calls and thinking_for is not None:
                first_id = calls[0].get("id")
                cached = thinking_for(first_id) if isinstance(first_id, str) and first_id else None
                if cached:
                    blocks.extend(dict(b) for b in cached)
            blocks.extend(_content_blocks(m.get("content")))
            for call in calls:
                fn = call.get("function")
                fn_d = fn if is_dict(fn) else {}
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn_d.get("name"),
                               "input": _tool_input(fn_d.get("arguments"))})
            add("assistant", blocks)
        elif role == "tool":
            content = m.get("content")
            result: Block = {"type": "tool_result", "tool_use_id": m.get("tool_call_id")}
            if is_list(content):
                result["content"] = _content_blocks(content)
            elif content is not None:
                result["content"] = str(content)
            if m.get("is_error"):
                result["is_error"] = True
            if turns and turns[-1][0] == "user":
                # tool results go before any other content of the user turn
                prev = turns[-1][1]
                n = 0
                while n < len(prev) and prev[n].get("type") == "tool_result":
                    n += 1
                prev.insert(n, result)
            else:
                turns.append(("user", [result]))
        else:  # user, and anything unknown, speaks as the user
            add("user", _content_blocks(m.get("content")))
    out: list[Block] = []
    for role, c in turns:  # a turn of one text block reads better (and suits more servers) as a string
        if len(c) == 1 and c[0].get("type") == "text" and set(c[0]) == {"type", "text"}:
            out.append({"role": role, "content": c[0]["text"]})
        else:
            out.append({"role": role, "content": c})
    return ("\n\n".join(system) or None), out
