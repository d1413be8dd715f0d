"""Inference benchmark: our ONNX Runtime backend vs Ultralytics' PyTorch predict, same weights.

For each input size and thread count, the median (and p90) wall time to detect on one 1280x720 frame,
letterbox and decoding included on both sides, after a warm-up. Both sides feed the network the same
rectangular input (a 16:9 frame at 320 px is 320x192: our backend's default for models with dynamic
height and width, and Ultralytics' ``rect=True``). Writes a JSON summary with the speed-up ratio
measured in the same run.

    python bench/inference.py --onnx models/default/model.onnx --pt models/default/model.pt \
        --sizes 320 480 640 --threads 1 2 --runs 30 --out bench/results/inference.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(fn: object, runs: int) -> dict[str, float]:
    for _ in range(3):
        fn()  # type: ignore[operator]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2), "p90_ms": round(times[int(0.9 * (runs - 1))], 2)}


def one(kind: str, model: str, size: int, threads: int, runs: int) -> dict[str, float]:
    """Time one backend in this process (called in a fresh subprocess per setting)."""
    import numpy as np

    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    if kind == "onnx":
        sys.path.insert(0, str(ROOT))
        from detector.backends.base import OnnxConfig
        from detector.backends.onnx import OnnxBackend

        backend = OnnxBackend(OnnxConfig(model=Path(model), threads=threads, imgsz=size))
        return _time(lambda: backend.detect([frame]), runs)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch
    from ultralytics.models import YOLO

    torch.set_num_threads(threads)
    yolo = YOLO(model)
    return _time(lambda: yolo.predict(frame, imgsz=size, device="cpu", verbose=False, rect=True), runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", default=str(ROOT / "models" / "default" / "model.onnx"))
    ap.add_argument("--pt", default=str(ROOT / "models" / "default" / "model.pt"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 480, 640])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "inference.json")
    ap.add_argument("--one", nargs=4, metavar=("KIND", "MODEL", "SIZE", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        kind, model, size, threads = args.one
        sys.stdout.write(json.dumps(one(kind, model, int(size), int(threads), args.runs)) + "\n")
        return 0
    rows = []
    for size in args.sizes:
        for t in args.threads:
            res = {}
            for kind, model in (("onnx", args.onnx), ("ultralytics", args.pt)):
                env = {**os.environ, "OMP_NUM_THREADS": str(t)}
                out = subprocess.run([sys.executable, __file__, "--runs", str(args.runs), "--one", kind, model,
                                      str(size), str(t)], capture_output=True, text=True, env=env, check=True)
                res[kind] = json.loads(out.stdout.strip().splitlines()[-1])
            row = {"imgsz": size, "threads": t, **{f"{k}_{m}": v for k, r in res.items() for m, v in r.items()},
                   "speedup": round(res["ultralytics"]["median_ms"] / res["onnx"]["median_ms"], 2)}
            rows.append(row)
            sys.stderr.write(f"{row}\n")
    summary = {"machine": {"cpus": os.cpu_count()}, "frame": "1280x720 random, letterbox and decoding included",
               "results": rows, "inference_speedup_vs_ultralytics": min(r["speedup"] for r in rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
