"""The paired bootstrap of `evaluate compare`: the interval of a difference between two models on one split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.evaluation.compare import ClassDelta, ap50, match_class, paired_bootstrap, table
from pipelines.evaluation.images import ImageEval, coco_ap

NAMES = ["garbage", "smoke"]


def _eval(found: list[bool]) -> ImageEval:
    """One labelled garbage box per image; the model finds it (score 0.9) where ``found`` says so, else it boxes
    the wrong place (score 0.8, a false positive)."""
    ev = ImageEval(classes=list(NAMES), absent={})
    box = np.array([[10, 10, 50, 50]], np.float32)
    elsewhere = np.array([[100, 100, 140, 140]], np.float32)
    for k, hit in enumerate(found):
        ev.gt.append((k, box, np.array([0], np.int64)))
        ev.dets.append((k, box if hit else elsewhere, np.array([0.9 if hit else 0.8], np.float32),
                        np.array([0], np.int64)))
        ev.sizes[k] = (200, 200)
    return ev


def _random_eval(seed: int, images: int = 25) -> ImageEval:
    """Labelled boxes of two classes and noisy detections of them: near misses, duplicates, strays."""
    rng = np.random.default_rng(seed)
    ev = ImageEval(classes=list(NAMES), absent={})
    for k in range(images):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 400, (n, 2))
        wh = rng.uniform(20, 120, (n, 2))
        gt = np.hstack([xy, xy + wh]).astype(np.float32)
        gcls = rng.integers(0, 2, n)
        shifted = gt + rng.normal(0, 8, gt.shape).astype(np.float32)
        shifted[:, 2:] = np.maximum(shifted[:, 2:], shifted[:, :2] + 4)  # still a box
        strays = rng.uniform(0, 400, (int(rng.integers(0, 4)), 2))
        stray_boxes = np.hstack([strays, strays + 60]).astype(np.float32)
        boxes = np.vstack([shifted, shifted[: n // 2], stray_boxes]).astype(np.float32)
        cls = np.concatenate([gcls, gcls[: n // 2], rng.integers(0, 2, len(stray_boxes))])
        scores = rng.uniform(0.05, 1.0, len(boxes)).astype(np.float32)
        ev.gt.append((k, gt, gcls.astype(np.int64)))
        ev.dets.append((k, boxes, scores, cls.astype(np.int64)))
        ev.sizes[k] = (640, 640)
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fast_ap50_is_cocoevals(seed: int) -> None:
    """The bootstrap's AP50 (matched once, then counted per resample) is pycocotools' on the same boxes, also with
    images counted several times."""
    ev = _random_eval(seed)
    coco, _ = coco_ap(ev, NAMES)
    for c in NAMES:
        assert ap50(match_class(ev, NAMES, c)) == pytest.approx(coco[c][0], abs=1e-9)
    counts = np.random.default_rng(seed).integers(0, 3, len(ev.gt))
    picked = [k for k in range(len(ev.gt)) for _ in range(counts[k])]
    repeated = ImageEval(classes=ev.classes, absent={}, gt=[(i, *ev.gt[k][1:]) for i, k in enumerate(picked)],
                         dets=[(i, *ev.dets[k][1:]) for i, k in enumerate(picked)],
                         sizes={i: ev.sizes[k] for i, k in enumerate(picked)})
    coco_r, _ = coco_ap(repeated, NAMES)
    for c in NAMES:
        assert ap50(match_class(ev, NAMES, c), counts) == pytest.approx(coco_r[c][0], abs=0.01)


def test_the_same_model_differs_by_nothing() -> None:
    ev = _eval([True] * 20 + [False] * 10)
    res = paired_bootstrap(ev, NAMES, ev, NAMES, rounds=30, seed=1)
    assert set(res) == {"garbage", "smoke"}
    g = res["garbage"]
    assert g["delta"] == 0 and g["delta_ci95"] == [0.0, 0.0] and g["p_worse"] == 0 and g["rounds"] == 30
    assert g["instances"] == 30
    assert res["smoke"]["instances"] == 0 and res["smoke"]["rounds"] == 0  # no box of it: no resample counts


def test_a_model_that_misses_half_is_worse_beyond_chance_and_a_small_split_is_wide() -> None:
    base = _eval([True] * 40)
    cand = _eval([True] * 20 + [False] * 20)
    res = paired_bootstrap(base, NAMES, cand, NAMES, rounds=100, seed=0)["garbage"]
    assert res["baseline"] == pytest.approx(1.0) and res["candidate"] < 0.6
    lo, hi = res["delta_ci95"]
    assert hi < 0 and lo < res["delta"] < hi and res["p_worse"] == 1.0
    # One miss more on 8 images: the interval reaches zero (chance alone gives no difference in some resamples).
    small = paired_bootstrap(_eval([True] * 7 + [False]), NAMES, _eval([True] * 6 + [False] * 2), NAMES,
                             rounds=200, seed=0)["garbage"]
    assert small["delta"] < 0 and small["delta_ci95"][1] == 0.0
    md = table({"classes": {"garbage": res, "smoke": {"instances": 0}}})
    assert "| garbage | 40 | 1.000 |" in md and "smoke" not in md


def test_evaluations_of_different_images_do_not_compare() -> None:
    with pytest.raises(ValueError, match="not of the same labelled images"):
        paired_bootstrap(_eval([True] * 3), NAMES, _eval([True] * 4), NAMES, rounds=2)


def test_a_suite_measure_fails_on_a_loss_past_its_limit_or_a_loss_beyond_chance(tmp_path: Path) -> None:
    from pipelines.evaluation.compare_suite import Measure, SuiteError, load_suite, verdict

    def delta(d: float, lo: float, hi: float, boxes: int = 40) -> ClassDelta:
        return {"baseline": 0.7, "candidate": 0.7 + d, "delta": d, "delta_ci95": [lo, hi], "p_worse": 0.5,
                "instances": boxes, "rounds": 200}

    smoke = Measure.model_validate({"name": "smoke", "data": "s.yaml", "class": "smoke", "max_loss": 0.05,
                                    "fail_if_worse": True})
    assert verdict(smoke, delta(-0.04, -0.12, 0.03)) == []  # a loss within the limit and within chance
    assert verdict(smoke, delta(-0.06, -0.14, 0.02)) == ["AP50 fell by 0.060, more than 0.05"]
    assert verdict(smoke, delta(-0.03, -0.05, -0.01)) == ["worse beyond chance: 95 % interval -0.050 … -0.010"]
    assert verdict(smoke, delta(0.0, 0.0, 0.0, boxes=0)) == ["no labelled smoke box in s.yaml"]
    assert verdict(smoke, None) == ["no smoke in both models or in the data"]
    lenient = Measure.model_validate({"name": "g", "data": "g.yaml", "class": "garbage"})
    assert verdict(lenient, delta(-0.2, -0.3, -0.1)) == []  # no limit set: informative only
    (tmp_path / "bad.yaml").write_text("measures:\n  - {name: x, data: a.yaml, class: smoke, max_los: 0.1}\n")
    with pytest.raises(SuiteError, match="max_los"):
        load_suite(tmp_path / "bad.yaml")
    committed = Path(__file__).resolve().parents[2] / "models" / "compare_suite.yaml"
    assert len(load_suite(committed).measures) >= 10  # the committed rule reads
