"""A small publish/subscribe bus from worker threads to Server-Sent Events clients.

Publishers are plain threads; each subscriber is an asyncio queue on the
server's event loop. A slow client's queue is bounded: when full, its oldest
event is dropped (it is told how many it missed), and no publisher ever blocks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Subscription:
    """One SSE client's queue."""

    queue: asyncio.Queue[dict[str, Any]]
    loop: asyncio.AbstractEventLoop
    dropped: int = 0
    id: int = field(default=0)


class EventBus:
    """Thread-safe fan-out of events to subscribers."""

    def __init__(self, maxsize: int = 256) -> None:
        self._subs: dict[int, Subscription] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self.maxsize = maxsize

    def subscribe(self) -> Subscription:
        """Register a subscriber on the running event loop."""
        sub = Subscription(asyncio.Queue(self.maxsize), asyncio.get_running_loop(), id=next(self._ids))
        with self._lock:
            self._subs[sub.id] = sub
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscriber."""
        with self._lock:
            self._subs.pop(sub.id, None)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send an event to every subscriber; callable from any thread."""
        event = {"id": next(self._seq), "event": kind, "data": data}
        with self._lock:
            subs = list(self._subs.values())
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(self._put, sub, event)
            except RuntimeError:  # the loop is closed: the client is gone
                self.unsubscribe(sub)

    @staticmethod
    def _put(sub: Subscription, event: dict[str, Any]) -> None:
        if sub.queue.full():
            sub.queue.get_nowait()
            sub.dropped += 1
        sub.queue.put_nowait(event)

    @property
    def subscribers(self) -> int:
        """Number of connected clients."""
        with self._lock:
            return len(self._subs)


def sse_format(event: dict[str, Any]) -> str:
    """Encode an event in the Server-Sent Events wire format."""
    return f"id: {event['id']}\nevent: {event['event']}\ndata: {json.dumps(event['data'], ensure_ascii=False)}\n\n"
