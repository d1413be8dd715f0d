"""Scoring garbage against labels that count bags and labels that mark heaps (``evaluate images --label-piles``)."""

from __future__ import annotations

import numpy as np
import pytest

from detector.scene import SceneSettings, pile_boxes
from detector.types import CANONICAL_LABELS
from pipelines.evaluation.images import ImageEval, coco_ap, label_piles
from tests.helpers.detections import make_detections

NAMES = list(CANONICAL_LABELS)
G = NAMES.index("garbage")
BAGS = [(100, 100, 150, 150, 0.9, "garbage"), (150, 100, 200, 150, 0.8, "garbage"),  # three bags in a heap
        (120, 150, 180, 200, 0.6, "garbage")]
BIN = (400, 100, 450, 160, 0.7, "garbage_bin")


def _eval(dets: list[tuple[float, float, float, float, float, str]], pile_view: bool) -> ImageEval:
    labelled = make_detections([*BAGS, BIN])
    det = make_detections(dets)
    if pile_view:
        det = pile_boxes(det, NAMES, SceneSettings())
    return ImageEval(classes=["garbage", "garbage_bin"], absent={},
                     gt=[(0, labelled.xyxy, labelled.class_id)],
                     dets=[(0, det.xyxy, det.confidence, det.class_id)], sizes={0: (640, 480)})


def _ap(ev: ImageEval, cls: str = "garbage") -> float:
    return coco_ap(ev, NAMES)[0][cls][0]


def test_label_piles_merges_touching_labelled_garbage_only() -> None:
    ev = label_piles(_eval([*BAGS, BIN], pile_view=False), NAMES)
    _, boxes, cls = ev.gt[0]
    assert sorted(boxes[cls == G].tolist()) == [[100, 100, 200, 200]]
    assert (cls == NAMES.index("garbage_bin")).sum() == 1  # other classes as labelled


def test_a_pile_view_reads_both_label_conventions() -> None:
    items = _eval([*BAGS, BIN], pile_view=False)
    piles = _eval([*BAGS, BIN], pile_view=True)
    assert _ap(items) == pytest.approx(1.0) and _ap(label_piles(items, NAMES)) == pytest.approx(0.0)
    assert _ap(label_piles(piles, NAMES)) == pytest.approx(1.0)  # the heap is found first
    assert 0.5 < _ap(piles) < 1.0  # the bags still count, after the heap that is not labelled as such
    assert _ap(piles, "garbage_bin") == pytest.approx(1.0)
    assert np.isclose(sorted(piles.dets[0][2].tolist()), [0.3, 0.4, 0.45, 0.7, 0.9]).all()
