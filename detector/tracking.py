"""Multi-object tracking: IoU association with a constant-velocity Kalman filter per box, in NumPy.

:class:`BoxTracker` is norfair's IoU tracker (``Tracker(distance_function="iou")`` with its default
``OptimizedKalmanFilterFactory``) written over arrays: the same greedy association, hit counters, ids and
filter, so it assigns the same ids frame by frame (``tests/unit/test_tracking.py`` checks this against norfair
on random scenes), at a fraction of norfair's per-object Python cost. The service runs one tracker per camera
under one interpreter lock shared with the readers and the detector, so this cost was live capacity
(``bench/tracker.py``).

Tracks are kept per class. A track's state is its box corners and their velocities; the filter's covariance is
the same for every coordinate of a track (every coordinate is measured at every hit), so it is three numbers per
track. Timestamps matter to the violation rules, not to the tracker, which only assigns ids to the current
frame's detections.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from detector.types import Detections

# norfair's OptimizedKalmanFilterFactory defaults: measurement noise, process noise, initial covariance.
_R, _Q = 4.0, 0.1
_POS_VAR, _POS_VEL_COV, _VEL_VAR = 10.0, 0.0, 1.0


class Tracker(Protocol):
    """Assigns track ids to detections, frame by frame."""

    def update(self, detections: Detections) -> Detections:
        """Return the detections with ``tracker_id`` set (-1 where not yet tracked)."""
        ...


def iou_distance(boxes: npt.NDArray[np.float64], tracks: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``1 - IoU`` of every box ``(n, 4)`` against every track box ``(m, 4)``, as an ``(n, m)`` matrix.

    Degenerate pairs (both areas zero) get distance 1: they never match.
    """
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_t = (tracks[:, 2] - tracks[:, 0]) * (tracks[:, 3] - tracks[:, 1])
    top_left = np.maximum(boxes[:, None, :2], tracks[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], tracks[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    union = area_b[:, None] + area_t[None, :] - inter
    return np.asarray(1.0 - inter / np.maximum(union, 1e-12), np.float64)  # union 0: intersection 0 too


def greedy_match(distance: npt.NDArray[np.float32], threshold: float) -> list[tuple[int, int]]:
    """Pairs ``(row, column)`` taken by increasing distance while it is below ``threshold``.

    Each row and column is used once; ties go to the first in row-major order (norfair's rule, which avoids
    the global optimum's habit of pairing far objects to lower a sum).
    """
    d = distance.copy()
    pairs: list[tuple[int, int]] = []
    if d.size == 0:
        return pairs
    blocked = np.float32(threshold + 1)
    while True:
        flat = int(d.argmin())
        row, col = divmod(flat, d.shape[1])
        if not d[row, col] < threshold:
            return pairs
        pairs.append((row, col))
        d[row, :] = blocked
        d[:, col] = blocked


class BoxTracker:
    """Tracks boxes per class; see the module's description.

    Args:
        iou_threshold: Minimum IoU for a detection to continue a track.
        hit_counter_max: Frames a track survives without detections (its hit counter's ceiling; each hit adds 2,
            each frame takes 1, a track below 0 ends).
        initialization_delay: Hits a new track needs before it gets an id (0: an id at its first detection).
    """

    def __init__(self, iou_threshold: float = 0.1, hit_counter_max: int = 8, initialization_delay: int = 0) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if hit_counter_max < 1 or initialization_delay < 0:
            raise ValueError("hit_counter_max must be >= 1 and initialization_delay >= 0")
        self.distance_threshold = 1.0 - iou_threshold
        self.hit_counter_max = hit_counter_max
        self.initialization_delay = initialization_delay
        self._x = np.zeros((0, 8))  # corners x1 y1 x2 y2, then their velocities
        self._p = np.zeros((0, 3))  # position variance, position-velocity covariance, velocity variance
        self._hits = np.zeros(0, np.int64)
        self._label = np.zeros(0, np.int64)
        self._id = np.zeros(0, np.int64)  # -1 while a track is initialising
        self._next_id = 1

    def __len__(self) -> int:
        """Tracks kept (alive or waiting to be bridged)."""
        return len(self._hits)

    def update(self, detections: Detections) -> Detections:
        """Track one frame's detections: ids of the tracks they continue or start (-1 while initialising)."""
        keep = self._hits >= 0
        if not keep.all():
            self._x, self._p, self._hits = self._x[keep], self._p[keep], self._hits[keep]
            self._label, self._id = self._label[keep], self._id[keep]
        self._hits -= 1
        self._x[:, :4] += self._x[:, 4:]

        boxes = np.asarray(detections.xyxy, np.float64)
        labels = np.asarray(detections.class_id, np.int64)
        n = len(boxes)
        det_track = np.full(n, -1, np.int64)  # index of the track each detection continues
        order: list[int] = []  # matched detections in the order they were paired (ids are handed out so)
        if n and len(self._hits):
            initialised = self._id >= 0
            # Initialised tracks first, then initialising ones take what is left (norfair's two passes).
            passes = [np.arange(len(initialised))] if initialised.all() else \
                [np.flatnonzero(initialised), np.flatnonzero(~initialised)]
            for tracks in passes:
                rows = np.flatnonzero(det_track < 0)
                if not len(tracks) or not len(rows):
                    continue
                same = labels[rows][:, None] == self._label[tracks][None, :]
                if not same.any():
                    continue
                d = np.where(same, iou_distance(boxes[rows], self._x[tracks, :4]), np.inf).astype(np.float32)
                for r, c in greedy_match(d, self.distance_threshold):
                    det_track[rows[r]] = tracks[c]
                    order.append(int(rows[r]))
            if order:
                self._hit(det_track[order], boxes[order])
        new = np.flatnonzero(det_track < 0)
        if len(new):
            det_track[new] = self._start(boxes[new], labels[new])
        return detections.with_tracker_ids(self._id[det_track])

    def _hit(self, tracks: npt.NDArray[np.int64], boxes: npt.NDArray[np.float64]) -> None:
        """Count a hit on ``tracks`` and correct their filters with ``boxes`` (every coordinate measured)."""
        self._hits[tracks] = np.minimum(self._hits[tracks] + 2, self.hit_counter_max)
        starting = (self._id[tracks] < 0) & (self._hits[tracks] > self.initialization_delay)
        for t in tracks[starting]:  # in the order given: the order of pairing
            self._id[t] = self._next_id
            self._next_id += 1
        pos_var, pos_vel, vel_var = self._p[tracks].T
        error = boxes - self._x[tracks, :4]
        vel_plus_cov = pos_vel + vel_var
        added = pos_var + pos_vel + vel_plus_cov + _Q + _R
        gain_pos = 1.0 - _R / added
        gain_vel = vel_plus_cov / added
        self._x[tracks, :4] += gain_pos[:, None] * error
        self._x[tracks, 4:] += gain_vel[:, None] * error
        self._p[tracks] = np.stack([gain_pos * _R, gain_vel * _R, vel_var + _Q - gain_vel**2 * added], axis=1)

    def _start(self, boxes: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """New tracks at ``boxes``; returns their indices. A new track has one frame of life (hit counter 1)."""
        k = len(boxes)
        first = len(self._hits)
        ids = np.full(k, -1, np.int64)
        if self.initialization_delay == 0:  # the new hit counter, 1, is above the delay: ids at once
            ids = np.arange(self._next_id, self._next_id + k, dtype=np.int64)
            self._next_id += k
        self._x = np.concatenate([self._x, np.hstack([boxes, np.zeros((k, 4))])])
        self._p = np.concatenate([self._p, np.tile([_POS_VAR, _POS_VEL_COV, _VEL_VAR], (k, 1))])
        self._hits = np.concatenate([self._hits, np.ones(k, np.int64)])
        self._label = np.concatenate([self._label, labels])
        self._id = np.concatenate([self._id, ids])
        return np.arange(first, first + k, dtype=np.int64)
