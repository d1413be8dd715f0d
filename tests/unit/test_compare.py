"""The paired bootstrap of `evaluate compare`: the interval of a difference between two models on one split."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.evaluation.compare import paired_bootstrap, resample, table
from pipelines.evaluation.images import ImageEval

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


def test_resample_renumbers_repeated_images() -> None:
    ev = _eval([True, False, True])
    r = resample(ev, [2, 2, 0])
    assert [k for k, _b, _c in r.gt] == [0, 1, 2] and set(r.sizes) == {0, 1, 2}
    assert all(np.array_equal(r.gt[i][1], ev.gt[j][1]) for i, j in enumerate([2, 2, 0]))
    assert r.dets[1][2][0] == pytest.approx(0.9) and r.dets[2][2][0] == pytest.approx(0.9)


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
