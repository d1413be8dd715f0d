"""Detector evaluation on labelled images with COCO metrics (pycocotools).

Dataset classes are matched to the model's classes by **name** (after an
optional remap); a dataset class the model does not have is reported as
``absent`` with its instance count, never as a silent zero, and is left out of
the mean. AP50 and AP50-95 come from pycocotools' COCOeval (101-point
interpolation, up to 100 detections per image); precision and recall are
measured at the ``conf`` threshold with one-to-one matching at IoU 0.5, and so
is the confusion matrix (its last row and column are "background").
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from datasets.yolo import YoloDataset
from detector.backends.base import DetectorBackend
from detector.postprocess import box_iou
from detector.scene import SceneSettings, group_piles
from detector.types import Detections
from pipelines.evaluation.results import ClassScores, ImageMetrics
from pipelines.sources import read_frames

log = logging.getLogger(__name__)


@dataclass
class ImageEval:
    """Raw material of an image evaluation."""

    classes: list[str]  # evaluated class names (present in both)
    absent: dict[str, int]  # dataset classes the model lacks -> instances
    gt: list[tuple[int, npt.NDArray[np.float32], npt.NDArray[np.int64]]] = field(default_factory=list)
    dets: list[tuple[int, npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]] = field(
        default_factory=list)
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)


def collect(data_yaml: Path, backend: DetectorBackend, split: str = "val", remap: dict[str, str] | None = None,
            limit: int | None = None) -> ImageEval:
    """Run the detector over a split and collect ground truth and detections in model class ids."""
    ds = YoloDataset.load(data_yaml)
    remap = remap or {}
    model_ids = {n: i for i, n in enumerate(backend.names)}
    ds_to_model: dict[int, int] = {}
    absent: dict[str, int] = {}
    for i, name in ds.names.items():
        name = remap.get(name, name)
        if name in model_ids:
            ds_to_model[i] = model_ids[name]
        else:
            absent[name] = 0
    ev = ImageEval(classes=sorted({backend.names[m] for m in ds_to_model.values()},
                                  key=lambda n: model_ids[n]), absent=absent)
    for k, item in enumerate(ds.items(split)):
        if limit is not None and k >= limit:
            break
        img = cv2.imread(str(item.image), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("skipping unreadable image %s", item.image)
            continue
        h, w = img.shape[:2]
        boxes, cls = [], []
        for c, cx, cy, bw, bh in item.boxes:
            if c not in ds_to_model:
                absent_name = remap.get(ds.names.get(c, str(c)), ds.names.get(c, str(c)))
                absent[absent_name] = absent.get(absent_name, 0) + 1
                continue
            boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
            cls.append(ds_to_model[c])
        ev.gt.append((k, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(cls, np.int64)))
        det = backend.detect([np.asarray(img, np.uint8)])[0]
        keep = np.isin(det.class_id, list(ds_to_model.values()))
        ev.dets.append((k, det.xyxy[keep], det.confidence[keep], det.class_id[keep]))
        ev.sizes[k] = (w, h)
    ev.absent = absent
    return ev


Curves = dict[str, npt.NDArray[np.float64]]


def label_piles(ev: ImageEval, names: list[str]) -> ImageEval:
    """The same evaluation with touching labelled ``garbage`` boxes merged into one heap box (their union).

    Labels differ in what they box: some datasets count each bag, others mark a heap as one box. Scoring the
    same images both ways shows how a model and the product view read either convention; the merge is the
    product's own pile rule (:func:`detector.scene.group_piles`) applied to the labels.
    """
    merge = SceneSettings(min_confidence=0.0)
    gt = []
    for k, boxes, cls in ev.gt:
        piles = group_piles(Detections(boxes, np.ones(len(boxes), np.float32), cls), names, merge)
        gt.append((k, piles.xyxy, piles.class_id))
    return ImageEval(classes=ev.classes, absent=ev.absent, gt=gt, dets=ev.dets, sizes=ev.sizes)


def add_video_frames(ev: ImageEval, video: Path, frames: dict[int, list[tuple[str, tuple[float, float, float, float]]]],
                     backend: DetectorBackend) -> int:
    """Add the labelled frames of a clip (decoded from ``video``) to an evaluation; returns frames added."""
    model_ids = {n: i for i, n in enumerate(backend.names)}
    for rows in frames.values():
        for label, _ in rows:
            if label in model_ids and label not in ev.classes:
                ev.classes.append(label)
    ev.classes.sort(key=lambda n: model_ids[n])
    added = 0
    for fr in read_frames(video):
        if fr.index not in frames:
            continue
        k = len(ev.gt)
        boxes, cls = [], []
        for label, box in frames[fr.index]:
            if label in model_ids:
                boxes.append(box)
                cls.append(model_ids[label])
            else:
                ev.absent[label] = ev.absent.get(label, 0) + 1
        ev.gt.append((k, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(cls, np.int64)))
        det = backend.detect([fr.image])[0]
        wanted = [model_ids[c] for c in ev.classes]
        keep = np.isin(det.class_id, wanted)
        ev.dets.append((k, det.xyxy[keep], det.confidence[keep], det.class_id[keep]))
        ev.sizes[k] = (fr.image.shape[1], fr.image.shape[0])
        added += 1
    return added


def coco_ap(ev: ImageEval, names: list[str]) -> tuple[dict[str, tuple[float, float]], Curves]:
    """Per-class (AP50, AP50-95) and the IoU=0.5 precision curve (101 recall points) from COCOeval."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cat_ids = [names.index(c) for c in ev.classes]
    images = [{"id": k, "width": w, "height": h} for k, (w, h) in ev.sizes.items()]
    anns: list[dict[str, Any]] = []
    for k, boxes, cls in ev.gt:
        for b, c in zip(boxes, cls, strict=True):
            bw, bh = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": int(c), "iscrowd": 0,
                         "bbox": [float(b[0]), float(b[1]), bw, bh], "area": bw * bh})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c, "name": names[c]} for c in cat_ids]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    dets = [{"image_id": k, "category_id": int(c), "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]),
                                                            float(b[3] - b[1])], "score": float(s)}
            for k, boxes, scores, cls in ev.dets for b, s, c in zip(boxes, scores, cls, strict=True)]
    out: dict[str, tuple[float, float]] = {}
    curves: Curves = {}
    if not dets or not anns:
        return {n: (0.0, 0.0) for n in ev.classes}, curves
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(dets)
        e = COCOeval(gt, dt, "bbox")
        e.params.catIds = cat_ids
        e.evaluate()
        e.accumulate()
    prec = e.eval["precision"]  # [T, R, K, A, M]
    for ki, c in enumerate(e.params.catIds):
        p = prec[:, :, ki, 0, -1]
        ap_t = [float(np.mean(p[t][p[t] > -1])) if (p[t] > -1).any() else 0.0 for t in range(p.shape[0])]
        out[names[c]] = (ap_t[0], float(np.mean(ap_t)))
        curves[names[c]] = np.where(p[0] > -1, p[0], 0.0)
    return out, curves


