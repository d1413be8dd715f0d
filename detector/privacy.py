"""Privacy masks for evidence that leaves the system: bystanders' faces and other vehicles' plates.

Pure geometry on one frame's :class:`~detector.types.Detections` (no models here):

* **Faces**: the head of every ``person`` box (its top ``head_share``, widened by ``head_widen`` each side) is
  masked, wherever the person stands, the subject's own box included (a vendor's face is personal data too;
  operators keep the original). Chosen by measurement against OpenCV's bundled Haar face cascade, which finds
  almost no faces at street-camera sizes (``python -m pipelines.evaluation.privacy``; docs/privacy-study.json,
  figures in the README).
* **Plates**: every vehicle that is not the case's subject gets its plate band masked: the lower
  ``plate_band`` share of its box, full width. A plate is mounted below the bonnet or tailboard line whatever the
  angle; a band needs no plate detector, so it cannot miss a plate that a detector would not find. The subject
  vehicle (the box the case is about, IoU >= ``subject_iou``) keeps its plate: it names the case.
* Masks never cover the subject's box unless they are faces: blurring the lower half of a car parked beside a
  pile must not blur the pile.

What is *not* masked: people and vehicles the detector does not find (below ``person_confidence`` /
``vehicle_confidence``), faces on
posters, text on shop signs, and the subject vehicle's plate. The masked regions are pixelated into
``cell``-pixel blocks (irreversible at the sizes involved) and then blurred, so no detail is left to recover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from detector.postprocess import box_iou
from detector.types import Detections

Box = tuple[float, float, float, float]
Image = npt.NDArray[np.uint8]

PERSON_LABELS = frozenset({"person"})
VEHICLE_LABELS = frozenset({"car", "bus", "truck", "uncovered_truck", "motorcycle"})


@dataclass(frozen=True)
class PrivacySettings:
    """What is masked and how.

    Attributes:
        faces: Mask people's heads.
        plates: Mask the plate band of vehicles other than the subject.
        person_confidence: People scored below this are ignored (far lower than the rules' threshold: a missed
            face is worse than a blurred patch of wall).
        vehicle_confidence: Vehicles scored below this are ignored (a plate band is a large patch).
        head_share: Share of a person box's height, from its top, that holds the head.
        head_widen: The head region is widened by this share of the box width on each side.
        plate_band: Share of a vehicle box's height, from its bottom, that is masked.
        subject_iou: A vehicle box overlapping the subject's box this much is the subject.
        cell: Pixel size of the pixelation blocks (at least 2).
    """

    faces: bool = True
    plates: bool = True
    person_confidence: float = 0.02
    vehicle_confidence: float = 0.2
    head_share: float = 0.4
    head_widen: float = 0.1
    plate_band: float = 0.5
    subject_iou: float = 0.5
    cell: int = 8


@dataclass(frozen=True)
class MaskRegion:
    """One rectangle to mask, in pixels, and why (``face`` or ``plate``)."""

    box: Box
    kind: str


def head_box(person: Box, s: PrivacySettings) -> Box:
    """The head region of a person box: its top ``head_share``, widened each side."""
    x1, y1, x2, y2 = person
    w, h = x2 - x1, y2 - y1
    return (x1 - w * s.head_widen, y1, x2 + w * s.head_widen, y1 + h * s.head_share)


def plate_band_box(vehicle: Box, s: PrivacySettings) -> Box:
    """The band of a vehicle box where its plate is: the lower ``plate_band`` share, full width."""
    x1, y1, x2, y2 = vehicle
    return (x1, y2 - (y2 - y1) * s.plate_band, x2, y2)


def mask_regions(det: Detections, names: Sequence[str], subject: Box | None,
                 settings: PrivacySettings | None = None) -> list[MaskRegion]:
    """The regions to mask on a frame: heads of all people, plate bands of vehicles other than ``subject``."""
    s = settings or PrivacySettings()
    out: list[MaskRegion] = []
    subj = np.asarray([subject], np.float32) if subject is not None else None
    for xyxy, conf, cls, _ in det:
        if not 0 <= cls < len(names):
            continue
        box: Box = (float(xyxy[0]), float(xyxy[1]), float(xyxy[2]), float(xyxy[3]))
        label = names[cls]
        if s.faces and label in PERSON_LABELS and conf >= s.person_confidence:
            out.append(MaskRegion(head_box(box, s), "face"))
        elif s.plates and label in VEHICLE_LABELS and conf >= s.vehicle_confidence:
            if subj is not None and float(box_iou(np.asarray([box], np.float32), subj)[0, 0]) >= s.subject_iou:
                continue
            out.append(MaskRegion(plate_band_box(box, s), "plate"))
    return out


def _clip(box: Box, w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return (max(0, int(np.floor(x1))), max(0, int(np.floor(y1))), min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2))))


def region_mask(shape: tuple[int, int], regions: Sequence[MaskRegion], subject: Box | None) -> npt.NDArray[np.bool_]:
    """A boolean ``(h, w)`` mask of the regions; plate regions leave the subject's box alone."""
    h, w = shape
    faces = np.zeros((h, w), bool)
    plates = np.zeros((h, w), bool)
    for r in regions:
        x1, y1, x2, y2 = _clip(r.box, w, h)
        if x2 > x1 and y2 > y1:
            (faces if r.kind == "face" else plates)[y1:y2, x1:x2] = True
    if subject is not None:
        x1, y1, x2, y2 = _clip(subject, w, h)
        plates[y1:y2, x1:x2] = False
    return np.asarray(faces | plates, bool)


def apply_mask(image: Image, regions: Sequence[MaskRegion], subject: Box | None, cell: int = 8) -> Image:
    """A copy of ``image`` with each region pixelated and blurred (plate regions leave the subject's box alone).

    A region's blocks are at least ``cell`` pixels and at least a sixth of its shorter side, so a masked face
    or plate keeps no more than a few blocks of colour whatever its size."""
    out = image.copy()
    if not regions:
        return out
    h, w = image.shape[:2]
    keep = region_mask((h, w), regions, subject)
    for r in regions:
        x1, y1, x2, y2 = _clip(r.box, w, h)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        c = max(2, cell, min(x2 - x1, y2 - y1) // 6)
        patch = image[y1:y2, x1:x2]
        small = cv2.resize(patch, (max(1, (x2 - x1) // c), max(1, (y2 - y1) // c)), interpolation=cv2.INTER_AREA)
        coarse = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
        k = min(c, 31) | 1
        coarse = cv2.GaussianBlur(coarse, (k, k), 0)
        sel = keep[y1:y2, x1:x2]
        out[y1:y2, x1:x2][sel] = coarse[sel]
    return out


def masked(image: Image, det: Detections, names: Sequence[str], subject: Box | None,
           settings: PrivacySettings | None = None) -> tuple[Image, list[MaskRegion]]:
    """The image with faces and other vehicles' plates masked, and the regions that were."""
    s = settings or PrivacySettings()
    regions = mask_regions(det, names, subject, s)
    return apply_mask(image, regions, subject, s.cell), regions
