"""A daemon thread running a loop until stopped: the detector, the watchdog and the notifiers use it."""

from __future__ import annotations

import threading


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
