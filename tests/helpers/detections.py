"""Hand-made detections and a scripted detector backend, for tests without a model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.backends.base import DetectorBackend, Image
from detector.types import CANONICAL_LABELS, Detections


def make_detections(rows: list[tuple[float, float, float, float, float, str]], tracker_ids: list[int] | None = None
                    ) -> Detections:
    """Build detections from ``(x1, y1, x2, y2, conf, label)`` rows."""
    if not rows:
        return Detections.empty()
    arr = np.array([r[:5] for r in rows], np.float32)
    cls = np.array([CANONICAL_LABELS.index(r[5]) for r in rows], np.int64)
    det = Detections(xyxy=arr[:, :4], confidence=arr[:, 4], class_id=cls)
    return det.with_tracker_ids(np.array(tracker_ids, np.int64)) if tracker_ids is not None else det


class FakeBackend(DetectorBackend):
    """A detector that returns scripted detections, for pipeline tests without a model.

    The scripted boxes are in frame pixels: its input side is large enough that the pipeline never hands it a
    shrunk frame (whose boxes it would scale back).
    """

    def __init__(self, script: list[Detections] | None = None, fixed: Detections | None = None) -> None:
        self.names = list(CANONICAL_LABELS)
        self.imgsz = 4096
        self.script = list(script or [])
        self.fixed = fixed if fixed is not None else Detections.empty()
        self.calls = 0

    def detect(self, frames: list[Image], sizes: Sequence[int] | None = None) -> list[Detections]:
        out = []
        for _ in frames:
            out.append(self.script[self.calls] if self.calls < len(self.script) else self.fixed)
            self.calls += 1
        return out
