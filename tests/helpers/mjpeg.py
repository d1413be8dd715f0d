"""An HTTP MJPEG camera on 127.0.0.1 (the multipart stream many IP cameras and encoders serve)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def mjpeg_camera(frames: Callable[[], Iterable[bytes]]) -> Iterator[str]:
    """Serve each request the JPEGs that a fresh ``frames()`` yields, one part each, then end the response;
    yields the stream's URL. The iterable sets the pace (and may block, to stand for a frozen camera)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for jpg in frames():
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/video.mjpg"
    finally:
        srv.shutdown()
        srv.server_close()
