"""Generated camera streams for the benchmarks: one GStreamer RTSP server per stream on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import subprocess
from pathlib import Path

log = logging.getLogger("bench.rtsp")

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_servers(clip: Path, n: int, attempts: int = 3, record: Path | None = None
                  ) -> tuple[list[int], list[subprocess.Popen[str]]]:
    """Start ``n`` RTSP servers of ``clip`` (scripts/rtsp_server.py); returns their ports and processes.

    Each URL is ``rtsp://127.0.0.1:PORT/cam`` (and ``.../main`` serving ``record``, a camera's main stream, when
    given); the caller kills the processes. A server that does not come up
    (its port taken between choosing and binding it, or the process dying at start under load) is tried
    again on a new port, ``attempts`` times in all, before the whole start fails.
    """
    ports: list[int] = []
    procs: list[subprocess.Popen[str]] = []
    for _ in range(n):
        for attempt in range(1, attempts + 1):
            port = free_port()
            while port in ports:
                port = free_port()
            extra = ["--mount", f"main={record}"] if record is not None else []
            proc = subprocess.Popen(["/usr/bin/python3", str(ROOT / "scripts" / "rtsp_server.py"), "--file",
                                     str(clip), "--port", str(port), *extra], stdout=subprocess.PIPE, text=True)
            if proc.stdout is not None and proc.stdout.readline().startswith("READY"):
                ports.append(port)
                procs.append(proc)
                break
            proc.kill()
            log.warning("RTSP server on port %d did not start (exit code %s), attempt %d of %d", port,
                        proc.wait(), attempt, attempts)
        else:
            for q in procs:
                q.kill()
            raise RuntimeError(f"RTSP server for {clip} did not start (scripts/install-test-services.sh)")
    return ports, procs
