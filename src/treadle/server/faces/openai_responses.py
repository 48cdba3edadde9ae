"""``POST /v1/responses``: the OpenAI Responses API over the same runs as chat completions.

A response's id names its run (``resp_<run id>~<n>``); ``previous_response_id`` continues the
conversation — and, when that run waits for approval, the input ("approve", "deny <reason>")
decides its calls and the same durable run goes on. See docs/openai-compatible.md."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Literal, Optional, Union

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ..hub import RunHub
from ._common import (
    Decided,
    Stop,
    Turn,
    answer_text,
    decide_calls,
    follow,
    history_text,
    parse_answer,
    start_run,
    waiting_calls,
)
from .openai_compat import AgentRequest, Reply, error, read_request, respond

__all__ = ["mount_responses"]

RESPONSE_ID = re.compile(r"^resp_([A-Za-z0-9_.:\-]{1,128})~[0-9]{1,20}$")


class Part(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["input_text", "output_text", "text"]
    text: str


class Item(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Optional[Literal["message"]] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Union[str, list[Part]]


class ResponsesRequest(AgentRequest):
    """The fields of a Responses request this face reads (sampling settings are ignored)."""

    input: Union[str, list[Item]]
    instructions: Optional[str] = None
    previous_response_id: Optional[str] = Field(None, max_length=200)
    stream: Optional[bool] = False


def _text(item: Item) -> str:
    return item.content if isinstance(item.content, str) else "".join(p.text for p in item.content)


def _items(body: ResponsesRequest) -> tuple[str, list[Turn]]:
    """The input (the last user item) and the turns before it, or ValueError."""
    items = [Item(role="user", content=body.input)] if isinstance(body.input, str) else list(body.input)
    if not items or items[-1].role != "user":
        raise ValueError("the last input item must be the user's message")
    text = _text(items[-1]).strip()
    if not text:
        raise ValueError("the last user message is empty")
    return text, [Turn(i.role, _text(i)) for i in items[:-1]]


def _previous(hub: RunHub, response_id: str) -> tuple[str, str]:
    """The run a previous response answered, and the conversation up to its answer."""
    m = RESPONSE_ID.match(response_id)
    record = hub.store.get_run(m.group(1)) if m else None
    if m is None or record is None:
        raise LookupError(f"no response {response_id!r}")
    pk = record.prompt_kwargs or {}
    turns = [Turn("user", str(pk.get("input_str") or ""))]
    if record.status != "waiting_for_approval":
        turns.append(Turn("assistant", answer_text({**(record.result or {}), "status": record.status})))
    earlier = str(pk.get("chat_history_str") or "")
    return m.group(1), "\n".join(x for x in (earlier, history_text(turns)) if x)


class ResponseReply(Reply):
    def __init__(self, run_id: str, agent: str, previous: str | None) -> None:
        super().__init__(run_id, agent)
        self.id = f"resp_{run_id}~{time.time_ns() // 1000}"
        self.message_id = f"msg_{run_id}~{time.time_ns() // 1000}"
        self.previous = previous

    def message(self, text: str, status: str) -> dict[str, JsonValue]:
        return {"type": "message", "id": self.message_id, "status": status, "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}

    def final(self) -> dict[str, JsonValue]:
        return self.response()

    def response(self, status: str = "completed") -> dict[str, JsonValue]:
        done = status == "completed"
        return {"id": self.id, "object": "response", "created_at": self.created, "model": self.agent,
                "status": status, "error": None, "incomplete_details": None, "instructions": None,
                "metadata": {}, "parallel_tool_calls": False, "tool_choice": "auto", "tools": [],
                "temperature": None, "top_p": None, "previous_response_id": self.previous,
                "output": [self.message(self.content, "completed")] if done else [],
                "output_text": self.content if done else "",
                "usage": {"input_tokens": self.usage[0], "output_tokens": self.usage[1],
                          "total_tokens": sum(self.usage), "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens_details": {"reasoning_tokens": 0}} if done else None,
                "treadle": self.extension()}


def mount_responses(app: FastAPI, hub: RunHub) -> None:
    router = APIRouter(prefix="/v1", include_in_schema=False)

    @router.post("/responses")
    async def responses(request: Request) -> Response:
        body = await read_request(request, ResponsesRequest, hub)
        if isinstance(body, Response):
            return body
        try:
            text, turns = _items(body)
        except ValueError as e:
            return error(400, str(e), param="input")
        try:
            run_id, after = await _run(hub, body, text, turns)
        except LookupError as e:
            return error(404, str(e), param="previous_response_id", code="response_not_found")
        except Decided as e:
            return error(e.status, str(e), code="run_not_continued")
        except OverflowError as e:
            return error(429, str(e), type_="rate_limit_error")
        reply = ResponseReply(run_id, body.model, body.previous_response_id)
        return await respond(hub, reply, after, (lambda: _stream(hub, reply, after)) if body.stream else None)

    app.include_router(router)


async def _run(hub: RunHub, body: ResponsesRequest, text: str, turns: list[Turn]) -> tuple[str, tuple[int, int]]:
    history = ""
    if body.previous_response_id:
        run_id, history = await asyncio.to_thread(_previous, hub, body.previous_response_id)
        pending = [p["call_id"] for p in await waiting_calls(hub, run_id)]
        if pending:  # the previous response asked for approval: this input answers it
            approve, reason = parse_answer(text)
            return run_id, await decide_calls(hub, run_id, [(str(c), approve, reason) for c in pending])
    if body.instructions:
        turns = [Turn("system", body.instructions), *turns]
    history = "\n".join(x for x in (history, history_text(turns)) if x)
    return start_run(hub, body.model, text, history).run_id, (0, 0)


def _event(kind: str, n: int, **body: JsonValue) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': n, **body}, ensure_ascii=False)}\n\n"


async def _stream(hub: RunHub, reply: ResponseReply, after: tuple[int, int]) -> AsyncIterator[str]:
    n = 0
    yield _event("response.created", n, response=reply.response("in_progress"))
    n += 1
    yield _event("response.in_progress", n, response=reply.response("in_progress"))
    async for item in follow(hub, reply.run_id, after):
        if isinstance(item, Stop):
            reply.end(item)
            break
        if item is None:
            yield ": keep-alive\n\n"
        else:
            reply.activity(item[1])  # in the final response's `treadle` field
    part: dict[str, JsonValue] = {"type": "output_text", "text": "", "annotations": []}
    steps: tuple[tuple[str, dict[str, JsonValue]], ...] = (
            ("response.output_item.added", {"output_index": 0, "item": reply.message("", "in_progress")}),
            ("response.content_part.added", {"output_index": 0, "content_index": 0, "item_id": reply.message_id,
                                             "part": part}),
            ("response.output_text.delta", {"output_index": 0, "content_index": 0, "item_id": reply.message_id,
                                            "delta": reply.content, "logprobs": []}),
            ("response.output_text.done", {"output_index": 0, "content_index": 0, "item_id": reply.message_id,
                                           "text": reply.content, "logprobs": []}),
            ("response.content_part.done", {"output_index": 0, "content_index": 0, "item_id": reply.message_id,
                                            "part": {**part, "text": reply.content}}),
            ("response.output_item.done", {"output_index": 0, "item": reply.message(reply.content, "completed")}),
            ("response.completed", {"response": reply.response()}))
    for kind, body in steps:
        n += 1
        yield _event(kind, n, **body)
