"""Protocol faces of ``treadle serve``: the OpenAI-compatible API (``/v1``) and AG-UI
(``/agui``). Each maps the one event stream of a run (the server's RunHub: same journal, auth,
limits and approvals as the HTTP API) to a protocol's shapes."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import FastAPI
from pydantic import JsonValue
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..hub import RunHub

__all__ = ["mount_faces"]


def mount_faces(app: FastAPI, hub: RunHub) -> None:
    """Add the faces' routes to ``app`` and give their error replies the protocol's shape
    (call after the API's middleware is added: this one goes outside it, so the guard's
    401/413/415 on a face's path are shaped too)."""
    import importlib.util

    from .openai_compat import mount_openai
    from .openai_responses import mount_responses

    mount_openai(app, hub)
    mount_responses(app, hub)
    shapes: dict[str, Callable[[int, str], dict[str, JsonValue]]] = {"/v1/": openai_error_body}
    if importlib.util.find_spec("ag_ui") is not None:  # ag-ui-protocol, in the server extra
        from .agui import mount_agui, run_error_body

        mount_agui(app, hub)
        shapes["/agui"] = run_error_body
    app.add_middleware(ErrorShape, shapes=shapes)


def openai_error_body(status: int, detail: str) -> dict[str, JsonValue]:
    kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error")
    return {"error": {"message": detail, "type": kind, "param": None, "code": None}}


class ErrorShape:
    """Rewrites the server's own JSON errors (``{"detail": …}``, from the guard or a route) on a
    face's paths into that protocol's error body."""

    def __init__(self, app: ASGIApp, shapes: dict[str, Callable[[int, str], dict[str, JsonValue]]]) -> None:
        self.app = app
        self.shapes = shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        shape = next((fn for prefix, fn in self.shapes.items() if path.startswith(prefix)), None)
        if shape is None:
            await self.app(scope, receive, send)
            return
        held: dict[str, Message] = {}
        chunks: list[bytes] = []

        async def shaped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers") or []).get(b"content-type", b"")
                if message["status"] >= 400 and ctype.startswith(b"application/json"):
                    held["start"] = message
                    return
                await send(message)
                return
            if message["type"] == "http.response.body" and "start" in held:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start = held.pop("start")
                data = b"".join(chunks)
                try:
                    body: JsonValue = json.loads(data)
                except ValueError:
                    body = None
                if isinstance(body, dict) and "detail" in body:
                    detail = body.get("message") or body["detail"]
                    data = json.dumps(shape(start["status"], detail if isinstance(detail, str)
                                            else json.dumps(detail))).encode()
                given: list[tuple[bytes, bytes]] = start.get("headers") or []
                headers = [(k, v) for k, v in given if k != b"content-length"]
                headers.append((b"content-length", str(len(data)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": data})
                return
            await send(message)

        await self.app(scope, receive, shaped_send)
