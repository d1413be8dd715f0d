"""Reading number plates in an image: text detection and recognition (PP-OCRv4 on ONNX Runtime, from the
``rapidocr-onnxruntime`` package, Apache-2.0), constrained to valid Chinese plates.

A vehicle's box is read as a crop (with a margin) enlarged so that a plate is tall enough for the recogniser;
the OCR's text lines are tried alone and joined with their neighbour on the same line (a plate's province and
city letter are often a line of their own), and only readings that are a valid plate after
:func:`~detector.plates.read_plate` count. No valid reading, no plate: the reader never invents one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from detector.plates import read_plate

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


class ReadsPlates(Protocol):
    """Anything that reads plates in an image or a vehicle box of it (the :class:`PlateReader`)."""

    def read(self, image: npt.NDArray[np.uint8], box: Box | None = None) -> list[PlateReading]:
        """Valid plates, best first."""
        ...


class PlateReaderUnavailable(RuntimeError):
    """The OCR package is not installed."""


@dataclass(frozen=True)
class PlateReading:
    """A valid plate read in an image: the plate, the OCR's confidence, where (frame pixels), the raw text."""

    plate: str
    confidence: float
    box: Box
    text: str


@dataclass(frozen=True)
class _Line:
    text: str
    score: float
    box: Box  # in region pixels


def _lines(result: list[Any] | None) -> list[_Line]:
    out = []
    for quad, text, score in result or []:
        pts = np.asarray(quad, np.float32)
        out.append(_Line(str(text), float(score), (float(pts[:, 0].min()), float(pts[:, 1].min()),
                                                   float(pts[:, 0].max()), float(pts[:, 1].max()))))
    return out


def _candidates(lines: list[_Line]) -> list[_Line]:
    """Each line, and each pair of lines side by side on one text line (left to right)."""
    out = list(lines)
    for a in lines:
        for b in lines:
            if a is b or b.box[0] < a.box[0]:
                continue
            h = max(a.box[3] - a.box[1], b.box[3] - b.box[1])
            overlap = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
            gap = b.box[0] - a.box[2]
            if overlap > 0.5 * h and -0.2 * h < gap < 1.5 * h:
                box = (min(a.box[0], b.box[0]), min(a.box[1], b.box[1]), max(a.box[2], b.box[2]),
                       max(a.box[3], b.box[3]))
                out.append(_Line(a.text + b.text, min(a.score, b.score), box))
    return out


class PlateReader:
    """Reads plates in images or vehicle boxes.

    Args:
        min_confidence: Readings the OCR is less sure of are dropped.
        min_height: A vehicle crop is enlarged to at least this height (pixels) before reading.
        margin: A vehicle box is widened by this share on every side (plates sit at its edge).
    """

    def __init__(self, min_confidence: float = 0.6, min_height: int = 480, margin: float = 0.08) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # an optional part: the rest of the product runs without it
            raise PlateReaderUnavailable("plate reading needs the rapidocr-onnxruntime package "
                                         "(`make setup` installs it)") from exc
        self.engine = RapidOCR()
        self.min_confidence, self.min_height, self.margin = min_confidence, min_height, margin

    def read(self, image: npt.NDArray[np.uint8], box: Box | None = None) -> list[PlateReading]:
        """Valid plates in an image, or in one vehicle box of it; best first, one reading per plate.

        In a vehicle box where the first look finds none, its lower half (where plates are) is read again,
        enlarged twice as much: small, distant plates are found that way.
        """
        h, w = image.shape[:2]
        if box is None:
            return self._read_region(image, (0, 0, w, h), 1.0)
        mx, my = (box[2] - box[0]) * self.margin, (box[3] - box[1]) * self.margin
        region = (max(0, int(box[0] - mx)), max(0, int(box[1] - my)), min(w, int(box[2] + mx)),
                  min(h, int(box[3] + my)))
        found = self._read_region(image, region, self.min_height)
        if not found:
            mid = (region[1] + region[3]) // 2
            found = self._read_region(image, (region[0], mid, region[2], region[3]), self.min_height)
        return found

    def _read_region(self, image: npt.NDArray[np.uint8], region: tuple[int, int, int, int], min_height: float
                     ) -> list[PlateReading]:
        x0, y0, x1, y1 = region
        crop = image[y0:y1, x0:x1]
        if crop.size == 0:
            return []
        scale = min(max(1.0, min_height / crop.shape[0]), 2000 / max(crop.shape[:2]))
        if scale != 1.0:
            crop = np.asarray(cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC), np.uint8)
        result, _ = self.engine(crop)
        best: dict[str, PlateReading] = {}
        for line in _candidates(_lines(result)):
            plate = read_plate(line.text)
            if plate is None or line.score < self.min_confidence:
                continue
            bx = (x0 + line.box[0] / scale, y0 + line.box[1] / scale, x0 + line.box[2] / scale,
                  y0 + line.box[3] / scale)
            found = PlateReading(plate, round(line.score, 4), bx, line.text)
            if plate not in best or found.confidence > best[plate].confidence:
                best[plate] = found
        return sorted(best.values(), key=lambda r: -r.confidence)
