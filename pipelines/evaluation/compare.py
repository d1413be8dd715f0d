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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from detector.backends.base import DetectorBackend
from detector.postprocess import box_iou
from pipelines.evaluation.images import ImageEval, collect
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


#: COCO's recall points and detections kept per image and class (``COCOeval`` defaults).
RECALL_POINTS = np.linspace(0.0, 1.00, 101)
MAX_DETS = 100


@dataclass(frozen=True)
class Matched:
    """One class's detections over a split, matched once to the labelled boxes at IoU 0.5 the way ``COCOeval``
    does (per image, best score first, each to the unmatched labelled box it overlaps most), highest score first.
    A resample of the images then needs no new matching: its AP50 comes from these arrays alone."""

    image: npt.NDArray[np.int64]  # image position of each detection
    score: npt.NDArray[np.float32]
    tp: npt.NDArray[np.bool_]
    labelled: npt.NDArray[np.int64]  # labelled boxes of the class per image position


def match_class(ev: ImageEval, names: list[str], cls: str, iou: float = 0.5) -> Matched:
    """The detections of ``cls`` in ``ev`` with whether each found a labelled box (see :class:`Matched`)."""
    cid = names.index(cls)
    images, scores, tps, labelled = [], [], [], []
    for pos, ((_k, gboxes, gcls), (_k2, dboxes, dscores, dcls)) in enumerate(zip(ev.gt, ev.dets, strict=True)):
        gt = gboxes[gcls == cid]
        labelled.append(len(gt))
        keep = dcls == cid
        boxes, sc = dboxes[keep], dscores[keep]
        order = np.argsort(-sc, kind="mergesort")[:MAX_DETS]
        boxes, sc = boxes[order], sc[order]
        ious = box_iou(boxes, gt)
        used = np.zeros(len(gt), bool)
        hit = np.zeros(len(sc), bool)
        for i in range(len(sc)):
            cand = np.where(~used & (ious[i] >= iou), ious[i], -1.0)
            if len(cand) and cand.max() >= iou:
                j = int(cand.argmax())
                used[j], hit[i] = True, True
        images.append(np.full(len(sc), pos, np.int64))
        scores.append(sc)
        tps.append(hit)
    score = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    order = np.argsort(-score, kind="mergesort")
    return Matched(image=np.concatenate(images)[order] if images else np.zeros(0, np.int64), score=score[order],
                   tp=np.concatenate(tps)[order] if tps else np.zeros(0, bool), labelled=np.asarray(labelled, np.int64))


def ap50(m: Matched, counts: npt.NDArray[np.int64] | None = None) -> float | None:
    """COCO's AP at IoU 0.5 of ``m``, each image counted ``counts[i]`` times (None: once each); None when no
    labelled box of the class is among the images counted."""
    weight = np.ones(len(m.labelled), np.int64) if counts is None else counts
    n_labelled = int((m.labelled * weight).sum())
    if n_labelled == 0:
        return None
    copies = weight[m.image]
    tp = np.repeat(m.tp, copies)
    tp_sum = np.cumsum(tp, dtype=np.float64)
    fp_sum = np.cumsum(~tp, dtype=np.float64)
    recall = tp_sum / n_labelled
    precision = tp_sum / np.maximum(tp_sum + fp_sum, np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # COCO's envelope: the best precision further on
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0).mean())


def paired_bootstrap(base: ImageEval, base_names: list[str], cand: ImageEval, cand_names: list[str],
                     rounds: int = 200, seed: int = 0) -> dict[str, ClassDelta]:
    """AP50 of each class both models have, their difference, and its interval over ``rounds`` paired resamples.

    Both evaluations must hold the same images in the same order (:func:`~pipelines.evaluation.images.collect`
    of one dataset split). A resample without a box of a class does not count for that class.
    """
    _check_paired(base, cand)
    classes = [c for c in base.classes if c in cand.classes]
    matched = {c: (match_class(base, base_names, c), match_class(cand, cand_names, c)) for c in classes}
    rng = np.random.default_rng(seed)
    n = len(base.gt)
    draws = [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(rounds if n else 0)]
    out: dict[str, ClassDelta] = {}
    for c, (mb, mc) in matched.items():
        point_b, point_c = ap50(mb) or 0.0, ap50(mc) or 0.0
        deltas = []
        for counts in draws:
            b, k = ap50(mb, counts), ap50(mc, counts)
            if b is not None and k is not None:
                deltas.append(k - b)
        d = np.asarray(deltas, np.float64)
        lo, hi = (float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))) if len(d) else (0.0, 0.0)
        out[c] = {"baseline": round(point_b, 4), "candidate": round(point_c, 4),
                  "delta": round(point_c - point_b, 4), "delta_ci95": [round(lo, 4), round(hi, 4)],
                  "p_worse": round(float((d < 0).mean()), 3) if len(d) else 0.0,
                  "instances": int(mb.labelled.sum()), "rounds": len(d)}
    return out


def _check_paired(base: ImageEval, cand: ImageEval) -> None:
    if len(base.gt) != len(cand.gt) or any(
            len(b[1]) != len(c[1]) or not np.array_equal(b[1], c[1]) for b, c in zip(base.gt, cand.gt, strict=True)):
        raise ValueError("the two evaluations are not of the same labelled images")


def compare_split(backends: tuple[DetectorBackend, DetectorBackend], data: Path, split: str, remap: dict[str, str],
                  label_piles: bool, rounds: int, seed: int) -> tuple[int, dict[str, ClassDelta]]:
    """Both models (``backends``: the baseline's, the candidate's) on one split, labels merged into heaps where
    ``label_piles``; the number of images and :func:`paired_bootstrap`'s comparison."""
    evs = []
    for backend in backends:
        ev = collect(data, backend, split, remap)
        evs.append(merge_label_piles(ev, backend.names) if label_piles else ev)
    return len(evs[0].gt), paired_bootstrap(evs[0], backends[0].names, evs[1], backends[1].names, rounds, seed)


def compare_images(data: Path, out: Path, model: Path, against: Path, remap: dict[str, str], imgsz: int | None,
                   split: str = "val", view: str = "product", label_piles: bool = False, rounds: int = 200,
                   seed: int = 0) -> dict[str, Any]:
    """Score ``model`` (the candidate) and ``against`` (the baseline) on one split, each as ``view`` sees it, and
    write ``compare.json`` and ``compare.md`` to ``out``."""
    backends = (scoring_backend(against, imgsz, view), scoring_backend(model, imgsz, view))
    images, classes = compare_split(backends, data, split, remap, label_piles, rounds, seed)
    result = {"data": str(data), "split": split, "images": images, "view": view, "label_piles": label_piles,
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
