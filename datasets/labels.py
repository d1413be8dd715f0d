"""Labelled violation events of video clips.

Accepted formats:
    * ActivityNet-style JSON: ``{"database": {"clip.mp4": {"duration": 50.7,
      "annotations": [{"segment": [34.5, 50.1], "label": "garbage"}], "tags": ["night"]}}}``;
      an annotation may carry an optional ``box`` or ``polygon``.
    * CVAT for video 1.1 XML: each ``<track>`` becomes one event spanning its
      first to last visible (not ``outside``) frame, at the task's frame rate.

Labels use violation names (``street_stall``, ``uncovered_truck``, ``garbage``,
``barbecue``, ``overflowing_bin``); ``--names old=new`` style remaps apply.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from detector.events import VIOLATIONS


class LabelError(ValueError):
    """A label file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Segment:
    """A violation from ``start`` to ``end`` seconds."""

    label: str
    start: float
    end: float
    box: tuple[float, float, float, float] | None = None


@dataclass
class ClipLabels:
    """The labelled events of one clip."""

    name: str
    duration: float
    segments: list[Segment]
    tags: list[str] = field(default_factory=list)


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
    for track in root.iter("track"):
        frames = [int(b.get("frame", 0)) for b in track if b.get("outside", "0") != "1"]
        if not frames:
            continue
        label = _remap(track.get("label", ""), remap, f"{path}: track {track.get('id')}")
        segs.append(Segment(label, min(frames) / rate, (max(frames) + 1) / rate))
    return [ClipLabels(name=name, duration=size / rate, segments=segs)]


def load_event_labels(path: Path, remap: dict[str, str] | None = None) -> list[ClipLabels]:
    """Load event labels by file type (``.json`` ActivityNet, ``.xml`` CVAT for video)."""
    if path.suffix.lower() == ".xml":
        return load_cvat_video(path, remap)
    return load_activitynet(path, remap)
