"""``streetwatch evaluate thresholds``: per-class confidence thresholds chosen on a site's labelled frames.

One global detection threshold (0.25) treats every class alike, yet a class the model knows well is precise far
below it and a class it confuses raises false alarms far above it. An operator picks a precision (say 0.8: at
most one alarm in five is wrong) and this command finds, for each violation class, the confidence at which
the boxes the rules act on (:class:`~detector.scene.AlarmView`) find the most labelled objects of the site's own
frames while keeping that precision (of the cuts that find as many, the highest: a lower one only adds false
alarms). The thresholds go into the configuration as ``rules.min_confidence`` (a config fragment is written); the
detector's ``--conf`` must not be above the lowest of them.

Matching is COCO's at one IoU: per image and class, boxes by falling score, each taking the unused labelled box
it overlaps most (IoU >= 0.5 by default); the others are false positives. For alarms a lower IoU (0.2) counts
a pile boxed loosely or in part as a right alarm, which it is for the operator who looks at it. A second
split (``check``) scores the chosen thresholds on frames they were not chosen on, since a threshold fitted on
few frames is optimistic there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from datasets.yolo import DatasetError
from detector.postprocess import box_iou
from detector.rules import LABEL_TO_VIOLATION
from detector.scene import SceneSettings
from pipelines.evaluation.images import ImageEval, collect, label_piles
from pipelines.evaluation.score import scoring_backend

log = logging.getLogger(__name__)

#: Labels whose case is not decided by their own box score: a truck's case waits for its load-state vote.
NOT_CALIBRATED = {"truck": "a truck's case is decided by its load-state vote over the track, not one box",
                  "uncovered_truck": "a truck's case is decided by its load-state vote over the track, not one box",
                  "unlicensed_muck_truck": "decided by the plate against the muck-transport register, not one box"}


@dataclass(frozen=True)
class Point:
    """Precision and recall of one class's boxes scored at least ``threshold``."""

    threshold: float
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True)
class Ranked:
    """One class's boxes over a split, by falling score, each marked true or false positive."""

    scores: npt.NDArray[np.float64]
    hits: npt.NDArray[np.bool_]
    labelled: int

    @classmethod
    def of(cls, scores: npt.NDArray[np.floating[Any]], hits: npt.NDArray[np.bool_], labelled: int) -> Ranked:
        """Boxes (or cases) in any order, sorted by falling score. Scores are rounded down to 4 decimals, the
        precision a threshold is written with, so a box is kept at a written threshold exactly when it counted
        as kept here."""
        floored = np.floor(np.asarray(scores, np.float64) * 1e4) / 1e4
        order = np.argsort(-floored, kind="stable")
        return cls(floored[order], np.asarray(hits, bool)[order], labelled)

    def at(self, threshold: float) -> Point:
        """The class's precision and recall at ``threshold``."""
        keep = self.scores >= threshold
        tp = int(self.hits[keep].sum())
        fp = int(keep.sum()) - tp
        return Point(round(threshold, 4), round(tp / (tp + fp), 4) if tp + fp else 0.0,
                     round(tp / self.labelled, 4) if self.labelled else 0.0, tp, fp, self.labelled - tp)


def rank(ev: ImageEval, class_id: int, iou: float = 0.5) -> Ranked:
    """Mark every box of ``class_id`` in ``ev`` as a hit or not (COCO's greedy matching at ``iou``)."""
    gts = {k: boxes[cls == class_id] for k, boxes, cls in ev.gt}
    scores: list[npt.NDArray[np.float32]] = []
    hits: list[npt.NDArray[np.bool_]] = []
    for k, boxes, conf, cls in ev.dets:
        mine = cls == class_id
        pb, ps = boxes[mine], conf[mine]
        order = np.argsort(-ps, kind="stable")
        pb, ps = pb[order], ps[order]
        gb = gts.get(k, np.zeros((0, 4), np.float32))
        overlap = box_iou(pb, gb)
        used = np.zeros(len(gb), bool)
        hit = np.zeros(len(pb), bool)
        for i in range(len(pb)):
            free = np.where(used, -1.0, overlap[i]) if len(gb) else np.zeros(0)
            if len(free) and free.max() >= iou:
                used[int(free.argmax())] = True
                hit[i] = True
        scores.append(ps.astype(np.float32))
        hits.append(hit)
    return Ranked.of(np.concatenate(scores) if scores else np.zeros(0), np.concatenate(hits) if hits else
                     np.zeros(0, bool), sum(len(g) for g in gts.values()))


