"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from service.deps import RuntimeDep, Viewer
from service.metrics import render
from service.models_api import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "Not ready"}})
def readyz(rt: RuntimeDep, response: Response) -> Readiness:
    """Readiness: detector loaded, threads running, database answering."""
    checks = rt.ready_checks()
    try:
        rt.store.counts()
        checks["database"] = True
    except Exception:
        checks["database"] = False
    ok = all(checks.values())
    response.status_code = 200 if ok else 503
    return Readiness(ready=ok, checks=checks, case_writes_waiting=rt.spool.waiting())


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(rt: RuntimeDep, _: Viewer) -> PlainTextResponse:
    """Prometheus metrics (per camera, cases, outbox)."""
    return PlainTextResponse(render(rt), media_type="text/plain; version=0.0.4")
