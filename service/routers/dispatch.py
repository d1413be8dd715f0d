"""The dispatch outbox to the city platform: deliveries, dead letters, retry."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam

from service.deps import ErrorBody, Operator, RuntimeDep
from service.models_api import OutboxRow, OutboxState, Retried

router = APIRouter(tags=["dispatch"])


@router.get("/api/outbox", response_model=list[OutboxRow])
def outbox(rt: RuntimeDep, _: Operator, state: OutboxState | None = None,
           kind: Literal["case", "warning"] | None = None) -> list[OutboxRow]:
    """Dispatch queue to the city platform (``state=dead`` lists dead letters)."""
    return [OutboxRow.model_validate(row) for row in rt.store.outbox(state=state, kind=kind)]


@router.post("/api/outbox/{row_id}/retry", response_model=Retried, responses={404: {"model": ErrorBody}})
def retry(row_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)], rt: RuntimeDep, _: Operator) -> Retried:
    """Queue a dead-lettered delivery again."""
    if not rt.store.retry_dead(row_id):
        raise HTTPException(404, "no dead-lettered row with that id")
    rt.notifications.wake()
    return Retried(id=row_id, state="pending")
