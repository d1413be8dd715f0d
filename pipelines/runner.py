"""The one pipeline: frames -> sampler -> motion gate -> ROI -> detector -> scene -> tracker -> rules -> events.

`analyze`, `evaluate clips`, `serve` and the Ray shards all build their pipelines with :func:`build_pipeline`
and drive them with the same two steps: :meth:`CameraPipeline.admit` on every decoded frame (it returns a
:class:`~pipelines.stages.Sample` for the frames that go to the detector) and :func:`detect_and_process`
(one detector call for the samples of one camera or many, each answer back to its pipeline's
:meth:`CameraPipeline.process`). :func:`run_source` is that loop for a file; the service splits it between a
reader thread per camera (``admit``), one detector thread batching all cameras (:func:`detect_samples`) and one
rules thread after it (:func:`process_detected`), so the detector runs while the rules of its last batch do.
The pipeline does not own the detector. Events are committed to the case store, then fanned out to the
pipeline's :class:`~pipelines.event_sinks.EventSink` list (evidence, warnings, callbacks).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.backends.base import DetectorBackend, ModelIdentity
from detector.events import ViolationEvent
from detector.rules import RuleSettings, ViolationRules, ZoneSpec
from detector.scene import SceneSettings, group_piles, scene
from detector.tracking import BoxTracker, Tracker
from detector.types import Detections
from detector.warnings import WarningAction, WarningLoop
from pipelines.config import CameraConfig
from pipelines.event_sinks import CallbackSink, EventCallback, EventSink, EvidenceSink, WarningSink
from pipelines.plate_sink import PlateSetup, PlateSink
from pipelines.plate_stage import PlateStage
from pipelines.reminders import ReminderSetup, ReminderSink
from pipelines.sinks.evidence import EvidenceRecorder
from pipelines.sinks.packets import PacketRing
from pipelines.sinks.store import CaseContext, CaseWriter
from pipelines.sources import Frame, RecordedPacket, StreamParams
from pipelines.stages import MotionGate, RoiPlanner, Sample, Sampler

log = logging.getLogger(__name__)


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
    """One camera's stages and state, from a decoded frame to committed events.

    Args:
        camera: The camera's configuration (zones, sampling, motion gate, ROI).
        zones: The camera's watched zones with their dwell times.
        rules: The violation rules (tracks in zones over time -> events).
        names: Detector class names.
        scene_settings: The scene stage's settings (trucks, classes, piles).
        tracker: Assigns track ids.
        store: Where cases are committed.
        source: Name of the source in cases (file name or stream URL).
        context: Address, GPS and dispatch targets written with each new case.
        sinks: Where committed events go, in order.
        plate_stage: Marks trucks in licence-watching zones licensed or not (cameras reading plates).

    ``admit`` and ``process`` may be called from different threads (a camera's reader and the shared
    detector): a lock serialises them.
    """

    def __init__(self, camera: CameraConfig, zones: list[ZoneSpec], rules: ViolationRules, names: list[str],
                 scene_settings: SceneSettings, tracker: Tracker, store: CaseWriter, source: str,
                 context: CaseContext | None = None, sinks: Iterable[EventSink] = (),
                 plate_stage: PlateStage | None = None) -> None:
        self.camera, self.zones, self.rules, self.names = camera, zones, rules, names
        self.plate_stage = plate_stage
        self.scene_settings, self.tracker, self.store, self.source = scene_settings, tracker, store, source
        self.context = context
        self.sinks = list(sinks)
        # Packets come many times a second per stream: only the sinks that keep them are called.
        self._packet_sinks = [s for s in self.sinks if type(s).packet is not EventSink.packet]
        self.sampler = Sampler(camera)
        self.gate = MotionGate(camera.motion_gate, camera.motion_refresh_s)
        self.roi = RoiPlanner(camera)
        self.lock = threading.Lock()
        self.stats = SourceStats()
        self.last_detections = Detections.empty()
        self.last_frame: Frame | None = None  # the last processed frame (live views convert it when they look)
        self._last_ts = 0.0

    @property
    def warnings(self) -> WarningSink | None:
        """The voice-warning loop, if the camera has warning policies."""
        return next((s for s in self.sinks if isinstance(s, WarningSink)), None)

    @property
    def reminders(self) -> ReminderSink | None:
        """The shop reminder loop, if the camera has a reminder policy."""
        return next((s for s in self.sinks if isinstance(s, ReminderSink)), None)

    @property
    def warning_actions(self) -> list[WarningAction]:
        """The warning actions so far (played, resolved, no effect)."""
        w = self.warnings
        return list(w.actions) if w is not None else []

    def admit(self, frame: Frame) -> Sample | None:
        """Account for a decoded frame, buffer it for evidence; a :class:`Sample` if it goes on.

        A sample whose detections the motion gate reused skips the detector (``needs_detector`` is False);
        it still goes through :meth:`process`, in order with the camera's other samples.
        """
        with self.lock:
            self.stats.frames_decoded += 1
            self.stats.video_s = max(self.stats.video_s, frame.ts)
            self.stats.height, self.stats.width = frame.shape
            self._last_ts = frame.ts
            for sink in self.sinks:
                self._safely(sink.observe, frame)
            taken, zones = self.sampler.take(frame.ts)
            if not taken:
                return None
            reused, thumb = self.gate.check(frame)
            if reused is not None:
                self.stats.frames_gated += 1
                return Sample(frame, zones, None, None, reused)
            h, w = frame.shape
            return Sample(frame, zones, self.roi.crop(w, h, zones), thumb)

    def packet(self, stream: str, params: StreamParams, packet: RecordedPacket) -> None:
        """A compressed packet of the camera's ``detect`` or ``record`` stream, for stream-copy evidence (called by
        the stream's reader; a :data:`~pipelines.sources.OnPacket` once ``stream`` is bound)."""
        with self.lock:
            for sink in self._packet_sinks:
                self._safely(sink.packet, stream, params, packet)

    @property
    def keeps_packets(self) -> bool:
        """Whether any sink keeps compressed packets (stream-copy evidence): without one, readers need no tap."""
        return bool(self._packet_sinks)

    def evidence_recorder(self) -> EvidenceRecorder | None:
        """The camera's evidence recorder (None: it keeps no evidence)."""
        sink = next((s for s in self.sinks if isinstance(s, EvidenceSink)), None)
        return sink.recorder if sink is not None else None

    def evidence_rings(self) -> dict[str, PacketRing]:
        """The stream-copy rings of the camera's evidence, by stream (empty: no evidence, or none yet)."""
        recorder = self.evidence_recorder()
        return dict(recorder.rings) if recorder is not None else {}

    def detector_input(self, sample: Sample, imgsz: int) -> tuple[npt.NDArray[np.uint8], int]:
        """What the detector sees of a sample (the frame, or its crop) and at what input side."""
        return sample.detector_input(imgsz, self.roi.same_scale)

    def process(self, sample: Sample, detections: Detections | None = None, imgsz: int = 0) -> list[ViolationEvent]:
        """Scene, tracker and rules on a sample's detections; commit and fan out its events.

        ``detections`` are the detector's output on :meth:`detector_input` at input side ``imgsz`` (crop or
        input coordinates); None for a sample whose detections the motion gate reused.
        """
        with self.lock:
            if detections is None:
                if sample.reused is None:
                    raise ValueError("a sample that needs the detector came back without detections")
                detections = sample.reused
            else:
                detections = self._detected(sample, detections, imgsz)
            return self._rules(sample, detections)

    def _detected(self, sample: Sample, detections: Detections, imgsz: int) -> Detections:
        detections = sample.to_frame(detections, imgsz)
        self.stats.frames_inferred += 1
        self.gate.remember(sample, detections)
        for c in detections.class_id:
            name = self.names[int(c)] if int(c) < len(self.names) else str(c)
            self.stats.detections_per_class[name] = self.stats.detections_per_class.get(name, 0) + 1
        return detections

    def _rules(self, sample: Sample, detections: Detections) -> list[ViolationEvent]:
        frame = sample.frame
        for sink in self.sinks:
            self._safely(sink.sample, frame)
        tracked = self.tracker.update(scene(detections, self.names, self.scene_settings))
        self.last_detections, self.last_frame = tracked, frame
        h, w = frame.shape
        # A frame cut down to some zones tells nothing about the others: the rules look at those zones only.
        observed = sample.zones if sample.crop is not None else None
        # A case is about a heap: touching garbage boxes, each scored and tracked as itself, are one pile here.
        objects = group_piles(tracked, self.names, self.scene_settings)
        if self.plate_stage is not None:
            try:
                objects = self.plate_stage(objects, frame)
            except Exception as exc:  # OCR trouble never stops the frames: the trucks stay "not known"
                log.error("%s: plate stage failed: %s", self.source, exc)
        events = self.rules.update(objects, frame.ts, w, h, observed)
        for ev in events:
            self._emit(ev, frame)
        for sink in self.sinks:
            self._safely(sink.tick, frame.ts)
        return events

    def _emit(self, ev: ViolationEvent, frame: Frame | None) -> None:
        context = self.context
        deferred = [s.defers_dispatch(ev) for s in self.sinks]  # every sink is asked (one may decide now)
        if context is not None and any(deferred):
            context = replace(context, defer_dispatch=True)  # a reminder's or warning's re-check decides later
        case_id = self.store.record(ev, self.source, context)  # committed before anyone hears of it
        self.stats.events += 1
        for sink in self.sinks:
            self._safely(sink.on_event, ev, case_id, frame)
        if self.context is not None and any(deferred) and \
                all(s.enriches_case for s, held in zip(self.sinks, deferred, strict=True) if held):
            self._safely(self.store.enqueue_dispatch, case_id, self.context)  # enriched now: it goes

    def _safely(self, hook: Callable[..., None], *args: object) -> None:
        try:
            hook(*args)
        except Exception as exc:  # a sink never stops the frame loop, the case is already stored
            log.error("%s: %s failed: %s", self.source, getattr(hook, "__qualname__", hook), exc)

    def finish(self) -> list[ViolationEvent]:
        """End active violations and write pending evidence (end of a source)."""
        with self.lock:
            events = self.rules.finish(self._last_ts)
            for ev in events:
                self._emit(ev, None)
            for sink in self.sinks:
                self._safely(sink.finish)
            return events


