"""Request dependencies of the API and the dashboard: the running service, bearer tokens with roles."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from pydantic import BaseModel

from service.runtime import Runtime
from service.settings import ROLE_RANK


class ErrorDetail(BaseModel):
    """What went wrong."""

    status: int
    message: str


class ErrorBody(BaseModel):
    """The one error shape: ``{"error": {"status": 404, "message": "no such case"}}``."""

    error: ErrorDetail


def runtime_of(request: Request) -> Runtime:
    """The running service of a request."""
    rt: Runtime = request.app.state.runtime
    return rt


def config_path_of(request: Request) -> Path | None:
    """The YAML file the service was started from (API changes of cameras are written back to it), if any."""
    path: Path | None = request.app.state.config_path
    return path


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
        request.state.role = who[1]  # routes that show more to higher roles read it (see at_least)
        return who[0]
    return check


def at_least(request: Request, role: str) -> bool:
    """Whether the request's (already checked) token has at least ``role``."""
    return ROLE_RANK.get(getattr(request.state, "role", "viewer"), 0) >= ROLE_RANK[role]


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
ConfigPathDep = Annotated[Path | None, Depends(config_path_of)]
Viewer = Annotated[str, Depends(require("viewer"))]
Operator = Annotated[str, Depends(require("operator"))]
Admin = Annotated[str, Depends(require("admin"))]
