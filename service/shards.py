"""``serve --ray``: cameras sharded over Ray actors; the API, case store and evidence stay central.

Each :class:`CameraShard` actor runs the same :class:`~service.cameras.LocalCameras` as an
in-process service (readers, one batching detector, the camera pipelines) for its share of the
cameras, but its pipelines write an :class:`~pipelines.distributed.OpLog` instead of a database.
:class:`RayCameras`, in the service process, polls every shard: it applies the ops to the one case
store (new cases, evidence bytes into the evidence folder, warning outcomes), publishes events and
camera health on the event stream, plays voice warnings, and keeps each camera's counters for
``/metrics`` and ``/api/cameras``. Ops are dropped by a shard only once the service has applied them.

A shard that dies is restarted by Ray (``max_restarts=-1``); the service sees a new incarnation on
the next poll and gives it its cameras again. Cameras go to the shard with the fewest.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from detector.backends.base import ModelLoadError, config_for, copy_weights, create_backend, model_file
from pipelines.config import CameraConfig
from pipelines.distributed import Applier, OpLog, connect, node_id
from pipelines.model_pool import weights_key
from pipelines.shops import Shop
from pipelines.sinks.store import CaseStore
from service.cameras import LocalCameras
from service.fleet import UNTRACKED_NOTE, CameraView, OnEvent, OnHealth, OnWarn
from service.settings import ServiceConfig

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0  # a shard that does not answer a call within this is reported unreachable


class CameraShard:
    """A Ray actor holding some cameras: readers, a detector and pipelines writing to an op log.

    Args:
        config_json: The service configuration (model, ingest, rules, dispatch targets).
        model: The detector's bytes (a node needs no copy of the model file).
        origin: The model's file where the service runs (cases name the model by it).
    """

    def __init__(self, config_json: str, model: bytes, origin: str) -> None:
        config = ServiceConfig.model_validate_json(config_json)
        self.scratch = Path(tempfile.mkdtemp(prefix="streetwatch-shard-"))
        weights = copy_weights(model, Path(origin), self.scratch / "models")
        threads = max(1, round(config.cluster.cpus_per_shard))
        config.model = config.model.model_copy(update={"path": weights, "threads": threads})
        self.incarnation = uuid.uuid4().hex
        self.log = OpLog(self.scratch / "evidence")
        self.cameras = LocalCameras(config, self.log, self.scratch / "evidence", self.log.event, self.log.health,
                                    self.log.warn)
        self.cameras.start()

    def add(self, camera_json: str, model: bytes | None = None, origin: str = "") -> None:
        """Start a camera (``model``: the bytes of its own model, read from ``origin`` where the service runs)."""
        cam = CameraConfig.model_validate_json(camera_json)
        if model is not None:
            cam = cam.model_copy(update={"model": copy_weights(model, Path(origin), self.scratch / "models")})
        self.cameras.add(cam)

    def remove(self, camera_id: str) -> None:
        """Stop a camera (its open violations end; their ops follow on the next poll)."""
        self.cameras.remove(camera_id)

    def poll(self, ack: int) -> dict[str, Any]:
        """Ops not yet acknowledged, the cameras' counters, and who we are."""
        return {"incarnation": self.incarnation, "node": node_id(), "ops": self.log.take(ack),
                "views": self.cameras.views()}

    def frame_jpeg(self, camera_id: str, overlay: bool) -> bytes | None:
        """A camera's last inferred frame (dashboard tiles)."""
        return self.cameras.frame_jpeg(camera_id, overlay)

    def stop(self) -> None:
        """Stop every camera; the last ops stay for a final poll."""
        self.cameras.stop()


@dataclass
class _Shard:
    handle: Any
    cameras: dict[str, CameraConfig] = field(default_factory=dict)
    ack: int = 0
    incarnation: str = ""
    node: str = ""
    views: dict[str, CameraView] = field(default_factory=dict)
    reachable: bool = True
    notified: set[int] = field(default_factory=set)  # its notifications made while store calls waited


