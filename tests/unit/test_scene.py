"""The scene stage: one truck per vehicle with its load evidence, piles, one class per object."""

from __future__ import annotations

import numpy as np
import pytest

from detector.events import LoadState
from detector.loadstate import LoadVotes, detector_evidence
from detector.scene import (
    AlarmView,
    ProductView,
    SceneSettings,
    group_piles,
    merge_trucks,
    pile_boxes,
    product_boxes,
    resolve_classes,
    scene,
)
from detector.types import CANONICAL_LABELS, Detections
from tests.helpers.detections import FakeBackend, make_detections

NAMES = list(CANONICAL_LABELS)
S = SceneSettings()


def labels(det: Detections) -> list[str]:
    return [NAMES[int(c)] for c in det.class_id]


def test_truck_and_uncovered_box_of_one_vehicle_become_one_truck_with_its_load_evidence() -> None:
    det = make_detections([(100, 100, 300, 200, 0.6, "uncovered_truck"), (105, 98, 302, 205, 0.2, "truck"),
                           (600, 100, 800, 200, 0.7, "truck"), (10, 10, 20, 40, 0.9, "person")])
    out = merge_trucks(det, NAMES, S)
    assert sorted(labels(out)) == ["person", "truck", "truck"]
    trucks = out[out.class_id == NAMES.index("truck")]
    left = trucks[trucks.xyxy[:, 0] < 500]
    assert left.confidence[0] == pytest.approx(0.6)
    assert left.data["uncovered"][0] == pytest.approx(0.6 / 0.8)
    right = trucks[trucks.xyxy[:, 0] > 500]
    assert right.data["uncovered"][0] == 0.0  # a truck box alone: covered evidence
    assert out[out.class_id == NAMES.index("person")].data["uncovered"][0] == -1  # not a truck


def test_two_trucks_of_the_same_class_side_by_side_stay_two() -> None:
    det = make_detections([(100, 100, 300, 200, 0.6, "uncovered_truck"), (150, 100, 350, 200, 0.5, "uncovered_truck")])
    out = merge_trucks(det, NAMES, S)
    assert len(out) == 2 and np.all(out.data["uncovered"] == 1.0)


def test_two_trucks_are_never_merged_through_a_box_between_them() -> None:
    det = make_detections([(120, 100, 320, 200, 0.6, "truck"), (180, 100, 380, 200, 0.5, "uncovered_truck"),
                           (240, 100, 440, 200, 0.7, "truck")])  # the middle box overlaps both with IoU 0.54
    out = merge_trucks(det, NAMES, S)
    assert len(out) == 2 and labels(out) == ["truck", "truck"]
    assert sorted(out.data["uncovered"].tolist()) == pytest.approx([0.0, 0.5 / 1.1])


def test_the_scene_stage_applied_twice_changes_nothing() -> None:
    det = make_detections([(100, 100, 300, 200, 0.8, "uncovered_truck"), (100, 100, 300, 200, 0.2, "truck"),
                           (400, 400, 450, 450, 0.6, "garbage"), (452, 400, 500, 450, 0.5, "garbage"),
                           (10, 10, 20, 40, 0.9, "person")])
    once = scene(det, NAMES)
    twice = scene(once, NAMES)
    assert np.array_equal(once.xyxy, twice.xyxy) and np.array_equal(once.class_id, twice.class_id)
    assert np.allclose(once.data["uncovered"], twice.data["uncovered"])


def test_weak_boxes_neither_group_nor_push_out_what_the_product_sees() -> None:
    det = make_detections([(100, 100, 200, 200, 0.8, "garbage"), (101, 101, 201, 201, 0.01, "street_stall"),
                           (202, 100, 300, 200, 0.05, "garbage")])
    out = scene(det, NAMES)
    assert len(out) == 3 and out.xyxy[0].tolist() == [100, 100, 200, 200]


def test_touching_garbage_boxes_are_one_pile_and_far_or_weak_ones_stay_apart() -> None:
    det = make_detections([(100, 100, 150, 150, 0.5, "garbage"), (152, 110, 200, 160, 0.8, "garbage"),
                           (198, 100, 260, 140, 0.3, "garbage"), (600, 600, 650, 650, 0.6, "garbage"),
                           (262, 100, 300, 140, 0.1, "garbage")])
    out = group_piles(det, NAMES, S)
    assert len(out) == 3
    pile = out[np.array([np.argmax(out.confidence)])]
    assert pile.xyxy[0].tolist() == [100, 100, 260, 160] and pile.confidence[0] == pytest.approx(0.8)
    assert len(group_piles(det, NAMES, SceneSettings(piles=False))) == 5