def build_pipeline(camera: CameraConfig, settings: RuleSettings, names: list[str], store: CaseWriter, source: str,
                   evidence: EvidenceRecorder | None = None, evidence_root: Path | None = None, *,
                   dwell_override: float | None = None, context: CaseContext | None = None,
                   on_event: EventCallback | None = None,
                   on_warning: Callable[[WarningAction, str], None] | None = None,
                   time_of_day: Callable[[], dt.time] | None = None,
                   tracker: Tracker | None = None, reminders: ReminderSetup | None = None,
                   plates: PlateSetup | None = None, model: ModelIdentity | None = None) -> CameraPipeline:
    """Assemble a camera's pipeline: the one assembly used by analyze, evaluate, serve and the Ray shards.

    Args:
        camera: The camera's configuration.
        settings: Rule settings (dwell times, gaps, cooldown).
        names: Detector class names.
        store: Where cases are committed.
        source: Name of the source in cases.
        evidence: Evidence recorder (None: no evidence files).
        evidence_root: Evidence paths in the store are relative to this folder.
        dwell_override: Replaces every dwell time when set.
        context: Address, GPS and dispatch targets written with each new case.
        on_event: Called with each committed event and its case id.
        on_warning: Plays a voice warning (the service); None: warnings are only recorded (batch).
        time_of_day: The local time of day for quiet hours (default: the wall clock).
        tracker: The tracker (default: :class:`BoxTracker`, bridging gaps of the rules' tolerance).
        reminders: Shops and the reminder policy: violations in a shop's frontage are texted to the shop first.
        plates: The plate reader and register, for cameras that read the plates of truck cases.
        model: The detector's weights, recorded with each new case (the backend's ``identity``).
    """
    zones = camera.zone_specs(dwell_override)
    rules = ViolationRules(camera.id, zones, names, settings)
    rules.zone_tolerance_s = {z.id: 2.0 / (z.detect_fps or camera.detect_fps) for z in camera.zones}
    if tracker is None:
        tracker = BoxTracker(hit_counter_max=max(2, round(camera.detect_fps * max(settings.gap_tolerance_s, 1.0) / 4)))
    sinks: list[EventSink] = []
    policies = camera.warning_settings()
    warnings = WarningSink(WarningLoop(policies), store, context, on_warning,
                           time_of_day or (lambda: dt.datetime.now().time()), source) if policies else None
    if reminders is not None and (reminding := camera.reminder_settings(reminders.default)):
        clock = reminders.clock or (lambda _ts: dt.datetime.now())
        grace = {z: rules.tolerance(z) for z in reminding}
        reminder_sink = ReminderSink(camera.id, reminders.shops, reminding, store, context, camera.location.address,
                                     clock, reminders.notify, warnings, source, grace)
        if reminders.sent_today:
            reminder_sink.loop.already_sent(clock(0.0).date(), reminders.sent_today)
        sinks.append(reminder_sink)  # before the warnings: a text to the shop goes first
    if warnings is not None:
        sinks.append(warnings)
    if plates is not None and camera.plates:
        sinks.append(PlateSink(plates, store, source, evidence.out_dir if evidence is not None else None,
                               evidence_root))
    if evidence is not None:
        sinks.append(EvidenceSink(evidence, store, evidence_root, zones, source))
    if on_event is not None:
        sinks.append(CallbackSink(on_event))
    stage = None
    if plates is not None and camera.watches_licences():
        if plates.register is None:
            log.error("%s: zones watch unlicensed_muck_truck but no muck_register is configured: none is found",
                      camera.id)
        else:
            stage = PlateStage(plates, names, [z for z in zones if "unlicensed_muck_truck" in z.violations], source)
    if model is not None:  # cases record the model that raised them; the sinks' dispatch needs no model
        context = replace(context or CaseContext(), model=model)
    return CameraPipeline(camera, zones, rules, names, camera.scene.settings(), tracker, store, source, context,
                          sinks, stage)


