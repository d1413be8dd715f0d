"""Plate reading cost: one truck's plate read (PP-OCRv4 through rapidocr-onnxruntime, constrained decoding)
against one detector call on the same 1280x720 frame, measured in the same run, on synthetic road-camera
frames (``datasets/plates.py``). The ratio says what `plates: true` costs a camera per truck event.

    python bench/plates.py --frames 20 --out bench/results/plates.json
    python bench/plates.py --frames 40 --seed 1 --out /tmp/plates-seed1.json   # accuracy on another set
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from datasets.plates import cjk_font, plate_scene
from detector.backends.base import config_for, create_backend
from detector.plate_reader import PlateReader
from models import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    """Time both on the same frames; write the medians, their ratio, and the plates read exactly and wrongly."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=11, help="seed of the synthetic frames")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "plates.json")
    args = ap.parse_args()
    font = cjk_font()
    if font is None:
        sys.stderr.write("no CJK font: run scripts/install-test-services.sh\n")
        return 2
    rng = np.random.default_rng(args.seed)
    scenes = [plate_scene(rng, font) for _ in range(args.frames)]
    backend = create_backend(config_for(DEFAULT_MODEL, threads=args.threads))
    reader = PlateReader()
    backend.detect([scenes[0].image])  # warm-up
    reader.read(scenes[0].image, scenes[0].vehicle)
    detect_ms, read_ms, exact, wrong = [], [], 0, 0
    for s in scenes:
        t0 = time.perf_counter()
        backend.detect([s.image])
        detect_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        found = reader.read(s.image, s.vehicle)
        read_ms.append((time.perf_counter() - t0) * 1000)
        exact += bool(found) and found[0].plate == s.plate
        wrong += bool(found) and found[0].plate != s.plate
    result = {"frames": args.frames, "seed": args.seed, "detector_median_ms": round(statistics.median(detect_ms), 1),
              "plate_read_median_ms": round(statistics.median(read_ms), 1),
              "plate_read_p90_ms": round(sorted(read_ms)[int(0.9 * (len(read_ms) - 1))], 1),
              "plate_read_vs_detector": round(statistics.median(read_ms) / statistics.median(detect_ms), 2),
              "plates_exact": exact, "plates_wrong": wrong}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
