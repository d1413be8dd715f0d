"""A real service on 127.0.0.1 (uvicorn in a thread), a real webhook receiver, and the test tokens.

Ports and polling (``free_port``, ``wait_for``) are in :mod:`tests.helpers.net`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from service import embedded
from service.settings import ServiceConfig

#: The API tokens the test services read from their environment.
TOKENS = {"ADMIN_T": "admin-token-0123456789", "OPER_T": "operator-token-0123456789", "VIEW_T": "viewer-token-0123456"}


@dataclass
class Receiver:
    """A webhook (or SMS provider) receiver on loopback that fails its first ``fail_first`` requests; each
    request is recorded with its idempotency key, authorization header and JSON body. ``answer``: a JSON body
    sent back with 200 (a provider's API) instead of an empty 201."""

    fail_first: int = 0
    always_fail: bool = False
    answer: dict[str, Any] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests.append({"key": self.headers.get("Idempotency-Key"),
                                       "auth": self.headers.get("Authorization"), "body": json.loads(body)})
                fail = outer.always_fail or len(outer.requests) <= outer.fail_first
                data = json.dumps(outer.answer).encode() if outer.answer is not None and not fail else b""
                self.send_response(500 if fail else 200 if data else 201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def service_up(base: str) -> bool:
    """Whether a service answers its health check at ``base`` (false while it starts or after it stopped)."""
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_service(cfg: ServiceConfig, environ: dict[str, str] | None = None,
                    config_path: Path | None = None) -> Iterator[str]:
    """Run the service with uvicorn on 127.0.0.1 in a thread (the test tokens by default); yields its base URL."""
    with embedded.running_service(cfg, dict(TOKENS) if environ is None else environ, config_path) as url:
        yield url


@dataclass
class Service:
    """A running test service with its configuration and webhook receivers."""

    url: str
    config: ServiceConfig
    receiver: Receiver
    dead_receiver: Receiver

    def client(self, token: str | None = "ADMIN_T") -> httpx.Client:
        """An HTTP client that signs in with the test token named ``token`` (none: anonymous)."""
        headers = {"Authorization": f"Bearer {TOKENS[token]}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)
