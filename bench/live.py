"""Live benchmark: N generated 720p25 RTSP streams (GStreamer, loopback) into `streetwatch serve`.

For each N it measures, over a fixed window after warm-up: frames decoded per second per stream
(real time is 25), sampled frames dropped, the p95 time from a violation's dwell threshold (the
frame that confirmed it) to its Server-Sent Event, and the service's RSS per stream. A stream
count is "held" when the cameras get at least 95 % of the detections their configured rates ask for (the load
governor cuts every rate when the detector falls behind: a count kept up that way is not held), every stream
decodes in real time (>= 24 fps), under 1 % of sampled frames are dropped, and p95 alert latency is at most
3 s. Each N runs in a fresh process (spawned), so the RSS of one stream count never carries the heap left over
by the service of the count before it.

``--mode full`` (default): every frame decoded (``decode: all``), 2 detections per second per camera
(``live_streams_held``). ``--mode keyframes``: cameras watching stationary violations only, detecting every 2 s,
with the product's ``decode: auto``, which decodes key frames alone when they come that often (the generated
clips have a key frame every 2 s); a stream is then real-time when it decodes its key frames as they come
(the clip's key-frame rate over the window, less one and a half key frames for the window's edges) and every
camera reports ``decode: keyframes``
(``live_cameras_held_keyframes``). ``--mode dual``: each camera has two streams, as Frigate-style deployments
do: a 640x360 10 fps substream (key frame every 2 s, 512 kb/s) that the detector sees at ``detect_fps: 1`` and a
1920x1080 25 fps main stream (key frame every 2 s, 4 Mb/s) read without decoding into the stream-copy evidence
ring; both are made from ``--clip`` with libx264 and served by one RTSP server per camera. Held additionally
requires every camera's record stream live and its clips cut from it, and a case's clip to be 1920x1080
(``live_cameras_held_dual``, ``rss_mb_per_camera_dual``). Also reported: the CPU the load generator (the RTSP
servers) took.

    python bench/live.py --clip CLIP_720P.mp4 --streams 4 8 12 16 --seconds 40 --repeats 3 --out bench/results/live.json
    python bench/live.py --clip CLIP.mp4 --mode keyframes --streams 16 32 48 --out bench/results/live_keyframes.json
    python bench/live.py --clip CLIP.mp4 --mode dual --streams 16 32 40 --out bench/results/live_dual.json

With ``--repeats K`` each stream count runs K times and the per-field medians decide whether it is held.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import math
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtsp import free_port, start_servers  # noqa: E402  (bench/rtsp.py)

from service.embedded import running_service  # noqa: E402
from service.loops import wait_until  # noqa: E402
from service.settings import ServiceConfig  # noqa: E402

log = logging.getLogger("bench.live")
TOKEN = "bench-admin-token-0123456789"


MODES: dict[str, dict[str, object]] = {
    "full": {"detect_fps": 2, "decode": "all"},
    "keyframes": {"detect_fps": 0.5, "decode": "auto"},
    "dual": {"detect_fps": 1, "decode": "auto"},
}
#: Held needs this share of the detections every camera's configured rate asks for on the frames it decoded (less
#: one sample per camera for the window's edges): below it the load governor had cut the rates to keep up.
RATE_SHARE = 0.95
#: The detector's threads per mode: one where every camera decodes 720p25 (full, key frames: the other core
#: decodes), the service's default (0: ONNX Runtime decides, 2 here) where the cameras decode 360p substreams.
MODEL_THREADS = {"full": 1, "keyframes": 1, "dual": 0}
#: Dual mode's streams: (width, height, fps, key-frame interval in frames, bit rate).
SUB = (640, 360, 10, 20, "512k")
MAIN = (1920, 1080, 25, 50, "4M")


def encode(clip: Path, out: Path, spec: tuple[int, int, int, int, str]) -> Path:
    """``clip`` re-encoded by libx264 at a camera stream's size, rate, key-frame interval and bit rate (made once)."""
    import av
    import cv2
    import numpy as np

    if out.is_file():
        return out
    w, h, fps, gop, rate = spec
    tmp = out.with_name(out.name + ".part.mp4")
    with av.open(str(clip)) as src, av.open(str(tmp), "w") as dst:
        st = dst.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"g": str(gop), "bf": "0", "preset": "veryfast", "b": rate, "maxrate": rate,
                      "bufsize": rate}
        vin = src.streams.video[0]
        step, next_t, i = 1.0 / fps, 0.0, 0
        for frame in src.decode(vin):
            t = float(frame.time or 0.0)
            if t + 1e-6 < next_t:
                continue
            next_t += step
            img = cv2.resize(frame.to_ndarray(format="bgr24"), (w, h), interpolation=cv2.INTER_LINEAR)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            vf.pts = i
            i += 1
            for p in st.encode(vf):
                dst.mux(p)
        for p in st.encode():
            dst.mux(p)
    tmp.replace(out)
    return out