#: A sample back from the detector: its pipeline, the sample, and the detector's answer (None: the motion gate
#: reused the last one).
Detected = tuple[CameraPipeline, Sample, Detections | None]


def detect_samples(backend: DetectorBackend, items: list[tuple[CameraPipeline, Sample]],
                   on_error: Callable[[CameraPipeline, Exception], None] | None = None) -> list[Detected]:
    """The detector half of :func:`detect_and_process`: one detector call for the samples that need it (of one
    camera or many), in order. A camera whose frame cannot be made into the detector's input goes to
    ``on_error`` and is left out; without ``on_error`` the error is raised, as is the detector's own."""
    todo, ready = [], []
    for pipe, sample in items:
        try:
            if sample.needs_detector:
                todo.append(pipe.detector_input(sample, backend.imgsz))
            ready.append((pipe, sample))
        except Exception as exc:  # one camera's unreadable frame never costs the others their batch
            if on_error is None:
                raise
            on_error(pipe, exc)
    t0 = time.perf_counter()
    found = iter(backend.detect([t[0] for t in todo], [t[1] for t in todo]) if todo else [])
    per_frame = (time.perf_counter() - t0) / max(1, len(todo))
    done: list[Detected] = []
    for pipe, sample in ready:
        det = None
        if sample.needs_detector:
            pipe.stats.infer_s += per_frame
            det = next(found)
        done.append((pipe, sample, det))
    return done


