"""The one pipeline: frames -> detector -> scene -> tracker -> piles -> zones and rules -> events -> sinks.

`analyze`, `evaluate` and `serve` all run :class:`CameraPipeline`; they differ
only in where frames come from and where events go. The pipeline does not own
the detector, so a service can batch frames of many cameras into one call and
hand each camera its detections.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import numpy.typing as npt

from detector.backends.base import DetectorBackend
from detector.events import EventState, ViolationEvent
from detector.rules import RuleSettings, ViolationRules, ZoneSpec
from detector.scene import group_piles, scene
from detector.tracking import NorfairTracker
from detector.types import Detections
from detector.warnings import WarningAction, WarningLoop
from pipelines.config import CameraConfig
from pipelines.sinks.evidence import EvidenceRecorder, sha256_file
from pipelines.sinks.store import CaseContext, CaseWriter
from pipelines.sources import DecodeMode, Frame, read_frames

log = logging.getLogger(__name__)

GATE_LEVELS = 12  # grey levels a 64x36 thumbnail cell must move by to count as change
ROI_MARGIN = 0.04  # share of the frame's width/height added around the zones' bounding box
ROI_MAX_AREA = 0.85  # a crop covering more of the frame than this is not worth it: the whole frame goes
MIN_INPUT = 64  # smallest detector input side for a same-scale crop
PENDING_MAX = 32  # sampled frames remembered until their detections come back (dropped ones never do)

EventCallback = Callable[[ViolationEvent, str], None]
_T = TypeVar("_T")


@dataclass
class SourceStats:
    """Counters of one processed source."""

    frames_decoded: int = 0
    frames_inferred: int = 0
    frames_gated: int = 0  # sampled frames whose detections were reused (motion gating)
    video_s: float = 0.0
    wall_s: float = 0.0
    decode_s: float = 0.0
    infer_s: float = 0.0
    width: int = 0
    height: int = 0
    events: int = 0
    detections_per_class: dict[str, int] = field(default_factory=dict)


class CameraPipeline:
    """Per-camera state: sampling, tracking, rules, case store and evidence.

    Args:
        camera: The camera's configuration (zones, detect_fps).
        settings: Rule settings (dwell times, gaps, cooldown).
        names: Detector class names.
        store: Where cases are committed.
        source: Name of the source in cases (file name or stream URL).
        evidence: Evidence recorder, or None for no evidence files.
        evidence_root: Evidence paths in the store are relative to this folder.
        dwell_override: Replaces every dwell time when set.
        on_event: Called with each event and its case id after the case is committed.
        context: Address, GPS and dispatch targets written with each new case.
        on_warning: Called with each warning to play (the service sends it to speakers);
            batch analysis only records them in ``warning_actions`` (a simulation).
        time_of_day: The local time of day for quiet hours (default: the wall clock).

    ``observe`` and ``handle`` may be called from different threads (a camera's
    reader and the shared detector): a lock serialises them.
    """

    def __init__(self, camera: CameraConfig, settings: RuleSettings, names: list[str], store: CaseWriter,
                 source: str, evidence: EvidenceRecorder | None = None, evidence_root: Path | None = None,
                 dwell_override: float | None = None, on_event: EventCallback | None = None,
                 context: CaseContext | None = None, on_warning: Callable[[WarningAction, str], None] | None = None,
                 time_of_day: Callable[[], dt.time] | None = None) -> None:
        self.camera = camera
        self.names = names
        self.store = store
        self.source = source
        self.evidence = evidence
        self.evidence_root = evidence_root
        self.zones = camera.zone_specs(dwell_override)
        self.rules = ViolationRules(camera.id, self.zones, names, settings)
        self.scene_settings = camera.scene.settings()
        hit_max = max(2, round(camera.detect_fps * max(settings.gap_tolerance_s, 1.0) / 4))
        self.tracker = NorfairTracker(hit_counter_max=hit_max)
        self.on_event = on_event
        self.context = context
        self.lock = threading.Lock()
        self.stats = SourceStats()
        self._next_infer = 0.0
        self._last_ts = 0.0
        self.last_detections = Detections.empty()
        self.last_frame: npt.NDArray[np.uint8] | None = None  # the last inferred frame (for live views)
        # Motion gating: thumbnails of frames sent to the detector, and (thumbnail, time, detections) of the last.
        self._gate_pending: dict[float, npt.NDArray[np.uint8]] = {}
        self._gate_ref: tuple[npt.NDArray[np.uint8] | None, float, Detections | None] = (None, -1e9, None)
        self._roi: dict[tuple[object, ...], tuple[int, int, int, int] | None] = {}  # (w, h, zones) -> crop
        # Per-zone detection rates: each zone's period and next due time; the zones each sampled frame is for
        # (None: all) and the crop its detector input was cut to.
        self._zone_period = {z.id: 1.0 / (z.detect_fps or camera.detect_fps) for z in camera.zones}
        self._per_zone = any(z.detect_fps is not None for z in camera.zones)
        self._zone_next = dict.fromkeys(self._zone_period, 0.0)
        self._due: dict[float, frozenset[str] | None] = {}
        self._crop_of: dict[float, tuple[int, int, int, int] | None] = {}
        self.rules.zone_tolerance_s = {z: 2 * period for z, period in self._zone_period.items()}
        policies = camera.warning_settings()
        self.warnings = WarningLoop(policies) if policies else None
        self.on_warning = on_warning
        self.time_of_day = time_of_day or (lambda: dt.datetime.now().time())
        self.warning_actions: list[WarningAction] = []
        self._case_of: dict[str, str] = {}

    def sample(self, ts: float) -> bool:
        """Whether the frame at ``ts`` goes to the detector (time-based sampling at ``detect_fps``).

        With per-zone rates (``detect_fps`` on a zone) the frame is sampled when any zone is due, and
        remembered as being for those zones. A ``True`` claims the slot at once, so frames decoded while
        this one waits for the detector are not sampled too.
        """
        with self.lock:
            if not self._per_zone:
                if ts + 1e-6 < self._next_infer:
                    return False
                self._next_infer = ts + 1.0 / self.camera.detect_fps
                return True
            due = frozenset(z for z, at in self._zone_next.items() if ts + 1e-6 >= at)
            if not due:
                return False
            for z in due:
                self._zone_next[z] = ts + self._zone_period[z]
            self._due[ts] = None if len(due) == len(self._zone_next) else due
            _trim(self._due)
            return True

    def gate(self, frame: Frame) -> Detections | None:
        """Motion gating: the last detections when this sampled frame shows no change since them.

        A 64×36 grey thumbnail (each cell the mean of a block of pixels) is compared with the one of
        the last frame the detector saw; the frame counts as unchanged when at most one cell moved by more
        than ``GATE_LEVELS`` grey levels, so compression noise passes and a bag dropped on the pavement
        does not. The detector still runs every ``motion_refresh_s``, so a slow change is seen too.
        Returns ``None`` (run the detector) when gating is off or the frame changed.
        """
        if not self.camera.motion_gate:
            return None
        grey = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)
        thumb = np.asarray(cv2.resize(grey, (64, 36), interpolation=cv2.INTER_AREA), np.uint8)
        with self.lock:
            last, at, raw = self._gate_ref
            fresh = frame.ts - at < self.camera.motion_refresh_s
            if last is not None and raw is not None and fresh and \
                    int(np.count_nonzero(cv2.absdiff(thumb, last) > GATE_LEVELS)) <= 1:
                self.stats.frames_gated += 1
                return raw
            self._gate_pending[frame.ts] = thumb  # paired with the detections when they come back
            _trim(self._gate_pending)
            return None

    def roi(self, width: int, height: int, zones: frozenset[str] | None = None) -> tuple[int, int, int, int] | None:
        """The detector's crop ``(x1, y1, x2, y2)`` in pixels, or None for the whole frame.

        With a camera ``roi``: the bounding box of ``zones`` (default: every zone) plus :data:`ROI_MARGIN`,
        when it covers at most :data:`ROI_MAX_AREA` of the frame.
        """
        if self.camera.roi == "frame" or not self.camera.zones:
            return None
        key = (width, height, zones)
        if key not in self._roi:
            polys = [z.polygon for z in self.camera.zones if zones is None or z.id in zones]
            pts = np.concatenate([np.asarray(p, np.float64) for p in polys])
            x1, y1 = np.clip(pts.min(axis=0) - ROI_MARGIN, 0, 1)
            x2, y2 = np.clip(pts.max(axis=0) + ROI_MARGIN, 0, 1)
            crop = (int(x1 * width), int(y1 * height), int(np.ceil(x2 * width)), int(np.ceil(y2 * height)))
            area = (crop[2] - crop[0]) * (crop[3] - crop[1]) / (width * height)
            self._roi[key] = crop if area <= ROI_MAX_AREA else None
        return self._roi[key]

    def detector_input(self, frame: Frame, imgsz: int) -> tuple[npt.NDArray[np.uint8], int]:
        """What the detector sees of a sampled frame, and at what input side.

        The whole frame at ``imgsz``; or, with a camera ``roi``, the crop of the zones the frame is for (a
        view, no copy), at ``imgsz`` (``zoom``) or at the frame's own scale (``crop``: a smaller input).
        """
        h, w = frame.shape
        with self.lock:
            crop = self.roi(w, h, self._due.get(frame.ts))
            self._crop_of[frame.ts] = crop
            _trim(self._crop_of)
        image = frame.image
        if crop is None:
            return image, imgsz
        x1, y1, x2, y2 = crop
        if self.camera.roi == "zoom":
            return image[y1:y2, x1:x2], imgsz
        return image[y1:y2, x1:x2], max(MIN_INPUT, round(imgsz * max(x2 - x1, y2 - y1) / max(w, h)))

    def observe(self, frame: Frame) -> None:
        """Account for a decoded frame and buffer it for evidence."""
        with self.lock:
            self._observe(frame)

    def _observe(self, frame: Frame) -> None:
        self.stats.frames_decoded += 1
        self.stats.video_s = max(self.stats.video_s, frame.ts)
        self.stats.height, self.stats.width = frame.shape
        self._last_ts = frame.ts
        if self.evidence is not None:
            self._store_files(self.evidence.observe(frame.ts, lambda: frame.image))

    def handle(self, frame: Frame, detections: Detections, gated: bool = False) -> list[ViolationEvent]:
        """Track and apply the rules to a sampled frame's detections; commit and report events.

        ``detections`` are the detector's output on :meth:`detector_input` (crop coordinates with a
        camera ``roi``). ``gated``: they are reused from an unchanged earlier frame (see :meth:`gate`),
        already in frame coordinates.
        """
        with self.lock:
            return self._handle(frame, detections, gated)

    def _handle(self, frame: Frame, detections: Detections, gated: bool = False) -> list[ViolationEvent]:
        crop = self._crop_of.pop(frame.ts, None)
        due = self._due.pop(frame.ts, None)
        # A frame cut down to some zones tells nothing about the others: the rules look at those zones only.
        observed = due if crop is not None else None
        if not gated:
            if crop is not None and len(detections):
                offset = np.array([crop[0], crop[1], crop[0], crop[1]], np.float32)
                detections = replace(detections, xyxy=detections.xyxy + offset)
            self.stats.frames_inferred += 1
            if self.camera.motion_gate:
                self._gate_ref = (self._gate_pending.pop(frame.ts, None), frame.ts, detections)
            for c in detections.class_id:
                name = self.names[int(c)] if int(c) < len(self.names) else str(c)
                self.stats.detections_per_class[name] = self.stats.detections_per_class.get(name, 0) + 1
        detections = scene(detections, self.names, self.scene_settings)  # gated ones are raw detector output too
        tracked = self.tracker.update(detections)
        self.last_detections = tracked
        self.last_frame = frame.image
        h, w = frame.image.shape[:2]
        # A case is about a heap: touching garbage boxes, each scored and tracked as itself, are one pile here.
        events = self.rules.update(group_piles(tracked, self.names, self.scene_settings), frame.ts, w, h, observed)
        for ev in events:
            self._emit(ev, frame)
        if self.warnings is not None:
            self._warning_actions(self.warnings.tick(frame.ts, self.time_of_day()))
        return events

    @property
    def warning_log(self) -> list[dict[str, object]]:
        """The warning actions so far, with their case ids, as JSON-ready rows (for reports)."""
        return [{"case_id": self._case_of.get(a.key, ""), "kind": a.kind, "zone": a.zone, "violation": a.violation,
                 "ts": round(a.ts, 3), "text": a.text, "repeat": a.repeat, "outcome": a.outcome,
                 "time_to_clear_s": a.time_to_clear_s} for a in self.warning_actions]

    def _warning_actions(self, actions: list[WarningAction]) -> None:
        """Play warnings and apply the closed loop's outcomes to the cases."""
        self.warning_actions.extend(actions)
        for a in actions:
            case_id = self._case_of.get(a.key, "")
            try:
                if a.kind == "play" and self.on_warning is not None:
                    self.on_warning(a, case_id)
                elif a.outcome == "resolved_by_warning" and case_id:
                    self.store.transition(case_id, "closed", "system:warning", "resolved_by_warning")
                elif a.outcome == "warned_no_effect" and case_id:
                    if self.context is not None and self.context.targets:
                        self.store.enqueue_dispatch(case_id, self.context, "warned_no_effect")
                    else:
                        self.store.annotate(case_id, "system:warning", "warned_no_effect")
            except Exception as exc:  # a speaker or a state change must never stop the frame loop
                log.error("%s: warning step for case %s failed: %s", self.source, case_id, exc)

    def _emit(self, ev: ViolationEvent, frame: Frame | None) -> None:
        context = self.context
        if context is not None and self.warnings is not None and ev.zone in self.warnings.zones \
                and ev.violation in self.warnings.zones[ev.zone].violations:
            context = replace(context, defer_dispatch=True)  # the warning's re-check decides on dispatch
        case_id = self.store.record(ev, self.source, context)  # committed before anyone hears of it
        self.stats.events += 1
        self._case_of[ev.key] = case_id
        if self.warnings is not None:
            if ev.state is EventState.START:
                self._warning_actions(self.warnings.on_start(ev.key, ev.zone, ev.violation, ev.ts, self.time_of_day()))
            elif ev.state is EventState.END:
                self.warnings.on_end(ev.key, ev.ts)
            else:
                self.warnings.on_resume(ev.key)
        if ev.state is EventState.START and self.evidence is not None and frame is not None:
            zone = next((z for z in self.zones if z.id == ev.zone), None)
            h, w = frame.image.shape[:2]
            poly = zone.zone.pixels(w, h) if zone is not None and zone.id != "frame" else None
            try:
                snap = self.evidence.start_case(case_id, ev, frame.image, poly)
                self._store_files([(case_id, "snapshot", snap), *self.evidence.take_frames()])
            except Exception as exc:  # evidence is best effort; the case is already stored
                log.error("%s: snapshot of case %s failed: %s", self.source, case_id, exc)
        if self.on_event is not None:
            try:
                self.on_event(ev, case_id)
            except Exception as exc:
                log.error("event callback failed for case %s: %s", case_id, exc)

    def _store_files(self, files: list[tuple[str, str, Path]]) -> None:
        for case_id, kind, path in files:
            rel = path.relative_to(self.evidence_root) if self.evidence_root else path
            try:
                self.store.add_evidence(case_id, kind, rel.as_posix(), sha256_file(path))
            except Exception as exc:
                log.error("evidence %s of case %s not recorded: %s", path, case_id, exc)

    def finish(self) -> list[ViolationEvent]:
        """End active violations and write pending evidence (end of a source)."""
        with self.lock:
            return self._finish()

    def _finish(self) -> list[ViolationEvent]:
        events = self.rules.finish(self._last_ts)
        for ev in events:
            self._emit(ev, None)
        if self.evidence is not None:
            self._store_files(self.evidence.finish())
        return events


