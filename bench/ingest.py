"""Ingest benchmark: what reading N live camera streams costs one process, product reader vs the reader before.

N generated streams are served by GStreamer RTSP servers on 127.0.0.1 (one per stream, as in bench/live.py) and
read in one process by a thread each, as the service reads them; no detector runs. For each kind of stream it
measures, over a fixed window after a warm-up, the process's CPU (user and system, in cores), its context
switches per second and the frames (or packets) per second it got:

- ``record``: cameras' 1920x1080 25 fps main streams (4 Mb/s) demuxed without decoding, as the recorder
  process reads them for stream-copy evidence (``pipelines.sources.demux_packets``);
- ``detect_360p``: 640x360 10 fps substreams decoded (a two-stream camera's detect stream);
- ``detect_720p``: 720p25 streams decoded (a one-stream camera that watches trucks: every frame decoded).

Two readers run alternately on the same servers, ``--repeats`` times each, and the medians are compared:

- ``product``: ``pipelines.sources.open_stream`` / ``demux_packets`` as the service runs them: reads bounded by
  FFmpeg's socket timeouts, one decoder thread per stream (``ingest.decode_threads: 1``);
- ``baseline``: the same functions with the network opening of stop 30 and before (PyAV's read timeout, whose
  interrupt callback takes the GIL at each of FFmpeg's checks) and FFmpeg's own decoder threads.

``cpu_ratio`` is the product's CPU over the baseline's (below 1: cheaper). The stream counts default to those of
the live benchmark's bars: 32 two-stream cameras, 16 one-stream cameras.

    python bench/ingest.py --clip out/bench/clips/street_000.mp4 --out bench/results/ingest.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live import MAIN, SUB, encode  # noqa: E402  (bench/live.py)
from rtsp import start_servers  # noqa: E402  (bench/rtsp.py)

from pipelines import sources  # noqa: E402

log = logging.getLogger("bench.ingest")


def _pyav_connect(url: str, open_timeout_s: float, read_timeout_s: float) -> object:
    """The network opening before stop 31: PyAV's open and read timeouts, no FFmpeg socket timeout."""
    import av

    options = {"rtsp_transport": "tcp"} if url.startswith(("rtsp://", "rtsps://")) else {}
    return av.open(url, options=options, timeout=(open_timeout_s, read_timeout_s))


@contextmanager
def reader(which: str) -> Iterator[int]:
    """Patch in ``which`` reader for the duration; yields its decoder threads per stream."""
    if which == "baseline":
        with mock.patch.object(sources, "_connect", _pyav_connect):
            yield 0
    else:
        yield 1


def _count(url: str, kind: str, threads: int, counts: list[int], i: int, stop: threading.Event) -> None:
    """Read ``url`` until ``stop``: decode (detect streams) or demux (record streams), counting units."""
    items: Iterator[object] = (sources.demux_packets(url, True) if kind == "record"
                               else sources.open_stream(url, "all", threads=threads))
    for _ in items:
        counts[i] += 1
        if stop.is_set():
            return


def measure(urls: list[str], kind: str, which: str, warmup_s: float, seconds: float) -> dict[str, float]:
    """One window of ``which`` reader on every URL: CPU cores, context switches and units per second."""
    stop = threading.Event()
    counts = [0] * len(urls)
    with reader(which) as threads:
        workers = [threading.Thread(target=_count, args=(u, kind, threads, counts, i, stop), daemon=True)
                   for i, u in enumerate(urls)]
        for w in workers:
            w.start()
        time.sleep(warmup_s)  # connecting and the first key frame: not part of the window
        c0, r0, t0 = sum(counts), resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        time.sleep(seconds)  # the measured window (a duration, not a synchronisation)
        c1, r1, t1 = sum(counts), resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        stop.set()
        for w in workers:
            w.join(30)
    dt = t1 - t0
    return {"cpu_cores": round((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / dt, 3),
            "system_cores": round((r1.ru_stime - r0.ru_stime) / dt, 3),
            "context_switches_per_s": round((r1.ru_nvcsw + r1.ru_nivcsw - r0.ru_nvcsw - r0.ru_nivcsw) / dt),
            "units_per_s": round((c1 - c0) / dt, 1)}


def run_kind(clip: Path, n: int, kind: str, repeats: int, warmup_s: float, seconds: float) -> dict[str, object]:
    """Both readers on ``n`` servers of ``clip``, alternately, ``repeats`` times each; medians and the ratio."""
    ports, procs = start_servers(clip, n)
    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "product": []}
    try:
        urls = [f"rtsp://127.0.0.1:{p}/cam" for p in ports]
        for _ in range(repeats):
            for which in runs:
                runs[which].append(measure(urls, kind, which, warmup_s, seconds))
                log.info("%s %s x%d: %s", kind, which, n, runs[which][-1])
    finally:
        for p in procs:
            p.kill()
    med = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in runs.items()}
    return {"streams": n, "clip": clip.name, "runs": runs, "median": med,
            "cpu_ratio": round(med["product"]["cpu_cores"] / med["baseline"]["cpu_cores"], 3),
            "context_switch_ratio": round(med["product"]["context_switches_per_s"]
                                          / max(1.0, med["baseline"]["context_switches_per_s"]), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, required=True, help="720p25 H.264 MP4 (streetwatch synth --clips 1 --fps 25)")
    ap.add_argument("--dual-cameras", type=int, default=32, help="record and 360p detect streams")
    ap.add_argument("--full-cameras", type=int, default=16, help="720p25 streams decoded in full")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sub = encode(args.clip, args.clip.with_name(f"{args.clip.stem}_sub360.mp4"), SUB)
    main_stream = encode(args.clip, args.clip.with_name(f"{args.clip.stem}_main1080.mp4"), MAIN)
    plan: list[tuple[str, Path, int]] = [("record", main_stream, args.dual_cameras),
                                         ("detect_360p", sub, args.dual_cameras),
                                         ("detect_720p", args.clip, args.full_cameras)]
    results = {kind: run_kind(clip, n, kind, args.repeats, args.warmup, args.seconds) for kind, clip, n in plan}
    cpu = next((ln.split(":")[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    summary: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "cpu": cpu}, "seconds": args.seconds,
                                  "repeats": args.repeats, "results": results}
    for kind, r in results.items():
        summary[f"ingest_cpu_ratio_{kind}"] = r["cpu_ratio"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    log.info("%s", {k: v for k, v in summary.items() if k.startswith("ingest_")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
