"""Export trained weights to ONNX with metadata, and write the model card.

The ONNX file carries Ultralytics' metadata (``names``, ``imgsz``, ...) plus
``streetwatch_version`` and ``dataset_sha256``; YOLO26 models are exported
NMS-free (``[N, 300, 6]``) with a dynamic batch axis. The card (``card.json``
and ``card.md``) records data sources and licenses, per-class metrics on every
validation split, the training run, and the measured CPU speed.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from detector.backends.base import OnnxConfig
from detector.backends.onnx import OnnxBackend

log = logging.getLogger(__name__)


#: The license written into exported models (Ultralytics' exporter writes its own, AGPL-3.0, with no word on the
#: weights' origin).
WEIGHTS_LICENSE = ("AGPL-3.0 (streetwatch, trained and exported with Ultralytics, AGPL-3.0); weights started from "
                   "yolov5n-coco.pt are also a derived work of that GPL-3.0 checkpoint: see the model card")


def export_onnx(weights: Path, out_dir: Path, imgsz: int, dataset_sha256: str | None = None,
                version: str = "0") -> Path:
    """Export ``weights`` (.pt) to ``out_dir/model.onnx``; needs the ``train`` extra."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import onnx
    from ultralytics.models import YOLO

    out_dir.mkdir(parents=True, exist_ok=True)
    produced = Path(YOLO(str(weights)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, nms=False))
    model = onnx.load(str(produced))
    extra = {"streetwatch_version": version, "dataset_sha256": dataset_sha256 or "unknown", "license": WEIGHTS_LICENSE}
    for k, v in extra.items():
        entry = next((p for p in model.metadata_props if p.key == k), None) or model.metadata_props.add()
        entry.key, entry.value = k, v
    target = out_dir / "model.onnx"
    onnx.save(model, str(target))
    if produced.resolve() != target.resolve():
        produced.unlink(missing_ok=True)
    return target


def measure_cpu_speed(model: Path, threads: int = 1, runs: int = 30) -> dict[str, Any]:
    """Median and p90 latency (ms) of one frame through the ONNX backend on this CPU."""

    backend = OnnxBackend(OnnxConfig(model=model, threads=threads))
    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        backend.detect([frame])
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"threads": threads, "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2), "frame": "1280x720, letterbox included"}


