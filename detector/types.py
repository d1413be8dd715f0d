"""The one detection type that flows between pipeline stages.

`Detections` holds parallel arrays, one row per object, in the style of
roboflow/supervision: boxes ``xyxy (n, 4)`` in pixels, ``confidence (n,)``,
``class_id (n,)`` and an optional ``tracker_id (n,)``. Shapes are checked on
construction, so a malformed stage output fails where it is produced.

Example:
    >>> import numpy as np
    >>> d = Detections(xyxy=np.array([[0, 0, 10, 10]], np.float32),
    ...                confidence=np.array([0.9], np.float32),
    ...                class_id=np.array([3]))
    >>> len(d[d.confidence > 0.5])
    1
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

#: Labels of the violation classes and their direct evidence (trucks, bins, smoke, fire), in the order of
#: the first models (0.1-0.3); later models append the context labels.
VIOLATION_LABELS: tuple[str, ...] = (
    "street_stall",
    "uncovered_truck",
    "truck",
    "garbage",
    "garbage_bin",
    "overflowing_bin",
    "barbecue",
    "smoke",
    "fire",
)

#: Context labels (COCO classes a street camera must know): they never open a case by themselves, the rules
#: use them (people and furniture at a stall, a truck's load state). Taught by the COCO teacher.
CONTEXT_LABELS: tuple[str, ...] = (
    "person",
    "bicycle",
    "motorcycle",
    "car",
    "bus",
    "umbrella",
    "chair",
    "bench",
    "dining_table",
)

#: Canonical detector label names, in the order used by the shipped models (0.4 and later).
CANONICAL_LABELS: tuple[str, ...] = VIOLATION_LABELS + CONTEXT_LABELS


@dataclass(frozen=True)
class Detections:
    """Detections of one frame as parallel arrays.

    Attributes:
        xyxy: Boxes ``(n, 4)`` as x1, y1, x2, y2 in pixels.
        confidence: Scores ``(n,)`` in 0..1.
        class_id: Class indices ``(n,)`` into the model's label names.
        tracker_id: Track ids ``(n,)``; -1 where no track is assigned.
        data: Further per-row arrays by name (first axis ``n``), e.g. the scene stage's ``alt_class_id``,
            ``alt_confidence`` and ``uncovered`` (see :mod:`detector.scene`); sliced and merged with the rows.
    """

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray
    tracker_id: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    data: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(xyxy)
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        cls = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        tid = np.asarray(self.tracker_id, dtype=np.int64).reshape(-1)
        if len(tid) == 0 and n:
            tid = np.full(n, -1, np.int64)
        for name, arr in (("confidence", conf), ("class_id", cls), ("tracker_id", tid)):
            if len(arr) != n:
                raise ValueError(f"Detections.{name} has {len(arr)} rows, xyxy has {n}")
        data = {k: np.asarray(v) for k, v in self.data.items()}
        for key, col in data.items():
            if col.ndim == 0 or len(col) != n:
                raise ValueError(f"Detections.data[{key!r}] has {0 if col.ndim == 0 else len(col)} rows, xyxy has {n}")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cls)
        object.__setattr__(self, "tracker_id", tid)

    @classmethod
    def empty(cls) -> Detections:
        """Return detections with no rows."""
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int64),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.int64] | slice) -> Detections:
        """Select rows with a boolean mask, an index array or a slice."""
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            tracker_id=self.tracker_id[index],
            data={k: v[index] for k, v in self.data.items()},
        )

    def __iter__(self) -> Iterator[tuple[FloatArray, float, int, int]]:
        for i in range(len(self)):
            yield self.xyxy[i], float(self.confidence[i]), int(self.class_id[i]), int(self.tracker_id[i])

    def with_tracker_ids(self, tracker_id: IntArray) -> Detections:
        """Return a copy carrying the given track ids."""
        return replace(self, tracker_id=np.asarray(tracker_id, np.int64))

    def shifted(self, dx: float, dy: float) -> Detections:
        """Return a copy with every box moved by ``(dx, dy)`` pixels (from a crop into its frame)."""
        offset = np.array([dx, dy, dx, dy], np.float32)
        return replace(self, xyxy=np.asarray(self.xyxy + offset, np.float32))

    def scaled(self, sx: float, sy: float) -> Detections:
        """Return a copy with every box scaled by ``(sx, sy)`` (from a smaller copy of a frame into the frame)."""
        factor = np.array([sx, sy, sx, sy], np.float32)
        return replace(self, xyxy=np.asarray(self.xyxy * factor, np.float32))

    def bottom_center(self) -> FloatArray:
        """Return the ``(n, 2)`` bottom-centre anchor points (where objects touch the ground)."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2
        return np.asarray(np.stack([x, self.xyxy[:, 3]], axis=1), np.float32)

    @staticmethod
    def merge(items: list[Detections]) -> Detections:
        """Concatenate several detections into one."""
        items = [d for d in items if len(d)]
        if not items:
            return Detections.empty()
        keys = set(items[0].data)
        if any(set(d.data) != keys for d in items):
            raise ValueError("cannot merge detections with different data keys")
        return Detections(
            xyxy=np.concatenate([d.xyxy for d in items]),
            confidence=np.concatenate([d.confidence for d in items]),
            class_id=np.concatenate([d.class_id for d in items]),
            tracker_id=np.concatenate([d.tracker_id for d in items]),
            data={k: np.concatenate([d.data[k] for d in items]) for k in keys},
        )
