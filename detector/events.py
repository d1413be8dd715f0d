"""Violation events, their lifecycle states and what the perception saw of them."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

#: Violation types a zone watches unless it says otherwise (and the detector's violation classes).
VIOLATIONS: tuple[str, ...] = ("street_stall", "uncovered_truck", "garbage", "barbecue", "overflowing_bin")
#: Violations a zone watches only where it lists them: a loaded truck whose plate the muck-transport register
#: does not license now (cameras reading plates, with a register).
OPTIONAL_VIOLATIONS: tuple[str, ...] = ("unlicensed_muck_truck",)


class EventState(enum.StrEnum):
    """Lifecycle of a violation at one place: it starts once, may update, and ends."""

    START = "start"
    UPDATE = "update"
    END = "end"


class LoadState(enum.StrEnum):
    """What a truck carries, decided over its track's frames (see :mod:`detector.loadstate`)."""

    COVERED = "covered"
    UNCOVERED = "uncovered"
    EMPTY = "empty"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Alternative:
    """Another class the same object was also taken for (kept on the case, never a second case)."""

    violation: str
    confidence: float


@dataclass(frozen=True)
class EventDetails:
    """What the perception saw of a violation, beyond class, box and score.

    Attributes:
        paths: How it was found: ``detector`` (the learned class) and/or ``context`` (people with stall
            furniture staying in a no-vending zone).
        context_objects: The context labels that made a ``context`` stall (umbrella, dining_table...).
        alternatives: Other classes the same object was taken for, best first.
        load_state: A truck's load, aggregated over its frames (trucks only).
        load_probability: Mean probability of each load state over the truck's frames (trucks only).
        load_samples: Frames the load state rests on.
    """

    paths: tuple[str, ...] = ("detector",)
    context_objects: tuple[str, ...] = ()
    alternatives: tuple[Alternative, ...] = ()
    load_state: LoadState | None = None
    load_probability: dict[str, float] = field(default_factory=dict)
    load_samples: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the case store keeps)."""
        out = asdict(self)
        out["load_state"] = self.load_state.value if self.load_state is not None else None
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EventDetails:
        """Read :meth:`as_dict`'s form back (unknown keys ignored, missing ones defaulted)."""
        load = raw.get("load_state")
        return cls(paths=tuple(raw.get("paths", ("detector",))), context_objects=tuple(raw.get("context_objects", ())),
                   alternatives=tuple(Alternative(str(a["violation"]), float(a["confidence"]))
                                      for a in raw.get("alternatives", ())),
                   load_state=LoadState(load) if load else None,
                   load_probability={str(k): float(v) for k, v in raw.get("load_probability", {}).items()},
                   load_samples=int(raw.get("load_samples", 0)))


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
        details: How it was found, alternative classes, a truck's load state.
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
    details: EventDetails = field(default_factory=EventDetails)
