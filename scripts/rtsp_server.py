#!/usr/bin/python3
"""A real RTSP server on 127.0.0.1 for tests and demos (GStreamer's gst-rtsp-server).

Serves an H.264 MP4 file at rtsp://127.0.0.1:PORT/PATH; the stream ends at the end of the file
and a new client starts it again. Runs with the system Python (python3-gi); install
its packages with scripts/install-test-services.sh. Prints "READY <url>" once listening.

    /usr/bin/python3 scripts/rtsp_server.py --file clip.mp4 --port 8554 --path cam
    /usr/bin/python3 scripts/rtsp_server.py --port 8554 --mount sub=sub.mp4 --mount main=main.mp4
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", help="H.264 MP4 file to serve at --path")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="cam")
    ap.add_argument("--mount", action="append", default=[], metavar="PATH=FILE",
                    help="also serve FILE at rtsp://127.0.0.1:PORT/PATH (a camera's second stream); repeatable")
    args = ap.parse_args()
    mounts = [(args.path, args.file)] if args.file else []
    mounts += [tuple(m.split("=", 1)) for m in args.mount]
    if not mounts:
        ap.error("nothing to serve: give --file or --mount")
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    for path, file in mounts:
        factory = GstRtspServer.RTSPMediaFactory()
        # The parser re-sends SPS/PPS so a client can join at any time; at the end of the file the stream ends.
        factory.set_launch(f'( filesrc location="{file}" ! qtdemux ! h264parse config-interval=-1 '
                           '! rtph264pay name=pay0 pt=96 config-interval=1 )')
        factory.set_shared(False)  # each client gets its own pipeline, from the start of the file
        server.get_mount_points().add_factory(f"/{path}", factory)
    if server.attach(None) == 0:
        sys.stderr.write(f"cannot listen on 127.0.0.1:{args.port}\n")
        return 1
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    sys.stdout.write(f"READY rtsp://127.0.0.1:{args.port}/{mounts[0][0]}\n")
    sys.stdout.flush()
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
