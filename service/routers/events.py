"""Server-Sent Events of the running service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from service.bus import Subscription, sse_format
from service.deps import RuntimeDep, Viewer
from service.runtime import Runtime

router = APIRouter(tags=["events"])

KEEP_ALIVE_S = 15  # a comment line after this many idle seconds keeps proxies from closing the stream


async def stream(request: Request, rt: Runtime, sub: Subscription) -> AsyncIterator[str]:
    """The events of one subscription as SSE text, until the client leaves or the service stops."""
    try:
        yield ": connected\n\n"
        idle = 0
        while not rt.stop_event.is_set():
            try:
                ev = await asyncio.wait_for(sub.queue.get(), timeout=1)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                idle += 1
                if idle % KEEP_ALIVE_S == 0:
                    yield ": keep-alive\n\n"
                continue
            yield sse_format(ev)
    finally:
        rt.bus.unsubscribe(sub)


@router.get("/api/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "An endless text/event-stream"}})
async def events(request: Request, rt: RuntimeDep, _: Viewer) -> StreamingResponse:
    """Server-Sent Events: ``violation`` (start/update/end), ``camera`` (health), ``case``, ``dispatch``."""
    sub = rt.bus.subscribe()
    return StreamingResponse(stream(request, rt, sub), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
