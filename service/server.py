"""The HTTP server of the service: uvicorn's, ending open event streams as soon as shutdown begins.

uvicorn waits (up to ``timeout_graceful_shutdown``) for every running request before it runs the app's lifespan
shutdown, and an event stream (``/api/events``, the dashboard's) runs until the service stops: left to itself it
held every stop for those seconds, then was cancelled with an error and a traceback in the log. This server tells
the streams first, so they end cleanly within a second and the stop goes on at once.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

#: How long requests other than event streams may take to finish at shutdown, in seconds.
GRACEFUL_SHUTDOWN_S = 5


def end_event_streams(app: FastAPI) -> None:
    """Tell the app's open event streams to end (a no-op before its runtime has started)."""
    runtime = getattr(app.state, "runtime", None)
    if runtime is not None:
        runtime.stop_event.set()


class Server(uvicorn.Server):
    """uvicorn's server for the streetwatch app: event streams end when shutdown begins.

    Args:
        app: The app (from :func:`service.app.create_app`).
        host: Address to listen on.
        port: Port to listen on.
        log_level: uvicorn's log level.
    """

    def __init__(self, app: FastAPI, host: str, port: int, log_level: str = "info") -> None:
        super().__init__(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """End the event streams, then uvicorn's shutdown (open requests, then the app's lifespan)."""
        end_event_streams(self.app)
        await super().shutdown(sockets)
