"""The frame stages in front of the detector: sampler, motion gate, ROI planner.

A decoded frame that the :class:`Sampler` takes becomes a :class:`Sample`, which carries everything the
later stages decided about it (the zones it is for, the detector's crop, the motion gate's thumbnail or
reused detections) through a queue and the detector and back: no stage keeps per-frame state.

    frame -> Sampler.take -> MotionGate.check -> RoiPlanner.crop -> Sample -> detector -> CameraPipeline.process
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from detector.types import Detections
from pipelines.config import CameraConfig
from pipelines.sources import JITTER, Frame

GATE_LEVELS = 12  # grey levels a 64x36 thumbnail cell must move by to count as change
ROI_MARGIN = 0.04  # share of the frame's width/height added around the zones' bounding box
ROI_MAX_AREA = 0.85  # a crop covering more of the frame than this is not worth it: the whole frame goes
MIN_INPUT = 64  # smallest detector input side for a same-scale crop

Crop = tuple[int, int, int, int]
"""A detector crop ``(x1, y1, x2, y2)`` in frame pixels."""


@dataclass(frozen=True)
class Sample:
    """A sampled frame on its way to the detector and back.

    Attributes:
        frame: The decoded frame.
        zones: The zones it was sampled for (None: every zone).
        crop: What of it the detector sees (None: the whole frame).
        thumb: The motion gate's thumbnail of it (None: gating off or detections reused).
        reused: Detections of an unchanged earlier frame (frame coordinates): the detector is skipped.
    """

    frame: Frame
    zones: frozenset[str] | None = None
    crop: Crop | None = None
    thumb: npt.NDArray[np.uint8] | None = None
    reused: Detections | None = None

    @property
    def needs_detector(self) -> bool:
        """Whether the detector must run on it (its detections are not reused)."""
        return self.reused is None

    def detector_input(self, imgsz: int, same_scale: bool) -> tuple[npt.NDArray[np.uint8], int]:
        """What the detector sees, and at what input side.

        The whole frame at ``imgsz`` (made that size here, see :meth:`Frame.resized`; :meth:`to_frame` scales
        the boxes back); or the crop (a view, no copy) at ``imgsz``, or at the frame's own scale (``same_scale``:
        a smaller input).
        """
        if self.crop is None:
            fitted = self._fitted(imgsz)
            if fitted is None:
                return self.frame.image, imgsz
            return self.frame.resized(*fitted), imgsz
        image = self.frame.image
        x1, y1, x2, y2 = self.crop
        if not same_scale:
            return image[y1:y2, x1:x2], imgsz
        h, w = image.shape[:2]
        return image[y1:y2, x1:x2], max(MIN_INPUT, round(imgsz * max(x2 - x1, y2 - y1) / max(w, h)))

    def _fitted(self, imgsz: int) -> tuple[int, int] | None:
        """The whole frame's size at detector input side ``imgsz`` (as the letterbox makes it), None if not
        smaller than the frame."""
        h, w = self.frame.shape
        scale = min(imgsz / h, imgsz / w)
        return (max(1, round(w * scale)), max(1, round(h * scale))) if scale < 1 else None

    def to_frame(self, detections: Detections, imgsz: int = 0) -> Detections:
        """Detections on the detector's input (the crop, or the frame made ``imgsz`` small), in frame
        coordinates."""
        if not len(detections):
            return detections
        if self.crop is None:
            fitted = self._fitted(imgsz) if imgsz else None
            if fitted is None:
                return detections
            h, w = self.frame.shape
            return detections.scaled(w / fitted[0], h / fitted[1])
        x1, y1 = self.crop[0], self.crop[1]
        return detections.shifted(float(x1), float(y1))




class Sampler:
    """Time-based sampling at the camera's ``detect_fps``, or per zone where zones have their own rate.

    With per-zone rates a frame is taken when any zone is due, and is for those zones only.
    """

    def __init__(self, camera: CameraConfig) -> None:
        self.detect_fps = camera.detect_fps
        self.period = 1.0 / camera.detect_fps
        self.zone_period = {z.id: 1.0 / (z.detect_fps or camera.detect_fps) for z in camera.zones}
        self.per_zone = any(z.detect_fps is not None for z in camera.zones)
        self.scale = 1.0  # share of the configured rates taken now (< 1 while the service is overloaded)
        self._last_ts: float | None = None
        self._gap = 0.0  # seconds between the last two frames offered
        self._next = 0.0
        self._zone_next = dict.fromkeys(self.zone_period, 0.0)

    @property
    def effective_fps(self) -> float:
        """The camera's detection rate now (its configured ``detect_fps`` times :attr:`scale`)."""
        return self.detect_fps * self.scale

    def _margin(self, period: float) -> float:
        """How early a frame may be and still take its slot: :data:`~pipelines.sources.JITTER` of the period, at
        most a quarter of the gap between frames."""
        return min(JITTER * period, self._gap / 4)

    def take(self, ts: float) -> tuple[bool, frozenset[str] | None]:
        """Whether the frame at ``ts`` is sampled, and the zones it is for (None: all).

        Taking a frame claims its slot at once, so frames decoded while it waits for the detector are not
        taken too.
        """
        if self._last_ts is not None and ts > self._last_ts:
            self._gap = ts - self._last_ts
        self._last_ts = ts
        if not self.per_zone:
            period = self.period / self.scale
            if ts + self._margin(period) < self._next:
                return False, None
            self._next = ts + period
            return True, None
        early = self._margin(min(self.zone_period.values()) / self.scale)  # one for all: zones due together stay so
        due = frozenset(z for z, at in self._zone_next.items() if ts + early >= at)
        if not due:
            return False, None
        for z in due:
            self._zone_next[z] = ts + self.zone_period[z] / self.scale
        return True, None if len(due) == len(self._zone_next) else due


