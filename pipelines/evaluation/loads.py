"""How well the product tells a truck's load: per labelled truck, is it found, and what load does it see?

Labelled trucks come from two places:

* ``datasets/truck_loads.csv``: real trucks of the external vehicle sources (their own truck boxes, in their
  validation splits), each labelled covered / empty / unknown by this project;
* a YOLO dataset whose ``truck`` and ``uncovered_truck`` boxes mean covered and uncovered (the synthetic scenes,
  where the renderer knows the load exactly).

Each image goes through the detector and the scene stage (:mod:`detector.scene`); a labelled truck is found when
a truck row overlaps it (IoU >= 0.5), and its load evidence is that row's ``P(uncovered)``. Reported per labelled
state: trucks, found, the mean ``P(uncovered)``, and the share a single frame would call uncovered
(``P >= 0.5``: for covered and empty trucks, false alarms).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from datasets.truck_loads import read_truck_loads
from datasets.yolo import YoloDataset, label_path, read_label_file
from detector.backends.base import DetectorBackend, config_for, create_backend
from detector.postprocess import box_iou, greedy_pairs
from detector.scene import scene
from detector.types import CANONICAL_LABELS

log = logging.getLogger(__name__)

MATCH_IOU = 0.5


@dataclass(frozen=True)
class LabelledTruck:
    """A labelled truck: its box (YOLO-normalised ``cx, cy, w, h``) and load state."""

    box: tuple[float, float, float, float]
    load: str

    def pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The box in pixels ``(x1, y1, x2, y2)`` of an image of this size."""
        cx, cy, w, h = self.box
        return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)


def from_csv(labels: Path, sources: Path, split: str | None = "val") -> Iterator[tuple[Path, list[LabelledTruck]]]:
    """Images and their labelled trucks from ``truck_loads.csv`` (rows: source, image, line, load), of one split
    of the materialized sources (None: all). The line must be a ``truck`` box of the source's labels."""
    truck = CANONICAL_LABELS.index("truck")
    by_image: dict[Path, list[tuple[int, str]]] = {}
    for row in read_truck_loads(labels):
        src = sources / row.source
        found = list((src / "images").glob(f"*/{row.image}"))
        if not found:
            raise FileNotFoundError(f"{labels}: {row.source}/{row.image} not under {sources} "
                                    "(run `streetwatch datasets materialize`)")
        if split is None or found[0].parent.name == split:
            by_image.setdefault(found[0], []).append((row.line, row.load))
    for image, rows in by_image.items():
        boxes = read_label_file(label_path(image))
        trucks = []
        for line, load in rows:
            if line >= len(boxes) or boxes[line][0] != truck:
                raise ValueError(f"{labels}: line {line} of {label_path(image)} is not a truck box")
            trucks.append(LabelledTruck(boxes[line][1:], load))
        yield image, trucks


def from_yolo(data_yaml: Path, split: str = "val") -> Iterator[tuple[Path, list[LabelledTruck]]]:
    """Images and trucks of a YOLO dataset: ``truck`` is covered, ``uncovered_truck`` uncovered."""
    ds = YoloDataset.load(data_yaml)
    state = {i: {"truck": "covered", "uncovered_truck": "uncovered"}.get(n) for i, n in ds.names.items()}
    for item in ds.items(split):
        trucks = [LabelledTruck((cx, cy, w, h), str(state[c])) for c, cx, cy, w, h in item.boxes if state.get(c)]
        if trucks:
            yield item.image, trucks


def evaluate_loads(images: Iterator[tuple[Path, list[LabelledTruck]]], backend: DetectorBackend) -> dict[str, Any]:
    """Score the product's load evidence on labelled trucks (see the module docstring)."""
    seen: dict[str, list[float]] = {}
    missed: dict[str, int] = {}
    for image, trucks in images:
        frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if frame is None:
            raise ValueError(f"cannot read {image}")
        h, w = frame.shape[:2]
        det = scene(backend.detect([np.asarray(frame, np.uint8)])[0], backend.names)
        rows = det[det.class_id == backend.names.index("truck")] if "truck" in backend.names else det[:0]
        gt: npt.NDArray[np.float32] = np.asarray([t.pixels(w, h) for t in trucks], np.float32)
        iou = box_iou(gt, rows.xyxy) if len(rows) else np.zeros((len(trucks), 0), np.float32)
        match = greedy_pairs(iou, MATCH_IOU)  # one detection per labelled truck, best overlap first
        for k, t in enumerate(trucks):
            if k not in match:
                missed[t.load] = missed.get(t.load, 0) + 1
                continue
            seen.setdefault(t.load, []).append(float(rows.data["uncovered"][match[k]]))
    out: dict[str, Any] = {}
    for load in sorted(set(seen) | set(missed)):
        p = seen.get(load, [])
        n = len(p) + missed.get(load, 0)
        out[load] = {"trucks": n, "found": len(p), "recall": round(len(p) / n, 4) if n else None,
                     "mean_p_uncovered": round(float(np.mean(p)), 4) if p else None,
                     "called_uncovered": round(float(np.mean(np.asarray(p) >= 0.5)), 4) if p else None}
    return out


def score_loads(model: Path, out: Path, conf: float, imgsz: int | None, labels: Path | None = None,
                sources: Path | None = None, data: Path | None = None, split: str = "val") -> dict[str, Any]:
    """Score a model's load-state evidence on labelled trucks and write ``out/metrics.json``.

    The trucks come from ``labels`` (``truck_loads.csv``, images under the materialized ``sources``) or from a
    YOLO dataset ``data`` whose truck / uncovered_truck boxes mean covered / uncovered.
    """
    if labels is not None and data is None:
        images = from_csv(labels, sources or Path("data/sources"), split)
    elif data is not None and labels is None:
        images = from_yolo(data, split)
    else:
        raise ValueError("give either labels (with sources) or data")
    backend = create_backend(config_for(model, conf=conf, imgsz=imgsz))
    try:
        result = {"model": str(model), "labels": str(labels or data), "conf": conf, "imgsz": backend.imgsz,
                  "by_load": evaluate_loads(images, backend)}
    finally:
        backend.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result
