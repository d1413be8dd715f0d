"""Generated camera streams for the benchmarks: one GStreamer RTSP server per stream on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_servers(clip: Path, n: int) -> tuple[list[int], list[subprocess.Popen[str]]]:
    """Start ``n`` RTSP servers of ``clip`` (scripts/rtsp_server.py); returns their ports and processes.

    Each URL is ``rtsp://127.0.0.1:PORT/cam``; the caller kills the processes.
    """
    ports = [free_port() for _ in range(n)]
    procs = []
    for p in ports:
        proc = subprocess.Popen(["/usr/bin/python3", str(ROOT / "scripts" / "rtsp_server.py"), "--file", str(clip),
                                 "--port", str(p)], stdout=subprocess.PIPE, text=True)
        if proc.stdout is None or not proc.stdout.readline().startswith("READY"):
            for q in [*procs, proc]:
                q.kill()
            raise RuntimeError(f"RTSP server for {clip} did not start (scripts/install-test-services.sh)")
        procs.append(proc)
    return ports, procs
