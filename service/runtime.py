"""The live service's moving parts: one reader per camera, one shared detector, one dispatcher.

* :class:`CameraWorker` reads a camera (RTSP over TCP, HTTP MJPEG/HLS, or a file
  looped at real-time pace for demos), reconnects with exponential backoff,
  reports its health (connecting / live / stalled / failed), feeds every decoded
  frame to the camera's evidence buffer and queues the sampled ones in a bounded
  queue that drops the oldest frame instead of growing.
* :class:`InferenceEngine` takes frames from all cameras' queues, batches them
  into one detector call and hands each camera its detections: the same
  :class:`~pipelines.runner.CameraPipeline` as ``analyze``.
* :class:`Dispatcher` delivers outbox rows to the city platform's webhooks with
  retries, exponential backoff, an ``Idempotency-Key`` header and a dead-letter state.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import httpx
import numpy as np

from detector.backends.base import DetectorBackend, config_for, create_backend
from detector.events import ViolationEvent
from detector.types import Detections
from detector.warnings import WarningAction, warning_stats
from pipelines.config import CameraConfig
from pipelines.runner import CameraPipeline, SourceStats, draw_detections, draw_zones
from pipelines.sinks.evidence import EvidenceRecorder
from pipelines.sinks.store import CaseContext, CaseStore, CaseWriter
from pipelines.sources import Frame, SourceError, open_stream, read_frames
from service.bus import EventBus
from service.schemas import DispatchPayload
from service.settings import IngestConfig, ServiceConfig, WebhookConfig
from service.voice import VoiceService

if TYPE_CHECKING:
    from service.shards import RayCameras

log = logging.getLogger(__name__)

UNTRACKED_NOTE = "tracking restarted: no longer followed; a violation still there opens a new case"
MALLOC_ARENAS = 2  # glibc malloc arenas for the service (MALLOC_ARENA_MAX in the environment wins)
HealthCallback = Callable[[str, str, str], None]  # camera, state, detail
EventSink = Callable[[str, ViolationEvent, str, float], None]  # camera, event, case id, camera clock epoch
WarnSink = Callable[[str, WarningAction, str], None]  # camera, warning, case id


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
        source: URL or file path.
        mode: ``all`` or ``keyframes`` decoding.
        pipeline: The camera's pipeline (evidence buffer, sampling, rules).
        ingest: Reconnect, timeout and queue settings.
        on_health: Called on every health change.
        wakeup: Set when a frame is queued (the engine waits on it).
    """

    camera_id: str
    source: str
    mode: str
    pipeline: CameraPipeline
    ingest: IngestConfig
    on_health: HealthCallback
    wakeup: threading.Event
    stats: CameraStats = field(default_factory=CameraStats)
    health: str = "new"
    detail: str = ""

    def __post_init__(self) -> None:
        self.queue: deque[tuple[Frame, Detections | None]] = deque(maxlen=self.ingest.queue)
        self.queue_lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"camera-{self.camera_id}", daemon=True)
        self._t0 = time.monotonic()
        self.clock_epoch = time.time()  # wall time of the camera clock's zero (live streams)
        self.is_file = "://" not in self.source
        self.paced_seconds = 0.0

    def start(self) -> None:
        """Start reading."""
        self._set_health("connecting")
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the reader to stop and wait for it (a blocked read ends at its read timeout)."""
        self.stop_event.set()
        self.thread.join(timeout)

    def _set_health(self, state: str, detail: str = "") -> None:
        if state != self.health or detail != self.detail:
            self.health, self.detail = state, detail
            self.on_health(self.camera_id, state, detail)

    def take(self) -> tuple[Frame, Detections | None] | None:
        """Pop the oldest queued frame (with its reused detections when motion gating skipped it), if any."""
        with self.queue_lock:
            return self.queue.popleft() if self.queue else None

    def check_stall(self, now: float) -> None:
        """Mark a live camera stalled when no frame arrived for ``stall_s`` (called by the watchdog)."""
        if self.health == "live" and now - self.stats.last_frame_at > self.ingest.stall_s:
            self._set_health("stalled", f"no frame for {now - self.stats.last_frame_at:.0f} s")

    def _frames(self) -> Iterator[Frame]:
        if self.is_file:
            # A file is replayed in a loop at real-time pace, like a camera (demos and tests).
            offset = 0.0
            while not self.stop_event.is_set():
                start = time.monotonic()
                last = 0.0
                for fr in read_frames(Path(self.source), "keyframes" if self.mode == "keyframes" else "all"):
                    delay = start + fr.ts - time.monotonic()
                    if delay > 0:
                        self.paced_seconds += delay  # waiting is not decoding: keep it out of the metric
                        if self.stop_event.wait(delay):
                            return
                    last = fr.ts
                    yield fr.at(offset + fr.ts)
                offset += last + 0.04
        else:
            for fr in open_stream(self.source, "keyframes" if self.mode == "keyframes" else "all",
                                  self.ingest.open_timeout_s, self.ingest.read_timeout_s):
                # Live clock: seconds since the worker started, continuous across reconnects.
                yield fr.at(time.monotonic() - self._t0)
                if self.stop_event.is_set():
                    return

    def _run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            self._set_health("connecting")
            try:
                t_dec = time.perf_counter()
                for frame in self._frames():
                    now = time.monotonic()
                    self.pipeline.stats.decode_s += max(0.0, time.perf_counter() - t_dec - self.paced_seconds)
                    self.paced_seconds = 0.0
                    self.stats.last_frame_at = now
                    failures = 0
                    self._set_health("live")
                    self.pipeline.observe(frame)
                    if self.pipeline.sample(frame.ts):
                        # With motion gating an unchanged frame carries the last detections and skips the
                        # detector; it still goes through the queue, so each camera's frames stay in order.
                        gated = self.pipeline.gate(frame)
                        with self.queue_lock:
                            if len(self.queue) == self.queue.maxlen:
                                self.stats.frames_dropped += 1
                            self.queue.append((frame, gated))
                        self.stats.frames_queued += 1
                        self.wakeup.set()
                    t_dec = time.perf_counter()
                if self.stop_event.is_set():
                    break
                raise SourceError(f"{self.source}: stream ended")
            except Exception as exc:  # any reader failure: back off and reconnect, never die
                failures += 1
                self.stats.reconnects += 1
                delay = min(self.ingest.max_backoff_s, self.ingest.backoff_s * 2 ** (failures - 1))
                self._set_health("failed" if failures >= 3 else "connecting", str(exc)[:300])
                log.warning("camera %s: %s; reconnecting in %.1f s", self.camera_id, exc, delay)
                if self.stop_event.wait(delay):
                    break
        self._set_health("stopped")


class BackgroundLoop:
    """A daemon thread running ``_run`` until stopped; ``wakeup`` cuts its waits short."""

    def __init__(self, name: str) -> None:
        self.wakeup = threading.Event()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Start the thread."""
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current unit of work."""
        self.stop_event.set()
        self.wakeup.set()
        self.thread.join(timeout)


class InferenceEngine(BackgroundLoop):
    """One detector shared by all cameras, batching their frames."""

    def __init__(self, backend: DetectorBackend, batch: int) -> None:
        super().__init__("inference")
        self.backend = backend
        self.batch = batch
        self.workers: dict[str, CameraWorker] = {}
        self.lock = threading.Lock()
        self.batches = 0
        self.errors = 0

    def _collect(self) -> list[tuple[CameraWorker, Frame, Detections | None]]:
        with self.lock:
            workers = list(self.workers.values())
        items: list[tuple[CameraWorker, Frame, Detections | None]] = []
        for w in workers:  # one frame per camera per round: fair between cameras
            got = w.take()
            if got is not None:
                items.append((w, *got))
            if len(items) >= self.batch:
                break
        return items

    def _run(self) -> None:
        while not self.stop_event.is_set():
            items = self._collect()
            if not items:
                self.wakeup.wait(0.5)
                self.wakeup.clear()
                continue
            todo = [w.pipeline.detector_input(fr, self.backend.imgsz) for w, fr, gated in items if gated is None]
            t0 = time.perf_counter()
            try:
                found = iter(self.backend.detect([t[0] for t in todo], [t[1] for t in todo]) if todo else [])
            except Exception as exc:
                self.errors += 1
                log.error("detector failed on a batch of %d frames: %s", len(todo), exc)
                continue
            per_frame = (time.perf_counter() - t0) / max(1, len(todo))
            self.batches += 1 if todo else 0
            for w, fr, gated in items:
                if gated is None:
                    w.pipeline.stats.infer_s += per_frame
                try:
                    det = gated if gated is not None else next(found)
                    w.pipeline.handle(fr, det, gated=gated is not None)
                except Exception as exc:  # one camera's failure never stops the others
                    log.exception("camera %s: pipeline failed: %s", w.camera_id, exc)


class Dispatcher(BackgroundLoop):
    """Delivers outbox rows to webhooks until delivered or dead-lettered."""

    def __init__(self, store: CaseStore, webhooks: list[WebhookConfig], public_url: str = "",
                 on_result: Callable[[dict[str, object]], None] | None = None) -> None:
        super().__init__("dispatcher")
        self.store = store
        self.webhooks = {w.name: w for w in webhooks}
        self.public_url = public_url.rstrip("/")
        self.on_result = on_result
        self.client = httpx.Client(follow_redirects=False)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current delivery and close the HTTP client."""
        super().stop(timeout)
        self.client.close()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            rows = self.store.outbox_due(time.time())
            for row in rows:
                if self.stop_event.is_set():
                    break
                self._deliver(row)
            self.wakeup.wait(0.2 if rows else 1.0)
            self.wakeup.clear()

    def _deliver(self, row: dict[str, object]) -> None:
        hook = self.webhooks.get(str(row["target"]))
        attempts = int(row["attempts"]) + 1  # type: ignore[call-overload]
        if hook is None:
            self.store.outbox_result(int(row["id"]), False, f"no webhook named {row['target']}", dead=True)  # type: ignore[call-overload]
            return
        raw = dict(row["payload"])  # type: ignore[call-overload]
        case_id = raw["case_id"]
        raw["evidence"] = {k: f"{self.public_url}/api/cases/{case_id}/evidence/{k}" for k in ("snapshot", "clip")}
        try:  # the documented schema (docs/dispatch-payload.schema.json) is what goes out
            payload = DispatchPayload.model_validate(raw).model_dump(mode="json")
        except ValueError as exc:
            self.store.outbox_result(int(row["id"]), False, f"invalid payload: {exc}", dead=True)  # type: ignore[call-overload]
            return
        headers = {**hook.headers, "Idempotency-Key": str(row["idempotency_key"]), "Content-Type": "application/json"}
        try:
            resp = self.client.post(hook.url, json=payload, headers=headers, timeout=hook.timeout_s)
            ok, error = 200 <= resp.status_code < 300, f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
        dead = not ok and attempts >= hook.max_attempts
        delay = min(hook.max_backoff_s, hook.backoff_s * 2 ** (attempts - 1))
        self.store.outbox_result(int(row["id"]), ok, error, time.time() + delay, dead)  # type: ignore[call-overload]
        if not ok:
            log.warning("dispatch of case %s to %s failed (%s), attempt %d%s", case_id, hook.name, error, attempts,
                        "; dead-lettered" if dead else f"; retry in {delay:.1f} s")
        if self.on_result is not None:
            self.on_result({"case_id": case_id, "target": hook.name, "ok": ok, "attempts": attempts, "dead": dead,
                            "error": "" if ok else error})


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process (before the camera threads start).

    glibc gives busy threads their own arenas (up to 8 per core); a reader thread per camera, each
    allocating decoded frames and JPEGs, then leaves most arenas fragmented. Capped at 2, the live
    benchmark's memory per stream fell from 149 to 127 MB at 16 streams with no loss of throughput
    (bench/README.md). Returns whether the cap was applied (glibc only; an explicit
    ``MALLOC_ARENA_MAX`` is left alone).
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-8, arenas))  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        return False


