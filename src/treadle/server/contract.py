"""The HTTP API's error contract: one body shape per kind of error, declared in the OpenAPI
document for every status an endpoint can answer, and a 405 whose ``Allow`` names every
method the path has.

Every error but 422 is ``{"detail": "<what went wrong>"}`` (:class:`Problem`). A 422 is
always :class:`ValidationProblem`: ``detail`` lists the fields at fault (``loc``, ``msg``,
``type``, as FastAPI reports request validation) and ``message`` says it in one line — the
API's own 422s (an unknown agent, edited arguments a tool refuses) take that shape too.
"""

from __future__ import annotations

from typing import Any, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

__all__ = ["PENDING_LINKS", "RUN_LINKS", "SSE_EVENT", "Issue", "Problem", "ValidationProblem", "errors", "guarded",
           "install_error_handlers", "operation_id", "refine_openapi", "unprocessable"]


class Problem(BaseModel):
    """The body of every error response but 422."""

    detail: str = Field(description="What went wrong, for a person to read.")


class Issue(BaseModel):
    loc: list[Union[str, int]] = Field(description="Where: e.g. ['body', 'input'] or ['header', 'Last-Event-ID'].")
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """The body of a 422: the request was well-formed JSON but its values were refused."""

    detail: list[Issue]
    message: str = Field(description="The issues in one line.")


# One event of GET /runs/{run_id}/events (in OpenAPI 3.1 an event stream's schema describes each event).
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The event's seq (send it back as Last-Event-ID); seq.k for the "
                                                "k-th event of a child run after it."},
        "event": {"type": "string", "description": "The event's name, e.g. agent.step_complete."},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": 'The envelope {"seq", "ts", "name", "event"} as JSON ("event" names the agent '
                                'speaking in "agent"); a child run\'s event (an '
                                'agent called as a tool) adds "run_id", "depth" (1, 2, …) and "parent_run_id", '
                                'and its seq is the child\'s own.'},
    },
    "required": ["data"],
}

DESCRIPTIONS = {
    400: "The Host header is not one this server answers to (see --allow-host).",
    401: "The server has a token and the request carries no valid `Authorization: Bearer` (or UI cookie).",
    404: "No such run.",
    405: "The path does not take this method (`Allow` lists the ones it takes).",
    409: "The run is not in a state that allows this.",
    413: "The request body is over the server's limit.",
    415: "The request body is not application/json.",
    422: "The request's values were refused.",
    429: "Too many runs are live on this server.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these error statuses, each with its body schema."""
    return {code: {"model": ValidationProblem if code == 422 else Problem, "description": DESCRIPTIONS[code]}
            for code in codes}


def _link(operation: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation, "parameters": parameters}


_RUN_ID = "$response.body#/run_id"
# OpenAPI links: the run a response names is what the run's other operations take
RUN_LINKS: dict[str, Any] = {"links": {
    "GetRun": _link("get_run", run_id=_RUN_ID),
    "RunEvents": _link("run_events", run_id=_RUN_ID),
    "RunTrace": _link("trace", run_id=_RUN_ID),
    "CancelRun": _link("cancel", run_id=_RUN_ID),
    "ResumeRun": _link("resume", run_id=_RUN_ID),
}}
PENDING_LINKS: dict[str, Any] = {"links": {
    "DecideFirstPending": _link("decide", run_id=_RUN_ID, call_id="$response.body#/pending_approvals/0/call_id"),
}}


def operation_id(route: Any) -> str:
    """Each operation's id is its endpoint function's name (start_run, get_run, decide, …)."""
    return str(route.name)


def unprocessable(msg: str, *loc: str | int, kind: str = "value_error") -> RequestValidationError:
    """A 422 the endpoint itself decides, in the same shape as FastAPI's validation errors."""
    return RequestValidationError([{"loc": loc or ("body",), "msg": msg, "type": kind}])


def guarded(method: str, path: str, *codes: int, open_paths: frozenset[str] = frozenset()) -> dict[int | str, Any]:
    """``responses=`` for one route: its own error statuses plus those the ASGI guard answers
    before it — 400 (Host), 401 (outside ``open_paths``), 413/415 for a method with a body."""
    extra = {400}
    if path not in open_paths:
        extra.add(401)
    if method in ("POST", "PUT", "PATCH"):
        extra |= {413, 415}
    if "{" in path:  # path parameters are validated (FastAPI would declare its own 422 schema here)
        extra.add(422)
    return errors(*sorted(extra | set(codes)))


def refine_openapi(app: FastAPI, agent_names: list[str]) -> None:
    """What the models cannot say by themselves: ``agent`` in ``POST /runs`` is one of the
    agents this server serves."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            start = schema.get("components", {}).get("schemas", {}).get("StartRun", {})
            agent = start.get("properties", {}).get("agent")
            if agent is not None:
                agent.pop("anyOf", None)
                agent.update({"anyOf": [{"type": "string", "enum": agent_names}, {"type": "null"}]})
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        message = "; ".join(f"{'.'.join(str(p) for p in i['loc'] if p != 'body') or 'body'}: {i['msg']}"
                            for i in issues)
        return JSONResponse({"detail": issues, "message": message}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        methods = allowed_methods(app, request.scope) if exc.status_code == 405 else []
        if methods:  # Starlette names only the first route's methods
            headers["Allow"] = ", ".join(methods)
        elif exc.status_code == 405 and request.url.path.startswith("/static/"):
            headers["Allow"] = "GET, HEAD"  # the UI's files
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=headers or None)


def allowed_methods(app: FastAPI, scope: Any) -> list[str]:
    """Every method some route on this path takes."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        route_methods = route.methods if isinstance(route, Route) else None  # a Mount has none
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return sorted(methods, key=lambda m: order.index(m) if m in order else len(order))
