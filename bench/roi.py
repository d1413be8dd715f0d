"""Regions of interest and per-zone detection rates, each measured on its own: the same clips and model
with the camera's ``roi`` at ``frame`` (baseline), ``zoom`` and ``crop``, and with per-zone rates.

    python bench/roi.py [--clips 4] [--out bench/results/roi.json]

The clips are generated street scenes (``datasets.clips.write_clip_set``, 1280x720, 10 fps, 30 s, a muck truck
passing on the road and a stall, garbage and a barbecue on the pavement). Runs:

* ``whole_frame``, ``zoom``, ``crop``: one pavement zone over the right-hand part of the frame, detected at
  2 frames/s; the crop is the zone's bounding box plus a margin (``zoom``: enlarged to the model's input;
  ``crop``: at the frame's scale, a smaller input).
* ``both_zones_2fps`` (baseline) and ``per_zone_rates``: a pavement zone and a road zone (trucks), both at
  2 frames/s on the whole frame, vs the road at 2/s and the pavement at 0.5/s with ``roi: crop`` (three of
  four detector calls see the road only).

Reported per violation: event F1 and median alert delay (``streetwatch evaluate clips``), and the detector's
total time, calls and time per call.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.roi")
ZONE = [[0.52, 0.12], [0.98, 0.12], [0.98, 0.95], [0.7, 0.95]]
ROAD = [[0.0, 0.0], [0.44, 0.0], [0.6, 1.0], [0.0, 1.0]]
PAVEMENT = "[street_stall, garbage, barbecue, overflowing_bin]"


def _config(folder: Path, name: str, roi: str, road: bool = False, pavement_fps: float | None = None) -> Path:
    path = folder / f"camera_{name}.yaml"
    rate = f"        detect_fps: {pavement_fps}\n" if pavement_fps else ""
    zones = f"      - id: pavement\n        polygon: {ZONE}\n        violations: {PAVEMENT}\n{rate}"
    if road:
        zones += f"      - id: road\n        polygon: {ROAD}\n        violations: [uncovered_truck]\n"
    path.write_text(f"cameras:\n  - id: roi-bench\n    detect_fps: 2\n    roi: {roi}\n    zones:\n{zones}"
                    "rules:\n  gap_tolerance_s: 6\n")
    return path


RUNS = {
    "whole_frame": {"roi": "frame"}, "zoom": {"roi": "zoom"}, "crop": {"roi": "crop"},
    "both_zones_2fps": {"roi": "frame", "road": True},
    "per_zone_rates": {"roi": "crop", "road": True, "pavement_fps": 0.5},
}


def run(clips: int, work: Path, repeats: int = 3) -> dict[str, Any]:
    """Evaluate the clips under every run of :data:`RUNS`; returns their metrics and the ratios."""
    from datasets.clips import write_clip_set
    from models import DEFAULT_MODEL
    from pipelines.evaluation.score import evaluate_clips

    labels = work / "clips" / "labels.json"
    if not labels.exists():
        write_clip_set(work / "clips", n=clips, duration=30.0, fps=10.0, seed=200)
    out: dict[str, Any] = {"clips": clips, "pavement": ZONE, "road": ROAD, "runs": {}}
    for name, spec in RUNS.items():
        times = []
        for rep in range(repeats):  # detector time is noisy on a shared 2-core machine: median of repeats
            out_dir = work / f"eval_{name}_{rep}"
            m = evaluate_clips(labels, labels.parent, out_dir, DEFAULT_MODEL, _config(work, name, **spec), dwell=4.0)
            sources = json.loads((out_dir / "run" / "cases.json").read_text())["stats"]["sources"].values()
            times.append(sum(s["infer_s"] for s in sources))
            calls = sum(s["frames_inferred"] for s in sources)
        infer = statistics.median(times)
        watched = {"uncovered_truck"} if spec.get("road") else set()
        out["runs"][name] = {
            "events": {k: {f: v[f] for f in ("f1", "tp", "fp", "fn", "delay_median_s")}
                       for k, v in m["events"].items() if k != "uncovered_truck" or k in watched},
            "detector_s": round(infer, 3), "detector_s_runs": [round(t, 3) for t in times], "detector_calls": calls,
            "ms_per_call": round(infer / max(1, calls) * 1000, 2)}
    r = out["runs"]
    out["crop_speedup_per_call"] = round(r["whole_frame"]["ms_per_call"] / r["crop"]["ms_per_call"], 2)
    out["zoom_speedup_per_call"] = round(r["whole_frame"]["ms_per_call"] / r["zoom"]["ms_per_call"], 2)
    out["per_zone_rates_speedup"] = round(r["both_zones_2fps"]["detector_s"] / r["per_zone_rates"]["detector_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "bench-roi")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "roi.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    res = run(args.clips, args.work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    log.info("%s", json.dumps(res["runs"], indent=1))


if __name__ == "__main__":
    main()
