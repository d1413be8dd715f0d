"""The FastAPI application: ``create_app(config)``.

Routes (OpenAPI at ``/docs``), one router per resource in :mod:`service.routers`: cases (list with
filters and paging, detail, evidence download, state transitions), cameras (list with health, add,
change, remove at run time), voice (speakers, warning outcomes), the dispatch outbox (dead letters,
retry), Server-Sent Events (``/api/events``), ``/healthz``, ``/readyz`` and Prometheus ``/metrics``;
the dashboard (:mod:`service.dashboard`) adds the page and the routes only it needs. Request and
response models are in :mod:`service.models_api`. Every ``/api`` route needs a bearer token with a
role (viewer < operator < admin); errors have one shape: ``{"error": {"status": 404, "message": "..."}}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.routing import Match
from starlette.types import ASGIApp

from pipelines.case_spool import database_down
from pipelines.distributed import RayUnavailable
from service.dashboard import add_dashboard
from service.deps import ErrorBody, ErrorDetail
from service.routers import ROUTERS
from service.runtime import Runtime
from service.settings import ServiceConfig, resolve_tokens

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 413, 422, 503)}


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The one error shape: ``{"error": {"status": ..., "message": ...}}``."""
    body = ErrorBody(error=ErrorDetail(status=status, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


class BodySizeLimit(BaseHTTPMiddleware):
    """Refuses a request whose declared body is larger than ``max_bytes`` (or unreadable) with a 413; the
    paths in ``larger`` (file uploads such as a shop registry) have their own limits."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        self.larger = larger or {}

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        length = request.headers.get("content-length")
        limit = self.larger.get(request.url.path, self.max_bytes)
        if length is not None and (not length.isdigit() or int(length) > limit):
            return error_response(413, "request body too large")
        return await call_next(request)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the runtime (cameras, detector, dispatcher) with the app and stop it after."""
    config: ServiceConfig = app.state.config
    runtime = Runtime(config, app.state.tokens)
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


def allowed_methods(request: Request) -> str:
    """The methods of every API route whose path matches the request, for a 405's ``Allow`` header."""
    allowed = {m for r in iter_route_contexts(request.app.routes) if isinstance(r.original_route, APIRoute)
               and r.matches(request.scope)[0] is not Match.NONE for m in (r.methods or ())}
    return ", ".join(sorted(allowed))


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Any HTTP error, FastAPI's or Starlette's own (404 routes, 405, malformed bodies), in the one shape."""
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # Starlette names only the first matching route's methods
        headers["Allow"] = allowed_methods(request)
    return error_response(exc.status_code, str(exc.detail), headers)


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    """The case store cannot be reached (:func:`pipelines.case_spool.database_down`, the cameras' rule): a 503
    saying so, not a 500 (the cameras' writes wait meanwhile). Any other database error stays a 500."""
    if not database_down(exc):
        raise exc
    log.error("%s %s: case store unreachable: %s", request.method, request.url.path, str(exc).splitlines()[0])
    return error_response(503, "case store unavailable; try again shortly", {"Retry-After": "5"})


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request that breaks the schema: a 422 naming the first offending field."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(422, f"{where}: {first.get('msg')}")


def create_app(config: ServiceConfig, environ: dict[str, str] | None = None,
               config_path: Path | None = None) -> FastAPI:
    """Build the service; cameras, detector and dispatcher start with the app's lifespan.

    With ``config_path``, cameras added, changed or removed through the API (and the dashboard's
    zone editor) are written back into that YAML file, comments kept.

    Raises:
        ConfigError: No usable API token is configured.
    """
    tokens = resolve_tokens(config.auth, environ)
    app = FastAPI(title="streetwatch", version="0.1.0", lifespan=lifespan,
                  description="Street-violation cases from city cameras.", responses=ERROR_RESPONSES)
    app.state.config = config
    app.state.tokens = tokens
    app.state.config_path = config_path
    if config.server.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.server.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(BodySizeLimit, max_bytes=config.server.max_body_bytes,
                       larger={"/api/shop-imports": config.server.max_import_bytes,
                               "/api/muck-register-imports": config.server.max_import_bytes})
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(RequestValidationError)(validation_error)
    app.exception_handler(DBAPIError)(database_error)
    for router in ROUTERS:
        app.include_router(router)
    add_dashboard(app)
    return app
