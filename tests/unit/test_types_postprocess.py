from __future__ import annotations

import numpy as np
import pytest

from detector.postprocess import box_iou, decode_end2end, decode_raw, letterbox, nms, to_blob
from detector.types import Detections
from tests.helpers.detections import make_detections


def test_detections_check_shapes() -> None:
    with pytest.raises(ValueError, match="confidence has 2 rows"):
        Detections(xyxy=np.zeros((1, 4)), confidence=np.zeros(2), class_id=np.zeros(1))


def test_detections_mask_and_merge() -> None:
    d = make_detections([(0, 0, 10, 10, 0.9, "garbage"), (5, 5, 20, 20, 0.2, "street_stall")])
    assert d.tracker_id.tolist() == [-1, -1]
    kept = d[d.confidence > 0.5]
    assert len(kept) == 1 and kept.class_id.tolist() == [3]
    merged = Detections.merge([d, kept, Detections.empty()])
    assert len(merged) == 3
    assert d.bottom_center().tolist() == [[5.0, 10.0], [12.5, 20.0]]


@pytest.mark.parametrize(("h", "w"), [(720, 1280), (360, 640), (1080, 1080), (1, 1), (480, 200)])
def test_letterbox_round_trip(h: int, w: int) -> None:
    img = np.zeros((h, w, 3), np.uint8)
    boxed, lb = letterbox(img, 320)
    assert boxed.shape == (320, 320, 3)
    box = np.array([[0.1 * w, 0.2 * h, 0.6 * w, 0.9 * h]], np.float32)
    mapped = box.copy()
    mapped[:, [0, 2]] = mapped[:, [0, 2]] * lb.scale + lb.pad_x
    mapped[:, [1, 3]] = mapped[:, [1, 3]] * lb.scale + lb.pad_y
    np.testing.assert_allclose(lb.unmap(mapped), box, atol=1e-3)
    assert to_blob([boxed]).shape == (1, 3, 320, 320)


def test_iou_and_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    iou = box_iou(boxes, boxes)
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[0, 1] == pytest.approx(81 / 100)
    assert iou[0, 2] == 0
    keep = nms(boxes, np.array([0.5, 0.9, 0.7], np.float32), 0.5)
    assert keep.tolist() == [1, 2]


def test_decode_end2end_filters_by_confidence() -> None:
    out = np.zeros((1, 300, 6), np.float32)
    out[0, 0] = [10, 10, 50, 50, 0.8, 3]
    out[0, 1] = [0, 0, 5, 5, 0.1, 2]
    (d,) = decode_end2end(out, 0.25)
    assert len(d) == 1 and d.class_id.tolist() == [3]


def test_decode_raw_class_wise_nms() -> None:
    nc, anchors = 3, 4
    raw = np.zeros((1, 4 + nc, anchors), np.float32)
    # Two overlapping boxes of class 0 and one identical box of class 1: class-wise NMS keeps 2.
    for a, (cx, cy, w, h, cls, score) in enumerate([(20, 20, 10, 10, 0, 0.9), (21, 21, 10, 10, 0, 0.8),
                                                    (20, 20, 10, 10, 1, 0.7), (80, 80, 4, 4, 2, 0.1)]):
        raw[0, :4, a] = [cx, cy, w, h]
        raw[0, 4 + cls, a] = score
    (d,) = decode_raw(raw, conf=0.25, iou=0.5)
    assert sorted(d.class_id.tolist()) == [0, 1]
    np.testing.assert_allclose(d.xyxy[d.class_id == 0][0], [15, 15, 25, 25])