@dataclass
class LoadGovernor:
    """Graceful overload: one share of their configured detection rates for every camera of a shared detector.

    Every ``window_s`` it looks at the detector's busy share and the cameras' queues. When sampled frames were
    dropped from full queues, every camera's rate is cut to the share the detector served of what was asked
    (``served / (served + dropped)`` of the window, at most down to ``decrease``): a burst that cost a few
    frames costs a few percent, a detector at half the load halves the rates at once. Queues three quarters
    full without a drop cut by ``pressure``. When the detector has room again (busy at most ``busy_low`` of the
    window, queues at most a quarter full, nothing dropped) the share grows back by ``increase`` per window. A
    detector that is merely busy but keeps up is left alone: at 16 live streams it is busy most of the time and
    loses almost no frame. Cutting every camera by the same share is fair: a camera that asks for 4 fps keeps
    twice the rate of one that asks for 2, and none starves while another keeps all. Frames are no longer lost at
    random from full queues; cameras sample less often instead.

    Attributes:
        scale: The share now, in ``[min_scale, 1]``.
    """

    window_s: float = 2.0
    min_scale: float = 0.05
    decrease: float = 0.75
    pressure: float = 0.9
    increase: float = 0.1
    busy_low: float = 0.85
    scale: float = 1.0
    _start: float | None = None
    _busy: float = 0.0
    _dropped: int | None = None
    _served: int | None = None

    def observe(self, now: float, busy_s: float, queued: int, capacity: int, dropped_total: int,
                served_total: int | None = None) -> float:
        """Account ``busy_s`` detector seconds up to ``now`` with the queues' state; returns the share to apply.

        Args:
            now: Monotonic seconds.
            busy_s: Detector seconds spent since the previous call.
            queued: Samples waiting, all cameras together.
            capacity: Room of all the queues together.
            dropped_total: Samples dropped from full queues so far (a running total).
            served_total: Samples the detector took so far (a running total; None: drops cut by ``decrease``).
        """
        if self._start is None:
            self._start, self._dropped, self._served = now, dropped_total, served_total
        self._busy += busy_s
        span = now - self._start
        if span < self.window_s:
            return self.scale
        busy = self._busy / span
        dropped = dropped_total - (self._dropped or 0)
        if dropped > 0:
            cut = self.decrease
            if served_total is not None:
                served = served_total - (self._served or 0)
                cut = max(self.decrease, served / (served + dropped))
            self.scale = max(self.min_scale, self.scale * cut)
        elif capacity and queued * 4 >= capacity * 3:
            self.scale = max(self.min_scale, self.scale * self.pressure)
        elif busy <= self.busy_low and queued * 4 <= capacity:
            self.scale = min(1.0, self.scale + self.increase)
        self._start, self._busy, self._dropped, self._served = now, 0.0, dropped_total, served_total
        return self.scale


