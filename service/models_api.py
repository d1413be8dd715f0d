"""Request and response models of the HTTP API (the OpenAPI document at ``/openapi.json`` is built from them).

Each response model describes exactly the JSON a route returns; the dispatch payload sent to the
city platform is :class:`pipelines.notifiers.payload.DispatchPayload`, the error body :class:`service.deps.ErrorBody`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.config import CameraConfig, Location
from pipelines.shops import Shop
from pipelines.sinks.store import Case

CameraHealth = Literal["new", "connecting", "live", "stalled", "failed", "stopped"]
OutboxState = Literal["pending", "delivered", "dead"]
EvidenceKind = Literal["snapshot", "clip", "frame", "plate", "fullres"]


class FullresOut(BaseModel):
    """A case's snapshot re-taken at the record stream's full resolution."""

    path: str = Field(description="The file, relative to the evidence root (GET .../evidence/fullres serves it).")
    width: int
    height: int
    ts: float = Field(description="The decoded frame's time on the camera's clock.")
    off_by_s: float = Field(description="How far it is from the best detection's frame (a time-lapse part of a "
                            "clip has key frames only).")

# ---------------------------------------------------------------- operations


class Health(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Readiness of the moving parts (HTTP 503 when one is not ready)."""

    ready: bool = Field(description="All checks passed.")
    checks: dict[str, bool] = Field(description="Check -> passed: the camera fleet's (engine in-process; ray_poll "
                                    "and ray_shards with serve --ray), the delivery loops' and the database's.")
    case_writes_waiting: int = Field(default=0, description="Camera case writes waiting for the database (held in "
                                     "the journal while it is away; stored, in order, once it answers).")


# ---------------------------------------------------------------- cases


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


class VehicleOut(BaseModel):
    """A truck case's vehicle."""

    plate: str | None = Field(description="The plate voted over the case's frames; null when none was read.")
    plate_confidence: float | None
    readings: int = Field(description="Frames the plate was read on.")
    licence: Literal["licensed", "unlicensed", "expired", "not_yet_valid", "outside_hours"] | None = Field(
        default=None, description="What the register says (with a register configured).")
    unlicensed: bool | None = Field(default=None, description="A loaded truck not licensed to carry muck now.")
    company: str | None = None
    permit: str | None = None


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
    vehicle: VehicleOut | None = Field(default=None, description="Truck cases of cameras reading plates: the "
                                       "vehicle's plate and the muck-transport register's word on it.")
    model: str = Field(default="", description="The detector model that raised the case, name and version; empty "
                       "for cases stored before models were recorded.")
    model_sha256: str = Field(default="", description="SHA-256 of that model's weights file.")
    evidence: dict[str, str] = Field(description="Evidence kind -> download URL")

    @classmethod
    def of(cls, c: Case) -> CaseOut:
        return cls(id=c.id, violation=c.violation, camera=c.camera, zone=c.zone, source=c.source, state=c.state,
                   active=c.active, start_s=c.start_s, confirmed_s=c.confirmed_s, end_s=c.end_s,
                   confidence=c.confidence, box=c.box, address=c.address, gps=c.gps, created_at=c.created_at,
                   review=c.review, review_reason=c.review_reason,
                   details=PerceptionOut.model_validate(c.details.as_dict()),
                   vehicle=VehicleOut.model_validate(c.vehicle) if c.vehicle else None,
                   model=c.model, model_sha256=c.model_sha256,
                   evidence={k: f"/api/cases/{c.id}/evidence/{k}" for k in c.evidence})


class CasePage(BaseModel):
    """One page of cases."""

    total: int
    limit: int
    offset: int
    items: list[CaseOut]