def run_source(path: Path, pipeline: CameraPipeline, backend: DetectorBackend, mode: DecodeMode = "all",
               on_frame: Callable[[Frame, Detections | None], None] | None = None,
               progress: Callable[[float], None] | None = None) -> SourceStats:
    """Run a whole file through a pipeline, one sampled frame at a time.

    Args:
        path: Video or image file.
        pipeline: The camera pipeline to feed.
        backend: Detector.
        mode: Decode every frame or key frames only.
        on_frame: Called for every decoded frame with its detections (None if not sampled).
        progress: Called with the timestamp of each decoded frame.
    """
    started = time.perf_counter()
    stats = pipeline.stats
    frames = read_frames(path, mode)
    t_dec = time.perf_counter()
    try:
        for frame in frames:
            stats.decode_s += time.perf_counter() - t_dec
            pipeline.observe(frame)
            det = None
            if pipeline.sample(frame.ts):
                det = pipeline.gate(frame)
                if det is not None:
                    pipeline.handle(frame, det, gated=True)
                else:
                    t0 = time.perf_counter()
                    image, size = pipeline.detector_input(frame, backend.imgsz)
                    det = backend.detect([image], [size])[0]
                    stats.infer_s += time.perf_counter() - t0
                    pipeline.handle(frame, det)
            if on_frame is not None:
                on_frame(frame, pipeline.last_detections if det is not None else None)
            if progress is not None:
                progress(frame.ts)
            t_dec = time.perf_counter()
    finally:
        pipeline.finish()
        stats.wall_s = time.perf_counter() - started
    return stats


