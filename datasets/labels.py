"""Labelled violation events of video clips.

Accepted formats:
    * ActivityNet-style JSON: ``{"database": {"clip.mp4": {"duration": 50.7,
      "annotations": [{"segment": [34.5, 50.1], "label": "garbage"}], "tags": ["night"]}}}``;
      an annotation may carry an optional ``box`` or ``polygon``.
    * CVAT for video 1.1 XML: each ``<track>`` of a violation label becomes one
      event spanning its first to last visible (not ``outside``) frame, at the
      task's frame rate; every visible box also becomes a per-frame box for
      frame AP (context labels such as ``truck`` give frame boxes only).
    * YOLO per-frame label folders (``DIR/<clip stem>/<frame index>.txt``,
      canonical class ids) add per-frame boxes to any clip.

Labels use violation names (``street_stall``, ``uncovered_truck``, ``garbage``,
``barbecue``, ``overflowing_bin``); ``--names old=new`` style remaps apply.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from detector.events import VIOLATIONS
from detector.types import CANONICAL_LABELS


class LabelError(ValueError):
    """A label file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Segment:
    """A violation from ``start`` to ``end`` seconds."""

    label: str
    start: float
    end: float
    box: tuple[float, float, float, float] | None = None


FrameBoxes = dict[int, list[tuple[str, tuple[float, float, float, float]]]]


@dataclass
class ClipLabels:
    """The labelled events of one clip, and optional per-frame boxes (detector label names).

    Attributes:
        name: Clip file name.
        duration: Seconds.
        segments: Labelled violation events.
        tags: Free tags (``night``, ``rain``...) for per-tag metrics.
        frames: Frame index -> boxes ``(label, (x1, y1, x2, y2))`` in pixels, for frame AP.
    """

    name: str
    duration: float
    segments: list[Segment]
    tags: list[str] = field(default_factory=list)
    frames: FrameBoxes = field(default_factory=dict)


def _remap(label: str, remap: dict[str, str], where: str) -> str:
    label = remap.get(label, label)
    if label not in VIOLATIONS:
        raise LabelError(f"{where}: label '{label}' is not a violation ({', '.join(VIOLATIONS)}); remap it")
    return label


def load_activitynet(path: Path, remap: dict[str, str] | None = None) -> list[ClipLabels]:
    """Load ActivityNet-style event labels."""
    remap = remap or {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LabelError(f"{path}: cannot read labels: {exc}") from exc
    db = data.get("database") if isinstance(data, dict) else None
    if not isinstance(db, dict):
        raise LabelError(f"{path}: needs a 'database' mapping of clip names to annotations")
    clips = []
    for name, entry in db.items():
        segs = []
        for i, ann in enumerate(entry.get("annotations", [])):
            where = f"{path}: {name} annotation {i}"
            try:
                s, e = (float(v) for v in ann["segment"])
            except (KeyError, TypeError, ValueError) as exc:
                raise LabelError(f"{where}: needs 'segment': [start, end]") from exc
            if e < s:
                raise LabelError(f"{where}: segment ends before it starts")
            box = tuple(float(v) for v in ann["box"]) if ann.get("box") else None
            segs.append(Segment(_remap(str(ann.get("label", "")), remap, where), s, e, box))  # type: ignore[arg-type]
        clips.append(ClipLabels(name=name, duration=float(entry.get("duration", 0.0)), segments=segs,
                                tags=[str(t) for t in entry.get("tags", [])]))
    return clips


def load_cvat_video(path: Path, remap: dict[str, str] | None = None, fps: float | None = None) -> list[ClipLabels]:
    """Load CVAT for video 1.1 XML: each track becomes an event over its visible frames."""
    remap = remap or {}
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise LabelError(f"{path}: cannot read CVAT XML: {exc}") from exc
    task = root.find("meta/task")
    if task is None:
        task = root.find("meta/job")
    name = (task.findtext("source") if task is not None else None) or path.with_suffix(".mp4").name
    size = int(task.findtext("size") or 0) if task is not None else 0
    rate = fps or 25.0
    segs = []
    boxes: FrameBoxes = {}
    for track in root.iter("track"):
        raw = track.get("label", "")
        label = remap.get(raw, raw)
        where = f"{path}: track {track.get('id')}"
        visible = [b for b in track.iter("box") if b.get("outside", "0") != "1"]
        if label not in VIOLATIONS and label not in CANONICAL_LABELS:
            _remap(raw, remap, where)  # raises: neither a violation nor a detector label
        for b in visible:
            box = (float(b.get("xtl", 0)), float(b.get("ytl", 0)), float(b.get("xbr", 0)), float(b.get("ybr", 0)))
            boxes.setdefault(int(b.get("frame", 0)), []).append((label, box))
        if visible and label in VIOLATIONS:  # context labels (truck, garbage_bin...) give frame boxes only
            frames = [int(b.get("frame", 0)) for b in visible]
            segs.append(Segment(label, min(frames) / rate, (max(frames) + 1) / rate))
    return [ClipLabels(name=name, duration=size / rate, segments=segs, frames=boxes)]


def load_yolo_frames(folder: Path, width: int, height: int) -> FrameBoxes:
    """Read per-frame YOLO labels of one clip: ``folder/<frame index>.txt`` with canonical class ids."""
    out: FrameBoxes = {}
    for f in sorted(folder.glob("*.txt")):
        try:
            index = int(f.stem.rsplit("_", 1)[-1])
        except ValueError as exc:
            raise LabelError(f"{f}: per-frame label files are named by frame index (000123.txt)") from exc
        rows = []
        for n, line in enumerate(f.read_text().splitlines(), 1):
            v = line.split()
            if not v:
                continue
            if len(v) != 5 or not v[0].isdigit() or int(v[0]) >= len(CANONICAL_LABELS):
                raise LabelError(f"{f}:{n}: expected 'class cx cy w h' with a canonical class id")
            cx, cy, w, h = (float(x) for x in v[1:])
            rows.append((CANONICAL_LABELS[int(v[0])], ((cx - w / 2) * width, (cy - h / 2) * height,
                                                       (cx + w / 2) * width, (cy + h / 2) * height)))
        out[index] = rows
    return out


def load_event_labels(path: Path, remap: dict[str, str] | None = None) -> list[ClipLabels]:
    """Load event labels by file type (``.json`` ActivityNet, ``.xml`` CVAT for video)."""
    if path.suffix.lower() == ".xml":
        return load_cvat_video(path, remap)
    return load_activitynet(path, remap)
