"""The muck-transport register (licensed vehicles): list, export, import; and the trucks' record per company.

Viewers read; an admin imports a new list, which replaces the old one at once for every camera reading
plates and is written to the service's ``muck_register`` file (atomically, the previous one kept as ``.bak``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import unquote

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from pipelines.muck_register import MuckRegister, Vehicle, company_stats, parse_register, register_csv
from pipelines.tables import TableError
from service.deps import Admin, ErrorBody, RuntimeDep, Viewer
from service.routers.shops import XLSX

log = logging.getLogger(__name__)

router = APIRouter(tags=["muck-register"])


class RegisterImport(BaseModel):
    """What an import did: the vehicles now registered, rows set aside, and whether the file was written."""

    vehicles: int
    errors: list[str] = Field(description="One 'file:line: field: reason' per row set aside.")
    saved: bool | None = Field(description="Written to the service's muck_register file; null without one.")


class CompanyStat(BaseModel):
    """One transport company's trucks as the cameras saw them."""

    truck_cases: int = Field(description="Cases whose vehicle's plate was read.")
    uncovered_loads: int
    unlicensed: int = Field(description="Cases whose truck was not licensed then (expired, out of hours, "
                            "not registered).")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8-sig")
    if path.exists():
        path.with_name(path.name + ".bak").write_bytes(path.read_bytes())
    os.replace(tmp, path)


@router.get("/api/muck-register", response_model=list[Vehicle])
def vehicles(rt: RuntimeDep, _: Viewer) -> list[Vehicle]:
    """The licensed vehicles, by plate."""
    return sorted(rt.register.vehicles.values(), key=lambda v: v.plate) if rt.register is not None else []


@router.get("/api/muck-register.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def export(rt: RuntimeDep, _: Viewer) -> Response:
    """The register as CSV (importable again)."""
    body = register_csv(sorted(rt.register.vehicles.values(), key=lambda v: v.plate) if rt.register else [])
    return Response(body.encode("utf-8-sig"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=muck-register.csv"})


@router.post("/api/muck-register-imports", response_model=RegisterImport, responses={400: {"model": ErrorBody}})
async def import_register(request: Request, rt: RuntimeDep, who: Admin) -> RegisterImport:
    """Replace the register with a CSV (``text/csv``) or Excel (``.xlsx``) list sent as the body; bad rows are
    set aside with one ``file:line: field: reason`` each (a file without a valid row changes nothing)."""
    default = "upload.xlsx" if request.headers.get("content-type") == XLSX else "upload.csv"
    name = unquote(request.headers.get("x-filename", default))[:200]
    try:
        found, errors = parse_register(await request.body(), name)
    except TableError as exc:
        raise HTTPException(400, str(exc)) from exc
    if not found:
        raise HTTPException(400, f"{name}: no valid vehicle; the register is unchanged ({len(errors)} rows set aside)")
    if rt.register is None:
        rt.register = MuckRegister(found)  # for the API only: cameras started without a register keep none
    else:
        rt.register.replace(found)
    saved = None
    if rt.config.muck_register is not None:
        try:
            _write(rt.config.muck_register, register_csv(found))
            saved = True
        except OSError as exc:  # the running register stands; the operator sees saved: false
            log.error("muck-transport register imported but not written to %s: %s", rt.config.muck_register, exc)
            saved = False
    log.info("muck-transport register import by %s: %d vehicles, %d rows set aside", who, len(found), len(errors))
    return RegisterImport(vehicles=len(found), errors=errors, saved=saved)


@router.get("/api/muck-companies", response_model=dict[str, CompanyStat])
def companies(rt: RuntimeDep, _: Viewer) -> dict[str, CompanyStat]:
    """Per transport company (``unregistered``: plates not in the register): truck cases, uncovered loads and
    unlicensed ones."""
    cases = [c.as_dict() for c in rt.store.cases()]
    return {k: CompanyStat.model_validate(v) for k, v in company_stats(cases).items()}