def pr_at_threshold(ev: ImageEval, n_classes: int, conf: float, iou: float = 0.5
                    ) -> tuple[dict[int, tuple[int, int, int]], npt.NDArray[np.int64]]:
    """Per-class (tp, fp, fn) at ``conf`` and a confusion matrix ``(n+1, n+1)`` (gt rows, pred columns)."""
    counts = {c: [0, 0, 0] for c in range(n_classes)}
    cm = np.zeros((n_classes + 1, n_classes + 1), np.int64)
    gts = {k: (b, c) for k, b, c in ev.gt}
    for k, boxes, scores, cls in ev.dets:
        gb, gc = gts[k]
        keep = scores >= conf
        pb, pc, ps = boxes[keep], cls[keep], scores[keep]
        order = np.argsort(-ps)
        pb, pc = pb[order], pc[order]
        ious = box_iou(pb, gb)
        used = np.zeros(len(gb), bool)
        for i in range(len(pb)):
            cand = [(ious[i, j], j) for j in range(len(gb)) if not used[j] and ious[i, j] >= iou]
            same = [x for x in cand if gc[x[1]] == pc[i]]
            if same:
                j = max(same)[1]
                used[j] = True
                counts[int(pc[i])][0] += 1
                cm[gc[j], pc[i]] += 1
            elif cand:
                j = max(cand)[1]
                used[j] = True
                counts[int(pc[i])][1] += 1
                counts[int(gc[j])][2] += 1
                cm[gc[j], pc[i]] += 1
            else:
                counts[int(pc[i])][1] += 1
                cm[n_classes, pc[i]] += 1
        for j in np.flatnonzero(~used):
            counts[int(gc[j])][2] += 1
            cm[gc[j], n_classes] += 1
    return {c: (v[0], v[1], v[2]) for c, v in counts.items()}, cm


