"""The running service: case store, camera fleet, notifiers and the event bus, started and stopped together.

The cameras run in a :class:`~service.fleet.CameraFleet`: in this process (:class:`~service.cameras.LocalCameras`)
or on Ray actors (:class:`~service.shards.RayCameras`, ``serve --ray``); the runtime does not ask which.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import hmac
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detector.backends.base import ModelLoadError
from detector.events import ViolationEvent
from detector.privacy import PrivacySettings
from detector.warnings import WarningAction, WarningStats, warning_stats
from pipelines.case_spool import CaseSpool, database_down
from pipelines.config import CameraConfig
from pipelines.muck_register import MuckRegister, read_register
from pipelines.privacy import EvidenceMasker, MaskerSettings, MaskingError
from pipelines.reminders import ReminderSetup, ShopReminder
from pipelines.shops import Shop, mask_phone
from pipelines.sinks.shop_store import ShopBook
from pipelines.sinks.store import CaseStore
from pipelines.tables import TableError
from service.bus import EventBus
from service.cameras import LocalCameras, case_context
from service.fleet import UNTRACKED_NOTE, CameraFleet
from service.notify import Notifications
from service.settings import ServiceConfig
from service.shards import RayCameras

log = logging.getLogger(__name__)


class CameraChangeError(RuntimeError):
    """A checked change of a camera did not start; the message says what runs instead."""


JOURNAL_NAME = ".case-journal.jsonl"  # in the evidence folder: camera case writes waiting for the database
MALLOC_ARENAS = 2  # glibc malloc arenas for the service (MALLOC_ARENA_MAX in the environment wins)


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



def load_register(path: Path | None) -> MuckRegister | None:
    """The muck-transport register of the service file (None: none configured); its bad rows are logged and
    an unreadable file leaves it empty (the service still starts)."""
    if path is None:
        return None
    try:
        vehicles, bad = read_register(path)
    except TableError as exc:
        log.error("muck-transport register not loaded: %s", exc)
        return MuckRegister([])
    for line in bad:
        log.error("%s", line)
    log.info("muck-transport register: %d licensed vehicles from %s", len(vehicles), path)
    return MuckRegister(vehicles)


class Runtime:
    """Everything the running service holds: store, cameras (here or on Ray actors), notifiers, event bus."""

    def __init__(self, config: ServiceConfig, tokens: dict[str, tuple[str, str]]) -> None:
        limit_malloc_arenas()
        self.config = config
        self.tokens = tokens
        self.bus = EventBus()
        self.store = CaseStore(config.storage.db, wait_for_database=True)  # starts while the database is away
        self.shops = ShopBook(self.store)
        self.register = load_register(config.muck_register)
        self.evidence_root = config.storage.evidence.resolve()
        self.evidence_root.mkdir(parents=True, exist_ok=True)
        self.dlr_key = hashlib.sha256(("streetwatch-dlr:" + ",".join(sorted(tokens))).encode()).digest()
        self.notifications = Notifications(config, self.store, self.bus.publish,
                                           self.dlr_url if config.dispatch.public_url else None)
        # The cameras' case writes go through the spool: they wait in its journal while the database is away.
        # (A Ray fleet's ops wait in its workers' logs instead.)
        self.spool = CaseSpool(self.store, self.evidence_root / JOURNAL_NAME, self.evidence_root, self.shops)
        if config.cluster.ray:
            self.fleet: CameraFleet = RayCameras(config, self.store, self.evidence_root, self._publish_violation,
                                                 self._on_health, self._warn)
        else:
            self.fleet = LocalCameras(config, self.spool, self.evidence_root, self._publish_violation,
                                      self._on_health, self._warn, self._reminder_setup, self.register)
        self.cameras: dict[str, CameraConfig] = {}
        # Cameras of the config that could not start (their own model did not load): kept with the reason, so
        # they are listed as failed and can be changed (PUT) or removed like running ones.
        self.not_started: dict[str, tuple[CameraConfig, str]] = {}
        self.lock = threading.Lock()
        self._masker: EvidenceMasker | None = None
        self._masked_frames: dict[tuple[str, bool], tuple[bytes, bytes]] = {}  # (camera, overlay) -> (frame, masked)
        self.stop_event = threading.Event()  # set when the service stops (open event streams end)
        self.started_at = time.time()

    def start(self) -> None:
        """Start the camera fleet, the notifiers and every configured camera.

        Case writes a previous run left waiting for the database are applied first, then the cases it left active
        are ended (their tracking died with it).
        """
        self.spool.on_previous_run_applied = self._settle_previous_run  # its writes the start could not apply
        self.spool.start()
        self._settle_at_start()
        self._with_database("dead-lettering the outbox rows of notifiers no longer configured",
                            self.notifications.dead_letter_unknown)
        self.fleet.start()
        self.notifications.start()
        for cam in self.config.cameras:
            try:
                self.add_camera(cam)
            except Exception as exc:  # that camera's own model, or whatever else stopped it: the others start
                if not isinstance(exc, ModelLoadError):
                    log.exception("camera %s not started", cam.id)
                self._hold(cam, str(exc))

    def _settle_at_start(self) -> None:
        """Settle what the previous run left open, now (every open case: the journal's, just replayed, included) or,
        where the database is away, once it answers: then the cases stored before this run started and those of the
        previous run's journal (the cameras start meanwhile, their writes waiting in the journal)."""
        started = dt.datetime.fromtimestamp(self.started_at, dt.UTC)
        journal_cases = list(self.spool.previous_run_cases)

        def settle_late() -> None:
            self._settle_previous_run(None, started)
            if journal_cases:
                self._settle_previous_run(journal_cases)

        self._with_database("settling the previous run's open cases and texts",
                            lambda: self._settle_previous_run(None), settle_late)

    def _with_database(self, what: str, now: Callable[[], object], later: Callable[[], object] | None = None) -> None:
        """Make ``now``, or, where the database does not answer, ``later`` (default: the same) once it does, after
        the writes waiting for it."""
        try:
            now()
        except Exception as exc:
            if not database_down(exc):
                raise
            log.warning("the case database does not answer at start: %s waits for it", what)
            self.spool.after_waiting(what, later or now)

    def _hold(self, cam: CameraConfig, reason: str) -> None:
        """List a camera that could not start as ``failed`` with ``reason``, to be changed (PUT) or removed."""
        log.error("camera %s not started: %s", cam.id, reason)
        with self.lock:
            if cam.id in self.cameras:  # a concurrent change started it meanwhile
                return
            self.not_started[cam.id] = (cam, reason)
        self.bus.publish("camera", {"camera": cam.id, "state": "failed", "detail": reason, "at": time.time()})

    def stop(self) -> None:
        """Stop cameras first (their last frames still get inferred), then the rest."""
        self.stop_event.set()
        with self.lock:
            self.cameras.clear()
            self.not_started.clear()
        self.fleet.stop()
        self.spool.stop()  # what the database still does not take stays in the journal for the next start
        self.notifications.stop()
        self.store.close()

    def masker(self) -> EvidenceMasker:
        """The evidence masker (its detector session is opened on first use: most viewers never fetch evidence)."""
        if self._masker is None:  # two first requests may both load it: harmless, and no lock held meanwhile
            p = self.config.privacy
            try:
                self._masker = EvidenceMasker(self.config.model.path, MaskerSettings(
                    sizes=tuple(p.sizes), clip_fps=p.clip_fps, privacy=PrivacySettings(faces=p.faces, plates=p.plates)))
            except MaskingError:
                raise
            except Exception as exc:  # the model cannot be loaded: masked evidence is unavailable (503)
                raise MaskingError(f"cannot load the masking model: {exc}") from exc
        return self._masker

    def masked_frame(self, camera_id: str, overlay: bool, jpg: bytes) -> bytes:
        """A camera's live frame as a viewer sees it: masked, once per frame however many viewers ask."""
        cached = self._masked_frames.get((camera_id, overlay))
        if cached is not None and cached[0] == jpg:
            return cached[1]
        masked = self.masker().mask_jpeg(jpg)
        self._masked_frames[(camera_id, overlay)] = (jpg, masked)
        return masked

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
            self.notifications.warn(camera, action, case_id)

    def _reminder_setup(self) -> ReminderSetup | None:
        """What a new camera pipeline needs to text shops (None: no SMS notifier is configured)."""
        if not self.notifications.sms_channels():
            return None
        midnight = dt.datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
        return ReminderSetup(tuple(self.shops.shops()), self.config.reminders, notify=self._remind,
                             sent_today=self.shops.sent_since(midnight))

    def _remind(self, step: ShopReminder) -> None:
        """Record a reminder step (a text, a skipped one, an outcome) and queue the text."""
        a = step.action
        if a.kind == "outcome":
            self.spool.set_reminder_outcome(step.case_id, a.shop, a.outcome or "", a.time_to_clear_s)
        else:
            # While the database is away the record waits in the spool's journal with the case writes (it keeps
            # its time) and the text goes out at once without the outbox.
            deadline = a.deadline_ts - a.ts if a.deadline_ts is not None else None
            rid = self.spool.add_reminder(step.case_id, a.shop, step.camera, a.zone, a.violation,
                                          sent=a.kind == "send", reason=a.reason,
                                          channels=step.channels or self.notifications.sms_channels(),
                                          message=step.text, offence=a.offence, deadline_in_s=deadline)
            if a.kind == "send":
                self.notifications.text(step, rid)
        self.bus.publish("reminder", {"case_id": step.case_id, "shop": a.shop, "camera": step.camera,
                                      "zone": a.zone, "violation": a.violation, "step": a.kind,
                                      "reason": a.reason, "outcome": a.outcome, "to": mask_phone(step.shop.phone),
                                      "at": time.time()})

    def _settle_previous_run(self, case_ids: list[str] | None, created_before: dt.datetime | None = None) -> None:
        """End what a previous run left open, its tracking having died with it: its cases still active (where
        ``case_ids`` is given, only those: the writes the database took only after this run started, whose cameras
        track their own cases by then; where ``created_before`` is given, only the cases stored before it: this
        run's start, when the database was away then) and its texts still waiting for a re-check."""
        ended = self.store.end_untracked([c.id for c in self.config.cameras], UNTRACKED_NOTE, case_ids,
                                         created_before)
        if ended:
            log.info("%d cases left active by the previous run are no longer active", len(ended))
        self.settle_open_reminders(before=dt.datetime.fromtimestamp(self.started_at, dt.UTC))

    def settle_open_reminders(self, before: dt.datetime | None = None) -> int:
        """Reminders whose deadline a previous run did not live to see (sent before ``before``, where given: the
        start of this run): their cases take the usual path now (dispatch to the camera's notifiers), so no case
        waits forever for a re-check. Returns how many."""
        open_ = self.shops.open_reminders(before)
        cameras = {c.id: c for c in self.config.cameras}
        for r in open_:
            case_id = str(r["case_id"])
            try:
                self.shops.set_outcome(case_id, str(r["shop_id"]), "undecided", None)
                self.store.annotate(case_id, "system:reminder", "reminder undecided: the service restarted "
                                    "before the deadline")
                cam = cameras.get(str(r["camera"]))
                if cam is not None:
                    self.store.enqueue_dispatch(case_id, case_context(cam, self.config.case_notifiers()))
            except Exception as exc:  # one bad row never stops the start
                log.error("open reminder of case %s not settled: %s", case_id, exc)
        if open_:
            log.info("%d reminders were waiting for a re-check when the service stopped: dispatched", len(open_))
        return len(open_)

    def dlr_token(self, reminder_id: int, notifier: str) -> str:
        """The secret a delivery-report URL carries (Kannel cannot send a bearer token); stable across restarts."""
        return hmac.new(self.dlr_key, f"{reminder_id}:{notifier}".encode(), hashlib.sha256).hexdigest()[:32]

    def dlr_url(self, reminder_id: int, notifier: str) -> str:
        """Where an SMS gateway reports the deliveries of one reminder's text."""
        base = self.config.dispatch.public_url.rstrip("/")
        return (f"{base}/api/sms/dlr?reminder={reminder_id}&notifier={notifier}"
                f"&token={self.dlr_token(reminder_id, notifier)}")

    def shops_changed(self) -> list[Shop]:
        """The registry changed: running cameras take the new shops; returns them."""
        shops = self.shops.shops()
        self.fleet.set_shops(shops)
        return shops

    def check_camera(self, cam: CameraConfig) -> None:
        """Check what a camera needs before it is added or replaces a running one: its notifiers and speakers
        are configured, its own model loads.

        Raises:
            ValueError: The camera names a notifier the service does not have.
            ModelLoadError: Its own model does not load.
        """
        self.config.check_targets(cam)
        self.fleet.prepare(cam)

    def add_camera(self, cam: CameraConfig) -> None:
        """Start reading a camera (its id must be new, its notifiers and speakers configured, its model loadable).

        Raises:
            ValueError: The id exists, or the camera names a notifier the service does not have.
            ModelLoadError: Its own model does not load.
        """
        self.check_camera(cam)
        with self.lock:
            if cam.id in self.cameras or cam.id in self.not_started:
                raise ValueError(f"camera {cam.id} exists")
            self.cameras[cam.id] = cam
        try:
            self.fleet.add(cam)
        except Exception:
            with self.lock:
                self.cameras.pop(cam.id, None)
            raise

    def replace_camera(self, cam: CameraConfig) -> None:
        """Run a camera (running, or held as not started) with new settings; its cases stay.

        What the change needs is checked first (nothing stops when that fails). If the camera then cannot start
        with its new settings, its previous settings come back: it runs again as before, or, where that fails
        too or it had not started, it stays listed as failed. A change never makes a camera disappear.

        Raises:
            KeyError: No such camera.
            ValueError: The camera names a notifier the service does not have.
            ModelLoadError: Its own model does not load.
            CameraChangeError: The checked change did not start (the previous settings are back).
        """
        with self.lock:
            held = self.not_started.get(cam.id)
            previous = held[0] if held is not None else self.cameras.get(cam.id)
        if previous is None:
            raise KeyError(cam.id)
        self.check_camera(cam)  # before the running camera is stopped
        self.remove_camera(cam.id)
        try:
            self.add_camera(cam)
            return
        except Exception as exc:
            log.exception("camera %s: the change did not start", cam.id)
            failure = f"camera {cam.id}: the change did not start ({exc})"
        if held is not None:
            self._hold(previous, f"{failure}; before it: {held[1]}")
            raise CameraChangeError(f"{failure}; the camera stays listed as failed with its previous settings")
        try:
            self.add_camera(previous)
        except Exception as exc:
            log.exception("camera %s: its previous settings did not start again", cam.id)
            self._hold(previous, f"{failure}; its previous settings did not start again ({exc})")
            raise CameraChangeError(f"{failure}; its previous settings did not start again either ({exc}): "
                                    "it is listed as failed") from exc
        raise CameraChangeError(f"{failure}; its previous settings run again")

    def remove_camera(self, camera_id: str) -> None:
        """Stop a camera, end its active violations and keep its cases (or forget one that did not start)."""
        with self.lock:
            if self.not_started.pop(camera_id, None) is not None:
                return
        self.fleet.remove(camera_id)
        with self.lock:
            self.cameras.pop(camera_id, None)
        for overlay in (True, False):
            self._masked_frames.pop((camera_id, overlay), None)

    def _on_health(self, camera: str, state: str, detail: str) -> None:
        log.info("camera %s: %s %s", camera, state, detail)
        self.bus.publish("camera", {"camera": camera, "state": state, "detail": detail, "at": time.time()})

    def warning_stats(self) -> dict[str, WarningStats]:
        """Warnings per camera/zone/violation: played, share resolved by warning, median time to clear."""
        out: dict[str, WarningStats] = {}
        for v in self.fleet.views():
            for k, stat in warning_stats(v.warning_actions).items():
                out[f"{v.camera_id}/{k}"] = stat
        return out

    def ready_checks(self) -> dict[str, bool]:
        """Liveness of the moving parts (the database is checked by the caller)."""
        return {**self.fleet.alive(), **self.notifications.alive()}

    def camera_ids(self) -> list[str]:
        """Every camera the service has: running ones, then those that did not start."""
        with self.lock:
            return [*self.cameras, *self.not_started]  # add_camera keeps the two apart

    def camera_config(self, camera_id: str) -> CameraConfig | None:
        """A camera's settings, running or not started; ``None`` for an unknown id."""
        with self.lock:
            held = self.not_started.get(camera_id)
            return held[0] if held is not None else self.cameras.get(camera_id)

    def camera_status(self, camera_id: str) -> dict[str, Any]:
        """Health and counters of a camera (a camera that did not start: ``failed``, why, no counters)."""
        held = self.not_started.get(camera_id)
        if held is not None:
            idle, why = held
            return {"id": idle.id, "name": idle.name, "source": idle.source, "health": "failed", "detail": why,
                    "frames_decoded": 0, "frames_inferred": 0, "frames_dropped": 0, "frames_gated": 0,
                    "reconnects": 0, "queue": 0, "events": 0, "location": idle.location.model_dump(),
                    "detect_fps": idle.detect_fps, "model": str(idle.model or "")}
        v = self.fleet.view(camera_id)
        cam = self.cameras.get(camera_id)
        if v is None or cam is None:
            raise KeyError(camera_id)
        p = v.pipeline
        out = {"id": cam.id, "name": cam.name, "source": cam.source, "health": v.health, "detail": v.detail,
               "frames_decoded": p.frames_decoded, "frames_inferred": p.frames_inferred,
               "frames_dropped": v.frames_dropped, "frames_gated": p.frames_gated,
               "reconnects": v.reconnects, "queue": v.queue,
               "events": p.events, "location": cam.location.model_dump(),
               "decode": v.decode, "decode_detail": v.decode_detail,
               "detect_fps": v.detect_fps, "detect_fps_now": round(v.detect_fps_now, 3), "evidence": v.evidence,
               "model": v.model}
        if cam.record:
            out.update(record=cam.record, record_health=v.record, record_detail=v.record_detail)
        if v.node:
            out["node"] = v.node
        return out
