"""Polygon zones: which detections stand inside a watched area.

Polygons are given in normalised 0..1 image coordinates (one format only) and
scaled to the frame size when first used. A detection is inside when its
bottom-centre anchor (where it touches the ground) is inside the polygon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from detector.types import Detections


@dataclass
class PolygonZone:
    """A polygon in normalised coordinates.

    Attributes:
        polygon: ``(k, 2)`` vertices, x and y in 0..1 of the frame size.
    """

    polygon: npt.NDArray[np.float32]
    _cache: dict[tuple[int, int], npt.NDArray[np.float32]] = field(default_factory=dict, repr=False)

    def pixels(self, width: int, height: int) -> npt.NDArray[np.float32]:
        """Return the polygon in pixels of a ``width x height`` frame."""
        key = (width, height)
        if key not in self._cache:
            self._cache[key] = (np.asarray(self.polygon, np.float32) * [width, height]).astype(np.float32)
        return self._cache[key]

    def contains(self, points: npt.NDArray[np.float32], width: int, height: int) -> npt.NDArray[np.bool_]:
        """Return a boolean mask of which ``(n, 2)`` pixel points are inside (edges count as inside)."""
        poly = self.pixels(width, height).reshape(-1, 1, 2)
        return np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0 for x, y in points], bool)

    def trigger(self, detections: Detections, width: int, height: int) -> npt.NDArray[np.bool_]:
        """Return which detections have their bottom-centre anchor inside the zone."""
        if len(detections) == 0:
            return np.zeros(0, bool)
        return self.contains(detections.bottom_center(), width, height)
