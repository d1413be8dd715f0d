"""The operator dashboard: the page at ``/`` and the API routes only it needs.

The page is plain HTML with one small script and one stylesheet (``service/static``),
served by the service itself: no CDN, no build step. It signs in with the same bearer
tokens as the API (kept in the browser tab's session storage) and uses:

- ``GET /api/cameras/{id}/frame.jpg``: the last inferred frame, with zones and current
  detections drawn (``overlay=false``: the clean frame, for the zone editor);
- ``GET /api/cameras/{id}/config``: a camera's settings as the YAML schema has them;
- ``POST /api/cases/{id}/review``: an operator's verdict (confirmed / rejected with a reason);
- ``GET /api/stats``: cases per day by violation and camera, closure rate, warning outcomes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from pipelines.config import CameraConfig
from pipelines.privacy import MaskingError
from service.deps import ErrorBody, Operator, RuntimeDep, Viewer, at_least
from service.models_api import DashboardStats, ReviewIn, ReviewOut, WarningStat, WarningSummary
from service.runtime import Runtime

STATIC = Path(__file__).resolve().parent / "static"


def stats(rt: Runtime, days: int) -> DashboardStats:
    """Cases per day by violation and by camera, states, closure rate and warning outcomes."""
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days - 1)).date()
    rows = rt.store.daily(since.isoformat())
    day_list = [(since + dt.timedelta(days=i)).isoformat() for i in range(days)]
    by_violation: dict[str, dict[str, int]] = {d: {} for d in day_list}
    by_camera: dict[str, int] = {}
    by_state: dict[str, int] = {}
    for r in rows:
        per_day = by_violation.setdefault(r["day"], {})
        per_day[r["violation"]] = per_day.get(r["violation"], 0) + r["count"]
        by_camera[r["camera"]] = by_camera.get(r["camera"], 0) + r["count"]
        by_state[r["state"]] = by_state.get(r["state"], 0) + r["count"]
    total = sum(by_state.values())
    closed = by_state.get("closed", 0)
    warn = WarningStat.table(rt.warning_stats())
    played, resolved, no_effect = (sum(w.played for w in warn.values()), sum(w.resolved for w in warn.values()),
                                   sum(w.no_effect for w in warn.values()))
    decided = resolved + no_effect
    warnings = WarningSummary(played=played, resolved_by_warning=resolved, no_effect=no_effect,
                              resolved_rate=round(resolved / decided, 4) if decided else None, by_place=warn)
    return DashboardStats(days=day_list, by_violation=by_violation, by_camera=by_camera, by_state=by_state,
                          total=total, closed=closed, closure_rate=round(closed / total, 4) if total else None,
                          warnings=warnings)


def add_dashboard(app: FastAPI) -> None:
    """Mount the page, its static files and its API routes on ``app``."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def index() -> FileResponse:
        """The dashboard page (it signs in with an API token)."""
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @router.get("/api/cameras/{camera_id}/frame.jpg", tags=["dashboard"], response_class=Response,
                responses={404: {"model": ErrorBody}, 204: {"description": "No frame yet"},
                           503: {"model": ErrorBody}})
    def camera_frame(camera_id: str, rt: RuntimeDep, request: Request, _: Viewer, overlay: bool = True) -> Response:
        """The camera's last inferred frame (JPEG), with zones and current detections unless ``overlay=false``.
        Viewers get it with faces and plates masked (``privacy.mask_shared``), operators as it is."""
        try:
            jpg = rt.fleet.frame_jpeg(camera_id, overlay)
        except KeyError as exc:
            if rt.camera_config(camera_id) is not None:  # configured, did not start: no frame
                return Response(status_code=204)
            raise HTTPException(404, "no such camera") from exc
        if jpg is None:
            return Response(status_code=204)
        if rt.config.privacy.mask_shared and not at_least(request, "operator"):
            try:
                jpg = rt.masked_frame(camera_id, overlay, jpg)
            except MaskingError as exc:
                raise HTTPException(503, f"masked frame not available: {exc}") from exc
        return Response(jpg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @router.get("/api/cameras/{camera_id}/config", tags=["dashboard"], response_model=CameraConfig,
                responses={404: {"model": ErrorBody}})
    def camera_config(camera_id: str, rt: RuntimeDep, _: Viewer) -> CameraConfig:
        """A camera's settings, in the schema of the YAML config and of ``PUT /api/cameras/{id}``."""
        cam = rt.camera_config(camera_id)
        if cam is None:
            raise HTTPException(404, "no such camera")
        return cam

    @router.post("/api/cases/{case_id}/review", tags=["cases"], response_model=ReviewOut,
                 responses={404: {"model": ErrorBody}})
    def review(case_id: str, body: ReviewIn, rt: RuntimeDep, who: Operator) -> ReviewOut:
        """Confirm a case, or reject it with a reason; reviews become training data (``datasets from-reviews``)."""
        if body.verdict == "rejected" and not body.reason.strip():
            raise HTTPException(422, "reason: a rejection needs a reason")
        try:
            case = rt.store.review(case_id, body.verdict, who, body.reason.strip())
        except KeyError as exc:
            raise HTTPException(404, "no such case") from exc
        rt.bus.publish("case", {"case_id": case_id, "state": case.state, "review": body.verdict, "who": who})
        return ReviewOut.model_validate({"id": case.id, "state": case.state, "review": case.review,
                                         "review_reason": case.review_reason, "reviewed_by": case.reviewed_by})

    @router.get("/api/stats", tags=["dashboard"], response_model=DashboardStats)
    def get_stats(rt: RuntimeDep, _: Viewer, days: Annotated[int, Query(ge=1, le=366)] = 14) -> DashboardStats:
        """Cases per day by violation and camera, states and closure rate, warnings resolved by warning."""
        return stats(rt, days)

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
