"""A real service on 127.0.0.1 (uvicorn in a thread) and a real webhook receiver."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.settings import ServiceConfig

DATA = Path(__file__).resolve().parents[1] / "data"
TOKENS = {"ADMIN_T": "admin-token-0123456789", "OPER_T": "operator-token-0123456789", "VIEW_T": "viewer-token-0123456"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (the service works in real time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Receiver:
    """A webhook receiver on loopback that fails its first ``fail_first`` requests."""

    fail_first: int = 0
    always_fail: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests.append({"key": self.headers.get("Idempotency-Key"), "body": json.loads(body)})
                fail = outer.always_fail or len(outer.requests) <= outer.fail_first
                self.send_response(500 if fail else 201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


@contextmanager
def running_service(cfg: ServiceConfig, environ: dict[str, str] | None = None,
                    config_path: Path | None = None) -> Iterator[str]:
    """Run the service with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    app = create_app(cfg, environ=dict(TOKENS) if environ is None else environ, config_path=config_path)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=cfg.server.port, log_level="warning",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 60, "server start")
        yield f"http://127.0.0.1:{cfg.server.port}"
    finally:
        server.should_exit = True
        thread.join(180)
        if thread.is_alive():
            raise RuntimeError("the service did not shut down within 180 s")


@dataclass
class Service:
    url: str
    config: ServiceConfig
    receiver: Receiver
    dead_receiver: Receiver

    def client(self, token: str | None = "ADMIN_T") -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[token]}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("service")
    ok, dead = Receiver(fail_first=2), Receiver(always_fail=True)
    ok.start()
    dead.start()
    port = free_port()
    cfg = ServiceConfig.model_validate({
        "server": {"port": port},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"},
                            {"name": "oper", "role": "operator", "env": "OPER_T"},
                            {"name": "viewer", "role": "viewer", "env": "VIEW_T"}]},
        "storage": {"db": str(tmp / "cases.db"), "evidence": str(tmp / "evidence")},
        "dispatch": {"public_url": f"http://127.0.0.1:{port}", "webhooks": [
            {"name": "city", "url": f"http://127.0.0.1:{ok.port}/cases", "backoff_s": 0.1},
            {"name": "broken", "url": f"http://127.0.0.1:{dead.port}/cases", "backoff_s": 0.05, "max_attempts": 2}]},
        "cameras": [{"id": "cam-b", "name": "B street", "source": str(DATA / "clips" / "reg_violations_b.mp4"),
                     "location": {"address": "No. 1 Test Rd", "gps": [30.1, 120.2]},
                     "zones": [{"id": "pavement", "polygon": [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]],
                                "violations": ["street_stall", "garbage"]}]}],
        "rules": {"dwell_s": {"street_stall": 2, "garbage": 2}, "gap_tolerance_s": 3},
    })
    with running_service(cfg) as url:
        yield Service(url, cfg, ok, dead)
    ok.stop()
    dead.stop()