def image_metrics(ev: ImageEval, names: list[str], conf: float) -> ImageMetrics:
    """Assemble per-class metrics and the mean AP50 over evaluated classes."""
    ap, _ = coco_ap(ev, names)
    prc, _cm = pr_at_threshold(ev, len(names), conf)
    instances = {n: 0 for n in ev.classes}
    images = {n: 0 for n in ev.classes}
    for _k, _b, c in ev.gt:
        for cid in c:
            instances[names[cid]] += 1
        for cid in set(c.tolist()):
            images[names[cid]] += 1
    classes: dict[str, ClassScores] = {}
    for n in ev.classes:
        tp, fp, fn = prc[names.index(n)]
        classes[n] = {"ap50": round(ap.get(n, (0.0, 0.0))[0], 4), "ap50_95": round(ap.get(n, (0.0, 0.0))[1], 4),
                      "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
                      "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
                      "instances": instances[n], "images": images[n]}
    for n, count in ev.absent.items():
        classes[n] = {"absent": True, "instances": count, "note": "the model has no class of this name"}
    present = [v for v in classes.values() if not v.get("absent") and v.get("instances", 0) > 0]
    return {"classes": classes,
            "map50": round(float(np.mean([v.get("ap50", 0.0) for v in present])), 4) if present else None,
            "map50_95": round(float(np.mean([v.get("ap50_95", 0.0) for v in present])), 4) if present else None}


def draw_pr_curves(curves: dict[str, npt.NDArray[np.float64]], path: Path, size: int = 480) -> None:
    """Draw precision-recall curves (IoU 0.5) as a PNG."""
    img = np.full((size, size + 180, 3), 255, np.uint8)
    m = 40
    cv2.rectangle(img, (m, m // 2), (size - m // 2, size - m), (0, 0, 0), 1)
    for i, (name, p) in enumerate(curves.items()):
        color = tuple(int(c) for c in np.random.default_rng(i + 3).integers(30, 220, 3))
        xs = m + np.linspace(0, 1, len(p)) * (size - 1.5 * m)
        ys = (size - m) - p * (size - 1.5 * m)
        pts = np.stack([xs, ys], 1).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA)
        cv2.putText(img, name, (size + 5, 30 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    cv2.putText(img, "recall", (size // 2 - 20, size - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.putText(img, "precision", (2, m // 2 - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.imwrite(str(path), img)


def draw_confusion(cm: npt.NDArray[np.int64], labels: list[str], path: Path, cell: int = 44) -> None:
    """Draw a confusion matrix (rows: labelled, columns: predicted) as a PNG."""
    n = len(labels)
    left, top = 130, 110
    img = np.full((top + cell * n + 10, left + cell * n + 10, 3), 255, np.uint8)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    for i in range(n):
        cv2.putText(img, labels[i][:16], (4, top + cell * i + cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(n):
            shade = int(255 - 200 * norm[i, j])
            x, y = left + cell * j, top + cell * i
            cv2.rectangle(img, (x, y), (x + cell, y + cell), (255, shade, shade), -1)
            cv2.rectangle(img, (x, y), (x + cell, y + cell), (200, 200, 200), 1)
            cv2.putText(img, str(int(cm[i, j])), (x + 4, y + cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                        (0, 0, 0), 1, cv2.LINE_AA)
    for j in range(n):  # column labels written sideways
        strip = np.full((cell, top - 4, 3), 255, np.uint8)
        cv2.putText(strip, labels[j][:16], (2, cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        rotated = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
        img[0 : top - 4, left + cell * j : left + cell * (j + 1)] = rotated
    cv2.imwrite(str(path), img)
