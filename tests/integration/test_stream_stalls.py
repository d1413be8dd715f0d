"""A camera that stops sending in the middle of a stream, its connection still open (a frozen encoder, a
stalled NVR re-stream): the reader fails with a clear error within its read timeout instead of hanging.

The read timeout is FFmpeg's own socket timeout (pipelines/sources.py `_connect`), checked here on a real
RTSP server (GStreamer, frozen with SIGSTOP) and on an HTTP MJPEG server that stops writing."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from pipelines.sources import SourceError, open_stream
from tests.helpers.data import DATA
from tests.helpers.mjpeg import mjpeg_camera
from tests.helpers.net import free_port, wait_for
from tests.helpers.rtsp import RtspServer, gst_or_skip

READ_TIMEOUT_S = 1.5


def _read_until_error(url: str, frames: list[float], outcome: list[BaseException | None]) -> None:
    """Read ``url`` to its end or first error, noting each frame's arrival (``time.monotonic``)."""
    try:
        for _ in open_stream(url, open_timeout_s=10.0, read_timeout_s=READ_TIMEOUT_S):
            frames.append(time.monotonic())
        outcome.append(None)
    except BaseException as exc:  # handed to the test thread
        outcome.append(exc)


def _assert_stall_fails_in_time(url: str, freeze: threading.Event | None, server: RtspServer | None) -> None:
    frames: list[float] = []
    outcome: list[BaseException | None] = []
    threading.Thread(target=_read_until_error, args=(url, frames, outcome), daemon=True).start()
    wait_for(lambda: len(frames) >= 5, 30, "frames before the stall")
    if server is not None and server.proc is not None:
        server.proc.send_signal(signal.SIGSTOP)  # the server stays connected and sends nothing more
    if freeze is not None:
        freeze.set()
    try:
        wait_for(lambda: outcome, 20, "the reader to give up on a stream that stopped sending")
    finally:
        if server is not None and server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
    (err,) = outcome
    assert isinstance(err, SourceError), f"expected a SourceError, got {err!r}"
    assert "read failed" in str(err) and url in str(err) and "\n" not in str(err)
    # It waited for the timeout (frames already buffered may still come after the freeze), not for a hang-up.
    assert len(frames) >= 5


def test_an_rtsp_stream_that_freezes_fails_within_the_read_timeout() -> None:
    gst_or_skip()
    server = RtspServer(DATA / "clips" / "reg_violations_b.mp4", free_port())
    server.start()
    try:
        _assert_stall_fails_in_time(server.url, None, server)
    finally:
        server.kill()


@pytest.fixture()
def freezing_mjpeg() -> Iterator[tuple[str, threading.Event]]:
    """An HTTP MJPEG camera that sends frames until the event is set, then keeps the connection open, silent."""
    jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 128, np.uint8))[1].tobytes()
    freeze, done = threading.Event(), threading.Event()

    def frames() -> Iterator[bytes]:
        while not freeze.is_set():
            yield jpeg
            freeze.wait(0.05)  # a camera's frame rate, not a synchronisation
        done.wait(30)  # frozen: connected, sending nothing

    try:
        with mjpeg_camera(frames) as url:
            yield url, freeze
    finally:
        done.set()


def test_an_http_mjpeg_stream_that_freezes_fails_within_the_read_timeout(
        freezing_mjpeg: tuple[str, threading.Event]) -> None:
    url, freeze = freezing_mjpeg
    _assert_stall_fails_in_time(url, freeze, None)
