"""Operators' reviews → training data (``streetwatch datasets from-reviews``).

A confirmed case becomes a positive example, a rejected one a hard negative. Each
example is cut from the case's clean frame (evidence kind ``frame``: the best frame
of the detection, without drawings, with the case's box beside it) around the
reviewed box, with one box-size of context on each side (at least ``min_side``
pixels): a confirmed crop carries the box as a YOLO label with the canonical class
of the violation, a rejected crop carries no label (a background image, which is
how YOLO training learns "nothing here"). Cropping keeps other, unreviewed objects
of the same frame mostly out of the example, so they are not taught as background.

The output is a YOLO dataset (``data.yaml`` with the canonical names, a train/val
split stable per case id) plus ``manifest.json`` with the provenance of every image
(case, camera, zone, time, verdict, reviewer, reason, evidence SHA-256, the model that raised the case), ready for
``streetwatch datasets merge`` and ``train``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from datasets.yolo import names_block
from detector.types import CANONICAL_LABELS
from pipelines.sinks.store import Case, CaseStore

log = logging.getLogger(__name__)


def of_model(cases: Sequence[Case], sha256: str | None) -> tuple[list[Case], Counter[str]]:
    """The cases a model raised (``sha256``: its weights' SHA-256 or a prefix of it; None: every case), and how
    many cases each model raised (``name (sha256 prefix)``; ``not recorded`` for cases stored before the model
    was) — so that thresholds from the verdicts on one model's confidences are not mixed with another's."""
    counts = Counter(f"{c.model or '?'} (sha256 {c.model_sha256[:12]})" if c.model_sha256 else "not recorded"
                     for c in cases)
    if sha256 is None:
        return list(cases), counts
    return [c for c in cases if c.model_sha256 and c.model_sha256.startswith(sha256.lower())], counts


@dataclass
class ExportResult:
    """What an export wrote and what it had to skip."""

    positives: int
    negatives: int
    skipped: list[str]
    data_yaml: Path


def _crop(w: int, h: int, box: list[float], context: float, min_side: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    cw, ch = max(min_side, bw * (1 + 2 * context)), max(min_side, bh * (1 + 2 * context))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(max(0, min(w - cw, cx - cw / 2)))
    top = int(max(0, min(h - ch, cy - ch / 2)))
    return left, top, int(min(w, left + cw)), int(min(h, top + ch))


def export_reviews(store: CaseStore, evidence_root: Path, out: Path, context: float = 1.0, min_side: int = 160,
                   val_fraction: float = 0.1) -> ExportResult:
    """Write the reviewed cases of ``store`` as a YOLO dataset into ``out``.

    Cases without a clean frame (reviewed before frames were kept, or whose file is gone)
    are skipped and listed; nothing else stops the export.
    """
    index = {n: i for i, n in enumerate(CANONICAL_LABELS)}
    files: list[dict[str, Any]] = []
    skipped: list[str] = []
    pos = neg = 0
    for case in store.reviewed():
        entry = case.evidence.get("frame")
        if entry is None:
            skipped.append(f"{case.id}: no clean frame")
            continue
        frame_path = (evidence_root / entry["path"]).resolve()
        if not frame_path.is_relative_to(evidence_root.resolve()):
            skipped.append(f"{case.id}: frame path outside the evidence folder")
            continue
        try:
            meta = json.loads(frame_path.with_suffix(".json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            skipped.append(f"{case.id}: frame box unreadable ({exc})")
            continue
        img = cv2.imread(str(frame_path), cv2.IMREAD_COLOR)
        if img is None:
            skipped.append(f"{case.id}: frame image unreadable")
            continue
        h, w = img.shape[:2]
        box = [float(v) for v in meta["box"]]
        x0, y0, x1, y1 = _crop(w, h, box, context, min_side)
        crop = img[y0:y1, x0:x1]
        split = "val" if int(hashlib.sha256(case.id.encode()).hexdigest(), 16) % 1000 < val_fraction * 1000 else "train"
        stem = f"{case.camera}_{case.id}_{case.review}"
        img_out = out / "images" / split / f"{stem}.jpg"
        lbl_out = out / "labels" / split / f"{stem}.txt"
        img_out.parent.mkdir(parents=True, exist_ok=True)
        lbl_out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img_out), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
        lines = []
        if case.review == "confirmed":
            label = _label_of(case)
            cw, ch = x1 - x0, y1 - y0
            bx1, by1 = max(0.0, box[0] - x0), max(0.0, box[1] - y0)
            bx2, by2 = min(float(cw), box[2] - x0), min(float(ch), box[3] - y0)
            lines.append(f"{index[label]} {(bx1 + bx2) / 2 / cw:.6f} {(by1 + by2) / 2 / ch:.6f} "
                         f"{(bx2 - bx1) / cw:.6f} {(by2 - by1) / ch:.6f}")
            pos += 1
        else:
            neg += 1
        lbl_out.write_text("".join(line + "\n" for line in lines))
        files.append({"file": str(img_out.relative_to(out)), "split": split, "case_id": case.id,
                      "camera": case.camera, "zone": case.zone, "violation": case.violation,
                      "verdict": case.review, "reviewed_by": case.reviewed_by, "reason": case.review_reason,
                      "registered_at": case.created_at, "crop": [x0, y0, x1, y1],
                      "frame_sha256": entry.get("sha256"), "boxes": len(lines), "model": case.model,
                      "model_sha256": case.model_sha256})
    names = names_block()
    out.mkdir(parents=True, exist_ok=True)
    has_val = (out / "images" / "val").exists()
    data_yaml = out / "data.yaml"
    data_yaml.write_text(f"train: images/train\nval: {'images/val' if has_val else 'images/train'}\nnames:\n{names}")
    license_note = "Frames of this deployment's own cameras, reviewed by its operators (not for redistribution)."
    (out / "manifest.json").write_text(json.dumps(
        {"sources": [{"name": "operator_reviews", "license": license_note}], "positives": pos, "negatives": neg,
         "skipped": skipped, "files": files}, indent=1, ensure_ascii=False))
    (out / "README.md").write_text(
        "# Operator reviews\n\nConfirmed cases (positives, labelled) and rejected ones (hard negatives, no label), "
        "cut from the cases' clean frames by `streetwatch datasets from-reviews`.\n\n"
        f"**License:** {license_note}\n")
    log.info("reviews: %d positives, %d hard negatives, %d skipped -> %s", pos, neg, len(skipped), out)
    return ExportResult(pos, neg, skipped, data_yaml)


def _label_of(case: Case) -> str:
    """The detector label a confirmed case teaches: the violation's own canonical label."""
    if case.violation not in CANONICAL_LABELS:
        raise ValueError(f"case {case.id}: violation {case.violation!r} has no detector label")
    return case.violation