def _cuts(r: Ranked) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """At each box (by falling score): true positives and boxes kept down to it, and whether a cut may fall
    after it (the last box of its score)."""
    tp = np.cumsum(r.hits, dtype=np.int64)
    kept = np.arange(1, len(r.scores) + 1, dtype=np.int64)
    return tp, kept, np.asarray(np.append(r.scores[1:] != r.scores[:-1], True), bool)


def threshold_for(r: Ranked, precision: float, min_recall: float = 0.1) -> Point | None:
    """The score cut that finds the most while its boxes keep ``precision`` (the highest such cut: below it
    only false alarms are added), or None.

    A cut must also find ``min_recall`` of the labelled objects: a model is often right on its few surest boxes
    only, and a threshold that keeps those alone would silence the class rather than calibrate it. Cuts fall
    between distinct scores, so boxes sharing a score are kept or dropped together.
    """
    if not len(r.scores):
        return None
    tp, kept, last_of_score = _cuts(r)
    ok = np.flatnonzero(last_of_score & (tp / kept >= precision) & (tp >= min_recall * r.labelled))
    if not len(ok):
        return None
    # The most found; of the cuts finding that many, the highest (a lower one adds only false alarms).
    first = ok[tp[ok] == tp[ok].max()][0]
    return r.at(float(r.scores[first]))


def best_f1(r: Ranked) -> Point | None:
    """The score cut with the highest F1 (precision and recall weighed alike), or None without boxes."""
    if not len(r.scores) or not r.labelled:
        return None
    tp, kept, last_of_score = _cuts(r)
    f1 = np.where(last_of_score, 2 * tp / (kept + r.labelled), -1.0)
    return r.at(float(r.scores[int(np.argmax(f1))]))


def _row(r: Ranked, name: str, violation: str | None, precision: float, current: float,
         min_recall: float) -> dict[str, Any]:
    """One class's calibration: its point at ``current``, the ``target`` threshold (:func:`threshold_for`; None
    where no cut reaches the precision), the best-F1 point, and why it is not calibrated, where it is not."""
    target = threshold_for(r, precision, min_recall)
    row: dict[str, Any] = {"labelled": r.labelled, "current": asdict(r.at(current)),
                           "target": asdict(target) if target else None,
                           "best_f1": asdict(p) if (p := best_f1(r)) else None, "violation": violation}
    if name in NOT_CALIBRATED:
        row["note"] = NOT_CALIBRATED[name]
    return row


def calibrate(ev: ImageEval, names: list[str], precision: float, current: float,
              check: ImageEval | None = None, iou: float = 0.5, min_recall: float = 0.1) -> dict[str, dict[str, Any]]:
    """Per labelled class, :func:`_row` (today's point, the target threshold, the best-F1 point) and, with
    ``check``, the target threshold's point on the check split."""
    out: dict[str, dict[str, Any]] = {}
    for name in ev.classes:
        cid = names.index(name)
        r = rank(ev, cid, iou)
        if not r.labelled:
            continue
        row = _row(r, name, LABEL_TO_VIOLATION.get(name), precision, current, min_recall)
        if check is not None and row["target"] is not None:
            c = rank(check, cid, iou)
            row["check"] = asdict(c.at(row["target"]["threshold"])) if c.labelled else None
        out[name] = row
    return out


def rank_reviews(reviews: Sequence[tuple[str, float, bool]]) -> dict[str, Ranked]:
    """Per violation, the reviewed cases ``(violation, confidence, confirmed)`` by falling confidence, a hit where
    the operator confirmed the case; ``labelled`` counts the confirmed ones, so recall is the share of confirmed
    cases a threshold keeps."""
    by: dict[str, list[tuple[float, bool]]] = {}
    for violation, conf, confirmed in reviews:
        by.setdefault(violation, []).append((conf, confirmed))
    out: dict[str, Ranked] = {}
    for violation, rows in sorted(by.items()):
        hits = np.asarray([ok for _, ok in rows], bool)
        out[violation] = Ranked.of(np.asarray([c for c, _ in rows]), hits, int(hits.sum()))
    return out


