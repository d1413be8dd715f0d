"""Each speed technique measured on its own, against the product's setting in the same run.

    python bench/techniques.py [--out bench/results/techniques.json]

1. Decoder threads: frames per second decoding a 20-s 720p25 H.264 clip with ``read_frames`` at 1, 2 and
   FFmpeg's automatic thread count (baseline: 1 thread).
2. Frame conversion (zero-copy): a decoded YUV 4:2:0 frame to the BGR array the pipeline uses:
   PyAV ``to_ndarray("bgr24")`` (baseline) vs the raw YUV planes viewed without a copy and converted by
   OpenCV; and lazy conversion: decoding the clip with every frame converted to BGR (baseline, what the
   product did before) vs only the frames looked at (2 sampled + 4 evidence frames a second, the product).
3. ONNX Runtime session options at 320 px (the default model), 1 and 2 threads: the product's session
   (all graph optimisations) vs basic optimisations, no thread spinning, no memory arena.
4. Cross-camera batching: 8 frames of different cameras in one detector call of 1, 4 or 8 frames
   (baseline: one call per frame), 2 threads.
4b. Rectangular input: a 1280x720 frame letterboxed to 320x192 (padding only to a multiple of 32, the
   product's default for models with dynamic height and width) vs a 320x320 square, the whole detector
   call (letterbox, inference, decoding), 1 and 2 threads.
5. Key frames, sampling and motion gating are measured on the 10-minute clip by ``bench/batch.py``; their
   ratios are copied here from ``results/batch.json`` when it exists.

Medians of several runs; each ratio is baseline time / technique time (above 1: faster).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "default" / "model.onnx"
START, END = "<!-- techniques:start -->", "<!-- techniques:end -->"
log = logging.getLogger("bench.techniques")


def _clip(folder: Path) -> Path:
    clip = folder / "street_720p25_20s.mp4"
    if not clip.exists():
        from datasets.clips import render_clip

        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / "partial.mp4"
        render_clip(partial, duration=20, fps=25, noise_pool=16, renderer="cpu")
        partial.rename(clip)
    return clip


def _median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def decoder_threads(clip: Path, runs: int) -> dict[str, Any]:
    """Decode fps of the whole clip at 1, 2 and automatic decoder threads."""
    from pipelines.sources import read_frames

    n = sum(1 for _ in read_frames(clip, "all", threads=1))
    rows = {}
    for threads in (1, 2, 0):
        t = _median_time(lambda th=threads: sum(1 for _ in read_frames(clip, "all", threads=th)), runs)
        rows["auto" if threads == 0 else str(threads)] = {"fps": round(n / t, 1), "s": round(t, 3)}
    base = rows["1"]["s"]
    for r in rows.values():
        r["speedup"] = round(base / r["s"], 2)
    return {"frames": n, "by_threads": rows}


def lazy_conversion(clip: Path, runs: int) -> dict[str, Any]:
    """Decode the whole clip converting every frame to BGR vs only the frames the pipeline looks at."""
    from pipelines.sources import read_frames

    def run(every: bool) -> int:
        looked, next_ts = 0, 0.0
        for f in read_frames(clip, "all", threads=1):
            if every or f.ts >= next_ts:
                _ = f.image
                looked += 1
                next_ts = f.ts + 1 / 6  # 2 sampled + 4 evidence frames a second
        return looked

    t_all = _median_time(lambda: run(True), runs)
    t_lazy = _median_time(lambda: run(False), runs)
    return {"all_converted_s": round(t_all, 3), "lazy_s": round(t_lazy, 3), "converted_lazy": run(False),
            "speedup": round(t_all / t_lazy, 2)}


def _yuv_to_bgr(fr: av.VideoFrame) -> npt.NDArray[np.uint8]:
    """YUV 4:2:0 planes viewed in place (no copy when the planes are contiguous), converted by OpenCV."""
    w, h = fr.width, fr.height
    planes = fr.planes
    if all(p.line_size == (w if i == 0 else w // 2) for i, p in enumerate(planes)):
        yuv = np.concatenate([np.frombuffer(p, np.uint8) for p in planes])  # one copy into the I420 layout
    else:
        yuv = fr.to_ndarray(format="yuv420p").reshape(-1)
    return np.asarray(cv2.cvtColor(yuv.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_I420), np.uint8)


def conversion(clip: Path, frames: int = 100) -> dict[str, Any]:
    """Milliseconds per frame to turn a decoded frame into a BGR array, by method."""
    with av.open(str(clip)) as c:
        decoded = [f for _, f in zip(range(frames), c.decode(video=0), strict=False)]
    ref = decoded[0].to_ndarray(format="bgr24")
    alt = _yuv_to_bgr(decoded[0])
    diff = float(np.abs(ref.astype(np.int16) - alt.astype(np.int16)).mean())
    t_pyav = _median_time(lambda: [f.to_ndarray(format="bgr24") for f in decoded], 5) / len(decoded)
    t_cv = _median_time(lambda: [_yuv_to_bgr(f) for f in decoded], 5) / len(decoded)
    return {"pyav_to_ndarray_bgr24_ms": round(t_pyav * 1000, 3), "yuv_planes_opencv_ms": round(t_cv * 1000, 3),
            "speedup": round(t_pyav / t_cv, 2), "mean_abs_pixel_difference": round(diff, 3)}


def _session(threads: int, level: str = "all", spinning: bool = True, arena: bool = True) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                     "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
    opts.enable_cpu_mem_arena = arena
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(MODEL), sess_options=opts, providers=["CPUExecutionProvider"])


def ort_options(runs: int) -> dict[str, Any]:
    """Latency of one 320-px frame per session setting, 1 and 2 threads."""
    x = np.random.default_rng(0).random((1, 3, 320, 320), np.float32)
    out: dict[str, Any] = {}
    variants = {"product (all optimisations)": {}, "basic optimisations": {"level": "basic"},
                "no spinning": {"spinning": False}, "no memory arena": {"arena": False}}
    for threads in (1, 2):
        rows = {}
        for name, kw in variants.items():
            s = _session(threads, **kw)  # type: ignore[arg-type]
            name_in = s.get_inputs()[0].name
            for _ in range(5):
                s.run(None, {name_in: x})
            rows[name] = {"ms": round(_median_time(lambda s=s, n=name_in: s.run(None, {n: x}), runs) * 1000, 2)}
        base = rows["product (all optimisations)"]["ms"]
        for r in rows.values():
            r["speedup"] = round(base / r["ms"], 2)
        out[f"{threads}_threads"] = rows
    return out


def batching(clip: Path, runs: int) -> dict[str, Any]:
    """Per-frame time of 8 frames detected in calls of 1, 4 or 8 frames (the product's batching)."""
    from detector.backends.base import config_for, create_backend
    from pipelines.sources import read_frames

    frames = [f.image for _, f in zip(range(8), read_frames(clip, "all"), strict=False)]
    backend = create_backend(config_for(MODEL, threads=2))
    rows = {}
    for size in (1, 4, 8):
        def run(size: int = size) -> None:
            for i in range(0, len(frames), size):
                backend.detect(frames[i : i + size])
        run()
        rows[str(size)] = {"ms_per_frame": round(_median_time(run, runs) / len(frames) * 1000, 2)}
    base = rows["1"]["ms_per_frame"]
    for r in rows.values():
        r["speedup"] = round(base / r["ms_per_frame"], 2)
    return rows


def rect_input(clip: Path, runs: int) -> dict[str, Any]:
    """Detector call time on one 720p frame, square vs rectangular input, 1 and 2 threads."""
    from detector.backends.base import config_for, create_backend
    from pipelines.sources import read_frames

    frame = next(iter(read_frames(clip, "all"))).image
    out: dict[str, Any] = {}
    for threads in (1, 2):
        backend = create_backend(config_for(MODEL, threads=threads))
        rect_stride = backend.stride  # type: ignore[attr-defined]
        times = {}
        for name, stride in (("square", 0), ("rect", rect_stride)):
            backend.stride = stride  # type: ignore[attr-defined]
            backend.detect([frame])
            times[name] = _median_time(lambda b=backend: b.detect([frame]), runs) * 1000
        out[f"{threads}_threads"] = {"square_ms": round(times["square"], 2), "rect_ms": round(times["rect"], 2),
                                     "speedup": round(times["square"] / times["rect"], 2)}
    return out


def from_batch() -> dict[str, Any] | None:
    """Sampling, key frames and motion gating, from the 10-minute batch benchmark."""
    path = ROOT / "bench" / "results" / "batch.json"
    if not path.exists():
        return None
    b = json.loads(path.read_text())
    rf = b["realtime_factor"]
    return {"realtime_factor": rf,
            "sampling_vs_naive": round(rf["sampled"] / rf["naive"], 2),
            "keyframes_vs_sampling": round(rf["product"] / rf["sampled"], 2),
            "motion_gating_vs_product": round(rf["product_gated"] / rf["product"], 2)}


def table(r: dict[str, Any]) -> str:
    """The markdown table of bench/README.md."""
    lines = ["| technique | baseline | with the technique | speed-up |", "|---|---|---|---|"]
    d = r["decoder_threads"]["by_threads"]
    for k in ("2", "auto"):
        lines.append(f"| decoder threads: {k} | 1 thread, {d['1']['fps']} fps | {d[k]['fps']} fps | "
                     f"{d[k]['speedup']}× |")
    c = r["conversion"]
    lz = r.get("lazy_conversion")
    if lz:
        lines.append(f"| lazy BGR conversion, decoding the 20-s clip | every frame converted, "
                     f"{lz['all_converted_s']} s | {lz['lazy_s']} s | {lz['speedup']}× |")
    lines.append(f"| frame conversion: YUV planes + OpenCV | PyAV to_ndarray, {c['pyav_to_ndarray_bgr24_ms']} ms | "
                 f"{c['yuv_planes_opencv_ms']} ms | {c['speedup']}× |")
    for threads, rows in r["ort_options"].items():
        base = rows["product (all optimisations)"]["ms"]
        for name, row in rows.items():
            if name.startswith("product"):
                continue
            lines.append(f"| ORT session, {threads.replace('_', ' ')}: {name} | all optimisations, {base} ms | "
                         f"{row['ms']} ms | {row['speedup']}× |")
    b = r["batching"]
    for k in ("4", "8"):
        lines.append(f"| cross-camera batching: {k} frames per call | 1 per call, {b['1']['ms_per_frame']} ms/frame | "
                     f"{b[k]['ms_per_frame']} ms/frame | {b[k]['speedup']}× |")
    for threads, row in r.get("rect_input", {}).items():
        lines.append(f"| rectangular input 320x192, {threads.replace('_', ' ')} | 320x320 square, "
                     f"{row['square_ms']} ms | {row['rect_ms']} ms | {row['speedup']}× |")
    fb = r.get("from_batch")
    if fb:
        rf = fb["realtime_factor"]
        lines.append(f"| time sampling (2 fps), 10-min clip | every frame, {rf['naive']}× real time | "
                     f"{rf['sampled']}× | {fb['sampling_vs_naive']}× |")
        lines.append(f"| key frames only (+ sampling) | all frames decoded, {rf['sampled']}× | {rf['product']}× | "
                     f"{fb['keyframes_vs_sampling']}× |")
        lines.append(f"| motion gating (+ both) | {rf['product']}× | {rf['product_gated']}× | "
                     f"{fb['motion_gating_vs_product']}× |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "techniques.json")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "bench-techniques")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    clip = _clip(args.work)
    res: dict[str, Any] = {"clip": "20 s, 1280x720, 25 fps, H.264 (datasets.clips.render_clip)"}
    log.info("decoder threads")
    res["decoder_threads"] = decoder_threads(clip, max(3, args.runs // 2))
    log.info("frame conversion")
    res["conversion"] = conversion(clip)
    res["lazy_conversion"] = lazy_conversion(clip, max(3, args.runs // 2))
    log.info("ONNX Runtime session options")
    res["ort_options"] = ort_options(args.runs * 10)
    log.info("cross-camera batching")
    res["batching"] = batching(clip, args.runs)
    log.info("rectangular input")
    res["rect_input"] = rect_input(clip, args.runs * 10)
    res["from_batch"] = from_batch()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    readme = ROOT / "bench" / "README.md"
    text = readme.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + START + "\n" + table(res) + "\n" + END + rest.split(END, 1)[1]
        readme.write_text(text)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
