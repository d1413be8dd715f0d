"""``streetwatch plates``: the number plates of the vehicles in images and videos (checking a camera's angle).

Each image (or each sampled frame of a video) goes through the detector and the scene stage; every truck (and,
with ``all_vehicles``, every car, bus and motorcycle) is read by the :class:`~detector.plate_reader.PlateReader`
in its box. A plate read outside every vehicle box (the detector missed the vehicle) is reported too, with the
label ``vehicle`` and the plate's box. In a video, vehicles are followed from frame to frame by their boxes'
overlap and each one's readings are voted (:class:`~detector.plates.PlateVotes`). Output::

    {"images": [{"source": "a.jpg", "vehicles": [{"box": [...], "label": "truck", "plate": "晋HA6021",
                 "plate_confidence": 0.97, "plate_box": [...]}]}], "errors": [...]}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from detector.backends.base import DetectorBackend
from detector.plate_reader import Box, PlateReader, PlateReading
from detector.plates import PlateVotes
from detector.postprocess import box_iou
from detector.privacy import VEHICLE_LABELS
from detector.rules import TRUCK_LABELS
from detector.scene import scene
from pipelines.sources import IMAGE_SUFFIXES, InputError, SourceError, expand_inputs, read_frames

log = logging.getLogger(__name__)

TRUCKS = TRUCK_LABELS
VEHICLES = VEHICLE_LABELS


class VehicleOut(TypedDict):
    """One vehicle and its plate (None where none could be read)."""

    box: list[float]
    label: str
    plate: str | None
    plate_confidence: float | None
    plate_box: list[float] | None


class SourceOut(TypedDict):
    """The vehicles of one image or video."""

    source: str
    vehicles: list[VehicleOut]


def _r(box: Iterable[float]) -> list[float]:
    return [round(float(v), 1) for v in box]


def _inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


@dataclass
class _Track:
    box: Box
    label: str
    score: float
    votes: PlateVotes = field(default_factory=PlateVotes)
    plate_box: Box | None = None


def vehicles_in(image: npt.NDArray[np.uint8], backend: DetectorBackend, reader: PlateReader,
                labels: frozenset[str]) -> list[tuple[Box, str, float, PlateReading | None]]:
    """The vehicles of one image with the best plate read in each, plus plates read outside every vehicle."""
    det = scene(backend.detect([image])[0], backend.names)
    found: list[tuple[Box, str, float, PlateReading | None]] = []
    for xyxy, conf, cls in zip(det.xyxy, det.confidence, det.class_id, strict=True):
        label = backend.names[int(cls)] if int(cls) < len(backend.names) else str(cls)
        if label not in labels:
            continue
        box: Box = (float(xyxy[0]), float(xyxy[1]), float(xyxy[2]), float(xyxy[3]))
        readings = reader.read(image, box)
        found.append((box, "truck" if label in TRUCKS else label, float(conf), readings[0] if readings else None))
    taken = {r.plate for *_, r in found if r is not None}
    for r in reader.read(image):  # the whole frame: vehicles the detector missed
        centre = ((r.box[0] + r.box[2]) / 2, (r.box[1] + r.box[3]) / 2)
        if r.plate not in taken and not any(_inside(centre, b) for b, *_ in found):
            found.append((r.box, "vehicle", 0.0, r))
            taken.add(r.plate)
    return found


def _image_out(source: str, found: list[tuple[Box, str, float, PlateReading | None]]) -> SourceOut:
    return {"source": source, "vehicles": [
        {"box": _r(box), "label": label, "plate": r.plate if r else None,
         "plate_confidence": r.confidence if r else None, "plate_box": _r(r.box) if r else None}
        for box, label, _, r in found]}


def _video_out(path: Path, backend: DetectorBackend, reader: PlateReader, labels: frozenset[str],
               fps: float) -> SourceOut:
    tracks: list[_Track] = []
    next_ts = 0.0
    for frame in read_frames(path):
        if frame.ts + 1e-6 < next_ts:
            continue
        next_ts = frame.ts + 1.0 / fps
        for box, label, score, reading in vehicles_in(frame.image, backend, reader, labels):
            track = max(tracks, key=lambda t: _iou(t.box, box), default=None)
            if track is None or _iou(track.box, box) < 0.3:
                track = _Track(box, label, score)
                tracks.append(track)
            track.box = box  # follow the vehicle
            if score > track.score:
                track.label, track.score = label, score
            if reading is not None:
                track.votes.add(reading.plate, reading.confidence)
                track.plate_box = reading.box
    out: list[VehicleOut] = []
    for t in tracks:
        voted = t.votes.result()
        out.append({"box": _r(t.box), "label": t.label, "plate": voted[0] if voted else None,
                    "plate_confidence": voted[1] if voted else None,
                    "plate_box": _r(t.plate_box) if voted and t.plate_box else None})
    return {"source": str(path), "vehicles": out}


def _iou(a: Box, b: Box) -> float:
    return float(box_iou(np.asarray([a], np.float32), np.asarray([b], np.float32))[0, 0])


def read_plates(inputs: list[str], out: Path, backend: DetectorBackend, reader: PlateReader,
                all_vehicles: bool = False, fps: float = 2.0) -> tuple[list[SourceOut], list[InputError]]:
    """Read the plates of every input (images and videos) and write ``out`` (JSON); a bad input is an error
    entry and never stops the others."""
    files, errors = expand_inputs(inputs)
    labels = VEHICLES if all_vehicles else TRUCKS
    results: list[SourceOut] = []
    for path in files:
        try:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                frame = next(iter(read_frames(path)))
                results.append(_image_out(str(path), vehicles_in(frame.image, backend, reader, labels)))
            else:
                results.append(_video_out(path, backend, reader, labels, fps))
        except SourceError as exc:
            errors.append({"source": str(path), "error": str(exc)})
    body: dict[str, Any] = {"images": results, "errors": errors}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=1, ensure_ascii=False), encoding="utf-8")
    return results, errors
