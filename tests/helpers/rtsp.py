"""A real RTSP server on 127.0.0.1: scripts/rtsp_server.py (GStreamer) in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers.data import ROOT

SERVER = ROOT / "scripts" / "rtsp_server.py"


def gst_available() -> bool:
    """Whether the system Python has GStreamer's RTSP server bindings."""
    probe = subprocess.run(["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0');"
                            "from gi.repository import GstRtspServer"], capture_output=True, check=False)
    return probe.returncode == 0


def gst_or_skip() -> None:
    """Skip where GStreamer's RTSP server is absent (a failure in CI, which installs it)."""
    if not gst_available():
        if os.environ.get("CI") == "true":
            pytest.fail("GStreamer's RTSP server is required in CI (scripts/install-test-services.sh)")
        pytest.skip("GStreamer RTSP server not installed (scripts/install-test-services.sh)")


class RtspServer:
    """scripts/rtsp_server.py in a subprocess, serving ``clip`` at rtsp://127.0.0.1:port/cam."""

    def __init__(self, clip: Path, port: int) -> None:
        self.clip, self.port = clip, port
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["/usr/bin/python3", str(SERVER), "--file", str(self.clip), "--port",
                                      str(self.port), "--path", "cam"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("READY"), line

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"
