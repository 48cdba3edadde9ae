"""The fault server of tests/faults, extended for the security tests.

``RecordingServer`` keeps every request (headers and JSON body), so a test can see what the
model was sent (the observations) and prove that the API key reached the server. It adds
two faults: ``401`` and ``500key``, whose error bodies echo the credentials the request
carried (as some servers and proxies do), and a minimal Anthropic Messages endpoint
(``POST /v1/messages``: the faults ``401``, ``500``, ``500key``, ``hang``, ``reset``, else
the final answer "5", as JSON or as SSE).
"""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator

from fault_server import FINAL_TEXT, FaultServer, ResetConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def _credentials(request: Request) -> str:
    return " ".join(v for k, v in request.headers.items() if k in ("authorization", "x-api-key", "api-key"))


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


_MESSAGE_START = {"type": "message_start", "message": {
    "id": "msg_fault", "type": "message", "role": "assistant", "model": "fault-model", "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 0}}}


class RecordingServer(FaultServer):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.app.router.routes.append(Route("/v1/messages", self.messages, methods=["POST"]))

    def reset(self, *schedule: str) -> None:
        super().reset(*schedule)
        self.requests = []

    async def _record(self, request: Request) -> Any:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        return body

    def _echo(self, request: Request) -> JSONResponse | None:
        """The two echoing faults, in OpenAI's error shape, or None."""
        kind = self.schedule[0] if self.schedule else None
        if kind not in ("401", "500key"):
            return None
        self.schedule.pop(0)
        self.log.append((time.monotonic(), kind, False))
        status = 401 if kind == "401" else 500
        return JSONResponse({"error": {"message": f"Incorrect API key provided: {_credentials(request)}",
                                       "type": "invalid_request_error" if status == 401 else "server_error",
                                       "param": None, "code": "invalid_api_key" if status == 401 else None}},
                            status_code=status)

    async def completions(self, request: Request) -> Response:
        await self._record(request)
        return self._echo(request) or await super().completions(request)

    async def messages(self, request: Request) -> Response:
        body = await self._record(request)
        stream = bool(body.get("stream"))
        kind = self.schedule.pop(0) if self.schedule else "final"
        self.log.append((time.monotonic(), kind, stream))
        if kind in ("401", "500", "500key"):
            status = 401 if kind == "401" else 500
            etype = "authentication_error" if status == 401 else "api_error"
            message = f"invalid credentials {_credentials(request)}" if kind != "500" else "injected 500"
            return JSONResponse({"type": "error", "error": {"type": etype, "message": message}}, status_code=status)
        if kind == "hang":
            await self._hang()
        if kind == "reset":
            return StreamingResponse(self._anthropic_reset(stream),
                                     media_type="text/event-stream" if stream else "application/json")
        if stream:
            events = [_sse("message_start", _MESSAGE_START),
                      _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": {"type": "text", "text": ""}}),
                      _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "text_delta", "text": FINAL_TEXT}}),
                      _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                      _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                                 "stop_sequence": None},
                                             "usage": {"output_tokens": 1}}),
                      _sse("message_stop", {"type": "message_stop"})]
            return Response("".join(events), media_type="text/event-stream")
        return JSONResponse({"id": "msg_fault", "type": "message", "role": "assistant", "model": "fault-model",
                             "content": [{"type": "text", "text": FINAL_TEXT}], "stop_reason": "end_turn",
                             "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}})

    async def _anthropic_reset(self, stream: bool) -> AsyncIterator[bytes]:
        if stream:
            yield _sse("message_start", _MESSAGE_START).encode()
        else:
            yield b'{"id": "msg_fault", "type": "mess'
        raise ResetConnection("injected connection reset")
