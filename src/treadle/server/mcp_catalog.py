"""The resources, prompts, completions and log level of an ``MCPApp`` as MCP requests (a part
of ``treadle.server.mcp``): ``resources/list|read|templates/list|subscribe|unsubscribe``,
``prompts/list|get``, ``completion/complete`` and ``logging/setLevel``."""

from __future__ import annotations

import base64
import inspect
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from .mcp_app import Completer, LogLevel, MCPApp, Prompt, PromptBody, Resource, ResourceBody

__all__ = ["LEVELS", "LEVEL_OF", "Catalog", "blocks"]

LEVELS: tuple[LogLevel, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
LEVEL_OF: dict[str, LogLevel] = {level: level for level in LEVELS}
RANK: dict[str, int] = {level: i for i, level in enumerate(LEVELS)}
RESOURCE_NOT_FOUND = -32002  # the spec's code for a resource not found
MAX_COMPLETIONS = 100  # the protocol's cap on values per answer


def _fail(message: str) -> MCPError:
    return MCPError(types.INVALID_PARAMS, message)


def _connection(ctx: ServerRequestContext[object]) -> int:
    """One number per host connection (a handshake's client parameters live as long as it)."""
    return id(ctx.session.client_params) if ctx.session.client_params is not None else 0


class Catalog:
    """What an app offers besides its tools, answered from the app itself."""

    def __init__(self, app: MCPApp) -> None:
        self.app = app
        self.levels: OrderedDict[int, LogLevel] = OrderedDict()  # connection -> the host's minimum level
        self.subscribed: OrderedDict[int, set[str]] = OrderedDict()

    # ------------------------------------------------------------------ logging
    async def set_level(self, ctx: ServerRequestContext[object],
                        params: types.SetLevelRequestParams) -> types.EmptyResult:
        key = _connection(ctx)
        self.levels[key] = params.level
        self.levels.move_to_end(key)
        while len(self.levels) > 10_000:
            self.levels.popitem(last=False)
        return types.EmptyResult()

    def wants(self, ctx: ServerRequestContext[object], level: str) -> bool:
        """Whether the host asked for log messages at ``level`` (all, until it sets a level)."""
        least = self.levels.get(_connection(ctx), "debug")
        return RANK.get(level, -1) >= RANK[least]

    # ------------------------------------------------------------------ resources
    async def list_resources(self, ctx: ServerRequestContext[object],
                             params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[
            types.Resource(uri=r.uri, name=r.name, description=r.description, mime_type=r.mime_type)
            for r in self.app.resources if not r.params])

    async def list_templates(self, ctx: ServerRequestContext[object],
                             params: types.PaginatedRequestParams | None) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[
            types.ResourceTemplate(uri_template=r.uri, name=r.name, description=r.description, mime_type=r.mime_type)
            for r in self.app.resources if r.params])

    async def read_resource(self, ctx: ServerRequestContext[object],
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        for r in self.app.resources:
            parts = r.match(uri)
            if parts is not None:
                body = await _settle_body(r, parts)
                if isinstance(body, bytes):
                    blob = base64.b64encode(body).decode()
                    return types.ReadResourceResult(contents=[
                        types.BlobResourceContents(uri=uri, mime_type=r.mime_type, blob=blob)])
                return types.ReadResourceResult(contents=[
                    types.TextResourceContents(uri=uri, mime_type=r.mime_type, text=body)])
        raise MCPError(RESOURCE_NOT_FOUND, f"no resource {uri!r}")

    async def subscribe(self, ctx: ServerRequestContext[object],
                        params: types.SubscribeRequestParams) -> types.EmptyResult:
        key = _connection(ctx)
        self.subscribed.setdefault(key, set()).add(str(params.uri))
        self.subscribed.move_to_end(key)
        while len(self.subscribed) > 10_000:
            self.subscribed.popitem(last=False)
        return types.EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[object],
                          params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        self.subscribed.get(_connection(ctx), set()).discard(str(params.uri))
        return types.EmptyResult()

    # ------------------------------------------------------------------ prompts
    async def list_prompts(self, ctx: ServerRequestContext[object],
                           params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[
            types.Prompt(name=p.name, description=p.description, arguments=[
                types.PromptArgument(name=a.name, description=a.description, required=a.required)
                for a in p.arguments]) for p in self.app.prompts.values()])

    async def get_prompt(self, ctx: ServerRequestContext[object],
                         params: types.GetPromptRequestParams) -> types.GetPromptResult:
        prompt = self.app.prompts.get(params.name)
        if prompt is None:
            raise _fail(f"no prompt {params.name!r}: the prompts are {', '.join(self.app.prompts) or 'none'}")
        given = dict(params.arguments or {})
        known = {a.name for a in prompt.arguments}
        unknown = set(given) - known
        if unknown:
            raise _fail(f"prompt {prompt.name!r} takes no argument {', '.join(sorted(unknown))}")
        missing = [a.name for a in prompt.arguments if a.required and a.name not in given]
        if missing:
            raise _fail(f"prompt {prompt.name!r} needs the arguments {', '.join(missing)}")
        body = await _settle_prompt(prompt, given)
        return types.GetPromptResult(description=prompt.description, messages=_messages(body))

    # ------------------------------------------------------------------ completions
    async def complete(self, ctx: ServerRequestContext[object],
                       params: types.CompleteRequestParams) -> types.CompleteResult:
        ref = params.ref
        completers: Mapping[str, Completer] = {}
        if isinstance(ref, types.PromptReference):
            prompt = self.app.prompts.get(ref.name)
            if prompt is None:
                raise _fail(f"no prompt {ref.name!r}")
            completers = prompt.complete
        else:
            resource = next((r for r in self.app.resources if r.uri == ref.uri), None)
            if resource is None:
                raise _fail(f"no resource template {ref.uri!r}")
            completers = resource.complete
        values = _offer(completers.get(params.argument.name), params.argument.value)
        return types.CompleteResult(completion=types.Completion(
            values=values[:MAX_COMPLETIONS], total=len(values), has_more=len(values) > MAX_COMPLETIONS))


def _offer(completer: Completer | None, typed: str) -> list[str]:
    if completer is None:
        return []
    if callable(completer):
        return [str(v) for v in completer(typed)]
    return [v for v in completer if v.startswith(typed)]


async def _settle_body(r: Resource, parts: dict[str, str]) -> ResourceBody:
    body = r.read(**parts)
    if inspect.isawaitable(body):
        body = await body
    if not isinstance(body, (str, bytes)):
        raise MCPError(types.INTERNAL_ERROR, f"the reader of {r.uri!r} returned a {type(body).__name__}, "
                                             "not text or bytes")
    return body


async def _settle_prompt(p: Prompt, given: dict[str, str]) -> PromptBody:
    body = p.render(**given)
    if inspect.isawaitable(body):
        body = await body
    return body


def _messages(body: PromptBody) -> list[types.PromptMessage]:
    if isinstance(body, str):
        return [types.PromptMessage(role="user", content=types.TextContent(text=body))]
    out: list[types.PromptMessage] = []
    for part in body:
        if isinstance(part, types.PromptMessage):
            out.append(part)
        elif isinstance(part, str):
            out.append(types.PromptMessage(role="user", content=types.TextContent(text=part)))
        else:
            out.append(types.PromptMessage(role="user", content=part))
    return out


def blocks(raw: Sequence[object]) -> list[types.ContentBlock]:
    """Content blocks from their JSON (a served tool's ``content(...)`` result, as journaled)."""
    from pydantic import TypeAdapter

    adapter: TypeAdapter[types.ContentBlock] = TypeAdapter(types.ContentBlock)
    return [adapter.validate_python(b) for b in raw]
