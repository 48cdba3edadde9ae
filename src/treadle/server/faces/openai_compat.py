"""The OpenAI-compatible face of ``treadle serve``: ``GET /v1/models`` lists the served agents,
``POST /v1/chat/completions`` runs the named agent on the conversation it is given (streaming
or not) and answers in the OpenAI shape. See docs/openai-compatible.md.

A call that needs approval ends the reply with a question naming the call and a marker
(``[treadle: run R waits for approval of call C]``); the next request carrying that reply in its
conversation and the user's answer ("approve", "deny <reason>") decides the call and continues
the same durable run — live, or from the journal after a restart."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal, Optional, TypeVar, Union

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from ...store.records import CallComplete, CallStart, decode
from ..hub import RunHub
from ._common import (
    Decided,
    Stop,
    Turn,
    answer_text,
    decide_calls,
    first_error,
    follow,
    history_text,
    parse_answer,
    start_run,
    usage_of,
    waiting_calls,
)

__all__ = ["AgentRequest", "MARKER", "Reply", "error", "mount_openai", "read_request", "respond"]

MARKER = re.compile(r"\[treadle: run ([A-Za-z0-9_.:\-]{1,128}) waits for approval of call ([A-Za-z0-9_.:\-]{1,128})\]")
PREFIX = "/v1"


# ---------------------------------------------------------------------- the request
class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "input_text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Union[str, list[TextPart], None] = None
    name: Optional[str] = None
    tool_calls: Optional[list[dict[str, JsonValue]]] = None
    tool_call_id: Optional[str] = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class AgentRequest(BaseModel):
    """What the requests of both OpenAI endpoints carry first: the agent to run (``model``)."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=200)


class ChatRequest(AgentRequest):
    """The fields of a chat-completions request this face reads; the sampling settings
    (temperature, max_tokens, …) are accepted and ignored: the agent's model has its own."""

    messages: list[Message] = Field(min_length=1, max_length=10_000)
    stream: Optional[bool] = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[int] = Field(None, ge=1, le=1)
    user: Optional[str] = None
    treadle_run_id: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_.:\-]{1,128}$",
                                          description="Continue this run (waiting for approval) instead of "
                                                      "finding it in the conversation.")


def error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
          code: str | None = None) -> JSONResponse:
    """OpenAI's error body."""
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


Body = TypeVar("Body", bound=AgentRequest)


async def read_request(request: Request, kind: type[Body], hub: RunHub) -> Body | JSONResponse:
    """The request's body as ``kind``, naming a served agent; or the error to answer. Strict: a
    JSON value of the wrong type is refused, never coerced."""
    try:
        body = kind.model_validate_json(await request.body(), strict=True)
    except ValidationError as e:
        where, message = first_error(e)
        return error(400, message, param=where or None)
    if body.model not in hub.agents:
        return error(404, f"The model '{body.model}' does not exist; served: {', '.join(hub.agents)}",
                     param="model", code="model_not_found")
    return body


def _text(m: Message) -> str:
    if m.content is None:
        return ""
    if isinstance(m.content, str):
        return m.content
    return "".join(p.text for p in m.content)


def conversation(messages: list[Message]) -> tuple[str, str]:
    """The run's input (the last user message) and its chat history (everything before it:
    system and developer messages as ``System:`` lines, earlier turns as ``User:`` /
    ``Assistant:``, tool results as ``Tool:``), or ValueError."""
    last = messages[-1]
    if last.role != "user":
        raise ValueError(f"the last message must be the user's (it is {last.role!r})")
    text = _text(last).strip()
    if not text:
        raise ValueError("the last user message is empty")
    turns: list[Turn] = []
    for m in messages[:-1]:
        body = MARKER.sub("", _text(m)).strip()
        if m.role == "assistant" and m.tool_calls:
            calls = ", ".join(_call_text(c.get("function")) for c in m.tool_calls)
            body = f"{body} (called {calls})".strip()
        turns.append(Turn(m.role, body))
    return text, history_text(turns)