def expected_rate(offered_fps: float, detect_fps: float) -> float:
    """Detections a second one camera gets when it keeps its configured rate: the sampler takes the first frame
    of each period (a frame a twentieth of the period early, at most a quarter of a frame gap, still counts), so
    on frames ``offered_fps`` apart the period is a whole number of frames (2/s on 25 fps: every 13th frame)."""
    period = 1.0 / detect_fps
    margin = min(0.05 * period, 0.25 / offered_fps)
    return offered_fps / max(1, math.ceil((period - margin) * offered_fps - 1e-9))


def keyframe_rate(clip: Path) -> float:
    """Key frames per second of a clip."""
    import av

    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        tb = float(s.time_base or 0)
        ts = [p.pts * tb for p in c.demux(s) if p.is_keyframe and p.pts is not None]
    return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else 0.0


def run_once(clip: Path, n: int, seconds: float, tmp: Path, model: dict[str, object] | None = None,
             mode: str = "full", stagger: bool = False, record_process: bool = True,
             decode_threads: int = 1) -> dict[str, object]:
    record = None
    if mode == "dual":
        clip, record = (encode(clip, clip.with_name(f"{clip.stem}_sub360.mp4"), SUB),
                        encode(clip, clip.with_name(f"{clip.stem}_main1080.mp4"), MAIN))
    ports, servers = start_servers(clip, n, record=record)
    port = free_port()
    cameras = [{"id": f"cam{i}", "source": f"rtsp://127.0.0.1:{p}/cam", **MODES[mode],
                **({"record": f"rtsp://127.0.0.1:{p}/main"} if record is not None else {}),
                "zones": [{"id": "pavement", "polygon": [[0.44, 0], [1, 0], [1, 1], [0.74, 1]],
                           "violations": ["street_stall", "garbage", "barbecue"]}]}
               for i, p in enumerate(ports)]
    cfg = ServiceConfig.model_validate({
        "server": {"port": port},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "BENCH_T"}]},
        "storage": {"db": str(tmp / f"cases{n}.db"), "evidence": str(tmp / f"evidence{n}")},
        "model": {"threads": MODEL_THREADS[mode], "batch": 4, **(model or {})},
        "ingest": {"record_process": record_process, "decode_threads": decode_threads},
        "cameras": [] if stagger else cameras,
        "rules": {"dwell_s": {"street_stall": 3, "garbage": 3, "barbecue": 3}, "gap_tolerance_s": 5},
    })
    latencies: list[float] = []
    stop = threading.Event()
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def listen() -> None:
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=None) as c, \
                    c.stream("GET", "/api/events") as s:
                event = None
                for line in s.iter_lines():
                    if stop.is_set():
                        return
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "violation":
                        d = json.loads(line[6:])
                        if d["state"] == "start" and d.get("ts_wall"):
                            latencies.append(time.time() - d["ts_wall"])
        except httpx.HTTPError:
            if not stop.is_set():  # the service closing the stream at the end of a run is expected
                raise
    try:
        with running_service(cfg, {"BENCH_T": TOKEN}):
            try:
                if stagger:  # one camera after another over one detection period: their samples do not coincide
                    period = 1.0 / float(MODES[mode]["detect_fps"])  # type: ignore[arg-type]
                    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as c:
                        for cam in cameras:
                            c.post("/api/cameras", json=cam).raise_for_status()
                            time.sleep(period / n)
                gen = [psutil.Process(s.pid) for s in servers]
                cpu0 = sum(sum(g.cpu_times()[:2]) for g in gen)
                t0 = time.time()
                result = measure(port, n, seconds, latencies, listen,
                                 keyframe_rate(clip) if mode == "keyframes" else None, dual=mode == "dual",
                                 detect_fps=float(MODES[mode]["detect_fps"]))  # type: ignore[arg-type]
                result["load_generator_cpu_cores"] = round(
                    (sum(sum(g.cpu_times()[:2]) for g in gen) - cpu0) / (time.time() - t0), 3)
                return result
            finally:
                stop.set()  # before the service stops and closes the event stream
    finally:
        for s in servers:
            s.kill()