def test_a_pile_is_not_an_overflowing_bin_unless_a_bin_is_there() -> None:
    pile_and_wall = [(100, 100, 200, 200, 0.4, "garbage"), (110, 90, 220, 210, 0.45, "overflowing_bin")]
    out = resolve_classes(make_detections(pile_and_wall), NAMES, S)
    assert labels(out) == ["garbage"]
    assert NAMES[int(out.data["alt_class_id"][0])] == "overflowing_bin"
    assert out.data["alt_confidence"][0] == pytest.approx(0.45)
    with_bin = resolve_classes(make_detections([*pile_and_wall, (160, 100, 250, 200, 0.3, "garbage_bin")]), NAMES, S)
    assert sorted(labels(with_bin)) == ["garbage_bin", "overflowing_bin"]
    sure = resolve_classes(make_detections([pile_and_wall[0], (110, 90, 220, 210, 0.7, "overflowing_bin")]), NAMES, S)
    assert labels(sure) == ["overflowing_bin"] and NAMES[int(sure.data["alt_class_id"][0])] == "garbage"


def test_a_wall_beside_a_pile_taken_for_an_overflowing_bin_is_part_of_the_pile() -> None:
    det = make_detections([(100, 100, 200, 200, 0.5, "garbage"), (203, 60, 300, 200, 0.4, "overflowing_bin"),
                           (600, 100, 700, 200, 0.6, "overflowing_bin")])
    out = resolve_classes(det, NAMES, S)
    assert sorted(labels(out)) == ["garbage", "overflowing_bin"]  # the far bin stays a bin of its own
    assert out[out.class_id == NAMES.index("overflowing_bin")].xyxy[0, 0] == 600


def test_a_small_pile_in_front_of_a_stall_and_a_sure_bin_beside_its_spill_stay_two_objects() -> None:
    det = make_detections([(100, 100, 400, 300, 0.9, "street_stall"), (150, 220, 230, 290, 0.8, "garbage"),
                           (600, 100, 700, 200, 0.8, "overflowing_bin"), (702, 150, 760, 200, 0.5, "garbage")])
    assert sorted(labels(resolve_classes(det, NAMES, S))) == ["garbage", "garbage", "overflowing_bin", "street_stall"]


def test_overlapping_stall_and_barbecue_are_one_object_and_separate_ones_stay() -> None:
    det = make_detections([(100, 100, 300, 300, 0.5, "street_stall"), (120, 150, 280, 290, 0.7, "barbecue"),
                           (600, 600, 700, 700, 0.6, "garbage")])
    out = resolve_classes(det, NAMES, S)
    assert sorted(labels(out)) == ["barbecue", "garbage"]
    bbq = out[out.class_id == NAMES.index("barbecue")]
    assert NAMES[int(bbq.data["alt_class_id"][0])] == "street_stall"
    assert out[out.class_id == NAMES.index("garbage")].data["alt_class_id"][0] == -1


def test_product_boxes_score_trucks_by_their_load_evidence() -> None:
    det = scene(make_detections([(100, 100, 300, 200, 0.8, "uncovered_truck"), (100, 100, 300, 200, 0.2, "truck")]),
                NAMES)
    boxes = product_boxes(det, NAMES)
    by = {n: float(c) for n, c in zip(labels(boxes), boxes.confidence, strict=True)}
    assert by["uncovered_truck"] == pytest.approx(0.8 * 0.8) and by["truck"] == pytest.approx(0.8 * 0.2)


def test_pile_boxes_score_a_pile_first_and_its_items_as_parts() -> None:
    det = make_detections([(100, 100, 150, 150, 0.8, "garbage"), (148, 110, 200, 160, 0.6, "garbage"),
                           (400, 400, 450, 450, 0.7, "garbage"),  # alone: its own pile, unchanged
                           (152, 100, 190, 120, 0.1, "garbage"),  # below min_confidence: neither part nor pile
                           (120, 90, 140, 140, 0.9, "person")])
    out = pile_boxes(det, NAMES, S)
    got = sorted((round(float(c), 3), [int(v) for v in b]) for b, c, k in
                 zip(out.xyxy, out.confidence, out.class_id, strict=True) if NAMES[int(k)] == "garbage")
    assert got == [(0.1, [152, 100, 190, 120]), (0.3, [148, 110, 200, 160]), (0.4, [100, 100, 150, 150]),
                   (0.7, [400, 400, 450, 450]), (0.8, [100, 100, 200, 160])]
    assert labels(out).count("person") == 1
    assert len(pile_boxes(det, NAMES, SceneSettings(piles=False))) == len(det)  # piles off: items as they are


