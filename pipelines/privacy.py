"""Shared copies of a case's evidence: faces and other vehicles' plates masked (:mod:`detector.privacy`).

Evidence that leaves the bureau (what a viewer-role token fetches, the links in webhook payloads, an exported
batch report) is a masked copy of the original files, made once and kept beside them as
``<name>.shared.jpg`` / ``<name>.shared.mp4``. Originals are never changed: operators still fetch them.

The masker runs its own detector session at several input sizes, merged (320, 640 and 960 px by default: people
are small in street views and close vehicles large; measured in ``python -m pipelines.evaluation.privacy``), on
the few images of a case only. A clip is decoded, masked frame by frame (the detector runs on at least every
``stride``-th frame, and on every frame more than ``reuse_s`` after the last one it ran on; its regions, widened,
cover the frames between) and encoded again.

The subject of a case is the box it is about (read from the clean frame's JSON, in evidence pixels): a
vehicle overlapping it keeps its plate. In clips the subject moves; there, vehicles of the case's own class
(trucks in a truck case) keep their plates, and every other vehicle's plate is masked.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from detector.backends.base import DetectorBackend, config_for, create_backend
from detector.privacy import Box, Image, MaskRegion, PrivacySettings, apply_mask, mask_regions
from detector.rules import MOVING, TRUCK_LABELS
from detector.types import Detections

log = logging.getLogger(__name__)


class MaskingError(RuntimeError):
    """An evidence file could not be read, masked or written."""


class MaskedNotStored(MaskingError):
    """An image was masked but its copy could not be stored (a full disk): the masked JPEG is in ``content``,
    to be served as it is; the copy is made again on the next request.

    Attributes:
        content: The masked JPEG.
    """

    def __init__(self, message: str, content: bytes) -> None:
        super().__init__(message)
        self.content = content


def shared_path(original: Path) -> Path:
    """Where the masked copy of an evidence file lives: ``x.jpg`` -> ``x.shared.jpg``."""
    return original.with_name(f"{original.stem}.shared{original.suffix}")


def subject_of(evidence: Path, size: tuple[int, int] | None = None) -> Box | None:
    """The case's box from the clean frame's JSON beside ``<case>.jpg``, ``<case>.mp4`` or ``<case>_full.jpg``: in
    the clean frame's pixels, or scaled to an image of ``size`` (width, height) of the same view (a stream-copied
    clip and a full-resolution snapshot are at the camera's resolution, the frames at the evidence's)."""
    meta = evidence.with_name(f"{evidence.stem.removesuffix('_frame').removesuffix('_full')}_frame.json")
    try:
        data = json.loads(meta.read_text())
        box = [float(v) for v in data["box"]][:4]
        sx, sy = (size[0] / float(data["width"]), size[1] / float(data["height"])) if size else (1.0, 1.0)
        return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    except (OSError, ValueError, KeyError, IndexError, TypeError, ZeroDivisionError):
        return None


@dataclass(frozen=True)
class MaskerSettings:
    """How shared evidence is masked.

    Attributes:
        sizes: Detector input sizes for masking, merged: people are small in street views (640 and 960 px find
            more of them) and close vehicles large (the default model, trained at 320 px, finds those at 320).
        stride: In clips, the detector runs on at least every ``stride``-th frame...
        reuse_s: ...and on every frame more than this many seconds after the last one it ran on.
        clip_fps: A masked clip has at most this many frames a second (a stream-copied original has the camera's
            rate; the shared copy is for viewing, and every frame kept is masked).
        clip_width: ...and is at most this wide.
        threads: The masking detector's threads (the service keeps 1: live cameras come first; a batch report
            uses every core once the video is analysed).
        privacy: What is masked (faces, plates, thresholds, band sizes).
    """

    sizes: tuple[int, ...] = (320, 640, 960)
    stride: int = 2
    reuse_s: float = 0.15
    clip_fps: float = 2.0
    clip_width: int = 960
    threads: int = 1
    privacy: PrivacySettings = field(default_factory=PrivacySettings)


class EvidenceMasker:
    """Makes (once) and returns the masked copy of a case's snapshot, clean frame or clip.

    Args:
        model: ONNX model with ``person`` and vehicle classes (the shipped default has them).
        settings: Masking settings.
        backend: A ready detector instead of ``model`` (tests).
    """

    def __init__(self, model: Path | None, settings: MaskerSettings | None = None,
                 backend: DetectorBackend | None = None) -> None:
        self.settings = settings or MaskerSettings()
        if backend is None:
            if model is None:
                raise ValueError("a model or a backend is needed")
            p = self.settings.privacy
            backend = create_backend(config_for(model, conf=min(p.person_confidence, p.vehicle_confidence),
                                                imgsz=max(self.settings.sizes), threads=self.settings.threads))
        missing = {"person", "car"} - set(backend.names)
        if missing:  # a copy called masked must be masked: refuse rather than share faces
            raise MaskingError(f"the masking model has no {', '.join(sorted(missing))} class")
        self.backend = backend
        self._lock = threading.Lock()  # one evidence masking at a time: two requests for one file make it once
        self._live_lock = threading.Lock()  # live frames never wait for a clip being masked
        self._view_regions: dict[str, tuple[tuple[int, ...], list[MaskRegion]]] = {}  # per case's clean frame

    def shared(self, original: Path, violation: str = "") -> Path:
        """The masked copy of ``original`` (made now if it is missing or older than the original).

        Raises:
            MaskedNotStored: An image's masked copy could not be written (a full disk); it carries the masked JPEG.
            MaskingError: The original cannot be read or masked, or a clip's copy cannot be written.
        """
        out = shared_path(original)
        with self._lock:
            if out.is_file() and out.stat().st_mtime >= original.stat().st_mtime:
                return out
            if original.suffix.lower() == ".mp4":
                self._clip(original, out, violation)
            else:
                self._image(original, out)
        return out

    def mask_jpeg(self, jpg: bytes, quality: int = 85) -> bytes:
        """A JPEG with faces and every vehicle's plate masked (a live view: no case, so no subject)."""
        image = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise MaskingError("not a JPEG image")
        img = np.asarray(image, np.uint8)
        with self._live_lock:
            try:
                regions = self.regions(img, None)
            except Exception as exc:  # the detector failed: the frame is not shown unmasked
                raise MaskingError(f"detector failed: {exc}") from exc
        out = apply_mask(img, regions, None, self.settings.privacy.cell)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise MaskingError("cannot encode the masked frame")
        return bytes(buf)

    def regions(self, image: Image, subject: Box | None, keep_labels: frozenset[str] = frozenset()
                ) -> list[MaskRegion]:
        """Regions to mask on one image; vehicles labelled ``keep_labels`` keep their plates."""
        det = detect_multiscale(self.backend, np.asarray(image, np.uint8), self.settings.sizes)
        if keep_labels:
            keep_ids = [i for i, n in enumerate(self.backend.names) if n in keep_labels]
            det = det[~np.isin(det.class_id, keep_ids)]
        return mask_regions(det, self.backend.names, subject, self.settings.privacy)

    def _regions_of_view(self, original: Path, img: Image, subject: Box | None) -> list[MaskRegion]:
        """Regions of a case's snapshot or clean frame: the same picture (the snapshot has the box drawn on it),
        so the detector runs once, on the clean frame, for both."""
        clean = original.with_name(f"{original.stem.removesuffix('_frame')}_frame.jpg")
        key = str(clean)
        cached = self._view_regions.get(key)
        if cached is not None and cached[0] == img.shape:
            return cached[1]
        source = img
        if clean != original and clean.is_file():
            read = cv2.imread(str(clean), cv2.IMREAD_COLOR)
            if read is not None and read.shape == img.shape:
                source = np.asarray(read, np.uint8)
        regions = self.regions(source, subject)
        if clean.is_file():
            self._view_regions[key] = (img.shape, regions)
            while len(self._view_regions) > 64:  # the latest cases only
                self._view_regions.pop(next(iter(self._view_regions)))
        return regions

    def _image(self, original: Path, out: Path) -> None:
        image = cv2.imread(str(original), cv2.IMREAD_COLOR)
        if image is None:
            raise MaskingError(f"cannot read {original.name}")
        img = np.asarray(image, np.uint8)
        subject = subject_of(original, (img.shape[1], img.shape[0]))  # a full-resolution snapshot: scaled
        try:
            regions = self._regions_of_view(original, img, subject)
        except Exception as exc:  # the detector failed: no copy rather than an unmasked one
            raise MaskingError(f"detector failed on {original.name}: {exc}") from exc
        result = apply_mask(img, regions, subject, self.settings.privacy.cell)
        ok, buf = cv2.imencode(".jpg", result, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise MaskingError(f"cannot encode {out.name}")
        tmp = out.with_name(out.name + ".part.jpg")
        try:
            tmp.write_bytes(bytes(buf))
            tmp.replace(out)
        except OSError as exc:  # a full disk: nothing half-written is left behind, the masked image still served
            tmp.unlink(missing_ok=True)
            log.warning("masked copy %s not stored (%s): served from memory", out.name, exc)
            raise MaskedNotStored(f"cannot write {out.name}: {exc}", bytes(buf)) from exc
        log.info("masked %s: %d faces, %d plates", original.name, sum(r.kind == "face" for r in regions),
                 sum(r.kind == "plate" for r in regions))

    def _clip(self, original: Path, out: Path, violation: str) -> None:
        import av

        keep = TRUCK_LABELS if violation in MOVING else frozenset()  # truck cases: the subject is a moving truck
        tmp = out.with_name(out.name + ".part.mp4")
        cfg = self.settings
        try:
            with av.open(str(original)) as src, av.open(str(tmp), "w") as dst:
                vin = src.streams.video[0]
                vin.thread_type = "AUTO"
                w, h = vin.codec_context.width, vin.codec_context.height
                scale = min(1.0, cfg.clip_width / w) if w else 1.0
                size = (round(w * scale) // 2 * 2, round(h * scale) // 2 * 2)
                subject = None if keep else subject_of(original, size)
                rate = min(float(vin.average_rate or cfg.clip_fps), cfg.clip_fps)
                vout = dst.add_stream("libx264", rate=round(rate) or 8)
                vout.width, vout.height, vout.pix_fmt = size[0], size[1], "yuv420p"
                # Milliseconds in and out of the encoder: a time-lapse clip's uneven times would collide in 1/fps.
                vout.time_base = vout.codec_context.time_base = Fraction(1, 1000)
                last_pts = -1
                vout.options = {"preset": "veryfast", "crf": "28"}
                regions: list[MaskRegion] = []
                detected_at, since, slot = -1e9, 0, -1e9
                for frame in src.decode(vin):
                    t = float(frame.time or 0.0)
                    if t < slot - 1e-3:
                        continue  # thinned to clip_fps on a time grid: the original keeps every frame
                    step = 1.0 / cfg.clip_fps
                    slot = slot + step if slot + step > t else t + step  # the next slot (after a gap: from here)
                    img = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
                    if img.shape[1] != size[0] or img.shape[0] != size[1]:
                        img = np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA), np.uint8)
                    # Regions are reused on the next frame only when it follows closely: a time-lapse's frames
                    # are a second or more apart and people move in between.
                    if since >= max(1, self.settings.stride) or t - detected_at > self.settings.reuse_s:
                        regions = [MaskRegion(_widen(r.box, 0.15), r.kind) for r in self.regions(img, subject, keep)]
                        detected_at, since = t, 0
                    since += 1
                    masked = apply_mask(img, regions, subject, self.settings.privacy.cell)
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(masked), format="bgr24")
                    pts = max(last_pts + 1, round((frame.time or 0.0) * 1000))  # the original's timing, in ms
                    vf.pts, vf.time_base, last_pts = pts, Fraction(1, 1000), pts
                    for packet in vout.encode(vf):
                        dst.mux(packet)
                for packet in vout.encode():
                    dst.mux(packet)
            tmp.replace(out)
        except Exception as exc:  # any failure (decoder, detector, full disk): a clear error, nothing half-written
            tmp.unlink(missing_ok=True)
            raise MaskingError(f"cannot mask {original.name}: {exc}") from exc
        log.info("masked clip %s", original.name)


def detect_multiscale(backend: DetectorBackend, image: Image, sizes: tuple[int, ...]) -> Detections:
    """The detections of one image at several input sizes, together (masks are a union: no NMS needed)."""
    return Detections.merge(backend.detect([image] * len(sizes), sizes=sizes))


def _widen(box: Box, share: float) -> Box:
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * share, (y2 - y1) * share
    return (x1 - dx, y1 - dy, x2 + dx, y2 + dy)