def measure(port: int, n: int, seconds: float, latencies: list[float], listen: Callable[[], None],
            keyframes_per_s: float | None = None, dual: bool = False, detect_fps: float = 0.0
            ) -> dict[str, object]:
    """Warm up, then sample the cameras' counters and RSS over ``seconds`` (``keyframes_per_s``: the streams are
    expected to decode key frames only, at this rate; ``dual``: each camera also records a main stream;
    ``detect_fps``: the cameras' configured detection rate)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    threading.Thread(target=listen, daemon=True).start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)
    wait_until(lambda: all(c["health"] == "live" for c in client.get("/api/cameras").json()), 120, "all live")
    time.sleep(5)  # warm-up
    proc = psutil.Process(os.getpid())
    before = {c["id"]: c for c in client.get("/api/cameras").json()}
    t0 = time.time()
    rss = []
    while time.time() - t0 < seconds:
        rss.append(service_rss(proc) / 2**20)
        time.sleep(1)
    after = {c["id"]: c for c in client.get("/api/cameras").json()}
    dt = time.time() - t0
    fps = [(after[k]["frames_decoded"] - before[k]["frames_decoded"]) / dt for k in after]
    inferred = sum(after[k]["frames_inferred"] - before[k]["frames_inferred"] for k in after)
    dropped = sum(after[k]["frames_dropped"] - before[k]["frames_dropped"] for k in after)
    queued = inferred + dropped
    p95: float | None = None
    if latencies:
        p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 2 else latencies[0]
    result = {"streams": n, "window_s": round(dt, 1), "decode_fps_min": round(min(fps), 3),
              "decode_fps_median": round(statistics.median(fps), 3), "inferred_per_s": round(inferred / dt, 2),
              "dropped_share": round(dropped / queued, 4) if queued else 0.0, "alerts": len(latencies),
              "alert_latency_p95_s": round(p95, 3) if p95 is not None else None,
              "alert_latency_median_s": round(statistics.median(latencies), 3) if latencies else None,
              "rss_mb_max": round(max(rss), 1), "rss_mb_per_stream": round(max(rss) / n, 1),
              "reconnects": sum(after[k]["reconnects"] for k in after)}
    if keyframes_per_s is not None:  # every key frame that came in the window, give or take one at its edges
        result["realtime_fps"] = round(max(0.0, keyframes_per_s - 1.5 / dt), 3)
        result["keyframes_only"] = sum(after[k]["decode"] == "keyframes" for k in after)
    if dual:
        result["realtime_fps"] = SUB[2] * 24 / 25  # the substream's rate, with the same slack as 24 of 25
        result["record_live"] = sum(after[k].get("record_health") == "live" for k in after)
        result["clips_from_record"] = sum(after[k]["evidence"] == "stream copy (record)" for k in after)
        result["clip_size"] = clip_size(client)
    if detect_fps:  # below it, the load governor cut the cameras' rates (or samples were lost)
        # Each camera's rate on the frames it decoded in the window (a looping test stream loses a little at
        # each restart), less one sample per camera for the window's edges.
        expected = sum(expected_rate(f, detect_fps) for f in fps if f > 0) * dt
        result["expected_per_s"] = round(expected / dt, 2)
        result["rate_share"] = round(inferred / max(1.0, expected - n), 3)
    result["held"] = held(result)
    client.close()
    return result


def service_rss(proc: psutil.Process) -> int:
    """Resident memory of the service: this process (the service runs in it) and its recorder process, not the
    RTSP servers it started."""
    total = proc.memory_info().rss
    for child in proc.children():
        try:
            if "multiprocessing" in " ".join(child.cmdline()):  # the recorder (spawned), not a GStreamer server
                total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


def clip_size(client: httpx.Client) -> list[int] | None:
    """Width and height of the first case's clip that is written (None: none is)."""
    import tempfile

    import av

    for item in client.get("/api/cases", params={"limit": 20}).json()["items"]:
        got = client.get(f"/api/cases/{item['id']}/evidence/clip", params={"original": True})
        if got.status_code == 200:
            with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
                f.write(got.content)
                f.flush()
                with av.open(f.name) as c:
                    cc = c.streams.video[0].codec_context
                    return [int(cc.width), int(cc.height)]
    return None