def test_product_view_scores_piles_with_their_parts_and_trucks_by_load() -> None:
    det = make_detections([(100, 100, 150, 150, 0.8, "garbage"), (150, 100, 200, 150, 0.4, "garbage"),
                           (300, 100, 500, 200, 0.5, "truck")])
    view = ProductView(FakeBackend(fixed=det))
    out = view.detect([np.zeros((10, 10, 3), np.uint8)])[0]
    assert sorted(labels(out)) == ["garbage", "garbage", "garbage", "truck", "uncovered_truck"]
    pile = out[(out.class_id == NAMES.index("garbage")) & (out.confidence == np.float32(0.8))]
    assert pile.xyxy.tolist() == [[100, 100, 200, 150]]


def test_alarm_view_scores_what_the_rules_act_on_piles_whole_and_trucks_as_one_box() -> None:
    det = make_detections([(100, 100, 150, 150, 0.8, "garbage"), (150, 100, 200, 150, 0.4, "garbage"),
                           (300, 100, 500, 200, 0.5, "truck")])
    out = AlarmView(FakeBackend(fixed=det)).detect([np.zeros((10, 10, 3), np.uint8)])[0]
    assert sorted(labels(out)) == ["garbage", "truck"]  # no parts, no second box per truck
    pile = out[out.class_id == NAMES.index("garbage")]
    assert pile.xyxy.tolist() == [[100, 100, 200, 150]] and pile.confidence.tolist() == [pytest.approx(0.8)]


def test_scene_keeps_data_through_tracking_and_slicing() -> None:
    det = scene(make_detections([(0, 0, 10, 10, 0.5, "person"), (20, 0, 40, 10, 0.6, "truck")]), NAMES)
    tracked = det.with_tracker_ids(np.array([3, 4]))
    assert set(tracked.data) == {"uncovered", "alt_class_id", "alt_confidence"}
    assert tracked[np.array([1])].data["uncovered"].tolist() == [0.0]
    with pytest.raises(ValueError, match="rows"):
        Detections(det.xyxy, det.confidence, det.class_id, data={"uncovered": np.zeros(5)})


def test_load_votes_need_samples_and_a_clear_majority_weighted_by_confidence() -> None:
    v = LoadVotes(min_samples=3)
    v.add(detector_evidence(0.9), 0.8)
    v.add(detector_evidence(0.8), 0.7)
    assert v.state() is LoadState.UNKNOWN  # two frames are not enough
    v.add(detector_evidence(0.1), 0.1)  # a weak, contrary frame
    assert v.state() is LoadState.UNCOVERED and v.probability()["uncovered"] > 0.8
    flat = LoadVotes(min_samples=1, min_share=0.6)
    flat.add(np.array([0.4, 0.3, 0.3, 0.0], np.float32))
    assert flat.state() is LoadState.UNKNOWN  # no state leads clearly
    hidden = LoadVotes(min_samples=1)
    hidden.add(detector_evidence(-1.0))
    assert hidden.state() is LoadState.UNKNOWN and hidden.probability()["unknown"] == 1.0
    empty = LoadVotes(min_samples=1)
    empty.add(np.array([0.1, 0.1, 0.8, 0.0], np.float32), 0.9)
    assert empty.state() is LoadState.EMPTY


def test_a_pile_between_two_walls_taken_for_overflowing_bins_is_garbage() -> None:
    det = make_detections([(80, 100, 150, 200, 0.45, "overflowing_bin"), (100, 100, 200, 200, 0.4, "garbage"),
                           (160, 100, 230, 200, 0.42, "overflowing_bin")])
    out = resolve_classes(det, NAMES, S)
    assert labels(out) == ["garbage"]


def test_a_model_without_a_plain_truck_class_still_gives_uncovered_evidence() -> None:
    names = [n for n in NAMES if n != "truck"]
    det = Detections(np.array([[100, 100, 300, 200], [10, 10, 20, 40]], np.float32), np.array([0.7, 0.9], np.float32),
                     np.array([names.index("uncovered_truck"), names.index("person")]))
    out = merge_trucks(det, names, S)
    assert out.data["uncovered"].tolist() == [1.0, -1.0]
