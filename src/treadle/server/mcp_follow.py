"""A run's events as the notifications of the MCP request following it (a part of
``treadle.server.mcp``): an agent's tool calls, their results and its approval requests
become progress notifications; what a tool yields (``progress``, ``log`` of
``treadle.server.mcp_app``) becomes the host's progress and log messages."""

from __future__ import annotations

import json
import logging

from mcp.server.context import ServerRequestContext
from pydantic import JsonValue

from .. import events as ev
from .hub import Frame, LiveRun
from .mcp_catalog import LEVEL_OF, Catalog

__all__ = ["Progress", "pump"]

logger = logging.getLogger("treadle.server")


class Progress:
    """The notifications of one request (no progress when the host sent no progress token).
    ``plain``: the request calls a plain tool, whose own progress is the request's."""

    def __init__(self, ctx: ServerRequestContext[object], catalog: Catalog, *, plain: bool) -> None:
        self.ctx = ctx
        self.catalog = catalog
        self.plain = plain
        self.count = 0.0

    async def say(self, message: str) -> None:
        """One step of an agent's run (a plain tool's own progress is its yields only)."""
        if not self.plain:
            await self.report(self.count + 1, None, message)

    async def report(self, done: float, total: float | None, message: str | None) -> None:
        self.count = max(self.count, done)
        try:
            await self.ctx.session.report_progress(done, total, message[:1000] if message else None)
        except Exception:  # a host gone away: the run goes on, its end is journaled
            logger.debug("cannot send a progress notification", exc_info=True)

    async def log(self, level: str, data: JsonValue, name: str | None) -> None:
        known = LEVEL_OF.get(level, "info")
        if not self.catalog.wants(self.ctx, known):
            return
        try:
            await self.ctx.session.send_log_message(known, data, name, related_request_id=self.ctx.request_id)
        except Exception:
            logger.debug("cannot send a log message", exc_info=True)


async def pump(live: LiveRun, key: tuple[int, int], progress: Progress) -> tuple[int, int]:
    """The run's events after ``key`` as notifications, until its own end (or its suspension);
    returns the last event's key."""
    async for f in live.follow(key):
        key = f.key
        await _notify(f, progress)
    return key


def _data(f: Frame) -> dict[str, JsonValue]:
    event = json.loads(f.data).get("event") or {}
    item = event.get("item") if isinstance(event, dict) else None
    data = item.get("data") if isinstance(item, dict) else None
    return data if isinstance(data, dict) else {}


async def _notify(f: Frame, progress: Progress) -> None:
    if f.name == ev.TOOL_CALL_ACTIVITY:
        data = _data(f)
        level = data.get("log")
        if isinstance(level, str):
            name = data.get("logger")
            await progress.log(level, data.get("data"), name if isinstance(name, str) else None)
            return
        done, total, message = data.get("progress"), data.get("total"), data.get("message")
        if isinstance(done, (int, float)) and (progress.plain or f.depth == 0):
            text = message if isinstance(message, str) else None
            if progress.plain:
                await progress.report(float(done), float(total) if isinstance(total, (int, float)) else None, text)
            else:
                await progress.say(text or f"{done}{f'/{total}' if total is not None else ''}")
        return
    if progress.plain:
        return
    text = _describe(f)
    if text:
        await progress.say(text)


def _args(kwargs: JsonValue) -> str:
    return json.dumps(kwargs or {}, default=str)[:500]


def _describe(f: Frame) -> str | None:
    """One progress message from an agent's event (None: not worth one)."""
    if f.name not in (ev.TOOL_CALL_START, ev.TOOL_CALL_COMPLETE, ev.TOOL_PERMISSION_REQUEST):
        return None
    data = _data(f)
    who = "an inner agent: " if f.depth else ""
    if f.name == ev.TOOL_PERMISSION_REQUEST:
        tool = data.get("tool")
        kwargs = tool.get("kwargs") if isinstance(tool, dict) else None
        return f"{who}{data.get('tool_name')}({_args(kwargs)}) needs approval"
    if f.name == ev.TOOL_CALL_START:
        return f"{who}calling {data.get('name')}({_args(data.get('kwargs'))})"
    fn = data.get("input")
    name = fn.get("name") if isinstance(fn, dict) else None
    out = data.get("error") or data.get("output")
    if isinstance(out, dict) and "observation" in out:  # a ToolOutput
        out = out["observation"]
    return f"{who}{name} {'failed' if data.get('error') else 'returned'}: {str(out)[:500]}"
