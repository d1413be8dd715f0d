"""Cameras read in this process: one reader thread per camera, one detector thread for all of them.

* :class:`CameraWorker` reads a camera's :class:`~pipelines.source_kinds.Source` (RTSP over TCP, HTTP
  MJPEG/HLS, or a file looped at real-time pace for demos), reconnects with exponential backoff, reports
  its health (connecting / live / stalled / failed) and gives every decoded frame to its pipeline's
  ``admit``; the samples wait in a bounded queue that drops the oldest instead of growing.
* :class:`InferenceEngine` takes samples from all cameras' queues and batches them into one detector call; its
  :class:`RulesLoop` hands each back to its pipeline's ``process`` in a thread of its own, so the detector never
  waits for the tracker, the rules or a case being stored: the same :class:`~pipelines.runner.CameraPipeline`,
  built by the same :func:`~pipelines.runner.build_pipeline`, as ``analyze``.
* :class:`LocalCameras` is the in-process :class:`~service.fleet.CameraFleet`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from detector.backends.base import DetectorBackend, ModelLoadError, config_for, create_backend
from detector.plate_reader import PlateReader, PlateReaderUnavailable
from pipelines.config import CameraConfig, camera_rules, thresholds_below
from pipelines.event_sinks import EventCallback
from pipelines.model_pool import ModelPool
from pipelines.muck_register import MuckRegister
from pipelines.overlay import draw_detections, draw_zones
from pipelines.plate_sink import PlateSetup
from pipelines.reminders import ReminderSetup
from pipelines.runner import CameraPipeline, Detected, build_pipeline, detect_samples, process_detected
from pipelines.shops import Shop
from pipelines.sinks.evidence import EvidenceRecorder
from pipelines.sinks.store import CaseContext, CaseWriter
from pipelines.source_kinds import Source, open_source, source_config
from pipelines.sources import DecodeMode, Frame, RecordedPacket, SourceError, StreamParams
from pipelines.stages import LoadGovernor, Sample
from service.fleet import CameraView, OnEvent, OnHealth, OnWarn
from service.loops import BackgroundLoop
from service.recorder import RecorderProcess, RemoteRecord, RingSpec, record_until_stopped
from service.settings import IngestConfig, ServiceConfig

log = logging.getLogger(__name__)


@dataclass
class CameraStats:
    """Counters of a camera's reader, read by /metrics; frames decoded and inferred, events and times are
    counted once, by the camera's pipeline (``CameraWorker.pipeline.stats``)."""

    frames_queued: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    last_frame_at: float = 0.0


