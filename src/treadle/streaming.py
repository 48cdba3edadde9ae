"""RunnerStreamingResult: the consumer side of one run's event stream."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from . import events as ev
from .events import FunctionRequest, QueueCompleteSentinel, RawResponsesStreamEvent, RunItemStreamEvent, StreamEvent
from .permissions import ApprovalResponse, ListsPending
from .types import RunnerResult, StepOutput

if TYPE_CHECKING:
    from ._run import RunState

__all__ = ["RunnerStreamingResult"]


class RunnerStreamingResult:
    """Handle of a streamed run.

    ``stream_events()`` yields every event in order and ends right after the one
    ``agent.execution_complete`` event, which every run emits exactly once, whatever
    its ending; that event is delivered once the run is over (its ending journaled, its
    memory turn written). ``wait_for_completion()`` returns the RunnerResult. ``cancel()``
    stops this run (and only this run).
    """

    def __init__(self, run: RunState) -> None:
        self._run = run
        self._events: deque[StreamEvent | QueueCompleteSentinel] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._run_task: asyncio.Task[RunnerResult[Any]] | None = None
        self._exception: BaseException | str | None = None  # a str only with the seed-compatibility switch
        self._seed_compat = False
        self._is_complete = False
        self._closed = False
        self.result: RunnerResult[Any] | None = None
        self.answer: object = None
        self.step_history: list[StepOutput] = []

    @classmethod
    def launch(cls, run: RunState, loop: asyncio.AbstractEventLoop,
               body: Callable[[RunState], Coroutine[object, object, RunnerResult[Any]]], *,
               seed_compat: bool = False) -> RunnerStreamingResult:
        """Start ``body(run)`` (the driver, or a resume) as a task on ``loop``, its events going
        to the stream result returned. Used by ``Runner.astream`` and ``astream_resume``."""
        result = cls(run)
        result._seed_compat = seed_compat
        run.sinks.append(result._on_event)
        task = loop.create_task(body(run), name=f"treadle-run-{run.run_id}")
        result._run_task = task
        task.add_done_callback(result._task_done)
        return result

    # ------------------------------------------------------------ producer side
    def _on_event(self, event: StreamEvent | QueueCompleteSentinel) -> None:
        self._events.append(event)
        if type(event) is RunItemStreamEvent and event.name == ev.EXECUTION_COMPLETE and not event.depth:
            res: RunnerResult[Any] = event.item.data
            self.result = res
            self.answer = res.answer
            self.step_history = res.step_history
            self._is_complete = True
            self._closed = True
            if self._seed_compat and res.status == "error" and self._exception is None:
                self._exception = res.error  # the seed's: the error text, raised by stream_events()
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
            self._run.cancellation.wake_consumer()  # the driver lets the consumer run at its next yield point

    def _task_done(self, task: asyncio.Task[RunnerResult[Any]]) -> None:
        """Safety net: the stream always closes, even if the task died before starting
        (cancelled) or crashed (an exception not caught by the driver)."""
        run = self._run
        if not self._closed:
            exc = None if task.cancelled() else task.exception()
            if exc is not None:
                self._exception = exc
            if run.result is None:
                from .loop import CANCEL_MESSAGE, finish

                if exc is not None:
                    finish(run, "error", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
                else:
                    run.emit_item(ev.CANCELLED, ev.FinalOutputItem(data={"status": "cancelled",
                                                                         "message": CANCEL_MESSAGE,
                                                                         "step_count": run.step}))
                    finish(run, "cancelled", error=CANCEL_MESSAGE, error_type="RunCancelled")
        run.mark_done()
        self._closed = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def set_exception(self, exc: object) -> None:
        """Seed compatibility: record an error (a non-exception is wrapped in RuntimeError)."""
        self._exception = exc if isinstance(exc, BaseException) else RuntimeError(f"Non-exception error: {exc}")

    def put_nowait(self, item: object) -> None:
        """Seed compatibility: push an event into the stream."""
        if not isinstance(item, (RawResponsesStreamEvent, RunItemStreamEvent, QueueCompleteSentinel)):
            raise ValueError(f"not a stream event: {item!r}")
        self._on_event(item)

    # ------------------------------------------------------------ consumer side
    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def is_complete(self) -> bool:
        return self._is_complete

    @property
    def exception(self) -> BaseException | None:
        return self._exception if isinstance(self._exception, BaseException) else None

    @property
    def error(self) -> str | None:
        return self.result.error if self.result is not None else None

    async def stream_events(self) -> AsyncIterator[StreamEvent]:
        """Every event of the run, in order; ends after ``agent.execution_complete``.

        Events already queued are always delivered before an error is raised.
        """
        if self._waiter is not None:
            raise RuntimeError("this stream already has a consumer; a stream is read by one consumer")
        events = self._events
        while True:
            while events:
                item = events.popleft()
                if isinstance(item, QueueCompleteSentinel):
                    return
                end = type(item) is RunItemStreamEvent and item.name == ev.EXECUTION_COMPLETE and not item.depth
                if end:
                    task = self._run_task  # the run's end is journaled (and its memory written) first
                    if task is not None and not task.done() and task is not asyncio.current_task():
                        await asyncio.wait({task})
                yield item
                if end:
                    if isinstance(self._exception, str):  # seed compatibility: after every event
                        raise RuntimeError(self._exception)
                    if self._run_task is not None and self._run_task.done() and self._exception is not None:
                        raise self._exception
                    return
            if self._closed:
                if isinstance(self._exception, str):
                    raise RuntimeError(self._exception)
                if self._exception is not None:
                    raise self._exception
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self.stream_events()

    async def stream_to_json(self, file_name: str = "agent_events_stream.json") -> AsyncIterator[StreamEvent]:
        """The seed's: ``stream_events()``, also written to ``file_name`` as a JSON array
        (``event_number``, ``timestamp``, ``event_type``, ``event_data``), rewritten per event."""
        import json
        from datetime import datetime

        from .types import to_jsonable

        written: list[dict[str, object]] = []
        async for event in self.stream_events():
            written.append({"event_number": len(written) + 1, "timestamp": datetime.now().isoformat(),
                            "event_type": (event.name if isinstance(event, RunItemStreamEvent) else None)
                            or type(event).__name__,
                            "event_data": to_jsonable(event)})
            with open(file_name, "w", encoding="utf-8") as f:
                json.dump(written, f, indent=2, ensure_ascii=False)
            yield event

    async def wait_for_completion(self) -> RunnerResult[Any]:
        """Wait for the run to end and return its RunnerResult."""
        if self._run_task is not None and not self._run_task.done():
            try:
                await asyncio.shield(self._run_task)
            except asyncio.CancelledError:
                if not self._run_task.done():
                    raise
        if isinstance(self._exception, BaseException):
            raise self._exception
        assert self.result is not None
        return self.result

    # ------------------------------------------------------------ approvals
    @property
    def pending_approvals(self) -> list[FunctionRequest]:
        """FunctionRequests of this run waiting for a decision."""
        pm = self._run.config.permission_manager
        return pm.pending(self._run.run_id) if isinstance(pm, ListsPending) else []  # an optional hook

    def _decide(self, call_id: str, decision: ApprovalResponse) -> bool:
        pm = self._run.config.permission_manager
        if not isinstance(pm, ListsPending):  # an optional hook
            raise RuntimeError("this run's permission manager takes no decisions from the stream")
        return pm.decide(self._run.run_id, call_id, decision)

    def approve(self, call_id: str, *, always: bool = False) -> bool:
        """Approve one pending tool call (``always``: this tool for the rest of the session)."""
        return self._decide(call_id, ApprovalResponse.approve(always=always))

    def deny(self, call_id: str, reason: str | None = None) -> bool:
        """Deny one pending tool call; the model sees the reason."""
        return self._decide(call_id, ApprovalResponse.deny(reason))

    def edit(self, call_id: str, kwargs: dict[str, object]) -> bool:
        """Approve with new arguments (validated against the tool's schema first)."""
        return self._decide(call_id, ApprovalResponse.approve(kwargs=kwargs))

    def cancel(self) -> bool:
        """Cancel this run; emits ``runner.cancel_received`` then ``runner.cancelled``."""
        return self._run.request_cancel()
