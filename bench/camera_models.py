"""What a camera's own model costs the service: one detector round of ``--batch`` frames through one model,
against the same frames split over two models (half the cameras on a site model), and the memory a second
model takes.

The service detects each model's cameras apart in one round (``service/cameras.py``, ``InferenceEngine``): a
round of 4 frames is one call with one model, two calls of 2 with two. Both setups run the default model's
weights (a site model is the same network fine-tuned, so the same cost), interleaved, ``--runs`` times each;
the ratio of the medians is the capacity cost of the split on this machine, measured in one run.

    python bench/camera_models.py --runs 40 --out bench/results/camera_models.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("bench.camera_models")


def main() -> int:
    from detector.backends.base import DetectorBackend, config_for, create_backend
    from models import DEFAULT_MODEL
    from pipelines.sources import read_frames

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=ROOT / "tests" / "data" / "clips" / "reg_violations_a.mp4")
    ap.add_argument("--batch", type=int, default=4, help="frames per detector round (the service's model.batch)")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "camera_models.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    frames = [f.image for _, f in zip(range(args.batch), read_frames(args.clip), strict=False)]
    if len(frames) < args.batch:
        raise SystemExit(f"{args.clip}: fewer than {args.batch} frames")
    proc = psutil.Process(os.getpid())

    def load() -> tuple[DetectorBackend, int]:
        before = proc.memory_info().rss
        backend = create_backend(config_for(DEFAULT_MODEL, spinning=False))
        backend.detect(frames[:1])  # the first call allocates the session's buffers
        return backend, proc.memory_info().rss - before

    shared, first_mb = load()
    site, second_mb = load()
    half = args.batch // 2
    one_model: list[float] = []
    two_models: list[float] = []
    for _ in range(args.runs):  # interleaved: drift of the machine hits both alike
        t0 = time.perf_counter()
        shared.detect(frames)
        one_model.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        shared.detect(frames[:half])
        site.detect(frames[half:])
        two_models.append(time.perf_counter() - t0)
    one, two = statistics.median(one_model), statistics.median(two_models)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "model": str(DEFAULT_MODEL.relative_to(ROOT)), "clip": str(args.clip.relative_to(ROOT)),
        "frame": list(frames[0].shape[1::-1]), "batch": args.batch, "runs": args.runs,
        "one_model_round_ms": round(one * 1000, 2), "two_models_round_ms": round(two * 1000, 2),
        "two_models_vs_one": round(two / one, 3),
        "rss_first_model_mb": round(first_mb / 2**20, 1), "rss_second_model_mb": round(second_mb / 2**20, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log.info("%s", json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
