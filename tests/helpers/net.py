"""Loopback ports and polling: what every test with a real server or a real-time worker needs."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from service.loops import wait_until


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy and return that (servers and workers run in real time).

    Fails the test (``AssertionError``) when ``check`` stayed falsy for ``timeout`` seconds.
    """
    try:
        return wait_until(check, timeout, what)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from exc
