"""Soak: `streetwatch serve` on N generated 720p25 RTSP streams (GStreamer on loopback) for a bounded time.

The service runs as its own process, as in production. Every ``--interval`` seconds the soak samples the
service's RSS, open files and threads, the cameras' health and counters and the number of cases. After a
warm-up, memory may not grow by more than ``--max-growth-pct`` (median of the last three samples against
the first three after warm-up), and no camera may stay ``failed`` at the end. Writes
``soak/report.json`` (``rss_growth_pct``, ``max_rss_mb``, ``failed_cameras``, ``cases``, every sample),
``soak/report.svg`` (RSS, open files and threads over time) and ``soak/report.html``; exits 1 when a
limit is broken.

    make soak                      # 10 minutes, 8 streams
    SOAK_MINUTES=2 make soak
    python bench/soak.py --minutes 1 --streams 2 --interval 5 --out soak
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from rtsp import free_port, start_servers  # bench/rtsp.py

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.soak")


def _clip(out: Path) -> Path:
    """A 60 s 720p25 H.264 street clip with violations (generated once)."""
    clip = out / "clip" / "clips" / "street_000.mp4"
    if not clip.exists():
        subprocess.run([sys.executable, "-m", "service.cli", "synth", "--out", str(out / "clip"), "--clips", "1",
                        "--clip-seconds", "60", "--fps", "25"], check=True, cwd=ROOT)
    return clip


def _config(out: Path, ports: list[int], port: int) -> Path:
    cams = "".join(
        f"  - id: cam{i}\n    source: rtsp://127.0.0.1:{p}/cam\n    detect_fps: 2\n    zones:\n"
        "      - id: pavement\n        polygon: [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]]\n"
        "        violations: [street_stall, garbage, barbecue]\n" for i, p in enumerate(ports))
    path = out / "service.yaml"
    path.write_text(
        f"server: {{host: 127.0.0.1, port: {port}}}\n"
        "auth:\n  tokens:\n    - {name: soak, role: admin, env: SOAK_TOKEN}\n"
        f"storage: {{db: {out / 'cases.db'}, evidence: {out / 'evidence'}}}\n"
        "model: {threads: 1, batch: 4}\n"
        f"cameras:\n{cams}"
        # Every dwell time short: each camera's evidence history (longest dwell + 30 s of frames, a bounded
        # ring buffer) is then full within the warm-up, and growth after it means a leak.
        "rules:\n  dwell_s: {street_stall: 3, garbage: 3, barbecue: 3, uncovered_truck: 3, overflowing_bin: 3}\n"
        "  gap_tolerance_s: 5\n")
    return path


def _sample(proc: psutil.Process, api: httpx.Client, t0: float) -> dict[str, Any]:
    cams = api.get("/api/cameras").json()
    return {"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(proc.memory_info().rss / 2**20, 1),
            "open_files": proc.num_fds(), "threads": proc.num_threads(),
            "cases": api.get("/api/cases", params={"limit": 1}).json()["total"],
            "health": {c["id"]: c["health"] for c in cams},
            "frames_decoded": sum(c["frames_decoded"] for c in cams),
            "reconnects": sum(c["reconnects"] for c in cams)}


def _svg(samples: list[dict[str, Any]], warmup_s: float) -> str:
    """Three line charts (RSS, open files, threads) over time, as one SVG."""
    w, h, pad = 640, 150, 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{3 * h}" font-family="sans-serif" '
             'font-size="11">']
    t_max = max(s["t_s"] for s in samples) or 1.0
    for row, (key, label, color) in enumerate((("rss_mb", "RSS (MB)", "#2f8cff"), ("open_files", "open files",
                                                                                   "#2fbf71"),
                                               ("threads", "threads", "#f0b429"))):
        y0 = row * h
        vals = [float(s[key]) for s in samples]
        lo, hi = min(vals), max(vals)
        span = (hi - lo) or 1.0
        pts = " ".join(f"{pad + (s['t_s'] / t_max) * (w - 2 * pad):.1f},"
                       f"{y0 + h - 25 - (float(s[key]) - lo) / span * (h - 50):.1f}" for s in samples)
        wx = pad + warmup_s / t_max * (w - 2 * pad)
        parts += [f'<text x="{pad}" y="{y0 + 14}">{label}: {lo:g} - {hi:g}</text>',
                  f'<line x1="{wx:.1f}" y1="{y0 + 20}" x2="{wx:.1f}" y2="{y0 + h - 25}" stroke="#999" '
                  'stroke-dasharray="4"/>',
                  f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>',
                  f'<text x="{pad}" y="{y0 + h - 8}">0 s</text>',
                  f'<text x="{w - pad - 30}" y="{y0 + h - 8}">{t_max:.0f} s</text>']
    parts.append("</svg>")
    return "\n".join(parts)


def run(minutes: float, streams: int, interval: float, out: Path, max_growth_pct: float,
        clip: Path | None = None) -> dict[str, Any]:
    """Run the soak; returns the report (also written into ``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    clip = clip or _clip(out)
    ports, servers = start_servers(clip, streams)
    port = free_port()
    token = secrets.token_urlsafe(24)
    for stale in ("cases.db", "cases.db-wal", "cases.db-shm"):
        (out / stale).unlink(missing_ok=True)
    config = _config(out, ports, port)
    serve = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--config", str(config)], cwd=ROOT,
                             env={**os.environ, "SOAK_TOKEN": token}, stdout=(out / "serve.log").open("w"),
                             stderr=subprocess.STDOUT)
    samples: list[dict[str, Any]] = []
    warmup_s = min(60.0, minutes * 60 / 4)
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                           timeout=30)
        deadline = time.monotonic() + 120
        while True:
            try:
                if all(c["health"] == "live" for c in api.get("/api/cameras").json()):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or serve.poll() is not None:
                raise RuntimeError(f"the service did not get all cameras live; see {out / 'serve.log'}")
            time.sleep(1)
        proc = psutil.Process(serve.pid)
        t0 = time.monotonic()
        while time.monotonic() - t0 < minutes * 60:
            samples.append(_sample(proc, api, t0))
            log.info("t=%5.0f s  rss %.1f MB  files %d  threads %d  cases %d", samples[-1]["t_s"],
                     samples[-1]["rss_mb"], samples[-1]["open_files"], samples[-1]["threads"], samples[-1]["cases"])
            time.sleep(min(interval, max(0.0, minutes * 60 - (time.monotonic() - t0))))
        samples.append(_sample(proc, api, t0))
        api.close()
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()
        for s in servers:
            s.kill()
    after = [s for s in samples if s["t_s"] >= warmup_s] or samples
    base = statistics.median(s["rss_mb"] for s in after[:3])
    last = statistics.median(s["rss_mb"] for s in after[-3:])
    failed = sorted(c for c, state in samples[-1]["health"].items() if state == "failed")
    growth = round((last - base) / base * 100, 2)
    report = {
        "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, "
                   f"{round(psutil.virtual_memory().total / 2**30)} GiB",
        "minutes": minutes, "streams": streams, "interval_s": interval, "warmup_s": warmup_s,
        "rss_growth_pct": growth, "max_rss_mb": max(s["rss_mb"] for s in samples),
        "rss_mb_per_stream": round(max(s["rss_mb"] for s in samples) / streams, 1),
        "open_files_growth": after[-1]["open_files"] - after[0]["open_files"],
        "threads_growth": after[-1]["threads"] - after[0]["threads"],
        "failed_cameras": failed, "cases": samples[-1]["cases"], "reconnects": samples[-1]["reconnects"],
        "limits": {"rss_growth_pct": max_growth_pct, "failed_cameras": 0},
        "passed": growth <= max_growth_pct and not failed, "samples": samples,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    svg = _svg(samples, warmup_s)
    (out / "report.svg").write_text(svg)
    summary = {k: v for k, v in report.items() if k != "samples"}
    (out / "report.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>streetwatch soak</title><h1>Soak report</h1>"
        f"<pre>{json.dumps(summary, indent=1)}</pre>{svg}")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")))
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--max-growth-pct", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=ROOT / "soak")
    ap.add_argument("--clip", type=Path, help="H.264 MP4 each stream loops (default: a generated 720p25 clip)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    report = run(args.minutes, args.streams, args.interval, args.out, args.max_growth_pct, args.clip)
    log.info("soak %s: RSS growth %.2f %% (limit %.1f), max RSS %.1f MB, failed cameras %s, %d cases -> %s",
             "passed" if report["passed"] else "FAILED", report["rss_growth_pct"], args.max_growth_pct,
             report["max_rss_mb"], report["failed_cameras"] or "none", report["cases"], args.out / "report.json")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