@dataclass
class CameraWorker:
    """Reads one camera in its own thread.

    Args:
        camera_id: Camera id.
        source: Where its frames come from.
        mode: ``all``, ``keyframes`` or ``auto`` decoding (see ``CameraConfig.decode_plan``).
        pipeline: The camera's pipeline (evidence buffer, sampling, rules).
        ingest: Reconnect, timeout and queue settings.
        on_health: Called on every health change.
        wakeup: Set when a sample is queued (the engine waits on it).
        clock_epoch: Wall time of the camera clock's zero (events carry camera-clock seconds).
        auto_interval_s: ``auto``: key frames alone once they come at least this often.
        decoding: What is decoded now (``all`` or ``keyframes``), shown in the camera's health.
        decode_detail: Why.
        record: The camera's main stream, read in a second thread without decoding: its packets go to the
            evidence ring for stream-copied clips (None: one stream; clips are cut from ``source``'s packets).
        remote_record: The camera's main stream read by the recorder process instead (``ingest.record_process``);
            its health comes from there (:meth:`record_status`).
    """

    camera_id: str
    source: Source
    mode: str
    pipeline: CameraPipeline
    ingest: IngestConfig
    on_health: OnHealth
    wakeup: threading.Event
    clock_epoch: float = field(default_factory=time.time)  # wall time of the camera clock's zero
    stats: CameraStats = field(default_factory=CameraStats)
    health: str = "new"
    detail: str = ""
    auto_interval_s: float = 0.0
    decoding: str = "all"
    decode_detail: str = ""
    record: Source | None = None
    remote_record: RemoteRecord | None = None
    backend: DetectorBackend | None = None  # the camera's own model (None: the engine's)

    def __post_init__(self) -> None:
        self.queue: deque[Sample] = deque(maxlen=self.ingest.queue)
        self.queue_lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"camera-{self.camera_id}", daemon=True)
        two = self.record is not None or self.remote_record is not None
        self.record_health, self.record_detail = ("connecting", "") if two else ("", "")
        self.record_thread = threading.Thread(target=self._record_run, name=f"record-{self.camera_id}", daemon=True)
        self._detect_tap = functools.partial(self.pipeline.packet, "detect") if self.pipeline.keeps_packets else None
        self._record_tap = functools.partial(self.pipeline.packet, "record")

    def start(self) -> None:
        """Start reading (both streams of a camera with two)."""
        self._set_health("connecting")
        self.thread.start()
        if self.record is not None:
            self.record_thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the readers to stop and wait for them, by default as long as a blocked read may take (it ends at
        the read timeout)."""
        self.stop_event.set()
        deadline = time.monotonic() + (self.ingest.read_timeout_s + 1.0 if timeout is None else timeout)
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.record_thread.is_alive():
            self.record_thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def evidence(self) -> str:
        """How the camera's clips are cut now."""
        rings = self.pipeline.evidence_rings()
        if self.remote_record is not None and self.remote_record.copyable and self.record_health == "live":
            return "stream copy (record)"
        for name in ("record", "detect"):
            ring = rings.get(name)
            if ring is not None and ring.params is not None and ring.params.copyable \
                    and (name == "detect" or self.record_health == "live"):
                return f"stream copy ({name})"
        return "re-encoded" if rings or self.health == "live" else ""

    def _set_health(self, state: str, detail: str = "") -> None:
        if state != self.health or detail != self.detail:
            self.health, self.detail = state, detail
            self.on_health(self.camera_id, state, detail)

    def take(self) -> Sample | None:
        """Pop the oldest queued sample, if any."""
        with self.queue_lock:
            return self.queue.popleft() if self.queue else None

    def check_stall(self, now: float) -> None:
        """Mark a live camera stalled when no frame arrived for ``stall_s`` (called by the watchdog)."""
        if self.health == "live" and now - self.stats.last_frame_at > self.ingest.stall_s:
            self._set_health("stalled", f"no frame for {now - self.stats.last_frame_at:.0f} s")

    def _on_decode(self, decoding: str, detail: str) -> None:
        if (decoding, detail) != (self.decoding, self.decode_detail):  # the decoder logs the decision itself
            log.debug("camera %s: %s", self.camera_id, detail)
        self.decoding, self.decode_detail = decoding, detail

    def _frames(self) -> Iterator[Frame]:
        """The source's frames, with the time spent decoding them counted (not the wait for real-time pace)."""
        mode: DecodeMode = self.mode if self.mode in ("keyframes", "auto") else "all"  # type: ignore[assignment]
        t_dec = time.perf_counter()
        for frame in self.source.frames(mode, self.stop_event, self.auto_interval_s, self._on_decode,
                                        self._detect_tap):
            waited, self.source.paced_s = self.source.paced_s, 0.0
            self.pipeline.stats.decode_s += max(0.0, time.perf_counter() - t_dec - waited)
            yield frame
            t_dec = time.perf_counter()

    def _queue(self, sample: Sample) -> None:
        # A sample whose detections the motion gate reused skips the detector but still goes through the
        # queue, so each camera's samples reach the rules in order.
        with self.queue_lock:
            if len(self.queue) == self.queue.maxlen:
                self.stats.frames_dropped += 1
            self.queue.append(sample)
        self.stats.frames_queued += 1
        self.wakeup.set()

    def _read(self) -> None:
        """Read until the source ends (an error for a live one) or the worker stops."""
        self._set_health("connecting")
        if self.mode == "auto":  # a new connection measures its key frames again
            self._on_decode("all", "deciding from the stream's key-frame interval")
        for frame in self._frames():
            self.stats.last_frame_at = time.monotonic()
            self._set_health("live")
            sample = self.pipeline.admit(frame)
            if sample is not None:
                self._queue(sample)
        if not self.stop_event.is_set():
            raise SourceError(f"{self.source.name}: stream ended")

    def _run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                self._read()
            except Exception as exc:  # any reader failure: back off and reconnect, never die
                failures = 1 if self.health == "live" else failures + 1
                self.stats.reconnects += 1
                delay = min(self.ingest.max_backoff_s, self.ingest.backoff_s * 2 ** (failures - 1))
                self._set_health("failed" if failures >= 3 else "connecting", str(exc)[:300])
                log.warning("camera %s: %s; reconnecting in %.1f s", self.camera_id, exc, delay)
                if self.stop_event.wait(delay):
                    break
        self._set_health("stopped")

    def _record_packet(self, params: StreamParams, packet: RecordedPacket) -> None:
        if self.record_health != "live":
            self.record_health, self.record_detail = "live", ""
            log.info("camera %s: record stream live (%s %dx%d)", self.camera_id, params.codec, params.width,
                     params.height)
        self._record_tap(params, packet)

    def record_status(self, health: str, detail: str, copyable: bool) -> None:
        """The recorder process's word on the camera's main stream (``copyable``: clips can be cut from it)."""
        if health == "live" and self.record_health != "live":
            log.info("camera %s: record stream live in the recorder process", self.camera_id)
        self.record_health, self.record_detail = health, detail

    def _record_run(self) -> None:
        """Read the record stream until stopped, reconnecting with backoff; it never stops the detect stream,
        and while it is down clips are cut from the detect stream's packets."""
        assert self.record is not None
        record_until_stopped(self.camera_id, self.record, self.stop_event, self._record_packet, self.ingest.backoff_s,
                             self.ingest.max_backoff_s, lambda: self.record_health == "live", self._record_failed)
        self.record_health = "stopped"

    def _record_failed(self, health: str, detail: str) -> None:
        self.record_health, self.record_detail = health, detail


