"""Multi-object tracking with norfair (pure Python, no PyTorch).

Tracks are kept per class with an IoU distance on boxes; the tracker's Kalman
filter bridges short occlusions. Timestamps matter to the violation rules, not
to the tracker, which only assigns ids to the current frame's detections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from detector.types import Detections

if TYPE_CHECKING:
    from norfair.tracker import Tracker as NfTracker


class Tracker(Protocol):
    """Assigns track ids to detections, frame by frame."""

    def update(self, detections: Detections) -> Detections:
        """Return the detections with ``tracker_id`` set (-1 where not yet tracked)."""
        ...


class NorfairTracker:
    """A norfair tracker adapted to :class:`Detections`.

    Args:
        iou_threshold: Minimum IoU for a detection to continue a track.
        hit_counter_max: Frames a track survives without detections.
        initialization_delay: Detections needed before a track gets an id.
    """

    def __init__(self, iou_threshold: float = 0.1, hit_counter_max: int = 8, initialization_delay: int = 0) -> None:
        from norfair.tracker import Tracker as NfTracker  # scipy underneath: loaded by the first tracker only

        self._tracker: NfTracker = NfTracker(distance_function="iou", distance_threshold=1.0 - iou_threshold,
                                  hit_counter_max=hit_counter_max, initialization_delay=initialization_delay)

    def update(self, detections: Detections) -> Detections:
        """Track one frame's detections."""
        from norfair.tracker import Detection as NfDetection

        nf = [NfDetection(points=np.asarray(b, np.float64).reshape(2, 2), scores=np.array([c, c]), label=k,
                          data=i)
              for i, (b, c, k, _) in enumerate(detections)]
        tracked = self._tracker.update(detections=nf)
        ids = np.full(len(detections), -1, np.int64)
        for obj in tracked:
            last = obj.last_detection
            if last is not None and obj.id is not None and last.data is not None and obj.hit_counter_is_positive:
                idx = int(last.data)
                if idx < len(ids) and obj.last_detection in nf:
                    ids[idx] = int(obj.id)
        return detections.with_tracker_ids(ids)