class HistoryEntry(BaseModel):
    """One entry of a case's history: a state change, or a note that keeps the state."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    from_state: str | None = Field(alias="from", description="State before; null for the registration.")
    to: str = Field(description="State after: registered, dispatched, handled, closed or rejected.")
    who: str = Field(description="Token name of the operator, or system, system:dispatcher, system:warning.")
    note: str
    at: str = Field(description="ISO 8601 UTC time.")


class OutboxRow(BaseModel):
    """One delivery of a case (or of a notice about it, such as a warning) to one notifier."""

    id: int
    case_id: str
    target: str = Field(description="Notifier name: a webhook of the city platform, a loudspeaker, ...")
    kind: Literal["case", "warning"] = Field(
        description="What the row carries: case (the case's dispatch) or warning (a spoken warning).")
    idempotency_key: str = Field(description="Unique per delivery; a case's dispatch is <case_id>:<target>, sent "
                                 "as the Idempotency-Key header.")
    state: OutboxState
    attempts: int
    last_error: str
    created_at: str = Field(description="ISO 8601 UTC time.")
    delivered_at: str | None = Field(description="ISO 8601 UTC time; null until delivered.")


class CaseDetail(CaseOut):
    """A case with its history and dispatch state."""

    history: list[HistoryEntry]
    dispatch: list[OutboxRow]

    @classmethod
    def of_case(cls, c: Case, history: list[dict[str, Any]], dispatch: list[dict[str, Any]]) -> CaseDetail:
        """A case with the store's history and outbox rows of it."""
        return cls.model_validate({**CaseOut.of(c).model_dump(), "history": history, "dispatch": dispatch})


class TransitionIn(BaseModel):
    """A state change requested by an operator."""

    to: Literal["dispatched", "handled", "closed", "rejected"]
    note: str = Field(default="", max_length=2000)


class ReviewIn(BaseModel):
    """An operator's verdict on a case."""

    verdict: Literal["confirmed", "rejected"]
    reason: str = Field(default="", max_length=500, description="Why (required when rejecting).")


class ReviewOut(BaseModel):
    """A case after an operator's review."""

    id: str
    state: str
    review: Literal["confirmed", "rejected"]
    review_reason: str
    reviewed_by: str = Field(description="Token name of the reviewer.")


# ---------------------------------------------------------------- cameras


class CameraIn(CameraConfig):
    """A camera added or changed through the API: as in the YAML file, and it must have a source."""

    source: str = Field(min_length=1, description="rtsp://, http(s):// URL or a file path.")


class CameraStatus(BaseModel):
    """A camera's settings in brief, with its health and counters."""

    id: str
    name: str
    source: str
    health: CameraHealth
    detail: str = Field(description="Why the camera is in its state (the last error), or empty.")
    frames_decoded: int
    frames_inferred: int
    frames_dropped: int
    frames_gated: int
    reconnects: int
    queue: int = Field(description="Frames waiting for the detector.")
    events: int
    location: Location
    decode: str = Field(default="", description="What the reader decodes now: all (every frame) or keyframes.")
    decode_detail: str = Field(default="", description="Why: configured, trucks watched, or the key-frame "
                               "interval measured on the stream (decode: auto).")
    detect_fps: float = Field(default=0.0, description="The camera's configured detection rate.")
    detect_fps_now: float = Field(default=0.0, description="Its rate now: every camera's rate is cut by the same "
                                  "share while the shared detector is overloaded, and grows back after.")
    evidence: str = Field(default="", description="How its clips are cut now: 'stream copy (record)' from the main "
                          "stream, 'stream copy (detect)' from the stream it detects on, or 're-encoded' from "
                          "decoded frames (sources without H.264/H.265 packets).")
    model: str = Field(default="", description="The model detecting it: its name and version (the service's "
                       "model, or the camera's own `model`).")
    record: str = Field(default="", exclude_if=lambda v: not v,
                        description="The camera's record (main) stream, if it has two (absent otherwise).")
    record_health: str = Field(default="", exclude_if=lambda v: not v,
                               description="The record stream's state: connecting, live, failed, stopped.")
    record_detail: str = Field(default="", exclude_if=lambda v: not v,
                               description="Why the record stream is in its state (its last error).")
    node: str = Field(default="", exclude_if=lambda v: not v,
                      description="The Ray node running the camera (serve --ray only; absent in-process).")


class CameraSaved(CameraStatus):
    """A camera added or changed through the API."""

    config_saved: bool | None = Field(description="Written back into the service's YAML file; null when the "
                                      "service was not started from a file.")


# ---------------------------------------------------------------- voice


class SpeakerStatus(BaseModel):
    """A loudspeaker's health and counters."""

    name: str
    type: str = Field(description="Notifier type (voice).")
    health: Literal["ok", "failing", "failed"]
    played: int
    failed: int
    last_error: str
    queue: int = Field(description="Messages waiting to be played.")


