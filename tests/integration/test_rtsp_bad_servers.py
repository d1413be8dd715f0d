"""RTSP servers that never answer, ask for a password or speak garbage (fake servers on 127.0.0.1):
each gives a clear one-line error within the reader's timeouts, never a hung reader."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from pipelines.sources import SourceError, open_stream
from tests.helpers.net import wait_for


@dataclass
class FakeRtsp:
    """A fake camera's address and the connections it accepted."""

    url: str
    accepted: list[socket.socket] = field(default_factory=list)


@contextmanager
def fake_rtsp(reply: bytes | None) -> Iterator[FakeRtsp]:
    """A TCP server on 127.0.0.1 that accepts and then sends ``reply`` (or nothing, ever)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    stop = threading.Event()
    server = FakeRtsp(f"rtsp://127.0.0.1:{srv.getsockname()[1]}/cam")

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            server.accepted.append(conn)
            if reply is not None:
                try:
                    conn.recv(4096)
                    conn.sendall(reply)
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield server
    finally:
        stop.set()
        t.join()
        for c in server.accepted:
            c.close()
        srv.close()


UNAUTHORIZED = (b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n"
                b"WWW-Authenticate: Digest realm=\"cam\", nonce=\"abc\"\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize(("reply", "words"), [
    (None, "cannot connect"),                           # accepts, never answers
    (UNAUTHORIZED, "cannot connect"),                   # asks for a password we do not have
    (b"\x00\xffgarbage, not RTSP\r\n\r\n" * 20, "cannot connect"),  # speaks something else
])
def test_rtsp_servers_that_do_not_serve_video_give_a_clear_error_in_time(reply: bytes | None, words: str) -> None:
    outcome: list[BaseException | None] = []

    def read(url: str) -> None:
        try:
            next(open_stream(url, open_timeout_s=2.0, read_timeout_s=2.0))
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    with fake_rtsp(reply) as server:
        threading.Thread(target=read, args=(server.url,), daemon=True).start()
        # The reader gives up on its own (its timeouts are 2 s) while the camera is still connected and silent: it
        # never waits for the camera to hang up. A dead camera costs seconds, never a hung reader.
        wait_for(lambda: outcome, 15, "the reader to give up on a camera that sends no video")
        assert server.accepted, "the reader never connected to the camera"
    (err,) = outcome
    assert isinstance(err, SourceError), f"expected a SourceError, got {err!r}"
    assert words in str(err) and server.url in str(err)
    assert "\n" not in str(err)
