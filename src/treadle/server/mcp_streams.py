"""The event store of ``/mcp`` (a part of ``treadle.server.mcp``): each SSE stream of the
streamable-HTTP transport starts with a priming event and numbers its events, so a host whose
connection dropped during a long run reconnects with ``Last-Event-ID`` and gets the progress
and the result it missed. Kept in memory, bounded: the run itself is in the journal."""

from __future__ import annotations

import itertools
from collections import OrderedDict

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage

__all__ = ["MemoryEventStore"]


class MemoryEventStore(EventStore):
    """The last ``max_events`` events of every stream (older ones cannot be replayed)."""

    def __init__(self, max_events: int = 10_000) -> None:
        self.max_events = max_events
        self._events: OrderedDict[int, tuple[StreamId, JSONRPCMessage | None]] = OrderedDict()
        self._ids = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = next(self._ids)
        self._events[event_id] = (stream_id, message)
        while len(self._events) > self.max_events:
            self._events.popitem(last=False)
        return str(event_id)

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        try:
            after = int(last_event_id)
        except ValueError:
            return None
        known = self._events.get(after)
        if known is None:  # never issued, or dropped past the bound
            return None
        stream_id = known[0]
        for event_id, (sid, message) in list(self._events.items()):
            if event_id > after and sid == stream_id and message is not None:
                await send_callback(EventMessage(message, str(event_id)))
        return stream_id