class RulesLoop(BackgroundLoop):
    """The second half of the detector step, in a thread of its own: detected samples through their pipelines
    (scene, tracker, rules, cases, evidence), in the order the detector answered them.

    Python work here (the tracker, a case's snapshot and commit) no longer holds the detector, whose native
    threads run the next batch meanwhile. At most ``depth`` batches wait: a detector further ahead blocks, its
    cameras' queues fill and the load governor cuts their rates.

    A batch is one or more groups of detected samples, each with its detector's input side (its answers are in
    input coordinates): cameras with a model of their own are detected apart.

    Args:
        on_error: Called when one camera's pipeline fails (the others go on).
        depth: Batches waiting at most.
    """

    def __init__(self, on_error: Callable[[CameraPipeline, Exception], None], depth: int = 4) -> None:
        super().__init__("rules")
        self.on_error = on_error
        self.queue: queue.Queue[list[tuple[list[Detected], int]] | None] = queue.Queue(maxsize=depth)
        self.done = threading.Condition()
        self.taken = 0  # batches taken from the cameras' queues, counted under ``done``
        self.finished = 0  # of those, processed or lost with the detector

    def take(self) -> None:
        """Count a batch taken from the cameras' queues (it ends in :meth:`submit` or :meth:`lost`)."""
        with self.done:
            self.taken += 1

    def submit(self, batch: list[tuple[list[Detected], int]]) -> None:
        """Queue a detected batch: its groups and their input sides (blocks while ``depth`` batches wait)."""
        self.queue.put(batch)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop once the batches waiting are processed (call it after the detector stopped submitting)."""
        self.stop_event.set()
        if not self.thread.is_alive():
            return
        try:
            self.queue.put(None, timeout=timeout)  # wakes the thread at once, after the batches before it
        except queue.Full:
            log.error("rules thread stuck: %d batches not processed", self.queue.qsize())
        self.thread.join(timeout)

    def lost(self) -> None:
        """A taken batch that the detector failed on: nothing of it comes."""
        self._finish()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every batch taken so far is processed (False: not within ``timeout``)."""
        with self.done:
            target = self.taken
            return self.done.wait_for(lambda: self.finished >= target or not self.thread.is_alive(), timeout)

    def _finish(self) -> None:
        with self.done:
            self.finished += 1
            self.done.notify_all()

    def _run(self) -> None:
        while True:  # a stop comes after the waiting batches: none of their cases is lost
            batch = self.queue.get()
            if batch is None:
                return
            try:
                for detected, imgsz in batch:
                    process_detected(detected, imgsz, self.on_error)
            except Exception as exc:  # on_error takes a pipeline's failure; anything else loses this batch only
                log.error("rules failed on a batch of %d frames: %s", sum(len(d) for d, _ in batch), exc)
            finally:
                self._finish()