def process_detected(done: list[Detected], imgsz: int,
                     on_error: Callable[[CameraPipeline, Exception], None] | None = None) -> None:
    """The rules half of :func:`detect_and_process`: each detected sample back to its pipeline's
    :meth:`CameraPipeline.process`, in order (``imgsz``: the detector's input side). A failing pipeline goes to
    ``on_error`` and the others go on; without ``on_error`` the error is raised."""
    for pipe, sample, det in done:
        try:
            pipe.process(sample, det, imgsz)
        except Exception as exc:
            if on_error is None:
                raise
            on_error(pipe, exc)


def detect_and_process(backend: DetectorBackend, items: list[tuple[CameraPipeline, Sample]],
                       on_error: Callable[[CameraPipeline, Exception], None] | None = None) -> int:
    """The detector step shared by every frame loop: one detector call for the samples that need it (of one
    camera or many), then each sample back to its pipeline, in order. Returns the frames sent to the detector.
    The service runs the two halves, :func:`detect_samples` and :func:`process_detected`, in two threads.

    ``on_error`` is called when one pipeline fails (the service logs it and goes on with the other cameras);
    without it the error is raised.

    Raises:
        Exception: The detector failed (the whole batch), or a pipeline failed and ``on_error`` is None.
    """
    done = detect_samples(backend, items, on_error)
    process_detected(done, backend.imgsz, on_error)
    return sum(1 for _, sample, _ in done if sample.needs_detector)


