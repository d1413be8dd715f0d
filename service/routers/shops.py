"""Shops ("门前三包"): the registry (list, get, create, update, delete, import, export), their reminders and
records, the SMS gateways, and the gateways' delivery reports.

Roles as for cameras: viewers read (phones masked), admins change; the export (full phones) needs an
operator. A delivery report comes from the SMS gateway, which cannot send a bearer token: its URL carries
a per-reminder secret instead.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import unquote

from fastapi import APIRouter, HTTPException, Query, Request, Response

from pipelines.notifiers.sms import DLR_STATES
from pipelines.shops import RegistryError, Shop, parse_shops, shops_csv
from service.deps import Admin, ErrorBody, Operator, RuntimeDep, Viewer, at_least
from service.models_api import ReminderOut, ShopImport, ShopOut, ShopStat, SmsGatewayStatus
from service.runtime import Runtime

log = logging.getLogger(__name__)

router = APIRouter(tags=["shops"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _known_camera(rt: Runtime, shop: Shop) -> None:
    if rt.camera_config(shop.camera) is None:
        raise HTTPException(422, f"camera: no camera {shop.camera} is configured")


@router.get("/api/shops", response_model=list[ShopOut])
def shops(request: Request, rt: RuntimeDep, _: Viewer, camera: str | None = None) -> list[ShopOut]:
    """Registered shops (of one camera); phones masked unless the caller is an operator."""
    full = at_least(request, "operator")
    return [ShopOut.of(s, full) for s in rt.shops.shops(camera)]


@router.get("/api/shops.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def export(rt: RuntimeDep, who: Operator) -> Response:
    """The registry as CSV (full phone numbers: operators and admins only), importable again."""
    log.info("shop registry exported by %s", who)
    return Response(shops_csv(rt.shops.shops()).encode("utf-8-sig"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=shops.csv"})


@router.post("/api/shop-imports", response_model=ShopImport, responses={400: {"model": ErrorBody}})
async def import_shops(request: Request, rt: RuntimeDep, who: Admin) -> ShopImport:
    """Import a registry file sent as the body: CSV (``text/csv``, UTF-8 or GB18030) or Excel (``.xlsx``).

    Bad rows (and rows naming a camera the service does not have) are set aside, each with one
    ``file:line: field: reason``; the rest are added, or replace the shop with the same id.
    """
    data = await request.body()
    default = "upload.xlsx" if request.headers.get("content-type") == XLSX else "upload.csv"
    name = unquote(request.headers.get("x-filename", default))[:200]  # the dashboard sends the file's name
    try:
        found, errors = parse_shops(data, name)
    except RegistryError as exc:
        raise HTTPException(400, str(exc)) from exc
    good = []
    for s in found:
        if rt.camera_config(s.camera) is not None:
            good.append(s)
        else:
            errors.append(f"{name}: shop {s.id}: camera: no camera {s.camera} is configured")
    added, replaced = rt.shops.put(good)
    rt.shops_changed()
    log.info("shop registry import by %s: %d added, %d replaced, %d rows set aside", who, added, replaced,
             len(errors))
    return ShopImport(added=added, replaced=replaced, errors=errors)


@router.get("/api/shop-stats", response_model=dict[str, ShopStat])
def stats(rt: RuntimeDep, _: Viewer) -> dict[str, ShopStat]:
    """Each shop's record: violations, reminders, share resolved by reminder, median time to clear, repeats."""
    return {k: ShopStat.model_validate(v) for k, v in rt.shops.stats().items()}


@router.get("/api/shops/{shop_id}", response_model=ShopOut, responses={404: {"model": ErrorBody}})
def shop(shop_id: str, request: Request, rt: RuntimeDep, _: Viewer) -> ShopOut:
    """One shop (phone masked unless the caller is an operator)."""
    found = rt.shops.get(shop_id)
    if found is None:
        raise HTTPException(404, "no such shop")
    return ShopOut.of(found, at_least(request, "operator"))


@router.post("/api/shops", status_code=201, response_model=ShopOut, responses={409: {"model": ErrorBody}})
def add_shop(body: Shop, rt: RuntimeDep, _: Admin) -> ShopOut:
    """Register a shop (validated like a registry row)."""
    _known_camera(rt, body)
    if rt.shops.get(body.id) is not None:
        raise HTTPException(409, f"shop {body.id} exists")
    rt.shops.put([body])
    rt.shops_changed()
    return ShopOut.of(body, True)


@router.put("/api/shops/{shop_id}", response_model=ShopOut, responses={404: {"model": ErrorBody}})
def change_shop(shop_id: str, body: Shop, rt: RuntimeDep, _: Admin) -> ShopOut:
    """Replace a shop's entry (its frontage, phone, violations, opt-out...)."""
    if body.id != shop_id:
        raise HTTPException(422, "id: the body's id must match the path")
    if rt.shops.get(shop_id) is None:
        raise HTTPException(404, "no such shop")
    _known_camera(rt, body)
    rt.shops.put([body])
    rt.shops_changed()
    return ShopOut.of(body, True)


@router.delete("/api/shops/{shop_id}", status_code=204, responses={404: {"model": ErrorBody}})
def delete_shop(shop_id: str, rt: RuntimeDep, _: Admin) -> Response:
    """Remove a shop (its reminders stay on record)."""
    if not rt.shops.delete(shop_id):
        raise HTTPException(404, "no such shop")
    rt.shops_changed()
    return Response(status_code=204)


@router.get("/api/reminders", response_model=list[ReminderOut])
def reminders(rt: RuntimeDep, _: Viewer, shop: str | None = None, case_id: str | None = None,
              limit: int = Query(default=200, ge=1, le=5000)) -> list[ReminderOut]:
    """Violations attributed to shops, newest first: texts sent, outcomes, delivery reports."""
    return [ReminderOut.model_validate(r) for r in rt.shops.reminders(shop, case_id, limit)]


@router.get("/api/sms", response_model=list[SmsGatewayStatus])
def gateways(rt: RuntimeDep, _: Viewer) -> list[SmsGatewayStatus]:
    """SMS gateways with health and counters."""
    return [SmsGatewayStatus.model_validate(g) for g in rt.notifications.gateways()]


@router.get("/api/sms/dlr", responses={403: {"model": ErrorBody}, 404: {"model": ErrorBody}})
def delivery_report(rt: RuntimeDep, reminder: int, notifier: str, token: str, type: int) -> dict[str, str]:
    """A gateway's delivery report of a reminder's text (Kannel's ``dlr-url``; ``type`` is its ``%d``)."""
    if not hmac.compare_digest(token.encode(), rt.dlr_token(reminder, notifier).encode()):
        raise HTTPException(403, "bad delivery-report token")
    state = DLR_STATES.get(type)
    if state is None:
        raise HTTPException(422, f"type: unknown delivery-report type {type}")
    if not rt.shops.set_delivery(reminder, state):
        raise HTTPException(404, "no such reminder")
    rt.bus.publish("sms_delivery", {"reminder": reminder, "notifier": notifier, "delivery": state})
    return {"delivery": state}
