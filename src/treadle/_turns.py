"""A run's memory turn: the history read at the start, the whole turn written at the end."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import TYPE_CHECKING

from .planner import render_observation
from .types import AssistantResponse, UserQuery

if TYPE_CHECKING:
    from ._run import RunState

__all__ = ["end_memory", "start_memory"]

logger = logging.getLogger("treadle")


async def _maybe_await(value: object) -> object:
    if inspect.isawaitable(value):
        return await value
    return value


_memory_lock = threading.Lock()


async def start_memory(run: RunState) -> None:
    """Read the history. The turn itself is written at the end, whole (see _end_memory),
    so concurrent runs sharing one memory never interleave their half turns."""
    mem = run.memory
    if mem is None:
        return
    history = await _maybe_await(mem())
    run.prompt_kwargs["chat_history_str"] = history or ""  # the seed's: present, "" when empty


async def end_memory(run: RunState) -> None:
    mem, result = run.memory, run.result
    if mem is None or result is None or result.status == "waiting_for_approval":  # the turn goes on later
        return
    pk = run.prompt_kwargs
    query = UserQuery(query_str=pk.get("input_str"), metadata={"context_str": pk.get("context_str")})
    if result.status == "success":
        text = result.answer if isinstance(result.answer, str) else render_observation(result.answer, 100_000)
    elif result.status == "cancelled":
        text = "(the run was cancelled before an answer)"
    else:
        text = f"(the run ended without an answer: {result.error or result.answer})"
    response = AssistantResponse(response_str=text, metadata={"status": result.status, "run_id": run.run_id})
    with _memory_lock:  # sync stores: reset, query and answer happen with no other run in between
        steps = [mem.reset_pending_query(), mem.add_user_query(query), mem.add_assistant_response(response)]
    cancelled = False
    for pending in steps:  # async stores: awaited in order, to the end even if the caller's task is cancelled
        if not inspect.isawaitable(pending):
            continue
        write = asyncio.ensure_future(pending)
        while not write.done():
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                cancelled = cancelled or not write.cancelled()  # ours, not the write's own
        if cancelled and not write.cancelled() and write.exception() is not None:
            logger.error("memory failed at the end of run %s", run.run_id, exc_info=write.exception())
            continue
        write.result()
    if cancelled:  # the turn is written whole: now give way to the cancel
        raise asyncio.CancelledError
