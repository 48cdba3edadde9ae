"""One run started by this server process, as its readers see it: the events it has emitted so
far (as SSE frames, and light records for the trace view), and ``follow``, the one way a reader
(an SSE stream, a protocol face, an MCP request) goes through them as they come."""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from .. import events as ev
from ..events import StreamEvent
from ..runner import Runner
from ..store.base import JournalEntry
from ..store.records import RAW, decode, event_json
from ..streaming import RunnerStreamingResult
from ..types import RunnerResult
from .frames import Frame, clipped, envelope_from_entry, frame, light
from .trace import TraceEvent

__all__ = ["LiveRun"]


@dataclass(eq=False)
class LiveRun:
    """One run started by this server process, and the events it has emitted so far
    (its children's too: they reach its stream marked with ``depth``)."""

    run_id: str
    agent_name: str
    session_id: str | None
    runner: Runner[Any]  # an agent of any context type
    input: str
    stream: RunnerStreamingResult
    created_at: float = field(default_factory=time.time)
    seqs: list[tuple[int, int]] = field(default_factory=list[tuple[int, int]])  # the frames' keys
    frames: list[Frame] = field(default_factory=list[Frame])
    events: list[TraceEvent] = field(default_factory=list[TraceEvent])  # light records, for the trace view
    finished: bool = False
    result: RunnerResult[Any] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _last: int = 0  # the last own seq
    _sub: int = 0  # child events since it

    def add(self, event: StreamEvent) -> None:
        name = event.name if isinstance(event, ev.RunItemStreamEvent) else RAW
        ts = time.time()
        rid = event.run_id
        depth = event.depth or 0
        body = event_json(event)
        if depth > 0 or (rid is not None and rid != self.run_id):
            self._sub += 1
            data = b'{"seq":%d,"ts":%r,"name":%s,"run_id":%s,"depth":%d,"parent_run_id":%s,"event":%s}' % (
                event.seq, ts, json.dumps(name).encode(), json.dumps(rid).encode(), max(depth, 1),
                json.dumps(event.parent_run_id).encode(), clipped(body))
            self._append(Frame((self._last, self._sub), f"{self._last}.{self._sub}", name, data, rid, event.seq,
                               max(depth, 1)))
        else:
            self._last, self._sub = max(self._last, event.seq), 0
            self._append(Frame((event.seq, 0), str(event.seq), name, frame(event.seq, ts, name, body, None)))
            self.events.append(TraceEvent(event.seq, ts, light(decode(body))))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _append(self, f: Frame) -> None:
        self.seqs.append(f.key)
        self.frames.append(f)

    def add_entry(self, entry: JournalEntry) -> None:
        """An event journaled before this process took the run over (a resumed run)."""
        env = envelope_from_entry(entry)
        self._last, self._sub = max(self._last, entry.seq), 0
        self._append(Frame((entry.seq, 0), str(entry.seq), entry.name,
                           frame(entry.seq, entry.created_at, entry.name, None, env["event"])))
        self.events.append(TraceEvent(entry.seq, entry.created_at, light(entry.record)))

    def frames_after(self, key: tuple[int, int] | int) -> list[Frame]:
        if isinstance(key, int):
            key = (key, 0)
        return self.frames[bisect.bisect_right(self.seqs, key):]

    def child_frames(self, run_id: str, after: int) -> list[Frame]:
        """The events of child run ``run_id`` (at any depth) after its seq ``after``."""
        return [f for f in self.frames if f.run_id == run_id and f.child_seq > after]

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next event (take it before reading the frames, then ``wait`` on it)."""
        return self._changed

    async def wait(self, changed: asyncio.Event, timeout: float) -> None:
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def settled(self) -> None:
        """Until the run's result is set (just after its last event)."""
        while not self.finished:
            changed = self.changed
            if not self.finished:
                await self.wait(changed, 1)

    @overload
    def follow(self, after: tuple[int, int] | int = (0, 0), *, until: Callable[[], bool] | None = None,
               idle: float = 15, ticks: Literal[False] = False) -> AsyncIterator[Frame]: ...

    @overload
    def follow(self, after: tuple[int, int] | int = (0, 0), *, until: Callable[[], bool] | None = None,
               idle: float = 15, ticks: Literal[True]) -> AsyncIterator[Frame | None]: ...

    async def follow(self, after: tuple[int, int] | int = (0, 0), *, until: Callable[[], bool] | None = None,
                     idle: float = 15, ticks: bool = False) -> AsyncIterator[Frame | None]:
        """The frames after ``after`` (a seq, or a frame's key) as they come, the children's
        too (marked with their ``depth``), until the run's own end: its ``agent.execution_complete``
        (the last frame given; the iterator ends once the run's result is set, ``settled``), or,
        for a run that finished without one, its last frame.

        ``until``: a condition read whenever the reader has caught up (e.g. the run waits for a
        decision); when it still holds after the loop's ready callbacks ran (the event that made
        it true is read first), the frames end there. Between frames the reader waits up to
        ``idle`` seconds at a time; ``ticks``: it then gets ``None`` (for a keep-alive)."""
        key = (after, 0) if isinstance(after, int) else after
        while True:
            changed = self.changed  # taken before reading: an event added while a frame is handled sets it
            for f in self.frames_after(key):
                key = f.key
                yield f
                if f.name == ev.EXECUTION_COMPLETE and f.depth == 0:
                    await self.settled()
                    return
            if self.finished and not self.frames_after(key):
                return
            if until is not None and until():
                await asyncio.sleep(0)
                if not self.frames_after(key) and until():
                    return
                continue
            await self.wait(changed, idle)
            if ticks and not changed.is_set():
                yield None

    @property
    def status(self) -> str:
        if self.result is not None:
            return self.result.status
        if self.stream.pending_approvals:
            return "waiting_for_approval"
        return "running"
