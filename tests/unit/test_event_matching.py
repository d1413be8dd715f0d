"""The event matcher and scores on hand-written segments (exact numbers and edge cases)."""

from __future__ import annotations

import pytest

from datasets.labels import Segment
from pipelines.evaluation.events import PredEvent, event_scores, match_events, regressions, temporal_iou


def p(label: str, s: float, e: float, alert: float | None = None) -> PredEvent:
    return PredEvent(label, s, e, s + 1 if alert is None else alert)


def g(label: str, s: float, e: float) -> Segment:
    return Segment(label, s, e)


def test_temporal_iou_values() -> None:
    assert temporal_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert temporal_iou((0, 10), (10, 20)) == 0.0
    assert temporal_iou((3, 3), (3, 3)) == 1.0  # both widened to 1 s
    assert temporal_iou((2, 2), (0, 10)) == pytest.approx(0.1)


def test_exact_match_delay_and_counts() -> None:
    preds = [p("garbage", 10, 60, alert=40)]
    gts = [g("garbage", 8, 62)]
    m, fp, fn = match_events(preds, gts)
    assert [(x.pred, x.gt) for x in m] == [(0, 0)] and fp == [] and fn == []
    scores = event_scores([(preds, gts, m, fp, fn)], ["garbage", "barbecue"])
    assert scores["garbage"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 1, "fp": 0, "fn": 0,
                                 "delay_median_s": 32.0, "delay_p90_s": 32.0, "onset_error_median_s": 2.0}
    assert scores["barbecue"]["precision"] is None and scores["barbecue"]["f1"] is None


def test_split_event_counts_one_tp_and_one_fp() -> None:
    preds = [p("garbage", 0, 40), p("garbage", 45, 100)]
    gts = [g("garbage", 0, 100)]
    m, fp, fn = match_events(preds, gts)
    assert [(x.pred, x.gt, x.iou) for x in m] == [(1, 0, 0.55)] and fp == [0] and fn == []


def test_merged_events_count_one_tp_and_one_fn() -> None:
    preds = [p("street_stall", 0, 100)]
    gts = [g("street_stall", 0, 45), g("street_stall", 55, 100)]
    m, fp, fn = match_events(preds, gts)
    assert len(m) == 1 and m[0].gt == 0 and fp == [] and fn == [1]


def test_low_overlap_and_wrong_class_do_not_match() -> None:
    preds = [p("garbage", 0, 10), p("barbecue", 50, 60)]
    gts = [g("garbage", 8, 40), g("street_stall", 50, 60)]
    m, fp, fn = match_events(preds, gts, iou=0.3)
    assert m == [] and fp == [0, 1] and fn == [0, 1]
    m, _, _ = match_events(preds, gts, iou=0.05)
    assert [(x.pred, x.gt) for x in m] == [(0, 0)]


def test_zero_length_and_overlapping_labels() -> None:
    preds = [p("uncovered_truck", 20, 20.5), p("uncovered_truck", 30, 35)]
    gts = [g("uncovered_truck", 20, 20), g("uncovered_truck", 29, 36), g("uncovered_truck", 30, 34)]
    m, fp, fn = match_events(preds, gts)
    assert sorted((x.pred, x.gt) for x in m) == [(0, 0), (1, 2)] and fp == [] and fn == [1]
    scores = event_scores([(preds, gts, m, fp, fn)], ["uncovered_truck"])["uncovered_truck"]
    assert scores["precision"] == 1.0 and scores["recall"] == pytest.approx(0.6667, abs=1e-4)
    assert scores["f1"] == pytest.approx(0.8)


def test_regression_gate() -> None:
    base = {"events": {"garbage": {"precision": 0.9, "recall": 0.8, "tp": 9}}}
    assert regressions({"events": {"garbage": {"precision": 0.89, "recall": 0.8, "tp": 1}}}, base, 0.02) == []
    found = regressions({"events": {"garbage": {"precision": 0.85, "recall": None}}}, base, 0.02)
    assert found == ["garbage.precision: 0.85 < baseline 0.9 - 0.02", "garbage.recall: None < baseline 0.8 - 0.02"]
    assert regressions({"events": {}}, base, 0.02) == ["garbage.precision: missing (baseline 0.9)",
                                                      "garbage.recall: missing (baseline 0.8)"]
    # A class whose baseline raised only false events (precision and F1 0.0) and now raises none (undefined): nothing
    # was lost.
    only_false = {"events": {"overflowing_bin": {"precision": 0.0, "f1": 0.0, "tp": 0, "fp": 1}}}
    assert regressions({"events": {"overflowing_bin": {"precision": None, "f1": None, "tp": 0, "fp": 0}}},
                       only_false, 0.02) == []
    img = {"classes": {"garbage": {"ap50": 0.6}}, "map50": 0.6}
    assert regressions({"classes": {"garbage": {"ap50": 0.5}}, "map50": 0.5}, img, 0.02) == [
        "garbage.ap50: 0.5 < baseline 0.6 - 0.02", "map50: 0.5 < baseline 0.6 - 0.02"]
    # Scores of the product's view and the detector's raw boxes never compare.
    assert regressions({"classes": {"garbage": {"ap50": 0.9}}, "view": "detector"}, {**img, "view": "product"},
                       0.02)[0] == "view: detector scores do not compare with a baseline of the product view"
    # Nor scores on labels merged into heaps (evaluate images --label-piles) and on the labels as they are.
    assert regressions({**img, "label_piles": True}, img, 0.02) == [
        "labels: scores on labels merged into heaps do not compare with scores on the labels as they are"]
    assert regressions({**img, "label_piles": False}, img, 0.02) == []
    # Frame AP of a class the baseline found none of at its threshold (rendered smoke: 9 boxes, all below it) is its
    # boxes' order alone: not gated. Its recall still is, and so is the AP of a class found at the threshold.
    frames_base = {"events": {}, "frames": {"classes": {
        "smoke": {"ap50": 1.0, "precision": 0.0, "recall": 0.0, "instances": 9},
        "garbage": {"ap50": 0.6, "precision": 0.5, "recall": 0.5, "instances": 30}}}}
    frames_now = {"events": {}, "frames": {"classes": {
        "smoke": {"ap50": 0.2, "precision": 0.0, "recall": 0.0, "instances": 9},
        "garbage": {"ap50": 0.4, "precision": 0.5, "recall": 0.5, "instances": 30}}}}
    assert regressions(frames_now, frames_base, 0.02) == ["frames.garbage.ap50: 0.4 < baseline 0.6 - 0.02"]
    clips = {"events": {}, "settings": {"frame_view": "product"}}
    assert regressions({"events": {}, "settings": {"frame_view": "product"}}, clips, 0.02) == []