def _call_text(function: JsonValue) -> str:
    """An OpenAI tool call's ``function`` as ``name(arguments)``."""
    fn = function if isinstance(function, dict) else {}
    return f"{fn.get('name')}({fn.get('arguments')})"


def waiting_marker(messages: list[Message], explicit: str | None) -> tuple[str, list[str]] | None:
    """The run (and calls) the conversation's last assistant reply said wait for approval."""
    if explicit:
        return explicit, []
    for m in reversed(messages[:-1]):
        if m.role == "assistant":
            found = MARKER.findall(_text(m))
            if found:
                run_id = found[0][0]
                return run_id, [c for r, c in found if r == run_id]
            return None
    return None


# ---------------------------------------------------------------------- the replies
def approval_text(pending: list[dict[str, JsonValue]], run_id: str) -> str:
    lines: list[str] = []
    for p in pending:
        args = json.dumps(p.get("kwargs") or {}, ensure_ascii=False)
        lines.append(f"The agent wants to call `{p.get('tool_name')}` with {args} and needs your approval.")
    lines.append('Reply "approve" to let it run, or "deny" (optionally followed by a reason).')
    lines.extend(f"[treadle: run {run_id} waits for approval of call {p.get('call_id')}]" for p in pending)
    return "\n".join(lines)


class Reply:
    """What one request turns a run's events into: the tool activity, then the content."""

    def __init__(self, run_id: str, agent: str) -> None:
        self.run_id = run_id
        self.agent = agent
        self.id = f"chatcmpl-{run_id}-{int(time.time() * 1000)}"
        self.created = int(time.time())
        self.tools: list[dict[str, JsonValue]] = []
        self.content = ""
        self.finish = "stop"
        self.status = "running"
        self.usage = (0, 0)
        self.pending: list[dict[str, JsonValue]] = []

    def activity(self, env: dict[str, JsonValue]) -> dict[str, JsonValue] | None:
        """The treadle extension for one event (tool calls and their results), or None."""
        r = decode(env.get("event"))
        out: dict[str, JsonValue]
        if isinstance(r, CallStart):
            c = r.item.data
            out = {"type": "tool_call", "call_id": r.item.id, "name": c.name if c else None,
                   "arguments": (c.kwargs if c else None) or {}}
        elif isinstance(r, CallComplete):
            o = r.item.data
            output: object = o.output if o else None
            out = {"type": "tool_result", "call_id": r.item.id, "name": o.name if o else None,
                   "output": output if output is None or isinstance(output, (str, int, float, bool))
                   else json.dumps(output),
                   "error": (o.error if o else None) or r.item.error}
        else:
            return None
        self.tools.append(out)
        return out

    def end(self, stop: Stop) -> None:
        self.status = stop.status
        if stop.status == "waiting_for_approval":
            self.pending = stop.pending
            self.content = approval_text(stop.pending, self.run_id)
        elif stop.status == "not_live":
            self.content = (f"(run {self.run_id} stopped when its server did; POST /runs/{self.run_id}/resume "
                            "continues it)")
        else:
            self.content = answer_text(stop.result)
            self.usage = usage_of(stop.result)
        self.finish = "length" if stop.status == "max_steps" else "stop"

    def extension(self) -> dict[str, JsonValue]:
        return {"run_id": self.run_id, "status": self.status, "tool_activity": list[JsonValue](self.tools),
                "pending_approvals": list[JsonValue](self.pending)}

    def usage_body(self) -> dict[str, JsonValue]:
        return {"prompt_tokens": self.usage[0], "completion_tokens": self.usage[1],
                "total_tokens": self.usage[0] + self.usage[1]}

    def final(self) -> dict[str, JsonValue]:
        """The reply not streamed, once the run has ended or waits."""
        return self.completion()

    def completion(self) -> dict[str, JsonValue]:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.agent,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.content, "refusal": None},
                             "logprobs": None, "finish_reason": self.finish}],
                "usage": self.usage_body(), "system_fingerprint": None, "treadle": self.extension()}

    def chunk(self, delta: dict[str, JsonValue], finish: str | None = None, **extra: JsonValue) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.agent,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"