def run_source(frames: Iterable[Frame], pipeline: CameraPipeline, backend: DetectorBackend,
               on_frame: Callable[[Frame, Detections | None], None] | None = None,
               progress: Callable[[float], None] | None = None, batch: int = 1, read_ahead: int = 0
               ) -> SourceStats:
    """Run a whole source through a pipeline (batch analysis and evaluation).

    Args:
        frames: The decoded frames (:func:`pipelines.sources.read_frames`, or a
            :class:`~pipelines.source_kinds.Source`).
        pipeline: The camera pipeline to feed.
        backend: Detector.
        on_frame: Called for every decoded frame with its tracked detections (None if not sampled); frames are
            then detected one at a time, whatever ``batch`` says.
        progress: Called with the timestamp of each decoded frame.
        batch: Samples per detector call: up to this many are gathered (in order) before the detector runs on
            them together; the rules still see every sample in order.
        read_ahead: Frames decoded ahead in a thread of their own (0: decoded in this one), so decoding runs
            while the detector does.
    """
    started = time.perf_counter()
    stats = pipeline.stats
    batch = 1 if on_frame is not None else max(1, batch)
    source = _ReadAhead(frames, read_ahead, stats) if read_ahead > 0 else None
    it = iter(frames)

    def decoded_here() -> Frame | None:
        t_dec = time.perf_counter()
        frame = next(it, None)
        stats.decode_s += time.perf_counter() - t_dec
        return frame

    next_frame = source.next if source is not None else decoded_here
    pending: list[tuple[CameraPipeline, Sample]] = []
    try:
        while True:
            frame = next_frame()
            if frame is None:
                break
            sample = pipeline.admit(frame)
            if sample is not None:
                pending.append((pipeline, sample))
                if len(pending) >= batch:
                    detect_and_process(backend, pending)
                    pending = []
            if on_frame is not None:
                on_frame(frame, pipeline.last_detections if sample is not None else None)
            if progress is not None:
                progress(frame.ts)
        if pending:
            detect_and_process(backend, pending)
    finally:
        if source is not None:
            source.close()
        pipeline.finish()
        stats.wall_s = time.perf_counter() - started
    return stats


class _ReadAhead:
    """Decodes a source's frames in a thread of its own, at most ``depth`` ahead of the consumer; the decoder's
    errors come out of :meth:`next` as they would from the source itself."""

    _END = object()

    def __init__(self, frames: Iterable[Frame], depth: int, stats: SourceStats) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._frames, self._stats = frames, stats
        self._thread = threading.Thread(target=self._run, name="read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        it = iter(self._frames)
        try:
            while not self._stop.is_set():
                t_dec = time.perf_counter()
                frame = next(it, None)
                self._stats.decode_s += time.perf_counter() - t_dec
                if frame is None:
                    break
                self._put(frame)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            self._put(self._END)
            close = getattr(it, "close", None)
            if close is not None:
                close()  # the decoder's container is closed in this thread, where it was used

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self) -> Frame | None:
        """The next frame, or None at the end; raises what the source raised."""
        item = self._queue.get()
        if item is self._END:
            self._queue.put(item)  # later calls see the end too
            return None
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, Frame)
        return item

    def close(self) -> None:
        """Stop decoding (a consumer that failed) and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)
