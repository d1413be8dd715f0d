"""Scoring: detector frames (COCO AP) and product events (precision, recall, F1, delay).

Event matching rule (documented for users):
    Per clip and per violation class, predicted events and labelled segments
    are matched one-to-one, greedily in order of decreasing temporal IoU; a
    pair counts only when its temporal IoU is at least ``iou`` (default 0.3).
    Unmatched predictions are false positives, unmatched labels false
    negatives. A zero-length segment is widened to ``min_len_s`` (1 s) from its
    time before IoU is computed. A predicted event spans from its first
    sighting (``start_s``) to its end (``end_s``).
    Delay is the alert time (``confirmed_s``, when the product raised the
    case) minus the labelled start; ``onset_error`` is ``start_s`` minus the
    labelled start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from datasets.labels import Segment
from pipelines.evaluation.results import EventScores


@dataclass(frozen=True)
class PredEvent:
    """A predicted violation event of one clip."""

    label: str
    start: float
    end: float
    alert: float


@dataclass(frozen=True)
class Match:
    """A matched pair (indices into the prediction and label lists) with its temporal IoU."""

    pred: int
    gt: int
    iou: float


def temporal_iou(a: tuple[float, float], b: tuple[float, float], min_len_s: float = 1.0) -> float:
    """Temporal IoU of two segments; zero-length segments are widened to ``min_len_s``."""
    a0, a1 = a if a[1] > a[0] else (a[0], a[0] + min_len_s)
    b0, b1 = b if b[1] > b[0] else (b[0], b[0] + min_len_s)
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = max(a1, b1) - min(a0, b0)
    return inter / union if union > 0 else 0.0


def match_events(preds: list[PredEvent], gts: list[Segment], iou: float = 0.3, min_len_s: float = 1.0
                 ) -> tuple[list[Match], list[int], list[int]]:
    """Match predictions to labels of the same class one-to-one.

    Returns:
        Matches, indices of unmatched predictions (FP), indices of unmatched labels (FN).
    """
    pairs = []
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            if p.label == g.label:
                t = temporal_iou((p.start, p.end), (g.start, g.end), min_len_s)
                if t >= iou and t > 0:
                    pairs.append((t, i, j))
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    used_p: set[int] = set()
    used_g: set[int] = set()
    matches = []
    for t, i, j in pairs:
        if i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        matches.append(Match(i, j, round(t, 4)))
    fp = [i for i in range(len(preds)) if i not in used_p]
    fn = [j for j in range(len(gts)) if j not in used_g]
    return matches, fp, fn


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def event_scores(results: Iterable[tuple[list[PredEvent], list[Segment], list[Match], list[int], list[int]]],
                 classes: Iterable[str]) -> dict[str, EventScores]:
    """Per-class precision, recall, F1, counts and delay over matched clip results."""
    out: dict[str, EventScores] = {}
    rows = list(results)
    for cls in classes:
        tp = fp = fn = 0
        delays: list[float] = []
        onset: list[float] = []
        for preds, gts, matches, fps, fns in rows:
            for m in matches:
                if preds[m.pred].label == cls:
                    tp += 1
                    delays.append(preds[m.pred].alert - gts[m.gt].start)
                    onset.append(preds[m.pred].start - gts[m.gt].start)
            fp += sum(1 for i in fps if preds[i].label == cls)
            fn += sum(1 for j in fns if gts[j].label == cls)
        p = tp / (tp + fp) if tp + fp else None
        r = tp / (tp + fn) if tp + fn else None
        f1 = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else (0.0 if tp + fp + fn else None)
        out[cls] = {"precision": None if p is None else round(p, 4), "recall": None if r is None else round(r, 4),
                    "f1": None if f1 is None else round(f1, 4), "tp": tp, "fp": fp, "fn": fn,
                    "delay_median_s": _percentile(delays, 50), "delay_p90_s": _percentile(delays, 90),
                    "onset_error_median_s": _percentile(onset, 50)}
    return out


def regressions(metrics: Mapping[str, Any], baseline: Mapping[str, Any], margin: float) -> list[str]:
    """List the scores that dropped by more than ``margin`` against a baseline metrics file.

    Scores of different views (``product`` or ``detector``, see ``evaluate images --view``) do not compare:
    a baseline that names its view fails the gate against metrics of another. Nor do scores on labels merged
    into heaps (``--label-piles``) and on the labels as they are.
    """
    found = []
    view, base_view = _view(metrics), _view(baseline)
    if base_view is not None and view != base_view:
        found.append(f"view: {view} scores do not compare with a baseline of the {base_view} view")
    if bool(metrics.get("label_piles")) != bool(baseline.get("label_piles")):
        found.append("labels: scores on labels merged into heaps do not compare with scores on the labels as they are")

    def walk(cur: Any, base: Any, path: str, missing: bool = False) -> None:
        if isinstance(base, dict):
            for k, v in base.items():
                present = isinstance(cur, dict) and k in cur
                walk(cur[k] if present else None, v, f"{path}.{k}" if path else k, missing or not present)
        elif isinstance(base, int | float) and not isinstance(base, bool) and _is_score(path.rsplit(".", 1)[-1]):
            if missing:
                found.append(f"{path}: missing (baseline {base})")
            elif cur is None and base > margin:  # undefined now (e.g. no events raised) and there was a score to lose
                found.append(f"{path}: {cur} < baseline {base} - {margin}")
            elif isinstance(cur, int | float) and cur < base - margin:
                found.append(f"{path}: {cur} < baseline {base} - {margin}")

    walk(metrics.get("events", metrics.get("classes")), baseline.get("events", baseline.get("classes")), "")
    if "map50" in baseline:
        walk(metrics.get("map50"), baseline["map50"], "map50")
    if isinstance(baseline.get("frames"), dict):
        frames = metrics.get("frames") or {}
        walk(frames.get("classes"), _operating_frame_scores(baseline["frames"].get("classes")), "frames",
             missing=not frames)
    return found


def _operating_frame_scores(classes: Any) -> Any:
    """The baseline's frame scores that say something about the product: a class the baseline found nothing of at
    its operating threshold (recall 0) has an AP made only of boxes the product never acts on (their order alone,
    on a few frames), so its AP is not gated; its precision and recall still are."""
    if not isinstance(classes, dict):
        return classes
    return {name: ({k: v for k, v in scores.items() if not k.startswith("ap")}
                   if isinstance(scores, dict) and scores.get("recall") == 0 else scores)
            for name, scores in classes.items()}


def _view(metrics: Mapping[str, Any]) -> str | None:
    """The view a metrics file scored (images: ``view``; clips: ``settings.frame_view``)."""
    settings = metrics.get("settings")
    view = metrics.get("view") or (settings.get("frame_view") if isinstance(settings, dict) else None)
    return str(view) if view else None


def _is_score(key: str) -> bool:
    return key in {"precision", "recall", "f1", "ap50", "ap50_95", "map50"}