class MotionGate:
    """Skip the detector on frames that show no change since the last frame it saw.

    A 64x36 grey thumbnail (each cell the mean of a block of pixels) is compared with the one of the last
    frame the detector saw; the frame counts as unchanged when at most one cell moved by more than
    :data:`GATE_LEVELS` grey levels, so compression noise passes and a bag dropped on the pavement does not.
    The detector still runs every ``refresh_s``, so a slow change is seen too.
    """

    def __init__(self, enabled: bool, refresh_s: float) -> None:
        self.enabled = enabled
        self.refresh_s = refresh_s
        self._ref: npt.NDArray[np.uint8] | None = None
        self._ref_ts = -1e9
        self._ref_det: Detections | None = None

    def check(self, frame: Frame) -> tuple[Detections | None, npt.NDArray[np.uint8] | None]:
        """``(reused detections, None)`` for an unchanged frame, else ``(None, its thumbnail)``."""
        if not self.enabled:
            return None, None
        grey = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)
        thumb = np.asarray(cv2.resize(grey, (64, 36), interpolation=cv2.INTER_AREA), np.uint8)
        fresh = frame.ts - self._ref_ts < self.refresh_s
        if self._ref is not None and self._ref_det is not None and fresh and \
                int(np.count_nonzero(cv2.absdiff(thumb, self._ref) > GATE_LEVELS)) <= 1:
            return self._ref_det, None
        return None, thumb

    def remember(self, sample: Sample, detections: Detections) -> None:
        """The detector's answer on a sample: the reference later frames are compared with."""
        if self.enabled:
            self._ref, self._ref_ts, self._ref_det = sample.thumb, sample.frame.ts, detections


class RoiPlanner:
    """The detector's crop: the bounding box of the zones a frame is for, with a margin.

    Off with ``roi: frame`` or without zones; a crop covering more than :data:`ROI_MAX_AREA` of the frame is
    not worth it (the whole frame goes). Crops are cached per frame size and zone set.
    """

    def __init__(self, camera: CameraConfig) -> None:
        self.mode = camera.roi
        self.polygons = {z.id: np.asarray(z.polygon, np.float64) for z in camera.zones}
        self._cache: dict[tuple[int, int, frozenset[str] | None], Crop | None] = {}

    @property
    def same_scale(self) -> bool:
        """``crop``: the detector sees the crop at the frame's own scale; ``zoom``: enlarged to its input."""
        return self.mode == "crop"

    def crop(self, width: int, height: int, zones: frozenset[str] | None = None) -> Crop | None:
        """The crop in pixels for a frame of this size sampled for ``zones`` (None: all), or None."""
        if self.mode == "frame" or not self.polygons:
            return None
        key = (width, height, zones)
        if key not in self._cache:
            pts = np.concatenate([p for z, p in self.polygons.items() if zones is None or z in zones])
            x1, y1 = np.clip(pts.min(axis=0) - ROI_MARGIN, 0, 1)
            x2, y2 = np.clip(pts.max(axis=0) + ROI_MARGIN, 0, 1)
            crop = (int(x1 * width), int(y1 * height), int(np.ceil(x2 * width)), int(np.ceil(y2 * height)))
            area = (crop[2] - crop[0]) * (crop[3] - crop[1]) / (width * height)
            self._cache[key] = crop if area <= ROI_MAX_AREA else None
        return self._cache[key]