def _size_study(study: dict[str, Any]) -> list[str]:
    """Markdown of an input-size study: ``ap50`` maps a column (model and size) to split -> class -> AP50."""
    cols: dict[str, dict[str, dict[str, float]]] = study.get("ap50", {})
    if not cols:
        return []
    lines = ["## AP50 by input size", "", study.get("what", ""), "",
             "| split | class | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    first = next(iter(cols.values()))
    for split, classes in first.items():
        for c in classes:
            lines.append(f"| {split} | {c} | " + " | ".join(str(v.get(split, {}).get(c, "")) for v in cols.values())
                         + " |")
    lines.append("")
    for key, rows in study.items():
        if key not in ("what", "ap50", "reading") and isinstance(rows, dict):
            lines.append(f"- {key}: " + "; ".join(f"{k}: {v}" for k, v in rows.items()))
    if study.get("reading"):
        lines += ["", study["reading"]]
    return [*lines, ""]


def _sub_table(title: str, study: dict[str, Any], columns: list[tuple[str, str]]) -> list[str]:
    """A sub-section of the leave-one-source-out study: ``study['what']``, a table of ``study['rows']`` (one
    column per ``(header, key)``; a key ending in ``?`` may be missing from a row) and ``study['reading']``."""
    if not study.get("rows"):
        return []
    lines = ["", f"### {title}", "", study.get("what", ""), "", "| " + " | ".join(h for h, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    for r in study["rows"]:
        cells = [r.get(k[:-1], "") if k.endswith("?") else r[k] for _, k in columns]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if study.get("reading"):
        lines += ["", study["reading"]]
    return lines


def loso_lines(loso: dict[str, Any]) -> list[str]:
    """Markdown of a leave-one-source-out study (``pipelines/evaluation/loso.py``'s ``loso.json`` under ``runs``)."""
    runs: dict[str, dict[str, Any]] = loso.get("runs", {})
    if not runs:
        return []
    lines = ["## Leave one source out (generalisation to a source never seen)", "", loso.get("what", ""), "",
             "| start | left-out source | class | AP50 detector | AP50 product | as heaps: detector "
             "| as heaps: product | epochs | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for start, by_source in runs.items():
        for source, s in by_source.items():
            sc = s["scores"]
            for cls, ap in sc["detector"].items():
                heaps = [sc.get(v, {}).get(cls, "–") for v in ("detector_heaps", "product_heaps")]
                lines.append(f"| {start} | {source} | {cls} | {ap} | {sc['product'].get(cls)} | {heaps[0]} | "
                             f"{heaps[1]} | {s.get('epochs')} | {s.get('train_seconds')} |")
    if loso.get("reading"):
        lines += ["", loso["reading"]]
    lines += _sub_table("Data and recipe, one left-out source at a time", loso.get("recipe_study", {}), [
        ("left-out source", "left_out"), ("data and recipe", "recipe"), ("garbage AP50", "ap50"),
        ("epochs", "epochs?"), ("train s", "train_seconds?"), ("measured", "measured?")])
    lines += _sub_table("Sources no model here was trained on", loso.get("unseen_sources", {}), [
        ("source", "source"), ("model", "model"), ("trained on", "trained_on"), ("images", "images"),
        ("boxes", "boxes"), ("garbage AP50 detector", "ap50_detector"), ("AP50 product", "ap50_product?"),
        ("measured", "measured?")])
    return [*lines, ""]


def write_card(out_dir: Path, card: dict[str, Any]) -> None:
    """Write ``card.json`` and a readable ``card.md``."""
    (out_dir / "card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False))
    lines = [f"# Model card: {card.get('name', out_dir.name)}", "", card.get("summary", ""), ""]
    t = card.get("training", {})
    if t:
        lines += ["## Training", ""] + [f"- {k}: {v}" for k, v in t.items()] + [""]
    for split, res in card.get("metrics", {}).items():
        at = f" ({card['imgsz']} px input)" if card.get("imgsz") else ""
        lines += [f"## Validation: {split}{at}", "", f"mAP50 {res.get('map50')}, mAP50-95 {res.get('map50_95')}", "",
                  "| class | P | R | AP50 | AP50-95 | instances |", "|---|---|---|---|---|---|"]
        for c, m in res.get("classes", {}).items():
            lines.append(f"| {c} | {m['precision']} | {m['recall']} | {m['ap50']} | {m['ap50_95']} | "
                         f"{m.get('instances', '')} |")
        lines.append("")
    comp = card.get("comparison_map50", {})
    if comp:
        cols = list(next(iter(comp.values())))
        lines += ["## Compared with the previous default (mAP50, same validation images)", "",
                  "| split | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        lines += [f"| {split} | " + " | ".join(str(v.get(c)) for c in cols) + " |" for split, v in comp.items()]
        lines.append("")
    study = card.get("input_size_study")
    if study:
        lines += _size_study(study)
    lines += loso_lines(card.get("leave_one_source_out", {}))
    for section in card.get("sections", []):  # further measurements, already in markdown
        lines += [f"## {section['title']}", "", section["body"], ""]
    s2r = card.get("sim_to_real")
    if s2r:
        lines += ["## Sim-to-real gap", "", s2r.get("what", ""), "", "```", json.dumps(s2r.get("ap50", {}), indent=1),
                  "```", "", s2r.get("reading", ""), ""]
    if card.get("speed"):
        lines += ["## Speed on CPU", ""] + [f"- {s}" for s in card["speed"]] + [""]
    if card.get("data"):
        lines += ["## Data and licenses", ""] + [f"- {d}" for d in card["data"]] + [""]
    if card.get("license"):
        lines += ["## License of the weights", "", card["license"], ""]
    if card.get("limits"):
        lines += ["## Known limits", ""] + [f"- {x}" for x in card["limits"]] + [""]
    if card.get("measured_by"):
        lines += ["## How these numbers were measured", "", *[f"    {c}" for c in card["measured_by"]], ""]
    (out_dir / "card.md").write_text("\n".join(lines))

