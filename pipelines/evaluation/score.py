"""``streetwatch evaluate``: score the detector on images and the whole product on labelled clips.

Clip evaluation runs exactly the batch pipeline (:func:`pipelines.analyze.analyze`)
over each labelled clip, then matches its cases with the labelled segments
(see :mod:`pipelines.evaluation.events` for the matching rule).
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from datasets.labels import ClipLabels, load_event_labels, load_yolo_frames
from detector.backends.base import DetectorBackend, config_for, create_backend
from detector.events import VIOLATIONS
from detector.scene import AlarmView, ProductView, SceneSettings
from pipelines.analyze import AnalyzeOptions, analyze
from pipelines.evaluation.events import PredEvent, event_scores, match_events, regressions
from pipelines.evaluation.images import (
    ImageEval,
    add_video_frames,
    coco_ap,
    collect,
    draw_confusion,
    draw_pr_curves,
    image_metrics,
    pr_at_threshold,
)
from pipelines.evaluation.images import label_piles as merge_label_piles
from pipelines.evaluation.results import ClipDetail, ClipResult, FrameResult, ImageResult
from pipelines.report import COLORS, Bar, draw_timeline, html_page
from pipelines.sources import probe

log = logging.getLogger(__name__)


def scoring_backend(model: Path, imgsz: int | None, view: str = "product",
                    scene: SceneSettings | None = None) -> DetectorBackend:
    """The detector as scored: ``product`` (through the scene stage, what cases are made of), ``alarms`` (what
    the rules act on: piles whole, without their parts) or ``detector``; ``scene``: a camera's scene settings
    (default: the product's)."""
    backend = create_backend(config_for(model, conf=0.001, imgsz=imgsz))
    if view == "product":
        return ProductView(backend, scene)
    return AlarmView(backend, scene) if view == "alarms" else backend


def evaluate_images(data: Path, out: Path, model: Path, remap: dict[str, str], imgsz: int | None, conf: float,
                    split: str = "val", view: str = "product", label_piles: bool = False) -> ImageResult:
    """Evaluate a detector on a YOLO dataset split; writes metrics.json, pictures and report.html.

    ``view``: ``product`` scores the detector through the scene stage (trucks with their load state, piles,
    one class per object: what cases are made of); ``detector`` scores the detector's raw boxes.
    ``label_piles``: touching labelled garbage boxes are merged into one heap box before scoring
    (:func:`~pipelines.evaluation.images.label_piles`).
    """
    backend = scoring_backend(model, imgsz, view)
    ev = collect(data, backend, split, remap)
    return report_images(ev, backend, out, model, data, remap, conf, split, view, label_piles)


def report_images(ev: ImageEval, backend: DetectorBackend, out: Path, model: Path, data: Path, remap: dict[str, str],
                  conf: float, split: str, view: str, label_piles: bool) -> ImageResult:
    """Score the detections :func:`evaluate_images` collected (``ev``, by ``backend``) and write metrics.json,
    pictures and report.html to ``out``; ``label_piles``: the labels merged into heaps first. One collection can be
    scored both ways (the leave-one-source-out report does), the detector running once."""
    out.mkdir(parents=True, exist_ok=True)
    if label_piles:
        ev = merge_label_piles(ev, backend.names)
    metrics = image_metrics(ev, backend.names, conf)
    _, curves = coco_ap(ev, backend.names)
    _, cm = pr_at_threshold(ev, len(backend.names), conf)
    draw_pr_curves(curves, out / "pr_curves.png")
    idx = [backend.names.index(c) for c in ev.classes] + [len(backend.names)]
    draw_confusion(cm[np.ix_(idx, idx)], [*ev.classes, "background"], out / "confusion.png")
    result: ImageResult = {"model": str(model), "data": str(data), "split": split, "images": len(ev.gt), "conf": conf,
                           "imgsz": backend.imgsz, "view": view, "label_piles": label_piles, "remap": remap,
                           **metrics}
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td>" + (
            f"<td colspan=4>absent from the model</td><td>{m['instances']}</td></tr>" if m.get("absent") else
            f"<td>{m['ap50']}</td><td>{m['ap50_95']}</td><td>{m['precision']}</td><td>{m['recall']}</td>"
            f"<td>{m['instances']}</td></tr>")
        for n, m in metrics["classes"].items())
    (out / "report.html").write_text(html_page(
        "streetwatch evaluation",
        f"<h1>Detector evaluation</h1><p>model <code>{html.escape(str(model))}</code>, data "
        f"<code>{html.escape(str(data))}</code> ({split}, {len(ev.gt)} images), mAP50 {metrics['map50']}, "
        f"precision/recall at confidence {conf}.</p><table><tr><th>class</th><th>AP50</th><th>AP50-95</th>"
        f"<th>P</th><th>R</th><th>instances</th></tr>{rows}</table>"
        "<h2>Precision-recall (IoU 0.5)</h2><img src='pr_curves.png'>"
        "<h2>Confusion matrix (rows: labelled, columns: predicted)</h2><img src='confusion.png'>"), encoding="utf-8")
    return result


