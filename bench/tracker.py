"""The tracker's cost: the product's NumPy tracker (:class:`detector.tracking.BoxTracker`) against norfair's
IoU tracker (the product's tracker until stop 28, now the reference it is tested against), on the same scenes,
in the same run; and what importing each costs a fresh process (batch start-up).

    python bench/tracker.py [--frames 2000] [--out bench/results/tracker.json]

Scenes: moving boxes of three classes (:func:`moving_boxes`), about 1, 5 and 20 objects a frame. Cost is
CPU time per frame (``time.process_time``), so a busy machine changes it less than wall time; both trackers
run on the same frames in alternating rounds and the median round is reported. Both assign the same ids
(checked here again, and by ``tests/unit/test_tracking.py``, which takes the reference and the scenes from here:
norfair is a dev dependency only).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from detector.tracking import BoxTracker
from detector.types import Detections

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.tracker")
SCENES = {"1_object": (1, 2), "5_objects": (4, 7), "20_objects": (18, 23)}


class NorfairReference:
    """norfair's own Tracker (IoU distance, default filter), read out as the product once did."""

    def __init__(self, iou_threshold: float = 0.1, hit_counter_max: int = 8, initialization_delay: int = 0) -> None:
        from norfair.tracker import Tracker

        self._tracker = Tracker(distance_function="iou", distance_threshold=1.0 - iou_threshold,
                                hit_counter_max=hit_counter_max, initialization_delay=initialization_delay)

    def update(self, detections: Detections) -> list[int]:
        """Track one frame; the id of each detection's track, -1 where it has none yet."""
        from norfair.tracker import Detection

        nf = [Detection(points=np.asarray(b, np.float64).reshape(2, 2), scores=np.array([c, c]), label=int(k),
                        data=i) for i, (b, c, k, _) in enumerate(detections)]
        ids = [-1] * len(nf)
        for obj in self._tracker.update(detections=nf):
            if obj.id is not None and any(obj.last_detection is d for d in nf):
                ids[int(obj.last_detection.data)] = int(obj.id)
        return ids


def moving_boxes(seed: int, frames: int = 120, objects: tuple[int, int] = (3, 9)) -> list[Detections]:
    """Boxes of three classes that move, cross, go unseen for a frame or more, and appear later, with jitter.

    ``objects`` is the range of the number of objects (low inclusive, high exclusive).
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(*objects))
    centre = rng.uniform(50, 600, (n, 2))
    velocity = rng.normal(0, 4, (n, 2))
    size = rng.uniform(20, 160, (n, 2))
    label = rng.integers(0, 3, n)
    born = rng.integers(0, frames // 2, n)
    out = []
    for t in range(frames):
        seen = (born <= t) & (rng.random(n) > 0.25)
        c = centre + velocity * t + rng.normal(0, 3, (n, 2))
        boxes = np.hstack([c - size / 2, c + size / 2])[seen]
        order = rng.permutation(len(boxes))  # detectors list boxes in no stable order
        out.append(Detections(xyxy=boxes[order].astype(np.float32),
                              confidence=rng.uniform(0.3, 1.0, len(boxes)).astype(np.float32)[order],
                              class_id=label[seen][order]))
    return out




def _per_frame_ms(update: Callable[[Detections], object], frames: list[Detections]) -> float:
    t0 = time.process_time()
    for f in frames:
        update(f)
    return (time.process_time() - t0) / len(frames) * 1000


def _import_s(module: str, repeats: int = 5) -> float:
    """Median wall time of a fresh interpreter importing ``module`` (minus one importing nothing)."""
    def once(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - t0
    base = statistics.median(once("pass") for _ in range(repeats))
    return round(statistics.median(once(f"import {module}") for _ in range(repeats)) - base, 3)


def run(frames: int, rounds: int) -> dict[str, Any]:
    """Cost per frame of both trackers on every scene, their ratio, and the import costs."""
    out: dict[str, Any] = {"frames": frames, "rounds": rounds, "scenes": {}}
    for name, objects in SCENES.items():
        scene = moving_boxes(seed=7, frames=frames, objects=objects)
        ours, theirs = BoxTracker(), NorfairReference()
        same = all(ours.update(f).tracker_id.tolist() == theirs.update(f) for f in scene)
        box_ms, nf_ms = [], []
        for _ in range(rounds):
            box_ms.append(_per_frame_ms(BoxTracker().update, scene))
            nf_ms.append(_per_frame_ms(NorfairReference().update, scene))
        b, n = statistics.median(box_ms), statistics.median(nf_ms)
        out["scenes"][name] = {"objects_per_frame": round(sum(len(f) for f in scene) / len(scene), 1),
                               "same_ids": same, "box_tracker_ms": round(b, 3), "norfair_ms": round(n, 3),
                               "speedup": round(n / b, 2)}
        log.info("%s: %s", name, out["scenes"][name])
    out["tracker_speedup_vs_norfair"] = min(s["speedup"] for s in out["scenes"].values())
    out["import_s"] = {"detector.tracking": _import_s("detector.tracking"), "norfair": _import_s("norfair")}
    return out


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tracker.json")
    args = ap.parse_args()
    result = run(args.frames, args.rounds)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log.info("tracker_speedup_vs_norfair %.2f; wrote %s", result["tracker_speedup_vs_norfair"], args.out)
    return 0 if all(s["same_ids"] for s in result["scenes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
