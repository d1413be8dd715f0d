"""The NumPy tracker: norfair's IoU tracker's ids, frame by frame, and its own edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from bench.tracker import NorfairReference, moving_boxes
from detector.tracking import BoxTracker, greedy_match, iou_distance
from detector.types import Detections


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("iou", "hit_max", "delay"), [(0.1, 8, 0), (0.1, 2, 0), (0.3, 5, 2), (0.5, 3, 1)])
def test_ids_are_norfairs_frame_by_frame(seed: int, iou: float, hit_max: int, delay: int) -> None:
    ours, theirs = BoxTracker(iou, hit_max, delay), NorfairReference(iou, hit_max, delay)
    for t, det in enumerate(moving_boxes(seed)):
        assert ours.update(det).tracker_id.tolist() == theirs.update(det), f"frame {t}"


def test_a_track_bridges_a_gap_up_to_its_hit_counter_then_ends() -> None:
    box = Detections(xyxy=np.array([[100, 100, 200, 200]], np.float32), confidence=np.array([0.9], np.float32),
                     class_id=np.array([1]))
    empty = box[np.zeros(1, bool)]
    tracker = BoxTracker(hit_counter_max=4)
    # The hit counter: 1 when a track starts, then -1 a frame and +2 a hit, up to 4: 1, 3, 4, 4.
    assert [int(tracker.update(box).tracker_id[0]) for _ in range(4)] == [1, 1, 1, 1]
    for _ in range(4):  # 4 -> 0: alive
        tracker.update(empty)
    assert int(tracker.update(box).tracker_id[0]) == 1  # -1 in this frame, still matchable: 1 after the hit
    for _ in range(3):  # 1 -> 0 -> -1 -> removed
        tracker.update(empty)
    assert int(tracker.update(box).tracker_id[0]) == 2
    assert len(tracker) == 1


def test_classes_never_share_a_track_and_a_delay_holds_back_ids() -> None:
    xyxy = np.array([[0, 0, 50, 50], [0, 0, 50, 50]], np.float32)
    det = Detections(xyxy=xyxy, confidence=np.array([0.9, 0.8], np.float32), class_id=np.array([0, 4]))
    tracker = BoxTracker(initialization_delay=2)
    assert tracker.update(det).tracker_id.tolist() == [-1, -1]  # a new track's hit counter is 1, not above 2
    assert tracker.update(det).tracker_id.tolist() == [-1, -1]  # 1 - 1 + 2 = 2, still not above 2
    assert tracker.update(det).tracker_id.tolist() == [1, 2]  # 2 - 1 + 2 = 3: ids, one per class


def test_degenerate_boxes_and_empty_frames_are_handled() -> None:
    d = iou_distance(np.array([[5.0, 5, 5, 5]]), np.array([[5.0, 5, 5, 5], [0, 0, 10, 10]]))
    assert d.tolist() == [[1.0, 1.0]]
    assert greedy_match(np.zeros((0, 3), np.float32), 0.9) == []
    tracker = BoxTracker()
    empty = Detections(xyxy=np.zeros((0, 4), np.float32), confidence=np.zeros(0, np.float32),
                       class_id=np.zeros(0, np.int64))
    assert len(tracker.update(empty)) == 0
    point = Detections(xyxy=np.array([[5, 5, 5, 5]], np.float32), confidence=np.array([0.5], np.float32),
                       class_id=np.array([0]))
    assert tracker.update(point).tracker_id.tolist() == [1]
    assert tracker.update(point).tracker_id.tolist() == [2]  # zero area never matches: a new track


def test_greedy_match_takes_the_closest_pair_first() -> None:
    d = np.array([[0.5, 0.1], [0.2, 0.95]], np.float32)
    assert greedy_match(d, 0.9) == [(0, 1), (1, 0)]
    assert greedy_match(np.array([[0.95]], np.float32), 0.9) == []


@pytest.mark.parametrize("kwargs", [{"iou_threshold": 0.0}, {"hit_counter_max": 0}, {"initialization_delay": -1}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BoxTracker(**kwargs)  # type: ignore[arg-type]
