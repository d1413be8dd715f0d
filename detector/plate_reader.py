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

from detector.plates import DIGITS, LETTERS, NEV_KIND, PROVINCES, SUFFIXES, read_plate

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


#: The plate formats, one allowed character set per position (standard, new-energy small, new-energy large).
PLATE_PATTERNS: tuple[tuple[str, ...], ...] = (
    (PROVINCES, LETTERS, LETTERS + DIGITS, LETTERS + DIGITS, LETTERS + DIGITS, LETTERS + DIGITS,
     LETTERS + DIGITS + SUFFIXES),
    (PROVINCES, LETTERS, NEV_KIND, LETTERS + DIGITS, DIGITS, DIGITS, DIGITS, DIGITS),
    (PROVINCES, LETTERS, DIGITS, DIGITS, DIGITS, DIGITS, DIGITS, NEV_KIND),
)


class ConstrainedDecoder:
    """CTC decoding of a text recogniser's per-frame probabilities restricted to the plate formats.

    For each format it finds the most probable alignment that emits exactly one allowed character per
    position (blanks between), by dynamic programming over (position, frame). The result counts only when it is
    nearly as probable as the unconstrained reading (``max_gap`` in mean log-probability per frame) and every
    character was really seen (its best frame's probability at least ``min_char``): a plate-shaped guess over an
    unreadable character is refused, never invented.

    Args:
        characters: The recogniser's classes; index 0 is the CTC blank.
    """

    def __init__(self, characters: list[str], max_gap: float = 0.5, min_char: float = 0.2) -> None:
        index = {c: i for i, c in enumerate(characters)}
        self.characters, self.max_gap, self.min_char = characters, max_gap, min_char
        self.patterns = [[np.array([index[c] for c in allowed if c in index]) for allowed in p]
                         for p in PLATE_PATTERNS]

    def decode(self, probs: npt.NDArray[np.float32]) -> tuple[str, float] | None:
        """The plate in ``(frames, classes)`` probabilities and its confidence (mean of its characters'), or None."""
        logp = np.log(np.clip(probs.astype(np.float64), 1e-9, 1.0))
        best: tuple[float, str, list[float]] | None = None
        for pattern in self.patterns:
            found = self._align(logp, pattern)
            if found is not None and (best is None or found[0] > best[0]):
                best = found
        if best is None:
            return None
        score, plate, confs = best
        gap = (float(logp.max(axis=1).sum()) - score) / len(logp)
        if gap > self.max_gap or min(confs) < self.min_char:
            return None
        return plate, round(float(np.mean(confs)), 4)

    def _align(self, logp: npt.NDArray[np.float64], pattern: list[npt.NDArray[np.int64]]
               ) -> tuple[float, str, list[float]] | None:
        frames = len(logp)
        if frames < len(pattern):
            return None
        cum = np.vstack([np.zeros(logp.shape[1]), np.cumsum(logp, axis=0)])
        after = cum[:, 0].copy()  # best score with every position so far emitted, blanks after: by frame
        steps = []
        for allowed in pattern:
            ends = np.full(frames + 1, -np.inf)
            how: list[tuple[int, int]] = [(0, 0)] * (frames + 1)
            runs = cum[:, allowed]
            for t in range(1, frames + 1):
                total = after[:t, None] + (runs[t][None, :] - runs[:t])
                s, c = np.unravel_index(int(np.argmax(total)), total.shape)
                ends[t], how[t] = float(total[s, c]), (int(s), int(allowed[c]))
            nxt = np.full(frames + 1, -np.inf)
            end_at = [0] * (frames + 1)
            for t in range(1, frames + 1):
                blank = nxt[t - 1] + logp[t - 1, 0]
                nxt[t], end_at[t] = (ends[t], t) if ends[t] >= blank else (blank, end_at[t - 1])
            steps.append((how, end_at))
            after = nxt
        if not np.isfinite(after[frames]):
            return None
        t, out = frames, []
        for how, end_at in reversed(steps):
            end = end_at[t]
            start, cls = how[end]
            out.append((cls, start, end))
            t = start
        out.reverse()
        plate = "".join(self.characters[c] for c, _, _ in out)
        confs = [float(np.exp(logp[a:b, c].max())) for c, a, b in out]
        return float(after[frames]), plate, confs


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
        try:  # the recogniser's classes (index 0: the CTC blank), for decoding under the plate formats
            self.decoder: ConstrainedDecoder | None = ConstrainedDecoder(
                list(self.engine.text_rec.postprocess_op.character))
        except AttributeError:
            self.decoder = None

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

        def keep(plate: str, confidence: float, box: Box, text: str) -> None:
            bx = (x0 + box[0] / scale, y0 + box[1] / scale, x0 + box[2] / scale, y0 + box[3] / scale)
            if confidence >= self.min_confidence and (plate not in best or confidence > best[plate].confidence):
                best[plate] = PlateReading(plate, round(confidence, 4), bx, text)

        lines = _lines(result)
        decoded = [self._constrained(crop, quad) for quad, _, _ in result or []]
        for line, found in zip(lines, decoded, strict=True):  # each line decoded under the plate formats...
            if found is not None:
                keep(found[0], found[1], line.box, line.text)
        for line in _candidates(lines):  # ...or read plainly where that failed, alone or joined side by side
            plate = read_plate(line.text)
            if plate is not None and not any(found is not None and line.box == seen.box
                                             for seen, found in zip(lines, decoded, strict=True)):
                keep(plate, line.score, line.box, line.text)
        return sorted(best.values(), key=lambda r: -r.confidence)

    def _constrained(self, crop: npt.NDArray[np.uint8], quad: Any) -> tuple[str, float] | None:
        """One text line read again by the recogniser and decoded under the plate formats."""
        if self.decoder is None:
            return None
        try:
            line = self.engine.get_crop_img_list(crop, np.asarray([quad], np.float32))[0]
            rec = self.engine.text_rec
            norm = rec.resize_norm_img(line, max(rec.rec_image_shape[2] / rec.rec_image_shape[1],
                                                 line.shape[1] / max(1, line.shape[0])))
            probs = rec.session(norm[None].astype(np.float32))[0][0]
        except Exception as exc:  # the OCR package's internals changed: the plain reading still counts
            log.warning("constrained plate decoding unavailable: %s", exc)
            self.decoder = None
            return None
        return self.decoder.decode(np.asarray(probs, np.float32))
