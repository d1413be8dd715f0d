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
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from pipelines.config import CameraConfig
from pipelines.distributed import RayUnavailable
from pipelines.sinks.store import Case, TransitionError
from service.bus import sse_format
from service.dashboard import add_dashboard
from service.deps import Admin, ErrorBody, Operator, RuntimeDep, Viewer
from service.runtime import Runtime
from service.settings import ServiceConfig, resolve_tokens, write_camera_back

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- API models


class AlternativeOut(BaseModel):
    """Another class the same object was taken for."""

    violation: str
    confidence: float


class PerceptionOut(BaseModel):
    """What the perception saw of a case."""

    paths: list[str] = Field(description="How it was found: detector (the learned class), context (people with "
                             "stall furniture).")
    context_objects: list[str] = Field(description="Context labels that made a context stall.")
    alternatives: list[AlternativeOut] = Field(description="Other classes the same object was taken for.")
    load_state: Literal["covered", "uncovered", "empty", "unknown"] | None = Field(
        description="Trucks: the load state decided over the truck's frames.")
    load_probability: dict[str, float] = Field(description="Trucks: mean probability of each load state.")
    load_samples: int = Field(description="Trucks: frames the load state rests on.")


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
    review: str | None = Field(default=None, description="An operator's verdict: confirmed or rejected.")
    review_reason: str = ""
    details: PerceptionOut
    evidence: dict[str, str] = Field(description="Evidence kind -> download URL")

    @classmethod
    def of(cls, c: Case) -> CaseOut:
        return cls(id=c.id, violation=c.violation, camera=c.camera, zone=c.zone, source=c.source, state=c.state,
                   active=c.active, start_s=c.start_s, confirmed_s=c.confirmed_s, end_s=c.end_s,
                   confidence=c.confidence, box=c.box, address=c.address, gps=c.gps, created_at=c.created_at,
                   review=c.review, review_reason=c.review_reason,
                   details=PerceptionOut.model_validate(c.details.as_dict()),
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


class CameraIn(CameraConfig):
    """A camera added or changed through the API: as in the YAML file, and it must have a source."""

    source: str = Field(min_length=1, description="rtsp://, http(s):// URL or a file path.")


class TransitionIn(BaseModel):
    """A state change requested by an operator."""

    to: Literal["dispatched", "handled", "closed", "rejected"]
    note: str = Field(default="", max_length=2000)


# ---------------------------------------------------------------- app factory


def create_app(config: ServiceConfig, environ: dict[str, str] | None = None,
               config_path: Path | None = None) -> FastAPI:
    """Build the service; cameras, detector and dispatcher start with the app's lifespan.

    With ``config_path``, cameras added, changed or removed through the API (and the dashboard's
    zone editor) are written back into that YAML file, comments kept.

    Raises:
        ConfigError: No usable API token is configured.
    """
    tokens = resolve_tokens(config.auth, environ)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(config, tokens)
        app.state.runtime = runtime
        try:
            runtime.start()
        except RayUnavailable as exc:  # serve --ray with no cluster: one clear line, then exit
            log.error("%s", exc)
            raise
        try:
            yield
        finally:
            await asyncio.to_thread(runtime.stop)

    app = FastAPI(title="streetwatch", version="0.1.0", lifespan=lifespan,
                  description="Street-violation cases from city cameras.",
                  responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody},
                             413: {"model": ErrorBody}, 422: {"model": ErrorBody}})
    if config.server.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.server.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > config.server.max_body_bytes):
            return JSONResponse({"error": {"status": 413, "message": "request body too large"}}, status_code=413)
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)  # also Starlette's own: 404 routes, 405, malformed bodies
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            allowed = {m for r in app.routes if isinstance(r, APIRoute)
                       and r.matches(request.scope)[0] is not Match.NONE for m in (r.methods or ())}
            headers["Allow"] = ", ".join(sorted(allowed))
        return JSONResponse({"error": {"status": exc.status_code, "message": str(exc.detail)}},
                            status_code=exc.status_code, headers=headers)

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
        checks = rt.ready_checks()
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
                   offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> CasePage:
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
    def evidence(case_id: str, kind: Literal["snapshot", "clip", "frame"], rt: RuntimeDep, _: Viewer) -> FileResponse:
        """The snapshot (JPEG, boxed), clip (MP4) or clean frame (JPEG) of a case, found by case id only."""
        c = case_or_404(rt, case_id)
        entry = c.evidence.get(kind)
        if entry is None:
            raise HTTPException(404, f"case has no {kind} (yet)")
        path = (rt.evidence_root / entry["path"]).resolve()
        if not path.is_relative_to(rt.evidence_root) or not path.is_file():
            raise HTTPException(404, f"{kind} file is missing")
        return FileResponse(path, media_type="video/mp4" if kind == "clip" else "image/jpeg",
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

    def save(camera_id: str, cam: CameraConfig | None) -> bool | None:
        """Write an API change of a camera back to the config file; ``None`` when there is no file."""
        if config_path is None:
            return None
        try:
            write_camera_back(config_path, camera_id, cam.model_dump(mode="json", exclude_defaults=True)
                              if cam is not None else None)
            return True
        except Exception as exc:  # the running change stands; the operator sees config_saved: false
            log.error("camera %s changed but not written back to %s: %s", camera_id, config_path, exc)
            return False

    @app.get("/api/cameras", tags=["cameras"])
    def cameras(rt: RuntimeDep, _: Viewer) -> list[dict[str, Any]]:
        """Cameras with health and counters."""
        return [rt.camera_status(cid) for cid in list(rt.cameras)]

    @app.post("/api/cameras", status_code=201, tags=["cameras"], responses={409: {"model": ErrorBody}})
    def add_camera(cam: CameraIn, rt: RuntimeDep, _: Admin) -> dict[str, Any]:
        """Add a camera at run time (validated like the YAML config)."""
        try:
            rt.add_camera(cam)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from exc
        return {**rt.camera_status(cam.id), "config_saved": save(cam.id, cam)}

    @app.put("/api/cameras/{camera_id}", tags=["cameras"], responses={404: {"model": ErrorBody}})
    def change_camera(camera_id: str, cam: CameraIn, rt: RuntimeDep, _: Admin) -> dict[str, Any]:
        """Replace a camera's settings (the reader restarts; its cases stay)."""
        if camera_id != cam.id:
            raise HTTPException(422, "id: the body's id must match the path")
        if camera_id not in rt.cameras:
            raise HTTPException(404, "no such camera")
        rt.remove_camera(camera_id)
        rt.add_camera(cam)
        return {**rt.camera_status(cam.id), "config_saved": save(cam.id, cam)}

    @app.delete("/api/cameras/{camera_id}", status_code=204, tags=["cameras"], responses={404: {"model": ErrorBody}})
    def delete_camera(camera_id: str, rt: RuntimeDep, _: Admin) -> Response:
        """Stop and remove a camera (its cases stay)."""
        if camera_id not in rt.cameras:
            raise HTTPException(404, "no such camera")
        rt.remove_camera(camera_id)
        save(camera_id, None)
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
    def retry(row_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)], rt: RuntimeDep, _: Operator) -> dict[str, Any]:
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

    add_dashboard(app)
    return app