class RayCameras:
    """The service's cameras on Ray actors, with the same interface as :class:`~service.cameras.LocalCameras`."""

    def __init__(self, config: ServiceConfig, store: CaseStore, evidence_root: Path, on_event: OnEvent,
                 on_health: OnHealth, on_warn: OnWarn) -> None:
        self.config = config
        self.on_health = on_health
        self.applier = Applier(store, evidence_root, on_event, on_health, on_warn)
        self.shards: list[_Shard] = []
        self.model_refs: dict[tuple[Path, int, int], Any] = {}  # the cameras' own models in the object store
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ray-poll", daemon=True)

    def start(self) -> None:
        """Connect to the cluster, start the shards and the poll loop.

        Raises:
            RayUnavailable: Ray is missing or the cluster does not answer.
        """
        c = self.config.cluster
        self.ray = connect(c.ray or "")
        # Held for the service's life: Ray rebuilds a restarted actor from these same arguments.
        weights = model_file(self.config.model.path)
        self.model_ref = self.ray.put(weights.read_bytes())
        actor = self.ray.remote(CameraShard).options(num_cpus=c.cpus_per_shard, max_restarts=-1, max_concurrency=4)
        cfg_json = self.config.model_copy(update={"cameras": []}).model_dump_json()
        self.shards = [_Shard(actor.remote(cfg_json, self.model_ref, str(weights))) for _ in range(c.shards)]
        for shard in self.shards:  # wait until every shard has loaded its detector
            self._poll(shard)
        log.info("%d camera shards on Ray at %s (nodes %s)", len(self.shards), c.ray,
                 sorted({s.node[:12] for s in self.shards}))
        self.thread.start()

    def add(self, cam: CameraConfig) -> None:
        """Start a camera on the shard with the fewest cameras."""
        with self.lock:
            if any(cam.id in s.cameras for s in self.shards):
                raise ValueError(f"camera {cam.id} exists")
            shard = min(self.shards, key=lambda s: len(s.cameras))
            shard.cameras[cam.id] = cam
        try:
            self.ray.get(shard.handle.add.remote(cam.model_dump_json(), *self._camera_model(cam)),
                         timeout=CALL_TIMEOUT_S)
        except Exception:
            with self.lock:
                shard.cameras.pop(cam.id, None)
            raise

    def prepare(self, cam: CameraConfig) -> None:
        """Check that the camera's own model loads here and hold its bytes for the shards.

        Raises:
            ModelLoadError: It does not load.
        """
        self._camera_model(cam)

    def _camera_model(self, cam: CameraConfig) -> tuple[Any, str]:
        """The object-store copy of the camera's own model and its file here (None, "": the service's model),
        each version of a model file read and checked once (a model that does not load here fails before a shard
        gets it)."""
        if cam.model is None:
            return None, ""
        weights, key = model_file(cam.model), weights_key(cam.model)
        with self.lock:
            ref = self.model_refs.get(key)
        if ref is None:
            try:
                m = self.config.model
                create_backend(config_for(weights, conf=m.conf, imgsz=m.imgsz, threads=1))
                data = weights.read_bytes()
            except (ModelLoadError, OSError) as exc:
                raise ModelLoadError(f"camera {cam.id}: its model: {exc}") from exc
            ref = self.ray.put(data)
            with self.lock:
                self.model_refs[key] = ref
        return ref, str(weights)

    def remove(self, camera_id: str) -> None:
        """Stop a camera wherever it runs."""
        with self.lock:
            shard = next((s for s in self.shards if camera_id in s.cameras), None)
            if shard is None:
                return
            shard.cameras.pop(camera_id)
            shard.views.pop(camera_id, None)
        self.ray.get(shard.handle.remove.remote(camera_id), timeout=CALL_TIMEOUT_S)

    def stop(self) -> None:
        """Stop the poll loop, stop every shard, apply their last ops and let the actors go."""
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(CALL_TIMEOUT_S)
        for shard in self.shards:
            try:
                self.ray.get(shard.handle.stop.remote(), timeout=CALL_TIMEOUT_S)
                self._poll(shard)
            except Exception as exc:
                log.error("shard on node %s did not stop cleanly: %s", shard.node[:12], exc)
            self.ray.kill(shard.handle)
        self.ray.shutdown()  # this process's connection only; the cluster stays up

    def views(self) -> list[CameraView]:
        """Every camera's counters as of the last poll (``connecting`` until its shard first reports it)."""
        with self.lock:
            return [s.views.get(cid) or CameraView(cid, "connecting", node=s.node) for s in self.shards
                    for cid in s.cameras]

    def view(self, camera_id: str) -> CameraView | None:
        """One camera's counters as of the last poll, or None for an unknown camera."""
        with self.lock:
            shard = next((s for s in self.shards if camera_id in s.cameras), None)
            if shard is None:
                return None
            return shard.views.get(camera_id) or CameraView(camera_id, "connecting", node=shard.node)

    def frame_jpeg(self, camera_id: str, overlay: bool) -> bytes | None:
        """A camera's last inferred frame, fetched from its shard.

        Raises:
            KeyError: No such camera.
        """
        with self.lock:
            shard = next((s for s in self.shards if camera_id in s.cameras), None)
        if shard is None:
            raise KeyError(camera_id)
        try:
            data: bytes | None = self.ray.get(shard.handle.frame_jpeg.remote(camera_id, overlay), timeout=5.0)
        except KeyError:
            raise
        except Exception as exc:  # a restarting shard: the tile shows "no frame yet"
            log.warning("frame of camera %s not fetched: %s", camera_id, exc)
            return None
        return data

    def set_shops(self, shops: list[Shop]) -> None:
        """Shops are not texted from Ray shards (their reminder loop would need the registry and the outbox of
        this process): cameras on Ray take the usual path."""
        if shops:
            log.warning("serve --ray: %d registered shops are not reminded by SMS from Ray shards", len(shops))

    def alive(self) -> dict[str, bool]:
        """Readiness: the poll loop runs and every shard answered its last poll."""
        return {"ray_poll": self.thread.is_alive(), "ray_shards": all(s.reachable for s in self.shards)}

    def _run(self) -> None:
        while not self.stop_event.wait(self.config.cluster.poll_s):
            for shard in self.shards:
                try:
                    self._poll(shard)
                except Exception as exc:  # the actor died or its node went away: Ray restarts it
                    self._unreachable(shard, exc)

    def _poll(self, shard: _Shard) -> None:
        res = self.ray.get(shard.handle.poll.remote(shard.ack), timeout=CALL_TIMEOUT_S)
        if shard.incarnation and res["incarnation"] != shard.incarnation:
            self._restarted(shard, res)
            return
        shard.incarnation, shard.node, shard.reachable = res["incarnation"], res["node"], True
        shard.ack = self.applier.apply(res["ops"], shard.ack, shard.notified)
        with self.lock:
            shard.views = {v.camera_id: replace(v, node=shard.node) for v in res["views"]
                           if v.camera_id in shard.cameras}

    def _restarted(self, shard: _Shard, res: dict[str, Any]) -> None:
        """A new actor in place of a dead one: give it the shard's cameras again."""
        log.warning("camera shard restarted on node %s; restarting its %d cameras", res["node"][:12],
                    len(shard.cameras))
        shard.incarnation, shard.node, shard.ack, shard.reachable = res["incarnation"], res["node"], 0, True
        shard.notified.clear()  # the new actor numbers its ops from 1
        self.applier.store.end_untracked(list(shard.cameras), UNTRACKED_NOTE)
        for cam in list(shard.cameras.values()):
            try:
                self.ray.get(shard.handle.add.remote(cam.model_dump_json(), *self._camera_model(cam)),
                             timeout=CALL_TIMEOUT_S)
            except Exception as exc:
                log.error("camera %s not restarted: %s", cam.id, exc)

    def _unreachable(self, shard: _Shard, exc: Exception) -> None:
        if shard.reachable:
            log.error("camera shard on node %s unreachable: %s", shard.node[:12], exc)
            for cam_id in shard.cameras:
                self.on_health(cam_id, "failed", f"shard unreachable: {type(exc).__name__}")
        shard.reachable = False
        with self.lock:
            for v in shard.views.values():
                v.health, v.detail = "failed", "shard unreachable"

