"""Two models on the same labelled images, with the chance in their difference measured.

A validation split of a few dozen boxes moves AP50 by several hundredths depending on which images happen to be
in it. ``evaluate compare`` scores a candidate and a baseline model on the same split and resamples the split's
images (with replacement) ``rounds`` times: each resample scores both models on the same images (a paired
bootstrap), so the interval of the difference says how far a split of that size lets the two models' scores part
by chance of the images alone. It does not measure the training's own variation (seeds); two trainings of one
recipe can differ more than this interval.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from pipelines.evaluation.images import ImageEval, coco_ap, collect
from pipelines.evaluation.images import label_piles as merge_label_piles
from pipelines.evaluation.score import scoring_backend

log = logging.getLogger(__name__)


class ClassDelta(TypedDict):
    """One class's AP50 for both models, their difference and its 95 % bootstrap interval."""

    baseline: float
    candidate: float
    delta: float
    delta_ci95: list[float]
    p_worse: float  # share of resamples in which the candidate scored below the baseline
    instances: int
    rounds: int  # resamples that held at least one box of the class


def resample(ev: ImageEval, picks: Sequence[int]) -> ImageEval:
    """``ev`` restricted to the images at positions ``picks`` (repeats allowed), numbered anew so that each pick
    counts as an image of its own."""
    gt, dets, sizes = [], [], {}
    for new, pos in enumerate(picks):
        k, boxes, cls = ev.gt[pos]
        _, dboxes, dscores, dcls = ev.dets[pos]
        gt.append((new, boxes, cls))
        dets.append((new, dboxes, dscores, dcls))
        sizes[new] = ev.sizes[k]
    return ImageEval(classes=ev.classes, absent=ev.absent, gt=gt, dets=dets, sizes=sizes)


def _check_paired(base: ImageEval, cand: ImageEval) -> None:
    if len(base.gt) != len(cand.gt) or any(
            len(b[1]) != len(c[1]) or not np.array_equal(b[1], c[1]) for b, c in zip(base.gt, cand.gt, strict=True)):
        raise ValueError("the two evaluations are not of the same labelled images")


def paired_bootstrap(base: ImageEval, base_names: list[str], cand: ImageEval, cand_names: list[str],
                     rounds: int = 200, seed: int = 0) -> dict[str, ClassDelta]:
    """AP50 of each class both models have, their difference, and its interval over ``rounds`` paired resamples.

    Both evaluations must hold the same images in the same order (:func:`~pipelines.evaluation.images.collect`
    of one dataset split). A resample without a box of a class does not count for that class.
    """
    _check_paired(base, cand)
    classes = [c for c in base.classes if c in cand.classes]
    point_b, _ = coco_ap(base, base_names)
    point_c, _ = coco_ap(cand, cand_names)
    instances = {c: sum(int((cls == base_names.index(c)).sum()) for _k, _b, cls in base.gt) for c in classes}
    rng = np.random.default_rng(seed)
    deltas: dict[str, list[float]] = {c: [] for c in classes}
    n = len(base.gt)
    for _ in range(rounds if n else 0):
        picks = rng.integers(0, n, n).tolist()
        rb, rc = resample(base, picks), resample(cand, picks)
        ap_b, _ = coco_ap(rb, base_names)
        ap_c, _ = coco_ap(rc, cand_names)
        for c in classes:
            cid = base_names.index(c)
            if any((cls == cid).any() for _k, _b, cls in rb.gt):
                deltas[c].append(ap_c[c][0] - ap_b[c][0])
    out: dict[str, ClassDelta] = {}
    for c in classes:
        d = np.asarray(deltas[c], np.float64)
        lo, hi = (float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))) if len(d) else (0.0, 0.0)
        out[c] = {"baseline": round(point_b[c][0], 4), "candidate": round(point_c[c][0], 4),
                  "delta": round(point_c[c][0] - point_b[c][0], 4), "delta_ci95": [round(lo, 4), round(hi, 4)],
                  "p_worse": round(float((d < 0).mean()), 3) if len(d) else 0.0,
                  "instances": instances[c], "rounds": len(d)}
    return out


def compare_images(data: Path, out: Path, model: Path, against: Path, remap: dict[str, str], imgsz: int | None,
                   split: str = "val", view: str = "product", label_piles: bool = False, rounds: int = 200,
                   seed: int = 0) -> dict[str, Any]:
    """Score ``model`` (the candidate) and ``against`` (the baseline) on one split, each as ``view`` sees it, and
    write ``compare.json`` and ``compare.md`` to ``out``."""
    evs, names = [], []
    for weights in (against, model):
        backend = scoring_backend(weights, imgsz, view)
        ev = collect(data, backend, split, remap)
        evs.append(merge_label_piles(ev, backend.names) if label_piles else ev)
        names.append(backend.names)
    classes = paired_bootstrap(evs[0], names[0], evs[1], names[1], rounds, seed)
    result = {"data": str(data), "split": split, "images": len(evs[0].gt), "view": view, "label_piles": label_piles,
              "baseline": str(against), "candidate": str(model), "rounds": rounds, "seed": seed, "classes": classes}
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=1))
    (out / "compare.md").write_text(table(result) + "\n", encoding="utf-8")
    return result


def table(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table, one row per class with labelled boxes."""
    lines = ["| class | boxes | baseline AP50 | candidate AP50 | difference | 95 % interval | resamples worse |",
             "|---|---|---|---|---|---|---|"]
    for c, d in result["classes"].items():
        if d["instances"]:
            lo, hi = d["delta_ci95"]
            lines.append(f"| {c} | {d['instances']} | {d['baseline']:.3f} | {d['candidate']:.3f} | "
                         f"{d['delta']:+.3f} | {lo:+.3f} … {hi:+.3f} | {d['p_worse']:.0%} |")
    return "\n".join(lines)