class WarningStat(BaseModel):
    """Voice warnings of one camera/zone/violation."""

    played: int
    resolved: int = Field(description="Violations that cleared after a warning.")
    no_effect: int = Field(description="Violations still there at the re-check.")
    share_resolved: float | None = Field(description="resolved / (resolved + no_effect); null before any outcome.")
    median_time_to_clear_s: float | None = Field(description="Median seconds from warning to clear; null when none "
                                                 "cleared.")

    @classmethod
    def table(cls, raw: Mapping[str, Mapping[str, object]]) -> dict[str, WarningStat]:
        """Validate the runtime's warning statistics (keyed ``camera/zone/violation``)."""
        return {k: cls.model_validate(v) for k, v in raw.items()}


# ---------------------------------------------------------------- dispatch


class Retried(BaseModel):
    """A dead-lettered delivery queued again."""

    id: int
    state: Literal["pending"]


# ---------------------------------------------------------------- dashboard


class WarningSummary(BaseModel):
    """Voice warnings of all cameras."""

    played: int
    resolved_by_warning: int
    no_effect: int
    resolved_rate: float | None = Field(description="Null before any outcome.")
    by_place: dict[str, WarningStat] = Field(description="Keyed camera/zone/violation.")


class DashboardStats(BaseModel):
    """Cases per day by violation and by camera, states, closure rate and warning outcomes."""

    days: list[str] = Field(description="ISO dates, oldest first, today last.")
    by_violation: dict[str, dict[str, int]] = Field(description="Day -> violation -> cases.")
    by_camera: dict[str, int]
    by_state: dict[str, int]
    total: int
    closed: int
    closure_rate: float | None = Field(description="closed / total; null with no cases.")
    warnings: WarningSummary


# ---------------------------------------------------------------- shops (门前三包)


class ShopOut(BaseModel):
    """A registered shop; ``phone`` is masked (``138****5678``) unless the caller is an operator or admin."""

    id: str
    name: str
    address: str
    phone: str = Field(description="Masked for viewers; full for operators and admins.")
    camera: str
    frontage: list[tuple[float, float]] = Field(description="Normalised [x, y] points of the shop's pavement.")
    violations: list[str] = Field(description="The violations the shop answers for.")
    licence: str
    contact: str
    opt_out: bool = Field(description="The shop asked not to be texted.")

    @classmethod
    def of(cls, shop: Shop, full_phone: bool) -> ShopOut:
        """A shop as the caller may see it."""
        return cls.model_validate(shop.public(full_phone))


class ShopImport(BaseModel):
    """What an import of a registry file did: rows added, rows that replaced a shop, rows set aside."""

    added: int
    replaced: int
    errors: list[str] = Field(description="One 'file:line: field: reason' per row set aside.")


class ShopStat(BaseModel):
    """One shop's record (the raw material of its "credit" record)."""

    violations: int = Field(description="Violations attributed to the shop.")
    reminders: int = Field(description="Texts sent.")
    resolved: int = Field(description="Cleared by the deadline after a text.")
    no_effect: int = Field(description="Still there at the deadline.")
    share_resolved: float | None = Field(description="resolved / (resolved + no_effect); null before any outcome.")
    median_time_to_clear_s: float | None
    repeat_offences: int = Field(description="Attributed violations after the first.")


class ReminderOut(BaseModel):
    """A violation attributed to a shop: the text (if one went out), the re-check's outcome, the delivery."""

    id: int
    case_id: str
    shop_id: str
    camera: str
    zone: str
    violation: str
    sent: bool = Field(description="False: attributed but not texted (see reason).")
    reason: Literal["quiet_hours", "opted_out", "daily_limit"] | None
    channels: list[str]
    text: str
    offence: int = Field(description="The shop's n-th attributed violation seen by the camera's loop.")
    created_at: str
    deadline_at: str | None
    outcome: Literal["resolved_by_reminder", "reminder_no_effect", "undecided"] | None
    time_to_clear_s: float | None
    delivery: Literal["accepted", "delivered", "buffered", "failed", "rejected"] | None = Field(
        description="The SMS gateway's last delivery report.")
    delivery_at: str | None


class SmsGatewayStatus(BaseModel):
    """An SMS notifier's health and counters."""

    name: str
    type: Literal["sms"]
    gateway: Literal["kannel", "http"]
    sent: int
    failed: int
    last_error: str
    queue: int = Field(description="Texts waiting to be sent.")