class InferenceEngine(BackgroundLoop):
    """One detector shared by all cameras, batching their samples; a :class:`RulesLoop` processes its answers.

    A camera with a model of its own (``CameraWorker.backend``) is detected by that model, in the same round:
    a round's samples go to each model in one call."""

    def __init__(self, backend: DetectorBackend, batch: int, governor: LoadGovernor | None = None) -> None:
        super().__init__("inference")
        self.backend = backend
        self.batch = batch
        self.workers: dict[str, CameraWorker] = {}
        self.lock = threading.Lock()
        self.batches = 0
        self.errors = 0
        self.governor = governor or LoadGovernor()
        self.rules = RulesLoop(self._camera_failed)
        self.served = 0  # samples taken from the cameras' queues
        self._first = 0  # where the next round of taking starts

    def start(self) -> None:
        """Start the detector and the rules threads."""
        self.rules.start()
        super().start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the detector after its current batch, then the rules once the batches waiting are processed."""
        super().stop(timeout)
        self.rules.stop(timeout)

    def drain(self, workers: list[CameraWorker], timeout: float = 10.0) -> bool:
        """Wait until these cameras' queued samples went through the detector and the rules (their readers are
        stopped; False: not within ``timeout``, or the detector is not running)."""
        deadline = time.monotonic() + timeout
        with self.rules.done:
            self.rules.done.wait_for(lambda: not self.thread.is_alive() or not any(w.queue for w in workers),
                                     timeout)
        return self.thread.is_alive() and self.rules.flush(max(0.0, deadline - time.monotonic()))

    def _govern(self, busy_s: float) -> None:
        """Feed the load governor and give every camera its share of its detection rate."""
        with self.lock:
            workers = list(self.workers.values())
        scale = self.governor.observe(time.monotonic(), busy_s, sum(len(w.queue) for w in workers),
                                      sum(w.queue.maxlen or 0 for w in workers),
                                      sum(w.stats.frames_dropped for w in workers), self.served)
        changed = False
        for w in workers:
            changed |= w.pipeline.sampler.scale != scale
            w.pipeline.sampler.scale = scale
        if changed:
            log.info("detector load: every camera detects at %.0f %% of its rate", 100 * scale)

    def _collect(self) -> list[tuple[CameraWorker, Sample]]:
        """One sample per camera per round, each round starting after the last camera served: under load no
        camera waits behind the same others every time."""
        items: list[tuple[CameraWorker, Sample]] = []
        with self.lock:  # a camera removed meanwhile is either in this batch, counted taken, or not at all
            workers = list(self.workers.values())
            n = len(workers)
            for k in range(n):
                w = workers[(self._first + k) % n]
                got = w.take()
                if got is not None:
                    items.append((w, got))
                    if len(items) >= self.batch:
                        self._first = (self._first + k + 1) % n
                        break
            if items:
                self.rules.take()
                self.served += len(items)
        return items

    def _run(self) -> None:
        while not self.stop_event.is_set():
            items = self._collect()
            if not items:
                self.wakeup.wait(0.5)
                self.wakeup.clear()
                self._govern(0.0)
                continue
            t0 = time.perf_counter()
            groups: dict[int, tuple[DetectorBackend, list[tuple[CameraPipeline, Sample]]]] = {}
            for w, sample in items:
                backend = w.backend or self.backend
                groups.setdefault(id(backend), (backend, []))[1].append((w.pipeline, sample))
            done: list[tuple[list[Detected], int]] = []
            for backend, group in groups.values():
                try:
                    done.append((detect_samples(backend, group, self._camera_failed), backend.imgsz))
                except Exception as exc:  # a detector failed: these frames are lost, the next ones are tried
                    self.errors += 1
                    log.error("detector failed on a batch of %d frames: %s", len(group), exc)
            if not done:
                self.rules.lost()
                self._govern(time.perf_counter() - t0)
                continue
            self.rules.submit(done)  # waits while the rules are behind: that counts as the detector's load
            self._govern(time.perf_counter() - t0)
            self.batches += 1 if any(s.needs_detector for d, _ in done for _, s, _ in d) else 0

    @staticmethod
    def _camera_failed(pipeline: CameraPipeline, exc: Exception) -> None:
        # One camera's failure never stops the others.
        log.error("camera %s: pipeline failed: %s", pipeline.camera.id, exc, exc_info=exc)


class StallWatch(BackgroundLoop):
    """Calls ``check`` about once a second (marks cameras without recent frames stalled)."""

    def __init__(self, check: Callable[[], None]) -> None:
        super().__init__("stall-watch")
        self.check = check

    def _run(self) -> None:
        while not self.stop_event.wait(1.0):
            self.check()


def view_of(w: CameraWorker) -> CameraView:
    """Snapshot of a worker's health and counters."""
    p = replace(w.pipeline.stats, detections_per_class=dict(w.pipeline.stats.detections_per_class))
    return CameraView(w.camera_id, w.health, w.detail, p, w.stats.frames_dropped, w.stats.reconnects,
                      len(w.queue), w.pipeline.warning_actions, decode=w.decoding, decode_detail=w.decode_detail,
                      detect_fps=w.pipeline.sampler.detect_fps, detect_fps_now=w.pipeline.sampler.effective_fps,
                      record=w.record_health, record_detail=w.record_detail, evidence=w.evidence,
                      model=ctx.model.name if (ctx := w.pipeline.context) is not None and ctx.model else "")


