"""Region-of-interest crops from zones, measured on their own: the same clips, camera and model with
``roi_crop`` off (baseline) and on.

    python bench/roi.py [--clips 4] [--out bench/results/roi.json]

The clips are generated street scenes (``datasets.clips.write_clip_set``, 1280x720, 10 fps, 30 s) seen by
one camera watching a pavement zone that covers the right-hand part of the frame; the crop is the zone's
bounding box plus a margin. Reported per violation: event F1 and median alert delay (``streetwatch evaluate
clips``), and the detector's time per frame. Above 1× is better for the crop.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.roi")
ZONE = [[0.52, 0.12], [0.98, 0.12], [0.98, 0.95], [0.7, 0.95]]


def _config(folder: Path, crop: bool) -> Path:
    path = folder / f"camera_roi_{str(crop).lower()}.yaml"
    path.write_text(
        "cameras:\n  - id: roi-bench\n    detect_fps: 2\n"
        f"    roi_crop: {str(crop).lower()}\n    zones:\n      - id: pavement\n        polygon: {ZONE}\n"
        "        violations: [street_stall, garbage, barbecue, overflowing_bin]\n"
        "rules:\n  gap_tolerance_s: 6\n")
    return path


def run(clips: int, work: Path) -> dict[str, Any]:
    """Evaluate the clips with the crop off and on; returns both metrics and the ratios."""
    from datasets.clips import write_clip_set
    from models import DEFAULT_MODEL
    from pipelines.evaluate import evaluate_clips

    labels = work / "clips" / "labels.json"
    if not labels.exists():
        write_clip_set(work / "clips", n=clips, duration=30.0, fps=10.0, seed=200)
    out: dict[str, Any] = {"clips": clips, "zone": ZONE, "runs": {}}
    for crop in (False, True):
        out_dir = work / f"eval_{str(crop).lower()}"
        m = evaluate_clips(labels, labels.parent, out_dir, DEFAULT_MODEL, _config(work, crop), dwell=4.0)
        sources = json.loads((out_dir / "run" / "cases.json").read_text())["stats"]["sources"].values()
        infer = sum(s["infer_s"] for s in sources)
        frames = sum(s["frames_inferred"] for s in sources)
        out["runs"]["crop" if crop else "whole_frame"] = {
            "events": {k: {f: v[f] for f in ("f1", "tp", "fp", "fn", "delay_median_s")}
                       for k, v in m["events"].items() if k != "uncovered_truck"},
            "infer_ms_per_frame": round(infer / max(1, frames) * 1000, 2)}
    base, crop_run = out["runs"]["whole_frame"], out["runs"]["crop"]
    out["infer_speedup"] = round(base["infer_ms_per_frame"] / crop_run["infer_ms_per_frame"], 2)
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