@dataclass
class CameraView:
    """A camera's health and counters, the same whether it runs in this process or on a Ray actor:
    the pipeline's counters (a copy of its :class:`~pipelines.runner.SourceStats`) and the reader's."""

    camera_id: str
    health: str
    detail: str = ""
    pipeline: SourceStats = field(default_factory=SourceStats)
    frames_dropped: int = 0
    reconnects: int = 0
    queue: int = 0
    warning_actions: list[WarningAction] = field(default_factory=list)
    node: str = ""  # the Ray node running the camera ("" in-process)


def view_of(w: CameraWorker) -> CameraView:
    """Snapshot of a worker's health and counters."""
    p = replace(w.pipeline.stats, detections_per_class=dict(w.pipeline.stats.detections_per_class))
    return CameraView(w.camera_id, w.health, w.detail, p, w.stats.frames_dropped, w.stats.reconnects,
                      len(w.queue), list(w.pipeline.warning_actions))


def frame_jpeg_of(worker: CameraWorker, overlay: bool) -> bytes | None:
    """JPEG of a camera's last inferred frame, optionally with zones and detections drawn."""
    pipe = worker.pipeline
    with pipe.lock:
        image, det = pipe.last_frame, pipe.last_detections
        if image is None:
            return None
        if overlay:
            image = draw_detections(draw_zones(image, pipe.zones), det, pipe.names)
    h, w = image.shape[:2]
    if w > 960:  # a tile does not need more; keeps the grid light with many cameras
        image = np.asarray(cv2.resize(image, (960, round(h * 960 / w)), interpolation=cv2.INTER_AREA), np.uint8)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return bytes(buf) if ok else None


