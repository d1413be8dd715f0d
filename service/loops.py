"""Background loops: a daemon thread running until stopped (the detector, the stall watch, the notifiers), and
polling a condition until it holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """A daemon thread running ``_run`` until stopped; ``wakeup`` cuts its waits short."""

    def __init__(self, name: str) -> None:
        self.wakeup = threading.Event()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Start the thread."""
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current unit of work."""
        self.stop_event.set()
        self.wakeup.set()
        self.thread.join(timeout)


def wait_until(check: Callable[[], T], timeout: float = 60.0, what: str = "condition", every: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy and return it.

    Raises:
        TimeoutError: ``check`` stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
