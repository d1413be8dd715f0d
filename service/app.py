"""The FastAPI application: ``create_app(config)``.

Routes (OpenAPI at ``/docs``): cases (list with filters and paging, detail,
evidence download, state transitions), cameras (list with health, add, change,
remove at run time), the dispatch outbox (dead letters, retry), Server-Sent
Events (``/api/events``), ``/healthz``, ``/readyz`` and Prometheus ``/metrics``.
Every ``/api`` route needs a bearer token with a role (viewer < operator < admin);
errors have one shape: ``{"error": {"status": 404, "message": "..."}}``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from detector.backends.base import config_for, create_backend
from detector.events import ViolationEvent
from detector.warnings import warning_stats
from pipelines.config import CameraConfig
from pipelines.runner import CameraPipeline
from pipelines.sinks.evidence import EvidenceRecorder
from pipelines.sinks.store import Case, CaseContext, CaseStore, TransitionError
from service.bus import EventBus, sse_format
from service.runtime import CameraWorker, Dispatcher, InferenceEngine
from service.settings import ROLE_RANK, ServiceConfig, resolve_tokens
from service.voice import VoiceService

log = logging.getLogger(__name__)


class Runtime:
    """Everything the running service holds: store, detector, cameras, dispatcher, event bus."""

    def __init__(self, config: ServiceConfig, tokens: dict[str, tuple[str, str]]) -> None:
        self.config = config
        self.tokens = tokens
        self.bus = EventBus()
        self.store = CaseStore(config.storage.db)
        self.evidence_root = config.storage.evidence.resolve()
        self.evidence_root.mkdir(parents=True, exist_ok=True)
        m = config.model
        self.backend = create_backend(config_for(m.path, conf=m.conf, threads=m.threads))
        self.engine = InferenceEngine(self.backend, m.batch)
        self.dispatcher = Dispatcher(self.store, config.dispatch.webhooks, config.dispatch.public_url,
                                     on_result=lambda r: self.bus.publish("dispatch", r))
        self.voice = VoiceService(config.voice, self.bus.publish)
        self.cameras: dict[str, CameraConfig] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.watchdog = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self.started_at = time.time()

    def start(self) -> None:
        """Start the engine, dispatcher, watchdog and every configured camera."""
        self.engine.start()
        self.dispatcher.start()
        self.watchdog.start()
        for cam in self.config.cameras:
            self.add_camera(cam)

    def stop(self) -> None:
        """Stop cameras first (their last frames still get inferred), then the rest."""
        self.stop_event.set()
        with self.lock:
            self.cameras.clear()
            with self.engine.lock:
                workers = list(self.engine.workers.values())
                self.engine.workers.clear()
        for w in workers:  # signal every reader at once, then wait: shutdown time does not grow with cameras
            w.stop_event.set()
        for w in workers:
            w.stop()
            w.pipeline.finish()
        self.engine.stop()
        self.dispatcher.stop()
        self.voice.close()
        self.store.close()

    def _watch(self) -> None:
        while not self.stop_event.wait(1.0):
            now = time.monotonic()
            for w in list(self.engine.workers.values()):
                w.check_stall(now)

    def _on_event(self, camera: CameraConfig) -> Callable[[ViolationEvent, str], None]:
        def publish(ev: ViolationEvent, case_id: str) -> None:
            worker = self.engine.workers.get(camera.id)
            self.bus.publish("violation", {
                "ts_wall": round(worker.clock_epoch + ev.ts, 3) if worker is not None else None,
                "state": ev.state.value, "case_id": case_id, "camera": ev.camera, "zone": ev.zone,
                "violation": ev.violation, "start_s": round(ev.start_s, 3), "ts": round(ev.ts, 3),
                "confidence": round(ev.confidence, 4), "box": [round(v, 1) for v in ev.box],
                "address": camera.location.address, "emitted_at": time.time()})
        return publish

    def add_camera(self, cam: CameraConfig) -> None:
        """Start reading a camera (its id must be new)."""
        with self.lock:
            if cam.id in self.cameras:
                raise ValueError(f"camera {cam.id} exists")
            settings = (cam.rules or self.config.rules).settings()
            evidence = EvidenceRecorder(self.evidence_root / cam.id, long_s=max(settings.dwell_s.values()) + 30,
                                        fast_fps=4.0, max_width=960)
            context = CaseContext(address=cam.location.address, gps=cam.location.gps,
                                  targets=tuple(w.name for w in self.config.dispatch.webhooks),
                                  payload_extra={"camera_name": cam.name,
                                                 "description": f"{cam.name or cam.id}: automatic detection"})
            pipeline = CameraPipeline(cam, settings, self.backend.names, self.store, cam.source, evidence,
                                      self.evidence_root, None, self._on_event(cam), context,
                                      on_warning=functools.partial(self.voice.warn, cam))
            worker = CameraWorker(cam.id, cam.source, cam.decode, pipeline, self.config.ingest, self._on_health,
                                  self.engine.wakeup)
            self.cameras[cam.id] = cam
            with self.engine.lock:
                self.engine.workers[cam.id] = worker
        worker.start()

    def remove_camera(self, camera_id: str) -> None:
        """Stop a camera, end its active violations and keep its cases."""
        with self.lock:
            self.cameras.pop(camera_id, None)
            with self.engine.lock:
                worker = self.engine.workers.pop(camera_id, None)
        if worker is not None:
            worker.stop()
            worker.pipeline.finish()

    def _on_health(self, camera: str, state: str, detail: str) -> None:
        log.info("camera %s: %s %s", camera, state, detail)
        self.bus.publish("camera", {"camera": camera, "state": state, "detail": detail, "at": time.time()})

    def warning_stats(self) -> dict[str, dict[str, object]]:
        """Warnings per camera/zone/violation: played, share resolved by warning, median time to clear."""
        out: dict[str, dict[str, object]] = {}
        for cid, w in list(self.engine.workers.items()):
            for k, v in warning_stats(list(w.pipeline.warning_actions)).items():
                out[f"{cid}/{k}"] = v
        return out

    def camera_status(self, camera_id: str) -> dict[str, Any]:
        """Health and counters of a camera."""
        w = self.engine.workers.get(camera_id)
        cam = self.cameras.get(camera_id)
        if w is None or cam is None:
            raise KeyError(camera_id)
        s = w.stats
        return {"id": cam.id, "name": cam.name, "source": cam.source, "health": w.health, "detail": w.detail,
                "frames_decoded": s.frames_decoded, "frames_inferred": s.frames_inferred,
                "frames_dropped": s.frames_dropped, "reconnects": s.reconnects, "queue": len(w.queue),
                "events": s.events, "location": cam.location.model_dump()}


# ---------------------------------------------------------------- API models


class ErrorBody(BaseModel):
    """The one error shape."""

    status: int
    message: str


class CaseOut(BaseModel):
    """A case as the API returns it."""

    id: str
    violation: str
    camera: str
    zone: str
    source: str
    state: str
    active: bool
    start_s: float
    confirmed_s: float
    end_s: float
    confidence: float
    box: list[float]
    address: str
    gps: tuple[float, float] | None
    created_at: str
    evidence: dict[str, str] = Field(description="Evidence kind -> download URL")

    @classmethod
    def of(cls, c: Case) -> CaseOut:
        return cls(id=c.id, violation=c.violation, camera=c.camera, zone=c.zone, source=c.source, state=c.state,
                   active=c.active, start_s=c.start_s, confirmed_s=c.confirmed_s, end_s=c.end_s,
                   confidence=c.confidence, box=c.box, address=c.address, gps=c.gps, created_at=c.created_at,
                   evidence={k: f"/api/cases/{c.id}/evidence/{k}" for k in c.evidence})


class CasePage(BaseModel):
    """One page of cases."""

    total: int
    limit: int
    offset: int
    items: list[CaseOut]


class CaseDetail(CaseOut):
    """A case with its history and dispatch state."""

    history: list[dict[str, Any]]
    dispatch: list[dict[str, Any]]


class TransitionIn(BaseModel):
    """A state change requested by an operator."""

    to: Literal["dispatched", "handled", "closed", "rejected"]
    note: str = Field(default="", max_length=2000)


# ---------------------------------------------------------------- dependencies


def runtime_of(request: Request) -> Runtime:
    """The running service of a request."""
    rt: Runtime = request.app.state.runtime
    return rt


def require(role: str) -> Callable[[Request], str]:
    """A dependency that checks the bearer token has at least ``role``; returns the token's name."""
    def check(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        tokens: dict[str, tuple[str, str]] = request.app.state.tokens
        who = tokens.get(hashlib.sha256(token.strip().encode()).hexdigest())
        if who is None:
            raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        if ROLE_RANK[who[1]] < ROLE_RANK[role]:
            raise HTTPException(403, f"needs the {role} role")
        return who[0]
    return check


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
Viewer = Annotated[str, Depends(require("viewer"))]
Operator = Annotated[str, Depends(require("operator"))]
Admin = Annotated[str, Depends(require("admin"))]


# ---------------------------------------------------------------- app factory


def create_app(config: ServiceConfig, environ: dict[str, str] | None = None) -> FastAPI:
    """Build the service; cameras, detector and dispatcher start with the app's lifespan.

    Raises:
        ConfigError: No usable API token is configured.
    """
    tokens = resolve_tokens(config.auth, environ)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(config, tokens)
        app.state.runtime = runtime
        runtime.start()
        try:
            yield
        finally:
            await asyncio.to_thread(runtime.stop)

    app = FastAPI(title="streetwatch", version="0.1.0", lifespan=lifespan,
                  description="Street-violation cases from city cameras.",
                  responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})
    if config.server.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.server.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > config.server.max_body_bytes):
            return JSONResponse({"error": {"status": 413, "message": "request body too large"}}, status_code=413)
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": {"status": exc.status_code, "message": str(exc.detail)}},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": {"status": 422, "message": f"{where}: {first.get('msg')}"}}, status_code=422)

    app.state.tokens = tokens

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz(rt: RuntimeDep) -> JSONResponse:
        """Readiness: detector loaded, threads running, database answering."""
        checks = {"engine": rt.engine.thread.is_alive(), "dispatcher": rt.dispatcher.thread.is_alive()}
        try:
            rt.store.counts()
            checks["database"] = True
        except Exception:
            checks["database"] = False
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def metrics(rt: RuntimeDep, _: Viewer) -> PlainTextResponse:
        """Prometheus metrics (per camera, cases, outbox)."""
        from service.metrics import render

        return PlainTextResponse(render(rt), media_type="text/plain; version=0.0.4")

    @app.get("/api/cases", response_model=CasePage, tags=["cases"])
    def list_cases(rt: RuntimeDep, _: Viewer, camera: str | None = None, violation: str | None = None,
                   state: str | None = None,
                   since: Annotated[str | None, Query(description="ISO time, inclusive")] = None,
                   until: Annotated[str | None, Query(description="ISO time, exclusive")] = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50,
                   offset: Annotated[int, Query(ge=0)] = 0) -> CasePage:
        """Cases, newest first, with filters and paging."""
        total, items = rt.store.query(camera, violation, state, since, until, limit, offset)
        return CasePage(total=total, limit=limit, offset=offset, items=[CaseOut.of(c) for c in items])

    def case_or_404(rt: Runtime, case_id: str) -> Case:
        case = rt.store.get(case_id)
        if case is None:
            raise HTTPException(404, "no such case")
        return case

    @app.get("/api/cases/{case_id}", response_model=CaseDetail, tags=["cases"],
             responses={404: {"model": ErrorBody}})
    def get_case(case_id: str, rt: RuntimeDep, _: Viewer) -> CaseDetail:
        """One case with its history and dispatch state."""
        c = case_or_404(rt, case_id)
        return CaseDetail(**CaseOut.of(c).model_dump(), history=rt.store.history(case_id),
                          dispatch=rt.store.outbox(case_id=case_id))

    @app.get("/api/cases/{case_id}/evidence/{kind}", tags=["cases"], response_class=FileResponse,
             responses={404: {"model": ErrorBody}})
    def evidence(case_id: str, kind: Literal["snapshot", "clip"], rt: RuntimeDep, _: Viewer) -> FileResponse:
        """The snapshot (JPEG) or clip (MP4) of a case, found by case id only."""
        c = case_or_404(rt, case_id)
        entry = c.evidence.get(kind)
        if entry is None:
            raise HTTPException(404, f"case has no {kind} (yet)")
        path = (rt.evidence_root / entry["path"]).resolve()
        if not path.is_relative_to(rt.evidence_root) or not path.is_file():
            raise HTTPException(404, f"{kind} file is missing")
        return FileResponse(path, media_type="image/jpeg" if kind == "snapshot" else "video/mp4",
                            filename=f"{case_id}{path.suffix}")

    @app.post("/api/cases/{case_id}/transition", response_model=CaseDetail, tags=["cases"],
              responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
    def transition(case_id: str, body: TransitionIn, rt: RuntimeDep, who: Operator) -> CaseDetail:
        """Move a case along registered → dispatched → handled → closed, or reject it."""
        case_or_404(rt, case_id)
        try:
            rt.store.transition(case_id, body.to, who, body.note)
        except TransitionError as exc:
            raise HTTPException(409, str(exc)) from exc
        rt.bus.publish("case", {"case_id": case_id, "state": body.to, "who": who})
        return get_case(case_id, rt, who)

    @app.get("/api/cameras", tags=["cameras"])
    def cameras(rt: RuntimeDep, _: Viewer) -> list[dict[str, Any]]:
        """Cameras with health and counters."""
        return [rt.camera_status(cid) for cid in list(rt.cameras)]

    @app.post("/api/cameras", status_code=201, tags=["cameras"], responses={409: {"model": ErrorBody}})
    def add_camera(cam: CameraConfig, rt: RuntimeDep, _: Admin) -> dict[str, Any]:
        """Add a camera at run time (validated like the YAML config)."""
        if not cam.source:
            raise HTTPException(422, "source: a camera needs a source")
        try:
            rt.add_camera(cam)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from exc
        return rt.camera_status(cam.id)

    @app.put("/api/cameras/{camera_id}", tags=["cameras"], responses={404: {"model": ErrorBody}})
    def change_camera(camera_id: str, cam: CameraConfig, rt: RuntimeDep, _: Admin) -> dict[str, Any]:
        """Replace a camera's settings (the reader restarts; its cases stay)."""
        if camera_id != cam.id:
            raise HTTPException(422, "id: the body's id must match the path")
        if camera_id not in rt.cameras:
            raise HTTPException(404, "no such camera")
        rt.remove_camera(camera_id)
        rt.add_camera(cam)
        return rt.camera_status(cam.id)

    @app.delete("/api/cameras/{camera_id}", status_code=204, tags=["cameras"], responses={404: {"model": ErrorBody}})
    def delete_camera(camera_id: str, rt: RuntimeDep, _: Admin) -> Response:
        """Stop and remove a camera (its cases stay)."""
        if camera_id not in rt.cameras:
            raise HTTPException(404, "no such camera")
        rt.remove_camera(camera_id)
        return Response(status_code=204)

    @app.get("/api/speakers", tags=["voice"])
    def speakers(rt: RuntimeDep, _: Viewer) -> list[dict[str, object]]:
        """Loudspeakers with health and counters."""
        return rt.voice.status()

    @app.get("/api/warnings", tags=["voice"])
    def warnings(rt: RuntimeDep, _: Viewer) -> dict[str, dict[str, object]]:
        """Per camera/zone/violation: warnings played, share resolved by warning, median time to clear."""
        return rt.warning_stats()

    @app.get("/api/outbox", tags=["dispatch"])
    def outbox(rt: RuntimeDep, _: Operator,
               state: Literal["pending", "delivered", "dead"] | None = None) -> list[dict[str, Any]]:
        """Dispatch queue to the city platform (``state=dead`` lists dead letters)."""
        return rt.store.outbox(state=state)

    @app.post("/api/outbox/{row_id}/retry", tags=["dispatch"], responses={404: {"model": ErrorBody}})
    def retry(row_id: int, rt: RuntimeDep, _: Operator) -> dict[str, Any]:
        """Queue a dead-lettered delivery again."""
        if not rt.store.retry_dead(row_id):
            raise HTTPException(404, "no dead-lettered row with that id")
        rt.dispatcher.wakeup.set()
        return {"id": row_id, "state": "pending"}

    @app.get("/api/events", tags=["events"], response_class=StreamingResponse)
    async def events(request: Request, rt: RuntimeDep, _: Viewer) -> StreamingResponse:
        """Server-Sent Events: ``violation`` (start/update/end), ``camera`` (health), ``case``, ``dispatch``."""
        sub = rt.bus.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield ": connected\n\n"
                idle = 0
                while not rt.stop_event.is_set():
                    try:
                        ev = await asyncio.wait_for(sub.queue.get(), timeout=1)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        idle += 1
                        if idle % 15 == 0:
                            yield ": keep-alive\n\n"
                        continue
                    yield sse_format(ev)
            finally:
                rt.bus.unsubscribe(sub)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app

