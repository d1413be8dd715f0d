"""Per-class thresholds for a precision (`evaluate thresholds`): matching, the chosen cut, the config fragment."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from pipelines.config import RulesConfig
from pipelines.evaluation.images import ImageEval
from pipelines.evaluation.thresholds import (
    Ranked,
    best_f1,
    calibrate,
    calibrate_reviews,
    config_fragment,
    rank,
    rank_reviews,
    threshold_for,
    violation_thresholds,
)

NAMES = ["truck", "garbage", "smoke", "barbecue"]
CUT = 1e-4  # thresholds are scores rounded down to 4 decimals (a float32 0.7 is written 0.6999)
GARBAGE = 1


def box(x: float) -> list[float]:
    """A 10 x 10 box at ``x``."""
    return [x, 0.0, x + 10.0, 10.0]


def cut(r: Ranked, precision: float) -> float:
    """The threshold chosen for ``precision`` (there must be one)."""
    point = threshold_for(r, precision)
    assert point is not None
    return point.threshold


def image_eval(gt: list[list[float]], dets: list[tuple[list[float], float, int]]) -> ImageEval:
    """One image with garbage labels ``gt`` and detections ``(box, score, class)``."""
    ev = ImageEval(classes=["garbage"], absent={})
    ev.gt.append((0, np.asarray(gt, np.float32).reshape(-1, 4), np.full(len(gt), GARBAGE, np.int64)))
    ev.dets.append((0, np.asarray([d[0] for d in dets], np.float32).reshape(-1, 4),
                    np.asarray([d[1] for d in dets], np.float32), np.asarray([d[2] for d in dets], np.int64)))
    ev.sizes[0] = (200, 20)
    return ev


# Three labelled piles; by falling score: right, right, a second box on the first pile, right, nothing there.
EV = image_eval([box(0), box(50), box(100)],
                [(box(0), 0.9, GARBAGE), (box(50), 0.8, GARBAGE), (box(1), 0.7, GARBAGE),
                 (box(100), 0.6, GARBAGE), (box(150), 0.3, GARBAGE), (box(100), 0.95, 0)])


def test_each_label_is_found_once_and_other_classes_do_not_count() -> None:
    r = rank(EV, GARBAGE)
    assert r.labelled == 3
    assert r.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.3], abs=CUT)
    assert r.hits.tolist() == [True, True, False, True, False]  # the duplicate is a false alarm
    p = r.at(0.5)
    assert (p.tp, p.fp, p.fn, p.precision, p.recall) == (3, 1, 0, 0.75, 1.0)


def test_the_threshold_for_keeping_the_precision_is_chosen() -> None:
    r = rank(EV, GARBAGE)
    assert threshold_for(r, 0.75) == r.at(0.6)  # all three piles, one false alarm in four
    assert cut(r, 0.8) == pytest.approx(0.8, abs=CUT)  # the duplicate at 0.7 would break it
    assert cut(r, 0.5) == pytest.approx(0.6, abs=CUT)  # a cut at 0.3 finds no more: it only adds a false alarm
    f1 = best_f1(r)
    assert f1 is not None and f1.threshold == pytest.approx(0.6, abs=CUT)
    first_wrong = rank(image_eval([box(0)], [(box(100), 0.9, GARBAGE), (box(0), 0.5, GARBAGE)]), GARBAGE)
    assert threshold_for(first_wrong, 0.6) is None  # no cut is that precise
    assert threshold_for(rank(image_eval([box(0)], []), GARBAGE), 0.5) is None
    # Right only on its surest box: a threshold keeping that one alone finds too little to be a calibration.
    surest = rank(image_eval([box(50.0 * i) for i in range(12)],
                             [(box(0), 0.9, GARBAGE), (box(70), 0.8, GARBAGE), (box(120), 0.7, GARBAGE)]), GARBAGE)
    assert threshold_for(surest, 0.9) is None  # 1 of 12 found: below the default 0.1
    found = threshold_for(surest, 0.9, min_recall=0.05)
    assert found is not None and (found.tp, found.fp) == (1, 0)


def test_boxes_of_one_score_are_kept_or_dropped_together() -> None:
    r = rank(image_eval([box(0)], [(box(0), 0.5, GARBAGE), (box(100), 0.5, GARBAGE)]), GARBAGE)
    assert threshold_for(r, 0.6) is None  # the right box alone would be precise, but it cannot be cut alone
    assert threshold_for(r, 0.5) == r.at(0.5)


def test_written_thresholds_keep_the_boxes_they_were_chosen_on() -> None:
    """Thresholds are written with 4 decimals: a score is rounded down, never above itself."""
    r = rank(image_eval([box(0)], [(box(0), 0.123456, GARBAGE)]), GARBAGE)
    t = threshold_for(r, 1.0)
    assert t is not None and t.threshold == 0.1234 and 0.123456 >= t.threshold


def test_violations_take_the_strictest_of_their_labels_and_trucks_are_left_to_the_load_vote() -> None:
    ev = ImageEval(classes=["truck", "smoke", "barbecue"], absent={})
    ev.gt.append((0, np.asarray([box(0), box(50), box(100)], np.float32), np.asarray([0, 2, 3], np.int64)))
    ev.dets.append((0, np.asarray([box(0), box(50), box(150), box(100)], np.float32),
                    np.asarray([0.9, 0.7, 0.6, 0.4], np.float32), np.asarray([0, 2, 2, 3], np.int64)))
    classes = calibrate(ev, NAMES, precision=1.0, current=0.25)
    assert classes["smoke"]["target"]["threshold"] == pytest.approx(0.7, abs=CUT)
    assert classes["barbecue"]["target"]["threshold"] == pytest.approx(0.4, abs=CUT)
    assert "load-state" in classes["truck"]["note"]
    assert violation_thresholds(classes) == {"barbecue": pytest.approx(0.7, abs=CUT)}


def test_the_fragment_is_a_valid_rules_section() -> None:
    classes = calibrate(EV, NAMES, precision=0.75, current=0.25)
    thresholds = violation_thresholds(classes)
    text = config_fragment(thresholds, classes, 0.75, "site.yaml (val, 1 images)", detector_conf=0.25)
    rules = RulesConfig.model_validate(yaml.safe_load(text)["rules"])
    assert rules.min_confidence == {"garbage": pytest.approx(0.6, abs=CUT)}
    assert "garbage P 0.75 R 1.00" in text
    low = config_fragment({"garbage": 0.2}, classes, 0.75, "site", detector_conf=0.25)
    assert "run with --conf 0.2" in low
    never = calibrate(image_eval([box(0)], [(box(100), 0.9, GARBAGE)]), NAMES, precision=0.9, current=0.25)
    text = config_fragment(violation_thresholds(never), never, 0.9, "site", 0.25)
    assert "never that precise while finding 0.1 of the objects (kept at the default): garbage" in text
    assert RulesConfig.model_validate(yaml.safe_load(text)["rules"]).min_confidence == {}


def test_operators_verdicts_give_thresholds_per_violation() -> None:
    """From reviews: the share of kept cases the operators confirmed; trucks left to their own decisions."""
    reviews = [("garbage", 0.9, True), ("garbage", 0.8, True), ("garbage", 0.6, False), ("garbage", 0.5, True),
               ("garbage", 0.3, False), ("garbage", 0.28, False), ("street_stall", 0.7, False),
               ("street_stall", 0.4, True), ("uncovered_truck", 0.9, False), ("uncovered_truck", 0.5, True)]
    ranked = rank_reviews(reviews)
    assert ranked["garbage"].labelled == 3 and ranked["garbage"].hits.tolist() == [True, True, False, True, False,
                                                                                    False]
    classes = calibrate_reviews(reviews, precision=0.75, current=0.25)
    garbage = classes["garbage"]
    assert garbage["reviewed"] == 6 and garbage["current"]["precision"] == 0.5
    assert garbage["target"]["threshold"] == pytest.approx(0.5, abs=CUT)  # all 3 confirmed, 1 of 4 rejected
    assert garbage["target"]["recall"] == 1.0
    assert classes["street_stall"]["target"] is None  # the surer stall case was the wrong one
    assert "load-state" in classes["uncovered_truck"]["note"]
    assert violation_thresholds(classes) == {"garbage": pytest.approx(0.5, abs=CUT)}
