"""A fault-injecting OpenAI-compatible server on loopback, for the fault tests.

A Starlette app served by uvicorn in a background thread on a free 127.0.0.1 port.
``POST /v1/chat/completions`` answers with the next entry of ``schedule`` (a list of
fault names set per test); when the schedule is empty it gives the final answer "5".
Each fault has a plain (JSON) and a streamed (SSE, when the request asks ``stream``) form.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from typing import Any, AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

HUGE_CHARS = 2_000_000
FINAL_TEXT = "5"
RETRY_AFTER = 0.2  # seconds the 429 asks the client to wait
DRIP_EVERY = 0.2  # seconds between the bytes of a "drip" reply
DRIP_FOR = 90.0  # a drip stops after this long (far longer than any client timeout or run bound)
# replies of the wrong shape, as (JSON body's choices, streamed chunks' choices); None: no "choices" key
MALFORMED = {
    "null_message": ([{"index": 0, "message": None, "logprobs": None, "finish_reason": "stop"}],
                     [{"index": 0, "delta": None, "logprobs": None, "finish_reason": None}]),
    "empty_choices": ([], []),
    "missing_choices": (None, None),
}


class ResetConnection(Exception):
    """Raised inside a streamed body: uvicorn drops the connection mid-response."""


def _message(kind: str) -> tuple[dict[str, Any], str]:
    """The assistant message and finish_reason of a non-error fault (or a normal reply)."""
    if kind == "final":
        return {"content": FINAL_TEXT}, "stop"
    if kind == "empty":
        return {"content": ""}, "stop"
    if kind == "huge":
        return {"content": "x" * HUGE_CHARS}, "stop"
    calls = {
        "tool": ("add", '{"a": 2, "b": 3}'),
        "bad_args": ("add", '{"a": 2, "b": '),  # cut off JSON
        "unknown_tool": ("no_such_tool", '{"a": 2}'),
    }
    name, args = calls[kind]
    return {"content": None, "tool_calls": [{"id": f"call_{kind}", "type": "function",
                                             "function": {"name": name, "arguments": args}}]}, "tool_calls"


def _completion(message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fault", "object": "chat.completion", "created": 1741570283, "model": "fault-model",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "logprobs": None,
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
    body = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 1741570283,
            "model": "fault-model", "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                 "finish_reason": finish_reason}]}
    return f"data: {json.dumps(body)}\n\n"


def _malformed(kind: str, stream: bool) -> str:
    """A reply whose ``choices`` are of the wrong shape; streamed, every chunk has them (so no
    ``finish_reason`` ever arrives) and the stream ends with ``[DONE]``."""
    plain, streamed = MALFORMED[kind]
    if stream:
        chunks = []
        for _ in range(3):
            body: dict[str, Any] = {"id": "chatcmpl-fault", "object": "chat.completion.chunk",
                                    "created": 1741570283, "model": "fault-model"}
            if streamed is not None:
                body["choices"] = streamed
            chunks.append(f"data: {json.dumps(body)}\n\n")
        return "".join(chunks) + "data: [DONE]\n\n"
    body = _completion(*_message("final"))
    if plain is None:
        del body["choices"]
    else:
        body["choices"] = plain
    return json.dumps(body)


def drip_body(stream: bool) -> bytes:
    """What the "drip" fault sends, byte by byte: the final answer, as JSON or SSE, with 1,000
    spaces of (valid) JSON whitespace in front, so it takes 200 s to arrive."""
    message, finish = _message("final")
    pad = " " * 1000
    if stream:
        return ("data: " + pad + "".join(_sse_chunks(message, finish))[6:] + "data: [DONE]\n\n").encode()
    return (pad + json.dumps(_completion(message, finish))).encode()


def _sse_chunks(message: dict[str, Any], finish_reason: str) -> list[str]:
    out = [_chunk({"role": "assistant", "content": ""})]
    if message.get("content"):
        out.append(_chunk({"content": message["content"]}))
    for i, tc in enumerate(message.get("tool_calls") or []):
        out.append(_chunk({"tool_calls": [{"index": i, "id": tc["id"], "type": "function",
                                           "function": {"name": tc["function"]["name"], "arguments": ""}}]}))
        out.append(_chunk({"tool_calls": [{"index": i, "function": {"arguments": tc["function"]["arguments"]}}]}))
    out.append(_chunk({}, finish_reason))
    return out


class FaultServer:
    """The server, its schedule, and what it saw (request times, fault served, stream flag)."""

    def __init__(self) -> None:
        self.schedule: list[str] = []
        self.log: list[tuple[float, str, bool]] = []
        self.stopping = threading.Event()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"])])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(self.app, lifespan="off", log_level="critical", access_log=False,
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="fault-server")

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> FaultServer:
        self.thread.start()
        deadline = time.monotonic() + 30  # a hang guard
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the fault server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def reset(self, *schedule: str) -> None:
        self.schedule = list(schedule)
        self.log = []

    def served(self) -> list[str]:
        return [kind for _, kind, _ in self.log]

    def gaps(self) -> list[float]:
        times = [t for t, _, _ in self.log]
        return [b - a for a, b in itertools.pairwise(times)]

    # ---------------------------------------------------------------- the endpoint
    async def completions(self, request: Request) -> Response:
        body = await request.json()
        stream = bool(body.get("stream"))
        kind = self.schedule.pop(0) if self.schedule else "final"
        self.log.append((time.monotonic(), kind, stream))
        if kind == "429":
            return JSONResponse({"error": {"message": "Rate limit reached", "type": "requests",
                                           "param": None, "code": "rate_limit_exceeded"}},
                                status_code=429, headers={"retry-after": str(RETRY_AFTER)})
        if kind in ("500", "503"):
            return JSONResponse({"error": {"message": f"injected {kind}", "type": "server_error",
                                           "param": None, "code": None}}, status_code=int(kind))
        if kind == "hang":
            await self._hang()
            return JSONResponse(_completion(*_message("final")))
        if kind == "reset":
            return StreamingResponse(self._reset(stream),
                                     media_type="text/event-stream" if stream else "application/json")
        if kind == "drip":  # a complete, valid reply, one byte every DRIP_EVERY seconds
            return StreamingResponse(self._drip(drip_body(stream)),
                                     media_type="text/event-stream" if stream else "application/json")
        if kind in MALFORMED:
            return Response(_malformed(kind, stream), media_type="text/event-stream" if stream else "application/json")
        if kind == "truncated":
            if stream:  # content, then the stream just ends: no finish_reason, no [DONE]
                chunks = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": "The answer is"})]
                return Response("".join(chunks), media_type="text/event-stream")
            text = json.dumps(_completion({"content": "The answer is 5"}, "stop"))
            return Response(text[: len(text) // 2], media_type="application/json")
        message, finish = _message(kind)
        if stream:
            text = "".join(_sse_chunks(message, finish)) + "data: [DONE]\n\n"
            return Response(text, media_type="text/event-stream")
        return JSONResponse(_completion(message, finish))

    async def _hang(self) -> None:
        deadline = time.monotonic() + 10
        while not self.stopping.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _drip(self, data: bytes) -> AsyncIterator[bytes]:
        deadline = time.monotonic() + DRIP_FOR
        for i in range(len(data)):
            if self.stopping.is_set() or time.monotonic() > deadline:
                return
            yield data[i:i + 1]
            await asyncio.sleep(DRIP_EVERY)

    async def _reset(self, stream: bool) -> AsyncIterator[bytes]:
        if stream:
            yield _chunk({"role": "assistant", "content": "The ans"}).encode()
        else:
            yield b'{"id": "chatcmpl-fault", "object": "chat.com'
        await asyncio.sleep(0.05)
        raise ResetConnection("injected connection reset")