# ---------------------------------------------------------------------- the routes
def mount_openai(app: FastAPI, hub: RunHub) -> None:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    @router.get("/models")
    async def list_models() -> dict[str, JsonValue]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "treadle"}
                                           for name in hub.agents]}

    @router.get("/models/{model}")
    async def get_model(model: str) -> Response:
        if model not in hub.agents:
            return error(404, f"The model '{model}' does not exist", code="model_not_found", param="model")
        return JSONResponse({"id": model, "object": "model", "created": 0, "owned_by": "treadle"})

    @router.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await read_request(request, ChatRequest, hub)
        if isinstance(body, Response):
            return body
        try:
            text, history = conversation(body.messages)
        except ValueError as e:
            return error(400, str(e), param="messages")
        try:
            run_id, after = await _continue_or_start(hub, body, text, history)
        except Decided as e:
            return error(e.status, str(e), code="run_not_continued")
        except OverflowError as e:
            return error(429, str(e), type_="rate_limit_error")
        reply = Reply(run_id, body.model)
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return await respond(hub, reply, after, (lambda: _stream(hub, reply, after, usage)) if body.stream else None)

    app.include_router(router)


async def respond(hub: RunHub, reply: Reply, after: tuple[int, int],
                  stream: Callable[[], AsyncIterator[str]] | None) -> Response:
    """The answer to a request that runs (or continues) ``reply``'s run from ``after``: its events
    as ``stream`` makes them, or, not streamed, the reply once the run has ended or waits."""
    headers = {"X-Treadle-Run-Id": reply.run_id}
    if stream is not None:
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    async for item in follow(hub, reply.run_id, after):
        if isinstance(item, Stop):
            reply.end(item)
        elif item is not None:
            reply.activity(item[1])
    return JSONResponse(reply.final(), headers=headers)


async def _continue_or_start(hub: RunHub, body: ChatRequest, text: str, history: str) -> tuple[str, tuple[int, int]]:
    """Decide and continue the run the conversation says waits for approval (when it still
    does), else start a new run on the conversation."""
    found = waiting_marker(body.messages, body.treadle_run_id)
    if found is not None:
        run_id, calls = found
        pending = await waiting_calls(hub, run_id)
        ids = [p["call_id"] for p in pending if not calls or p["call_id"] in calls]
        if ids:
            approve, reason = parse_answer(text)
            after = await decide_calls(hub, run_id, [(str(c), approve, reason) for c in ids])
            return run_id, after
        if body.treadle_run_id:
            raise Decided(409, f"run {run_id} waits for no approval")
    live = start_run(hub, body.model, text, history)
    return live.run_id, (0, 0)


async def _stream(hub: RunHub, reply: Reply, after: tuple[int, int], include_usage: bool) -> AsyncIterator[str]:
    yield reply.chunk({"role": "assistant", "content": ""}, treadle={"run_id": reply.run_id})
    async for item in follow(hub, reply.run_id, after):
        if isinstance(item, Stop):
            reply.end(item)
            break
        if item is None:
            yield ": keep-alive\n\n"  # an SSE comment: clients skip it, proxies see the stream is alive
            continue
        out = reply.activity(item[1])
        if out is not None:  # a content-free chunk: standard clients see an empty delta
            yield reply.chunk({}, treadle=out)
    yield reply.chunk({"content": reply.content})
    yield reply.chunk({}, reply.finish, treadle=reply.extension())
    if include_usage:
        body: dict[str, JsonValue] = {"id": reply.id, "object": "chat.completion.chunk", "created": reply.created,
                                      "model": reply.agent, "choices": [], "usage": reply.usage_body()}
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"
