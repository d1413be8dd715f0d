"""Voice warnings: loudspeakers and warning outcomes."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import RuntimeDep, Viewer
from service.models_api import SpeakerStatus, WarningStat

router = APIRouter(tags=["voice"])


@router.get("/api/speakers", response_model=list[SpeakerStatus])
def speakers(rt: RuntimeDep, _: Viewer) -> list[SpeakerStatus]:
    """Loudspeakers with health and counters."""
    return [SpeakerStatus.model_validate(s) for s in rt.notifications.speakers()]


@router.get("/api/warnings", response_model=dict[str, WarningStat])
def warnings(rt: RuntimeDep, _: Viewer) -> dict[str, WarningStat]:
    """Per camera/zone/violation: warnings played, share resolved by warning, median time to clear."""
    return WarningStat.table(rt.warning_stats())
