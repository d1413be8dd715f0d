"""Cases: list with filters and paging, detail, evidence download, state transitions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response

from detector.digest import sha256_file
from pipelines.privacy import MaskedNotStored, MaskingError
from pipelines.sinks.evidence import fullres_snapshot
from pipelines.sinks.store import Case, TransitionError
from service.deps import ErrorBody, Operator, RuntimeDep, Viewer, at_least
from service.models_api import CaseDetail, CaseOut, CasePage, EvidenceKind, FullresOut, TransitionIn
from service.runtime import Runtime

router = APIRouter(tags=["cases"])

EVIDENCE_CONTENT = {"image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "video/mp4": {"schema": {"type": "string", "format": "binary"}}}


def case_or_404(rt: Runtime, case_id: str) -> Case:
    """The stored case, or a 404 (unknown and malformed ids alike)."""
    case = rt.store.get(case_id)
    if case is None:
        raise HTTPException(404, "no such case")
    return case


def detail_of(rt: Runtime, case: Case) -> CaseDetail:
    """A case with its history and dispatch state."""
    return CaseDetail.of_case(case, rt.store.history(case.id), rt.store.outbox(case_id=case.id, kind="case"))


@router.get("/api/cases", response_model=CasePage)
def list_cases(rt: RuntimeDep, _: Viewer, camera: str | None = None, violation: str | None = None,
               state: str | None = None,
               since: Annotated[str | None, Query(description="ISO time, inclusive")] = None,
               until: Annotated[str | None, Query(description="ISO time, exclusive")] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 50,
               offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> CasePage:
    """Cases, newest first, with filters and paging."""
    total, items = rt.store.query(camera, violation, state, since, until, limit, offset)
    return CasePage(total=total, limit=limit, offset=offset, items=[CaseOut.of(c) for c in items])


@router.get("/api/cases/{case_id}", response_model=CaseDetail, responses={404: {"model": ErrorBody}})
def get_case(case_id: str, rt: RuntimeDep, _: Viewer) -> CaseDetail:
    """One case with its history and dispatch state."""
    return detail_of(rt, case_or_404(rt, case_id))


@router.get("/api/cases/{case_id}/evidence/{kind}", response_class=FileResponse,
            responses={200: {"content": EVIDENCE_CONTENT, "description": "JPEG (snapshot, frame, plate) or MP4 (clip)"},
                       403: {"model": ErrorBody}, 404: {"model": ErrorBody}})
def evidence(case_id: str, kind: EvidenceKind, rt: RuntimeDep, request: Request, _: Viewer,
             original: Annotated[bool, Query(description="The file as recorded, faces and other vehicles' "
                                                         "plates unmasked (operators and admins).")] = False
             ) -> Response:
    """The snapshot (JPEG, boxed), clip (MP4), clean frame (JPEG) or a truck's plate (JPEG) of a case, found by
    case id only. Snapshot, clip and frame come with faces and the plates of vehicles other than the case's
    masked (``privacy.mask_shared``), unless an operator asks for the original; the plate is the subject's. A masked
    image whose copy cannot be stored (a full evidence disk) is served from memory."""
    c = case_or_404(rt, case_id)
    entry = c.evidence.get(kind)
    if entry is None:
        raise HTTPException(404, f"case has no {kind} (yet)")
    path = (rt.evidence_root / entry["path"]).resolve()
    if not path.is_relative_to(rt.evidence_root) or not path.is_file():
        raise HTTPException(404, f"{kind} file is missing")
    if original and not at_least(request, "operator"):
        raise HTTPException(403, "the original evidence needs the operator role")
    if kind != "plate" and not original and rt.config.privacy.mask_shared:
        try:
            path = rt.masker().shared(path, c.violation)
        except MaskedNotStored as exc:  # a full disk: the masked image, not kept
            return Response(exc.content, media_type="image/jpeg",
                            headers={"Content-Disposition": f'attachment; filename="{case_id}{path.suffix}"'})
        except MaskingError as exc:  # never fall back to the original for a viewer
            raise HTTPException(503, f"masked {kind} not available: {exc}") from exc
    return FileResponse(path, media_type="video/mp4" if kind == "clip" else "image/jpeg",
                        filename=f"{case_id}{path.suffix}")


@router.post("/api/cases/{case_id}/fullres", response_model=FullresOut, status_code=201,
             responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
def take_fullres(case_id: str, rt: RuntimeDep, who: Operator) -> FullresOut:
    """Re-take the case's snapshot at full resolution: the group of pictures around its best detection is decoded
    from its stream-copied clip (a camera with two streams: the main stream's), the box drawn, and the JPEG kept
    as the case's ``fullres`` evidence. 409 while the clip is still being recorded, or when it was re-encoded
    from detected frames (no full-resolution frames exist)."""
    c = case_or_404(rt, case_id)
    clip, frame = c.evidence.get("clip"), c.evidence.get("frame")
    if clip is None or frame is None:
        raise HTTPException(409, "the case's clip is not written yet (it ends a few seconds after the "
                                 "confirmation); try again")
    clip_path = (rt.evidence_root / clip["path"]).resolve()
    meta = (rt.evidence_root / frame["path"]).resolve().with_suffix(".json")
    if not clip_path.is_relative_to(rt.evidence_root) or not clip_path.is_file():
        raise HTTPException(404, "clip file is missing")
    out = clip_path.with_name(f"{case_id}_full.jpg")
    try:
        taken = fullres_snapshot(clip_path, meta, out, c.violation)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from exc
    except OSError as exc:
        raise HTTPException(503, f"full-resolution snapshot not taken: {exc}") from exc
    rel = out.relative_to(rt.evidence_root).as_posix()
    rt.store.add_evidence(case_id, "fullres", rel, sha256_file(out))
    rt.store.annotate(case_id, who, f"full-resolution snapshot taken ({taken.width}x{taken.height})")
    return FullresOut(path=rel, width=taken.width, height=taken.height, ts=taken.ts, off_by_s=taken.off_by_s)


@router.post("/api/cases/{case_id}/transition", response_model=CaseDetail,
             responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
def transition(case_id: str, body: TransitionIn, rt: RuntimeDep, who: Operator) -> CaseDetail:
    """Move a case along registered → dispatched → handled → closed, or reject it."""
    case_or_404(rt, case_id)
    try:
        rt.store.transition(case_id, body.to, who, body.note)
    except TransitionError as exc:
        raise HTTPException(409, str(exc)) from exc
    rt.bus.publish("case", {"case_id": case_id, "state": body.to, "who": who})
    return detail_of(rt, case_or_404(rt, case_id))