def held(r: dict[str, object]) -> bool:
    """Every camera detecting at its configured rate (:data:`RATE_SHARE` of it), real-time decoding on every stream
    (24 fps; key-frame mode: every key frame, and every camera decoding key frames only; dual: the substream's 10
    fps, every record stream live and clipped from, clips at the main stream's size), under 1 % of sampled frames
    dropped, alert p95 at most 3 s."""
    p95 = r["alert_latency_p95_s"]
    if float(r.get("rate_share", 1.0)) < RATE_SHARE:  # type: ignore[arg-type]
        return False  # the cameras were kept up by detecting less often than configured
    realtime = float(r.get("realtime_fps", 24))  # type: ignore[arg-type]
    keyframes_ok = "keyframes_only" not in r or r["keyframes_only"] == r["streams"]
    if "record_live" in r:
        keyframes_ok = keyframes_ok and r["record_live"] == r["clips_from_record"] == r["streams"] \
            and r["clip_size"] == [MAIN[0], MAIN[1]]
    return bool(r["decode_fps_min"] >= realtime and r["dropped_share"] < 0.01  # type: ignore[operator]
                and p95 is not None and p95 <= 3.0 and keyframes_ok)  # type: ignore[operator]


def median_run(runs: list[dict[str, object]]) -> dict[str, object]:
    """The per-field median of repeated runs of one stream count (each run kept under ``runs``)."""
    out: dict[str, object] = {}
    for k, v in runs[0].items():
        vals = [float(x) for r in runs if isinstance(x := r[k], int | float) and not isinstance(x, bool)]
        out[k] = round(statistics.median(vals), 4) if len(vals) == len(runs) and k != "streams" else v
    out["held"] = held(out)
    out["runs"] = runs
    return out


def _child_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, required=True, help="720p25 H.264 MP4 (streetwatch synth --clips 1 --fps 25)")
    ap.add_argument("--streams", type=int, nargs="+", default=[4, 8, 12, 16])
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "live.json")
    ap.add_argument("--model", type=Path, help="detector (default: the bundled default model)")
    ap.add_argument("--imgsz", type=int, help="detector input side (default: the model's)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per stream count; the medians decide")
    ap.add_argument("--mode", choices=sorted(MODES), default="full", help="full decode, or key frames (see above)")
    ap.add_argument("--stagger", action="store_true", help="add the cameras one after another over one detection "
                    "period (real cameras are not in step; by default every stream starts the same clip at once and "
                    "all cameras sample at the same instants)")
    ap.add_argument("--record-threads", action="store_true", help="dual: main streams read by threads of the "
                    "service's process (`ingest.record_process: false`), not by the recorder process")
    ap.add_argument("--decode-threads", type=int, default=1, help="decoder threads per camera stream "
                    "(`ingest.decode_threads`, the service's default 1; 0: FFmpeg decides, as before stop 31)")
    ap.add_argument("--spinning", action="store_true", help="the detector's threads spin between calls "
                    "(`model.spinning: true`; the service's default is false)")
    args = ap.parse_args()
    model: dict[str, object] = {k: v for k, v in (("path", args.model), ("imgsz", args.imgsz)) if v is not None}
    if args.spinning:
        model["spinning"] = True
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import tempfile

    machine = {"cpus": os.cpu_count(), "cpu": next((ln.split(":")[1].strip() for ln in open("/proc/cpuinfo")
                                                    if ln.startswith("model name")), "?")}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.streams:
            runs = []
            for _ in range(args.repeats):
                with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                            initializer=_child_logging) as pool:
                    runs.append(pool.submit(run_once, args.clip, n, args.seconds, Path(tmp), model,
                                            args.mode, args.stagger, not args.record_threads,
                                            args.decode_threads).result())
                log.info("%s", runs[-1])
            results.append(median_run(runs) if len(runs) > 1 else runs[0])
    held = [int(r["streams"]) for r in results if r["held"]]  # type: ignore[call-overload]
    key = {"full": "live_streams_held", "keyframes": "live_cameras_held_keyframes",
           "dual": "live_cameras_held_dual"}[args.mode]
    summary = {"machine": machine, "clip": str(args.clip), "mode": args.mode, **MODES[args.mode],
               "stagger": args.stagger, "record_process": not args.record_threads,
               "decode_threads": args.decode_threads,
               "repeats": args.repeats, "model": {k: str(v) for k, v in model.items()}, "results": results,
               key: max(held) if held else 0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    log.info("streams held (%s): %s -> %s", args.mode, summary[key], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
