"""Violation events and their lifecycle states."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

#: Violation types a case can have.
VIOLATIONS: tuple[str, ...] = ("street_stall", "uncovered_truck", "garbage", "barbecue", "overflowing_bin")


class EventState(enum.StrEnum):
    """Lifecycle of a violation at one place: it starts once, may update, and ends."""

    START = "start"
    UPDATE = "update"
    END = "end"


@dataclass(frozen=True)
class ViolationEvent:
    """A change in a violation's lifecycle at one place.

    Attributes:
        state: start, update or end.
        key: Stable identifier of the violation at its place (camera, zone, class, location).
        camera: Camera id.
        zone: Zone id.
        violation: Violation type (one of :data:`VIOLATIONS`).
        start_s: Time the violation was first seen, seconds on the source clock.
        ts: Time of this event, seconds on the source clock.
        confidence: Best detection confidence so far.
        box: Best box so far, pixels ``(x1, y1, x2, y2)``.
        best_ts: Time of the frame with the best box.
        track_ids: Tracker ids that contributed.
    """

    state: EventState
    key: str
    camera: str
    zone: str
    violation: str
    start_s: float
    ts: float
    confidence: float
    box: tuple[float, float, float, float]
    best_ts: float
    track_ids: tuple[int, ...] = field(default_factory=tuple)
