"""Stopping the service while event streams are open (the dashboard's ``/api/events``): the streams end cleanly
and the stop is not held by them (before, uvicorn waited for them, then cancelled them with an error)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import yaml

from service.settings import ServiceConfig
from tests.helpers.net import free_port, wait_for
from tests.helpers.service import TOKENS, running_service, service_up

HEADERS = {"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}
AUTH = {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]}


class Listener:
    """An SSE client in a thread: records the stream's lines and whether the stream ended or broke."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.lines: list[str] = []
        self.ended = threading.Event()
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self.listen, daemon=True)
        self.thread.start()

    def listen(self) -> None:
        try:
            with httpx.Client(base_url=self.base, headers=HEADERS, timeout=None) as c, \
                    c.stream("GET", "/api/events") as s:
                for line in s.iter_lines():
                    self.lines.append(line)
        except httpx.HTTPError as exc:
            self.error = exc
        self.ended.set()


def test_open_event_streams_end_cleanly_when_the_embedded_service_stops(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = ServiceConfig.model_validate({"server": {"port": free_port()}, "auth": AUTH,
                                        "storage": {"db": str(tmp_path / "cases.db"),
                                                    "evidence": str(tmp_path / "evidence")}})
    with caplog.at_level(logging.WARNING), running_service(cfg) as url:
        listeners = [Listener(url) for _ in range(2)]
        wait_for(lambda: all(": connected" in x.lines for x in listeners), 30, "both streams connected")
        assert not any(x.ended.is_set() for x in listeners)
    for x in listeners:
        assert x.ended.wait(10), "an event stream outlived the service"
        assert x.error is None, f"the stream broke instead of ending: {x.error!r}"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


def test_serve_stops_on_sigterm_with_a_stream_open_without_an_error(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "service.yaml"
    config.write_text(yaml.safe_dump({"auth": AUTH, "storage": {"db": str(tmp_path / "cases.db"),
                                                                "evidence": str(tmp_path / "evidence")}}))
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--config", str(config), "--port",
                                 str(port)], env={**os.environ, **TOKENS}, stdout=out, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: service_up(base), 60, "service up")
            listener = Listener(base)
            wait_for(lambda: ": connected" in listener.lines, 30, "stream connected")
            proc.send_signal(signal.SIGTERM)
            # uvicorn re-raises the signal it caught once its shutdown is done: the process ends as stopped by
            # SIGTERM, which systemd and docker count as a clean stop.
            assert proc.wait(60) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert listener.ended.wait(10) and listener.error is None, listener.error
    text = log.read_text()
    assert "Traceback" not in text and "graceful shutdown exceeded" not in text, text[-3000:]
    assert "Shutting down" in text  # uvicorn's own shutdown ran (its log lines reach the file)