def _trim(pending: dict[float, _T]) -> None:
    """Forget the oldest sampled frames beyond :data:`PENDING_MAX` (frames dropped from a full queue)."""
    while len(pending) > PENDING_MAX:
        pending.pop(next(iter(pending)))


def draw_zones(image: npt.NDArray[np.uint8], zones: list[ZoneSpec]) -> npt.NDArray[np.uint8]:
    """Draw the watched zones' outlines and ids on a copy of a frame (the whole-frame zone is not drawn)."""
    out = image.copy()
    h, w = out.shape[:2]
    for z in zones:
        if z.id == "frame":
            continue
        pts = np.round(z.zone.pixels(w, h)).astype(np.int32)
        cv2.polylines(out, [pts], True, (0, 215, 255), 2, cv2.LINE_AA)
        x, y = int(pts[:, 0].min()), int(pts[:, 1].min())
        cv2.putText(out, z.id, (x + 4, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 215, 255), 2, cv2.LINE_AA)
    return out


def draw_detections(image: npt.NDArray[np.uint8], det: Detections, names: list[str]) -> npt.NDArray[np.uint8]:
    """Draw detections with class names, scores and track ids on a copy of a frame."""
    out = image.copy()
    uncovered = det.data.get("uncovered")
    for i, ((x1, y1, x2, y2), conf, cls, tid) in enumerate(det):
        color = tuple(int(c) for c in np.random.default_rng(cls).integers(60, 255, 3))
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), color, 2)
        name = names[cls] if cls < len(names) else str(cls)
        label = f"{name} {conf:.2f}" + (f" #{tid}" if tid >= 0 else "")
        if uncovered is not None and uncovered[i] >= 0:
            label += f" uncovered {float(uncovered[i]):.2f}"
        cv2.putText(out, label, (int(x1), max(12, int(y1) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return out
