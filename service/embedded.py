"""The service embedded in another Python process: uvicorn in a thread (benchmarks, tests, notebooks).

``streetwatch serve`` runs uvicorn in the main thread; :func:`running_service` runs the same app in a
background thread of the calling process and stops it on leaving the ``with`` block.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.app import create_app
from service.loops import wait_until
from service.server import Server
from service.settings import ServiceConfig


@contextmanager
def running_service(cfg: ServiceConfig, environ: dict[str, str], config_path: Path | None = None,
                    stop_timeout_s: float = 180.0) -> Iterator[str]:
    """Run the service for ``cfg`` on ``cfg.server.host:port`` in a thread; yields its base URL.

    Args:
        cfg: The service configuration.
        environ: Where the API tokens named in ``cfg.auth`` are read from.
        config_path: The YAML that camera changes are written back to (none: they are not written).
        stop_timeout_s: How long the service may take to stop.

    Raises:
        RuntimeError: The service did not stop within ``stop_timeout_s``.
    """
    app = create_app(cfg, environ=environ, config_path=config_path)
    server = Server(app, cfg.server.host, cfg.server.port, log_level="warning")
    thread = threading.Thread(target=server.run, name="embedded-service", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 60, "the service to start")
        if not server.started:
            raise RuntimeError(f"the service did not start on {cfg.server.host}:{cfg.server.port}")
        yield f"http://{cfg.server.host}:{cfg.server.port}"
    finally:
        server.should_exit = True
        thread.join(stop_timeout_s)
        if thread.is_alive():
            raise RuntimeError(f"the service did not shut down within {stop_timeout_s:g} s")