class LocalCameras:
    """Cameras read in this process, their frames batched through one shared detector.

    The Ray actors of ``serve --ray`` (:mod:`service.shards`) each hold one of these, writing to an op
    log instead of the store; in-process the store is the real one.

    Args:
        config: The service configuration (model, ingest, rules, dispatch targets).
        store: Where the pipelines write cases.
        evidence_root: Where evidence files are written.
        on_event: Called with each violation event after its case is stored.
        on_health: Called on every camera health change.
        on_warn: Called with each voice warning to play.
    """

    def __init__(self, config: ServiceConfig, store: CaseWriter, evidence_root: Path, on_event: EventSink,
                 on_health: HealthCallback, on_warn: WarnSink) -> None:
        self.config = config
        self.store = store
        self.evidence_root = evidence_root
        self.on_event, self.on_health, self.on_warn = on_event, on_health, on_warn
        m = config.model
        self.backend = create_backend(config_for(m.path, conf=m.conf, imgsz=m.imgsz, threads=m.threads))
        self.engine = InferenceEngine(self.backend, m.batch)

    def start(self) -> None:
        """Start the detector thread."""
        self.engine.start()

    def add(self, cam: CameraConfig) -> None:
        """Build the camera's pipeline and reader and start reading."""
        settings = (cam.rules or self.config.rules).settings()
        evidence = EvidenceRecorder(self.evidence_root / cam.id, long_s=max(settings.dwell_s.values()) + 30,
                                    fast_fps=4.0, max_width=960)
        context = CaseContext(address=cam.location.address, gps=cam.location.gps,
                              targets=tuple(w.name for w in self.config.dispatch.webhooks),
                              payload_extra={"camera_name": cam.name,
                                             "description": f"{cam.name or cam.id}: automatic detection"})
        pipeline = CameraPipeline(cam, settings, self.backend.names, self.store, cam.source, evidence,
                                  self.evidence_root, None, None, context,
                                  on_warning=lambda action, case_id: self.on_warn(cam.id, action, case_id))
        worker = CameraWorker(cam.id, cam.source, cam.decode, pipeline, self.config.ingest, self.on_health,
                              self.engine.wakeup)
        pipeline.on_event = lambda ev, case_id: self.on_event(cam.id, ev, case_id, worker.clock_epoch)
        with self.engine.lock:
            if cam.id in self.engine.workers:
                raise ValueError(f"camera {cam.id} exists")
            self.engine.workers[cam.id] = worker
        worker.start()

    def remove(self, camera_id: str) -> None:
        """Stop a camera's reader and end its active violations."""
        with self.engine.lock:
            worker = self.engine.workers.pop(camera_id, None)
        if worker is not None:
            worker.stop()
            worker.pipeline.finish()

    def stop(self) -> None:
        """Stop every reader (their last frames still get inferred), then the detector."""
        with self.engine.lock:
            workers = list(self.engine.workers.values())
            self.engine.workers.clear()
        for w in workers:  # signal every reader at once, then wait: shutdown time does not grow with cameras
            w.stop_event.set()
        for w in workers:
            w.stop()
            w.pipeline.finish()
        self.engine.stop()

    def check_stalls(self) -> None:
        """Mark cameras without recent frames stalled (called about once a second)."""
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
        """The camera's last inferred frame as JPEG.

        Raises:
            KeyError: No such camera.
        """
        w = self.engine.workers.get(camera_id)
        if w is None:
            raise KeyError(camera_id)
        return frame_jpeg_of(w, overlay)

    def alive(self) -> dict[str, bool]:
        """Readiness checks of this camera fleet."""
        return {"engine": self.engine.thread.is_alive()}