def frame_jpeg_of(worker: CameraWorker, overlay: bool) -> bytes | None:
    """JPEG of a camera's last processed frame, optionally with zones and detections drawn."""
    pipe = worker.pipeline
    with pipe.lock:
        frame, det = pipe.last_frame, pipe.last_detections
        if frame is None:
            return None
        image = frame.image
        if overlay:
            image = draw_detections(draw_zones(image, pipe.zones), det, pipe.names, pipe.scene_settings)
    h, w = image.shape[:2]
    if w > 960:  # a tile does not need more; keeps the grid light with many cameras
        image = np.asarray(cv2.resize(image, (960, round(h * 960 / w)), interpolation=cv2.INTER_AREA), np.uint8)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return bytes(buf) if ok else None


def case_context(cam: CameraConfig, default_targets: tuple[str, ...]) -> CaseContext:
    """What the service writes with each case of a camera: its place and the notifiers its cases go to."""
    targets, zone_targets = cam.case_targets(default_targets)
    return CaseContext(address=cam.location.address, gps=cam.location.gps, targets=targets,
                       zone_targets=zone_targets or None,
                       payload_extra={"camera_name": cam.name,
                                      "description": f"{cam.name or cam.id}: automatic detection"})


class LocalCameras:
    """Cameras read in this process, their samples batched through one shared detector.

    The Ray actors of ``serve --ray`` (:mod:`service.shards`) each hold one of these, writing to an op
    log instead of the store; in-process the store is the real one.

    Args:
        config: The service configuration (model, ingest, rules, dispatch targets).
        store: Where the pipelines write cases.
        evidence_root: Where evidence files are written.
        on_event: Called with each violation event after its case is stored.
        on_health: Called on every camera health change.
        on_warn: Called with each voice warning to play.
        reminders: What a new camera needs to text shops, asked at each start (None: shops are not texted).
        register: Licensed muck trucks, checked against the plates of truck cases (the runtime's; imports
            replace its list in place).
    """

    def __init__(self, config: ServiceConfig, store: CaseWriter, evidence_root: Path, on_event: OnEvent,
                 on_health: OnHealth, on_warn: OnWarn,
                 reminders: Callable[[], ReminderSetup | None] | None = None,
                 register: MuckRegister | None = None) -> None:
        self.config = config
        self.reminders = reminders
        self.register = register
        self._plate_setup: PlateSetup | None = None
        self.store = store
        self.evidence_root = evidence_root
        self.on_event, self.on_health, self.on_warn = on_event, on_health, on_warn
        m = config.model

        def load(path: Path) -> DetectorBackend:
            return create_backend(config_for(path, conf=m.conf, imgsz=m.imgsz, threads=m.threads,
                                             spinning=m.spinning))

        #: The service's model and the cameras' own (``model:``), each loaded once.
        self.models = ModelPool(load(m.path), m.path, load)
        self.backend = self.models.default
        self.engine = InferenceEngine(self.backend, m.batch)
        self.watch = StallWatch(self.check_stalls)
        # Stream-copied clips are written here, one at a time: never on a camera's reader or the detector, which
        # would hold the camera's pipeline (and so the detector) while a clip is muxed and its evidence stored.
        self.evidence_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence")
        #: Main streams of two-stream cameras are read here (``ingest.record_process``), started with the first.
        self.recorder: RecorderProcess | None = None
        self._recorder_lock = threading.Lock()  # cameras added at once (API calls) start one recorder

    def start(self) -> None:
        """Start the detector and the stall watch."""
        self.engine.start()
        self.watch.start()

    def pipeline_for(self, cam: CameraConfig, on_event: EventCallback,
                     backend: DetectorBackend | None = None) -> CameraPipeline:
        """The camera's pipeline as the service runs it: evidence at 4 fps, cases to the camera's notifiers
        (``backend``: its detector, default the service's)."""
        backend = backend or self.backend
        rules = camera_rules(self.config.rules, cam.rules)
        for message in thresholds_below(rules, self.config.model.conf, f"camera {cam.id}: rules"):
            log.warning("%s", message)
        settings = rules.settings()
        evidence = EvidenceRecorder(self.evidence_root / cam.id, long_s=max(settings.dwell_s.values()) + 30,
                                    fast_fps=4.0, max_width=960, writer=self.evidence_writer.submit)
        context = case_context(cam, self.config.case_notifiers())
        return build_pipeline(cam, settings, backend.names, self.store, cam.source, evidence,
                              self.evidence_root, context=context,
                              on_event=on_event,
                              on_warning=lambda action, case_id: self.on_warn(cam.id, action, case_id),
                              reminders=self.reminders() if self.reminders is not None else None,
                              plates=self._plates(cam), model=backend.identity)

    def _plates(self, cam: CameraConfig) -> PlateSetup | None:
        """The plate reader (loaded once) and the register, for cameras that read plates (None: none can be)."""
        if not cam.plates:
            return None
        if self._plate_setup is None:
            try:
                reader = PlateReader()
            except PlateReaderUnavailable as exc:
                log.error("camera %s: plates are not read: %s", cam.id, exc)
                return None
            self._plate_setup = PlateSetup(reader, self.register, lambda _ts: dt.datetime.now())
        return self._plate_setup

    def prepare(self, cam: CameraConfig) -> None:
        """Load the camera's own model before it replaces a running camera (raises ``ModelLoadError``)."""
        self.model_for(cam)

    def model_for(self, cam: CameraConfig) -> DetectorBackend:
        """The camera's detector: its own ``model`` (loaded on first use), else the service's.

        Raises:
            ModelLoadError: Its model cannot be loaded.
        """
        try:
            return self.models.backend(cam.model)
        except ModelLoadError as exc:
            raise ModelLoadError(f"camera {cam.id}: its model: {exc}") from exc

    def add(self, cam: CameraConfig) -> None:
        """Build the camera's source, pipeline and reader and start reading.

        Raises:
            ValueError: The camera's id runs already.
            ModelLoadError: Its own model cannot be loaded (nothing of it started).
        """
        backend = self.model_for(cam)
        ingest = self.config.ingest
        source = open_source(source_config(cam.source, live=True, open_timeout_s=ingest.open_timeout_s,
                                           read_timeout_s=ingest.read_timeout_s, decode_threads=ingest.decode_threads))
        record = None
        # The main stream shares the detect stream's clock: clips line up with detections.
        clock_zero = getattr(source, "epoch", None)
        if cam.record:
            record_cfg = source_config(cam.record, live=True, open_timeout_s=ingest.open_timeout_s,
                                       read_timeout_s=ingest.read_timeout_s)
            if not ingest.record_process:
                record = open_source(record_cfg, epoch=clock_zero)
        epoch = time.time()  # wall time of the camera clock's zero
        pipeline = self.pipeline_for(cam, lambda ev, case_id: self.on_event(cam.id, ev, case_id, epoch), backend)
        mode, interval, reason = cam.decode_plan()
        worker = CameraWorker(cam.id, source, mode, pipeline, ingest, self.on_health, self.engine.wakeup,
                              epoch, auto_interval_s=interval, decoding="keyframes" if mode == "keyframes" else "all",
                              decode_detail=reason, record=record, backend=backend)
        with self.engine.lock:
            if cam.id in self.engine.workers:
                raise ValueError(f"camera {cam.id} exists")
            self.engine.workers[cam.id] = worker
        evidence = pipeline.evidence_recorder()
        if cam.record and ingest.record_process and evidence is not None:  # before any case can begin a clip
            worker.record_health = "connecting"
            remote = worker.remote_record = self._recorder().add(
                cam.id, record_cfg, clock_zero, RingSpec(*evidence.ring_bounds()), ingest.backoff_s,
                ingest.max_backoff_s, worker.record_status)
            remote.on_written = evidence.remote_written
            evidence.remote = remote
        worker.start()

    def _recorder(self) -> RecorderProcess:
        """The recorder process, started on first use."""
        with self._recorder_lock:
            if self.recorder is None:
                recorder = RecorderProcess(log_level=logging.getLogger().getEffectiveLevel())
                recorder.start()
                self.recorder = recorder
            return self.recorder

    def remove(self, camera_id: str) -> None:
        """Stop a camera's reader, let its queued samples through, and end its active violations."""
        worker = self.engine.workers.get(camera_id)
        if worker is not None:
            self._end([worker])

    def stop(self) -> None:
        """Stop every reader, let their queued samples through the detector and the rules, end the cameras'
        active violations, then stop the detector."""
        self.watch.stop()
        with self.engine.lock:
            workers = list(self.engine.workers.values())
        self._end(workers)
        self.engine.stop()
        if self.recorder is not None:
            self.recorder.stop()
        self.evidence_writer.shutdown(wait=True)

    def _end(self, workers: list[CameraWorker]) -> None:
        """Stop these cameras' readers, let their queued samples through the detector and the rules, take them out
        of the engine and end their active violations (each once, whoever else is ending them)."""
        for w in workers:  # signal every reader at once, then wait: the time does not grow with cameras
            w.stop_event.set()
        for w in workers:
            w.stop()
        self.engine.drain(workers)
        with self.engine.lock:
            ours = [w for w in workers if self.engine.workers.get(w.camera_id) is w]
            for w in ours:
                del self.engine.workers[w.camera_id]
        self.engine.rules.flush()  # a batch taken just before they left is processed before their violations end
        for w in ours:
            w.pipeline.finish()  # with a main stream in the recorder process, its clips gathering are written
            if self.recorder is not None and w.remote_record is not None:
                self.recorder.remove(w.camera_id)

    def check_stalls(self) -> None:
        """Mark cameras without recent frames stalled now (the stall watch does this every second)."""
        now = time.monotonic()
        for w in list(self.engine.workers.values()):
            w.check_stall(now)

    def views(self) -> list[CameraView]:
        """Every camera's health and counters."""
        return [view_of(w) for w in list(self.engine.workers.values())]

    def view(self, camera_id: str) -> CameraView | None:
        """One camera's health and counters, if it runs."""
        w = self.engine.workers.get(camera_id)
        return view_of(w) if w is not None else None

    def frame_jpeg(self, camera_id: str, overlay: bool) -> bytes | None:
        """The camera's last processed frame as JPEG.

        Raises:
            KeyError: No such camera.
        """
        w = self.engine.workers.get(camera_id)
        if w is None:
            raise KeyError(camera_id)
        return frame_jpeg_of(w, overlay)

    def set_shops(self, shops: list[Shop]) -> None:
        """Every running camera attributes violations to these shops from now on."""
        for w in list(self.engine.workers.values()):
            sink = w.pipeline.reminders
            if sink is not None:
                with w.pipeline.lock:
                    sink.set_shops(shops)

    def alive(self) -> dict[str, bool]:
        """Readiness checks of this camera fleet."""
        return {"engine": self.engine.thread.is_alive(), "stall_watch": self.watch.thread.is_alive()}
