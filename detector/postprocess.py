"""Pure-numpy pre- and post-processing for YOLO detectors.

Letterboxing, decoding of both YOLO output layouts and class-wise NMS live here,
free of any inference runtime so they can be tested on hand-made arrays.

Output layouts:
    * YOLO26 NMS-free end-to-end: ``(batch, max_det, 6)`` rows of
      ``x1, y1, x2, y2, score, class`` in letterboxed input pixels.
    * YOLO11/v8 raw: ``(batch, 4 + n_classes, anchors)`` with ``cx, cy, w, h``
      followed by per-class scores; needs NMS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from detector.types import Detections

UInt8Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Letterbox:
    """How a frame was resized and padded into the network input.

    Attributes:
        scale: Resize factor applied to the original frame.
        pad_x: Left padding in input pixels.
        pad_y: Top padding in input pixels.
        width: Original frame width.
        height: Original frame height.
    """

    scale: float
    pad_x: float
    pad_y: float
    width: int
    height: int

    def unmap(self, xyxy: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Map boxes from network-input pixels back to original-frame pixels, clipped."""
        out = xyxy.astype(np.float32).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out


def letterbox(image: UInt8Image, size: int, pad_value: int = 114, stride: int = 0) -> tuple[UInt8Image, Letterbox]:
    """Resize keeping the aspect ratio so the longer side is ``size``, and pad.

    Args:
        image: BGR image ``(h, w, 3)``.
        size: Network input side in pixels.
        pad_value: Grey level of the padding (Ultralytics uses 114).
        stride: 0 pads to a ``size x size`` square; otherwise each side is padded only up to the next
            multiple of ``stride`` (a 16:9 frame at 320 becomes 320x192 instead of 320x320: 40 % less
            input, the same scale; for models with dynamic height and width, as Ultralytics predicts).

    Returns:
        The padded image and the transform needed to map boxes back.
    """
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
    out_w, out_h = (size, size) if not stride else (-(-nw // stride) * stride, -(-nh // stride) * stride)
    pad_x, pad_y = (out_w - nw) / 2, (out_h - nh) / 2
    top, left = round(pad_y - 0.1), round(pad_x - 0.1)
    out = np.full((out_h, out_w, 3), pad_value, np.uint8)
    out[top : top + nh, left : left + nw] = resized
    return out, Letterbox(scale=scale, pad_x=float(left), pad_y=float(top), width=w, height=h)


def to_blob(images: list[UInt8Image]) -> npt.NDArray[np.float32]:
    """Stack letterboxed BGR images into an NCHW float RGB tensor in 0..1."""
    arr = np.stack(images)[..., ::-1]  # BGR -> RGB
    return np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def box_iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Pairwise IoU of two box sets ``(n, 4)`` and ``(m, 4)`` in xyxy."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod((rb - lt).clip(0), axis=2)
    area_a = np.prod((a[:, 2:] - a[:, :2]).clip(0), axis=1)
    area_b = np.prod((b[:, 2:] - b[:, :2]).clip(0), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.asarray(inter / np.maximum(union, 1e-9), np.float32)


def box_gap(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Pairwise gap between two box sets ``(n, 4)`` and ``(m, 4)`` in xyxy: the larger of the horizontal and
    vertical distances between their edges (negative where they overlap on both axes)."""
    gap_x = np.maximum(a[:, None, 0], b[None, :, 0]) - np.minimum(a[:, None, 2], b[None, :, 2])
    gap_y = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 3], b[None, :, 3])
    return np.asarray(np.maximum(gap_x, gap_y), np.float32)


def nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float) -> npt.NDArray[np.int64]:
    """Greedy non-maximum suppression; returns kept indices by descending score."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while len(order):
        i = int(order[0])
        keep.append(i)
        if len(order) == 1:
            break
        ious = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou]
    return np.asarray(keep, np.int64)


def decode_end2end(output: npt.NDArray[np.float32], conf: float) -> list[Detections]:
    """Decode NMS-free ``(batch, max_det, 6)`` output into per-image detections (input pixels)."""
    results = []
    for rows in output:
        rows = rows[rows[:, 4] >= conf]
        results.append(Detections(xyxy=rows[:, :4], confidence=rows[:, 4], class_id=rows[:, 5].astype(np.int64)))
    return results


def decode_raw(output: npt.NDArray[np.float32], conf: float, iou: float, max_det: int = 300) -> list[Detections]:
    """Decode raw ``(batch, 4 + nc, anchors)`` output with class-wise NMS (input pixels)."""
    results = []
    for pred in output:
        pred = pred.T  # (anchors, 4 + nc)
        scores_all = pred[:, 4:]
        cls = scores_all.argmax(axis=1)
        scores = scores_all[np.arange(len(pred)), cls]
        mask = scores >= conf
        cxcywh, cls, scores = pred[mask, :4], cls[mask], scores[mask]
        xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
        # Offset boxes per class so one NMS pass never suppresses across classes.
        offset = xyxy + (cls[:, None] * 10_000.0)
        keep = nms(offset.astype(np.float32), scores.astype(np.float32), iou)[:max_det]
        results.append(Detections(xyxy=xyxy[keep], confidence=scores[keep], class_id=cls[keep].astype(np.int64)))
    return results


def greedy_pairs(iou: npt.NDArray[np.floating[Any]], min_iou: float) -> dict[int, int]:
    """One-to-one pairs ``row -> column`` of an IoU matrix, best overlap first, each at least ``min_iou``."""
    pairs: dict[int, int] = {}
    if not iou.size:
        return pairs
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        k, j = divmod(int(flat), iou.shape[1])
        if iou[k, j] < min_iou:
            break
        if k not in pairs and j not in pairs.values():
            pairs[k] = j
    return pairs
