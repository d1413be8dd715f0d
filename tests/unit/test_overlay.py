"""Drawn overlays (live tiles, annotated videos): a pile of garbage items, which is one case, is outlined."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detector.scene import SceneSettings, pile_extents
from detector.types import CANONICAL_LABELS
from pipelines.overlay import PILE_COLOR, draw_detections
from tests.helpers.detections import make_detections

NAMES = list(CANONICAL_LABELS)
PILE = make_detections([(100, 100, 150, 150, 0.5, "garbage"), (152, 110, 200, 160, 0.8, "garbage"),
                        (400, 300, 450, 350, 0.7, "garbage")])


def pile_pixels(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    return np.all(image == np.array(PILE_COLOR, np.uint8), axis=2)


def test_pile_extents_are_the_piles_the_rules_group() -> None:
    assert pile_extents(PILE, NAMES, SceneSettings()) == [([100.0, 100.0, 200.0, 160.0], 2)]
    assert pile_extents(PILE, NAMES, SceneSettings(piles=False)) == []


def test_a_pile_is_outlined_around_its_items_and_a_lone_item_is_not() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    drawn = pile_pixels(draw_detections(frame, PILE, NAMES, SceneSettings()))
    ys, xs = np.nonzero(drawn)
    assert len(xs) > 0
    # the outline encloses the two touching items (3 px out), and nothing is drawn around the lone one
    assert xs.min() <= 97 and xs.max() >= 203 and ys.min() <= 97
    assert not drawn[290:360, 390:460].any()
    assert not pile_pixels(draw_detections(frame, PILE, NAMES)).any()  # no settings: items only
    assert not pile_pixels(draw_detections(frame, PILE, NAMES, SceneSettings(piles=False))).any()