def calibrate_reviews(reviews: Sequence[tuple[str, float, bool]], precision: float, current: float,
                      min_recall: float = 0.1) -> dict[str, dict[str, Any]]:
    """:func:`calibrate` on the operators' verdicts: per violation, the threshold keeping the most confirmed cases
    while the share of confirmed among the kept ones stays at ``precision``.

    A case's confidence is its best detection's, and a case opens only once its boxes clear the threshold for the
    dwell time: a threshold keeps at most the cases it is scored to keep, so the precision is an estimate and the
    recall an upper bound."""
    out: dict[str, dict[str, Any]] = {}
    for violation, r in rank_reviews(reviews).items():
        out[violation] = {**_row(r, violation, violation, precision, current, min_recall), "reviewed": len(r.scores)}
    return out


def violation_thresholds(classes: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``rules.min_confidence`` from calibrated classes: per violation the highest target threshold of its
    labels (smoke and barbecue both open barbecue cases: the stricter keeps the precision of both)."""
    out: dict[str, float] = {}
    for name, row in classes.items():
        violation, target = row.get("violation"), row.get("target")
        if violation is None or name in NOT_CALIBRATED or target is None:
            continue
        out[violation] = max(out.get(violation, 0.0), float(target["threshold"]))
    return dict(sorted(out.items()))


def config_fragment(thresholds: dict[str, float], classes: dict[str, dict[str, Any]], precision: float,
                    source: str, detector_conf: float, min_recall: float = 0.1, camera: str | None = None) -> str:
    """The YAML a configuration takes (``rules.min_confidence``), with what was and was not calibrated; for one
    ``camera``, under that camera's entry (its ``rules:`` change only the keys they set)."""
    lines = [f"# streetwatch evaluate thresholds: per violation the threshold finding the most at precision >= "
             f"{precision} on {source}"]
    unreached = [n for n, r in classes.items() if r.get("target") is None and n not in NOT_CALIBRATED
                 and r.get("violation")]
    if unreached:
        lines.append(f"# never that precise while finding {min_recall:g} of the objects (kept at the default): "
                     + ", ".join(unreached))
    low = [v for v, t in thresholds.items() if t < detector_conf]
    if low:
        lines.append(f"# below the detector's --conf {detector_conf}: run with --conf {min(thresholds.values()):g}, "
                     f"else {', '.join(low)} cannot go below {detector_conf}")
    if camera is None:
        lines.append("# for one camera: the same min_confidence under that camera's rules: (it changes only what it "
                     "sets)")
        lines.append("rules:")
        indent = ""
    else:
        lines.append(f"# camera {camera} only: merge into its entry of the cameras: list (its other keys stay; "
                     "these thresholds change only the violations named, the rest stay the global rules')")
        lines += ["cameras:", f"  - id: {camera}", "    rules:"]
        indent = "    "
    if not thresholds:
        lines.append(f"{indent}  min_confidence: {{}}")
    else:
        lines.append(f"{indent}  min_confidence:")
        for v, t in thresholds.items():
            seen = ", ".join(f"{n} P {r['target']['precision']:.2f} R {r['target']['recall']:.2f}"
                             for n, r in classes.items() if r.get("violation") == v and r.get("target"))
            lines.append(f"{indent}    {v}: {t:g}  # {seen}")
    return "\n".join(lines) + "\n"


def evaluate_thresholds(data: Path, out: Path, model: Path, remap: dict[str, str], imgsz: int | None,
                        precision: float, current: float = 0.25, split: str = "val", check_split: str | None = None,
                        view: str = "alarms", iou: float = 0.5, min_recall: float = 0.1,
                        piles: bool = False, camera: str | None = None,
                        scene: SceneSettings | None = None) -> dict[str, Any]:
    """Choose per-class thresholds on ``split`` of a YOLO dataset (scored on ``check_split`` too); writes
    thresholds.json and thresholds.yaml (the config fragment; under ``camera``'s entry for one camera's frames)
    into ``out``. ``piles``: touching labelled garbage boxes are one heap (labels that box each bag, read against
    alarms that are about the heap). ``scene``: the camera's scene settings (``scene:`` of its entry; default: the
    product's), so the thresholds are chosen on the boxes its rules will see."""
    if not 0 < precision <= 1:
        raise ValueError(f"precision must be in (0, 1], got {precision}")
    backend = scoring_backend(model, imgsz, view, scene)
    ev = collect(data, backend, split, remap)
    check = collect(data, backend, check_split, remap) if check_split else None
    for name, got in ((split, ev), (check_split, check)):
        if got is not None and not got.gt:
            raise DatasetError(f"{data}: no images in split '{name}' to choose or check thresholds on")
    if piles:
        ev = label_piles(ev, backend.names)
        check = label_piles(check, backend.names) if check is not None else None
    classes = calibrate(ev, backend.names, precision, current, check, iou, min_recall)
    thresholds = violation_thresholds(classes)
    result = {"model": str(model), "data": str(data), "camera": camera, "split": split, "images": len(ev.gt),
              "check_split": check_split, "check_images": len(check.gt) if check else 0, "imgsz": backend.imgsz,
              "view": view, "label_piles": piles, "iou": iou, "precision": precision, "min_recall": min_recall,
              "current": current, "scene": asdict(scene or SceneSettings()), "classes": classes,
              "min_confidence": thresholds}
    write(out, result, f"{data} ({split}, {len(ev.gt)} images)", camera)
    return result


def write(out: Path, result: dict[str, Any], source: str, camera: str | None = None) -> None:
    """thresholds.json (everything) and thresholds.yaml (the config fragment; under ``camera``'s entry when
    given) of a calibration into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "thresholds.json").write_text(json.dumps(result, indent=1))
    (out / "thresholds.yaml").write_text(config_fragment(result["min_confidence"], result["classes"],
                                                         result["precision"], source, result["current"],
                                                         result["min_recall"], camera))


def review_thresholds(reviews: Sequence[tuple[str, float, bool]], out: Path, precision: float,
                      current: float = 0.25, min_recall: float = 0.1, source: str = "reviews",
                      camera: str | None = None) -> dict[str, Any]:
    """Per-violation thresholds from the operators' verdicts (:func:`calibrate_reviews`); writes thresholds.json
    and thresholds.yaml into ``out`` (the verdicts on one ``camera``'s cases: a fragment for that camera)."""
    if not 0 < precision <= 1:
        raise ValueError(f"precision must be in (0, 1], got {precision}")
    classes = calibrate_reviews(reviews, precision, current, min_recall)
    result = {"source": source, "camera": camera, "reviewed": len(reviews), "precision": precision,
              "min_recall": min_recall, "current": current, "classes": classes,
              "min_confidence": violation_thresholds(classes)}
    write(out, result, f"{source} ({len(reviews)} reviewed cases)", camera)
    return result


def table(result: dict[str, Any]) -> str:
    """The calibration as a plain-text table (one line per class)."""
    count = "confirmed" if "reviewed" in result else "labelled"  # operators' verdicts count confirmed cases
    rows = [f"{'class':<16} {count:>9}  {'at ' + str(result['current']):>18}  "
            f"{'P >= ' + str(result['precision']):>24}  {'check':>14}"]
    for name, r in result["classes"].items():
        cur = r["current"]
        tgt = r["target"]
        chk = r.get("check")
        target = f"{tgt['threshold']:.3f}: P {tgt['precision']:.2f} R {tgt['recall']:.2f}" if tgt else "never reached"
        check = f"P {chk['precision']:.2f} R {chk['recall']:.2f}" if chk else "-"
        rows.append(f"{name:<16} {r['labelled']:>9}  P {cur['precision']:.2f} R {cur['recall']:.2f}{'':>6}  "
                    f"{target:>24}  {check:>14}")
    return "\n".join(rows)