def _clip_timeline(name: str, labels: ClipLabels, preds: list[PredEvent], path: Path) -> None:
    """A clip's labelled segments (grey, top) and predicted events (colour, tick at the alert; below)."""
    bars = [Bar(seg.label, seg.start, seg.end, (150, 150, 150), lane="top") for seg in labels.segments]
    bars += [Bar(p.label, p.start, p.end, COLORS.get(p.label, (0, 0, 0)), p.alert, "bottom") for p in preds]
    draw_timeline(bars, labels.duration, path, f"{name}: grey = labelled, colour = predicted, tick = alert")


def frame_metrics(clips: list[ClipLabels], videos: Path, model: Path, conf: float,
                  imgsz: int | None = None, view: str = "product") -> FrameResult | None:
    """COCO AP on the clips' labelled frames (None when no clip has frame boxes); ``view`` as for images."""
    with_frames = [c for c in clips if c.frames and (videos / c.name).exists()]
    if not with_frames:
        return None
    backend = scoring_backend(model, imgsz, view)
    ev = ImageEval(classes=[], absent={})
    for c in with_frames:
        add_video_frames(ev, videos / c.name, c.frames, backend)
    return {"frames": len(ev.gt), "conf": conf, **image_metrics(ev, backend.names, conf)}


def evaluate_clips(labels_path: Path, videos: Path, out: Path, model: Path, config: Path | None,
                   dwell: float | None, iou: float = 0.3, remap: dict[str, str] | None = None,
                   frame_labels: Path | None = None, conf: float = 0.25, imgsz: int | None = None,
                   view: str = "product") -> ClipResult:
    """Run the batch pipeline over labelled clips and score events (and frames, where boxes are labelled).

    Writes ``metrics.json`` and ``report.html`` into ``out``.
    """
    out.mkdir(parents=True, exist_ok=True)
    clips = load_event_labels(labels_path, remap)
    if frame_labels is not None:
        for c in clips:
            folder = frame_labels / Path(c.name).stem
            if folder.is_dir() and (videos / c.name).exists():
                info = probe(videos / c.name)
                c.frames.update(load_yolo_frames(folder, info.width, info.height))
    inputs = [str(videos / c.name) for c in clips]
    result = analyze(AnalyzeOptions(inputs=inputs, out=out / "run", model=model, config=config, dwell=dwell,
                                    imgsz=imgsz, progress=False, mask=False))  # no shared report here
    by_source: dict[str, list[PredEvent]] = {}
    for case in result.cases:
        by_source.setdefault(Path(case["source"]).name, []).append(
            PredEvent(case["violation"], float(case["start_s"]), float(case["end_s"]), float(case["confirmed_s"])))
    failed = {Path(e["source"]).name: e["error"] for e in result.errors}
    per_clip: dict[str, ClipDetail] = {}
    matched = []
    tagged: dict[str, list[Any]] = {}
    hours = 0.0
    (out / "timelines").mkdir(exist_ok=True)
    for clip in clips:
        preds = by_source.get(clip.name, [])
        matches, fps, fns = match_events(preds, clip.segments, iou)
        row = (preds, clip.segments, matches, fps, fns)
        if clip.name not in failed:
            matched.append(row)
            hours += clip.duration / 3600
            for t in clip.tags:
                tagged.setdefault(t, []).append(row)
        _clip_timeline(clip.name, clip, preds, out / "timelines" / f"{Path(clip.name).stem}.png")
        per_clip[clip.name] = {
            "error": failed.get(clip.name),
            "duration": clip.duration, "tags": clip.tags,
            "labelled": [{"label": s.label, "segment": [s.start, s.end]} for s in clip.segments],
            "predicted": [{"label": p.label, "segment": [p.start, p.end], "alert": p.alert} for p in preds],
            "matches": [{"pred": m.pred, "gt": m.gt, "iou": m.iou} for m in matches],
            "false_positives": fps, "false_negatives": fns,
        }
    events = event_scores(matched, VIOLATIONS)
    total_fp = sum(v["fp"] for v in events.values())
    metrics: ClipResult = {
        "labels": str(labels_path), "videos": str(videos), "model": str(model),
        "settings": {"iou": iou, "dwell_override_s": dwell, "config": str(config) if config else None,
                     "imgsz": imgsz, "frame_view": view,
                     "matching": "one-to-one per class, greedy by temporal IoU; delay = alert - labelled start"},
        "events": events,
        "false_alarms_per_hour": round(total_fp / hours, 3) if hours else None,
        "by_tag": {t: event_scores(rows, VIOLATIONS) for t, rows in sorted(tagged.items())},
        "frames": frame_metrics(clips, videos, model, conf, imgsz, view),
        "clips": per_clip,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    table = "".join(f"<tr><td>{k}</td><td>{v['precision']}</td><td>{v['recall']}</td><td>{v['f1']}</td>"
                    f"<td>{v['tp']}</td><td>{v['fp']}</td><td>{v['fn']}</td><td>{v['delay_median_s']}</td>"
                    f"<td>{v['delay_p90_s']}</td></tr>" for k, v in events.items())
    pics = "".join(f"<h3>{html.escape(n)}</h3>"
                   + (f"<p>error: {html.escape(str(c['error']))}</p>" if c["error"] else "")
                   + f"<img src='timelines/{Path(n).stem}.png'>" for n, c in per_clip.items())
    (out / "report.html").write_text(html_page(
        "streetwatch event evaluation", "<h1>Event evaluation</h1>"
        f"<p>{len(clips)} clips, temporal IoU ≥ {iou}, false alarms per hour: {metrics['false_alarms_per_hour']}."
        + (f" Frame AP50 on {metrics['frames']['frames']} labelled frames: mAP50 {metrics['frames']['map50']}, "
           + ", ".join(f"{k} {v.get('ap50', 'absent')}" for k, v in metrics["frames"]["classes"].items())
           if metrics["frames"] else "")
        + "</p><table><tr><th>violation</th><th>P</th><th>R</th><th>F1</th><th>TP</th><th>FP</th><th>FN</th>"
        f"<th>delay median s</th><th>delay p90 s</th></tr>{table}</table><h2>Per clip</h2>{pics}"
        f"<h2>Settings</h2><pre>{html.escape(json.dumps(metrics['settings'], indent=1))}</pre>"), encoding="utf-8")
    return metrics


def gate(metrics: Mapping[str, Any], baseline: Path, margin: float) -> list[str]:
    """Compare metrics with a baseline file; returns the regressions (empty when none)."""
    return regressions(metrics, json.loads(baseline.read_text()), margin)
