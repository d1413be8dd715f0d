"""Teacher labels: context classes added to every training image by a COCO-trained detector.

The shipped model detects the violation classes *and* the context classes a street camera must know
(people, vehicles, umbrellas, furniture). No source labels all of them, so a COCO-trained teacher (the
YOLOv5n checkpoint, see :mod:`models.pretrained`) labels them on every image, under three rules:

* a source's own labels win for the classes it labels (a vehicle dataset's ``truck`` boxes, the renderer's
  exact boxes): the teacher never adds a box of such a class to that source;
* a teacher box over an object the source labelled is dropped: over any labelled box with IoU >= ``SAME_IOU``
  (the source knows what that object is: a noisy highway frame's car is not also an umbrella), and, for
  vehicles, over a labelled vehicle with IoU >= ``VEHICLE_IOU`` (the renderer's dump truck is not also a COCO
  ``car``);
* per-class score thresholds (furniture is noisier than people).

Everything here is pure: boxes are normalised ``(x1, y1, x2, y2)`` in 0..1 and the teacher is a callable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from detector.postprocess import box_iou
from detector.types import CANONICAL_LABELS

#: COCO class name -> canonical context label the teacher may add.
COCO_TO_CANONICAL: dict[str, str] = {
    "person": "person",
    "bicycle": "bicycle",
    "car": "car",
    "motorcycle": "motorcycle",
    "bus": "bus",
    "truck": "truck",
    "umbrella": "umbrella",
    "chair": "chair",
    "bench": "bench",
    "dining table": "dining_table",
}

#: Minimum teacher score per canonical label (others: ``DEFAULT_MIN_SCORE``).
MIN_SCORE: dict[str, float] = {"chair": 0.45, "dining_table": 0.45, "bench": 0.45, "umbrella": 0.4}
DEFAULT_MIN_SCORE = 0.35
VEHICLES = frozenset({"truck", "uncovered_truck", "car", "bus", "motorcycle", "bicycle"})
VEHICLE_IOU = 0.3
SAME_IOU = 0.5

Box = tuple[float, float, float, float]
TeacherBox = tuple[str, float, Box]  # COCO name, score, normalised xyxy


@dataclass(frozen=True)
class Merged:
    """One image's labels after merging: ``(canonical label, normalised xyxy)`` and what the teacher added."""

    boxes: list[tuple[str, Box]]
    added: dict[str, int]


def merge_teacher(own: Iterable[tuple[str, Box]], teacher: Iterable[TeacherBox], labelled: frozenset[str]
                  ) -> Merged:
    """Merge a source's own boxes with the teacher's context boxes (rules in the module docstring).

    Args:
        own: The source's boxes, canonical labels.
        teacher: The teacher's boxes, COCO names and scores.
        labelled: Canonical labels the source labels itself (the teacher adds none of these).
    """
    own = list(own)
    boxes = np.asarray([b for _, b in own], np.float32).reshape(-1, 4)
    vehicles = np.asarray([b for name, b in own if name in VEHICLES], np.float32).reshape(-1, 4)
    out = list(own)
    added: dict[str, int] = {}
    for coco, score, box in teacher:
        name = COCO_TO_CANONICAL.get(coco)
        if name is None or name in labelled or score < MIN_SCORE.get(name, DEFAULT_MIN_SCORE):
            continue
        b = np.asarray([box], np.float32)
        if len(boxes) and box_iou(b, boxes).max() >= SAME_IOU:
            continue
        if name in VEHICLES and len(vehicles) and box_iou(b, vehicles).max() >= VEHICLE_IOU:
            continue
        out.append((name, box))
        added[name] = added.get(name, 0) + 1
    return Merged(boxes=out, added=added)


#: How far (normalised) a correction's centre may lie from the teacher box it corrects.
FIX_CENTRE_TOL = 0.01
#: A correction's label for a teacher box that is no object of a class the model learns: dropped.
DROP = "none"


def correct_teacher(teacher: Iterable[TeacherBox], fixes: Iterable[tuple[str, float, float, str]]
                    ) -> tuple[list[TeacherBox], int]:
    """The teacher's boxes of one image with the project's corrections applied, and how many corrections matched.

    Each correction ``(COCO name, cx, cy, label)`` takes the teacher box of that COCO name whose centre is nearest
    to ``(cx, cy)`` (within :data:`FIX_CENTRE_TOL`): ``label`` ``none`` drops it, a canonical context label
    gives it that class (same box and score).
    """
    boxes = list(teacher)
    to_coco = {v: k for k, v in COCO_TO_CANONICAL.items()}
    matched = 0
    for coco, cx, cy, label in fixes:
        near = [(abs((b[0] + b[2]) / 2 - cx) + abs((b[1] + b[3]) / 2 - cy), i)
                for i, (name, _, b) in enumerate(boxes) if name == coco]
        if not near or min(near)[0] > FIX_CENTRE_TOL:
            continue
        i = min(near)[1]
        matched += 1
        if label == DROP:
            boxes.pop(i)
        else:
            boxes[i] = (to_coco[label], boxes[i][1], boxes[i][2])
    return boxes, matched


def to_yolo_lines(boxes: Iterable[tuple[str, Box]]) -> list[str]:
    """Normalised xyxy boxes as YOLO ``class cx cy w h`` lines with canonical ids (clipped to the image)."""
    lines = []
    for name, (x1, y1, x2, y2) in boxes:
        x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            continue
        lines.append(f"{CANONICAL_LABELS.index(name)} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} "
                     f"{x2 - x1:.6f} {y2 - y1:.6f}")
    return lines