class Runtime:
    """Everything the running service holds: store, cameras (here or on Ray actors), dispatcher, event bus."""

    def __init__(self, config: ServiceConfig, tokens: dict[str, tuple[str, str]]) -> None:
        limit_malloc_arenas()
        self.config = config
        self.tokens = tokens
        self.bus = EventBus()
        self.store = CaseStore(config.storage.db)
        self.evidence_root = config.storage.evidence.resolve()
        self.evidence_root.mkdir(parents=True, exist_ok=True)
        self.fleet: LocalCameras | RayCameras
        if config.cluster.ray:
            from service.shards import RayCameras

            self.fleet = RayCameras(config, self.store, self.evidence_root, self._publish_violation,
                                    self._on_health, self._warn)
        else:
            self.fleet = LocalCameras(config, self.store, self.evidence_root, self._publish_violation,
                                      self._on_health, self._warn)
        self.dispatcher = Dispatcher(self.store, config.dispatch.webhooks, config.dispatch.public_url,
                                     on_result=lambda r: self.bus.publish("dispatch", r))
        self.voice = VoiceService(config.voice, self.bus.publish)
        self.cameras: dict[str, CameraConfig] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.watchdog = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self.started_at = time.time()

    def start(self) -> None:
        """Start the camera fleet, dispatcher, watchdog and every configured camera.

        Cases a previous run of the service left active are ended first (their tracking died with it).
        """
        ended = self.store.end_untracked([c.id for c in self.config.cameras], UNTRACKED_NOTE)
        if ended:
            log.info("%d cases left active by the previous run are no longer active", len(ended))
        self.fleet.start()
        self.dispatcher.start()
        self.watchdog.start()
        for cam in self.config.cameras:
            self.add_camera(cam)

    def stop(self) -> None:
        """Stop cameras first (their last frames still get inferred), then the rest."""
        self.stop_event.set()
        with self.lock:
            self.cameras.clear()
        self.fleet.stop()
        self.dispatcher.stop()
        self.voice.close()
        self.store.close()

    def _watch(self) -> None:
        while not self.stop_event.wait(1.0):
            self.fleet.check_stalls()

    def _publish_violation(self, camera_id: str, ev: ViolationEvent, case_id: str, clock_epoch: float) -> None:
        camera = self.cameras.get(camera_id)
        self.bus.publish("violation", {
            "ts_wall": round(clock_epoch + ev.ts, 3), "state": ev.state.value, "case_id": case_id,
            "camera": ev.camera, "zone": ev.zone, "violation": ev.violation, "start_s": round(ev.start_s, 3),
            "ts": round(ev.ts, 3), "confidence": round(ev.confidence, 4), "box": [round(v, 1) for v in ev.box],
            "address": camera.location.address if camera is not None else "", "emitted_at": time.time()})

    def _warn(self, camera_id: str, action: WarningAction, case_id: str) -> None:
        camera = self.cameras.get(camera_id)
        if camera is not None:
            self.voice.warn(camera, action, case_id)

    def add_camera(self, cam: CameraConfig) -> None:
        """Start reading a camera (its id must be new)."""
        with self.lock:
            if cam.id in self.cameras:
                raise ValueError(f"camera {cam.id} exists")
            self.cameras[cam.id] = cam
        try:
            self.fleet.add(cam)
        except Exception:
            with self.lock:
                self.cameras.pop(cam.id, None)
            raise

    def remove_camera(self, camera_id: str) -> None:
        """Stop a camera, end its active violations and keep its cases."""
        self.fleet.remove(camera_id)
        with self.lock:
            self.cameras.pop(camera_id, None)

    def _on_health(self, camera: str, state: str, detail: str) -> None:
        log.info("camera %s: %s %s", camera, state, detail)
        self.bus.publish("camera", {"camera": camera, "state": state, "detail": detail, "at": time.time()})

    def warning_stats(self) -> dict[str, dict[str, object]]:
        """Warnings per camera/zone/violation: played, share resolved by warning, median time to clear."""
        out: dict[str, dict[str, object]] = {}
        for v in self.fleet.views():
            for k, stat in warning_stats(v.warning_actions).items():
                out[f"{v.camera_id}/{k}"] = stat
        return out

    def ready_checks(self) -> dict[str, bool]:
        """Liveness of the moving parts (the database is checked by the caller)."""
        return {**self.fleet.alive(), "dispatcher": self.dispatcher.thread.is_alive()}

    def camera_status(self, camera_id: str) -> dict[str, Any]:
        """Health and counters of a camera."""
        v = self.fleet.view(camera_id)
        cam = self.cameras.get(camera_id)
        if v is None or cam is None:
            raise KeyError(camera_id)
        p = v.pipeline
        out = {"id": cam.id, "name": cam.name, "source": cam.source, "health": v.health, "detail": v.detail,
               "frames_decoded": p.frames_decoded, "frames_inferred": p.frames_inferred,
               "frames_dropped": v.frames_dropped, "frames_gated": p.frames_gated,
               "reconnects": v.reconnects, "queue": v.queue,
               "events": p.events, "location": cam.location.model_dump()}
        if v.node:
            out["node"] = v.node
        return out
