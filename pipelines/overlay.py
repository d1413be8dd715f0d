"""Zones and detections drawn on frames (annotated videos, live tiles)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from detector.rules import ZoneSpec
from detector.scene import SceneSettings, pile_extents
from detector.types import Detections

PILE_COLOR = (0, 140, 255)  # orange (BGR): a pile's outline, around the items drawn in their class colour


def draw_zones(image: npt.NDArray[np.uint8], zones: list[ZoneSpec]) -> npt.NDArray[np.uint8]:
    """Draw the watched zones' outlines and ids on a copy of a frame (the whole-frame zone is not drawn)."""
    out = image.copy()
    h, w = out.shape[:2]
    for z in zones:
        if z.id == "frame":
            continue
        pts = np.round(z.zone.pixels(w, h)).astype(np.int32)
        cv2.polylines(out, [pts], True, (0, 215, 255), 2, cv2.LINE_AA)
        x, y = int(pts[:, 0].min()), int(pts[:, 1].min())
        cv2.putText(out, z.id, (x + 4, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 215, 255), 2, cv2.LINE_AA)
    return out


def draw_detections(image: npt.NDArray[np.uint8], det: Detections, names: list[str],
                    piles: SceneSettings | None = None) -> npt.NDArray[np.uint8]:
    """Draw detections with class names, scores and track ids on a copy of a frame.

    ``piles``: the scene settings the rules group piles with; each pile of touching garbage items (one case) is
    outlined around its items and labelled with their number, so an operator sees what one case is about.
    """
    out = image.copy()
    for (x1, y1, x2, y2), n in pile_extents(det, names, piles) if piles is not None else []:
        p1, p2 = (int(x1) - 3, int(y1) - 3), (int(x2) + 3, int(y2) + 3)
        cv2.rectangle(out, p1, p2, PILE_COLOR, 3)
        cv2.putText(out, f"garbage pile: {n} items", (p1[0], p2[1] + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    PILE_COLOR, 2, cv2.LINE_AA)
    uncovered = det.data.get("uncovered")
    for i, ((x1, y1, x2, y2), conf, cls, tid) in enumerate(det):
        color = tuple(int(c) for c in np.random.default_rng(cls).integers(60, 255, 3))
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), color, 2)
        name = names[cls] if cls < len(names) else str(cls)
        label = f"{name} {conf:.2f}" + (f" #{tid}" if tid >= 0 else "")
        if uncovered is not None and uncovered[i] >= 0:
            label += f" uncovered {float(uncovered[i]):.2f}"
        cv2.putText(out, label, (int(x1), max(12, int(y1) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return out
