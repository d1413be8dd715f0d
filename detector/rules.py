"""Violation rules: from per-frame detections to violation lifecycle events.

A violation is keyed to its *place* (camera, zone, violation type, location in
the frame), not to a track id, so a track switch or a short occlusion never
opens a second case, and a stationary pile that flickers out of detection is
revived within the re-alert cooldown instead of alerting again.

Rules, per zone and violation:
    * Stationary violations (stall, garbage, barbecue, overflowing bin) start
      once the place has been present for its dwell time, with gaps no longer
      than ``gap_tolerance_s``.
    * Uncovered trucks pass by: they start once seen in ``truck_min_samples``
      sampled frames.
    * A violation ends when its place has not been seen for ``gap_tolerance_s``.
    * Detections whose ground anchor lies in an allowlisted area (a licensed
      stall, a fixed bin) never count for the listed violations.

All times are the source's timestamps in seconds; nothing counts frames.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detector.events import VIOLATIONS, EventState, ViolationEvent
from detector.postprocess import box_iou
from detector.types import Detections
from detector.zones import PolygonZone

#: Detector label -> violation it is evidence of. Labels not listed (truck,
#: garbage_bin, fire) are context only. ``smoke`` supports a barbecue place
#: and starts one only in zones that say so.
LABEL_TO_VIOLATION: dict[str, str] = {
    "street_stall": "street_stall",
    "uncovered_truck": "uncovered_truck",
    "garbage": "garbage",
    "overflowing_bin": "overflowing_bin",
    "barbecue": "barbecue",
    "smoke": "barbecue",
}

MOVING = frozenset({"uncovered_truck"})

DEFAULT_DWELL_S: dict[str, float] = {
    "street_stall": 120.0,
    "garbage": 300.0,
    "barbecue": 60.0,
    "overflowing_bin": 300.0,
    "uncovered_truck": 0.0,
}

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class RuleSettings:
    """Timing and matching settings of the violation rules.

    Attributes:
        dwell_s: Seconds a stationary violation must persist before it counts.
        truck_min_samples: Sampled frames an uncovered truck must be seen in.
        gap_tolerance_s: Longest absence that still counts as continuous presence.
        cooldown_s: After a violation ends, a new one at the same place within this
            time continues the same case instead of opening a new one.
        place_iou: IoU above which a detection belongs to an existing place.
        min_confidence: Per-violation minimum detection confidence.
        update_interval_s: Longest time between update events of an active violation.
    """

    dwell_s: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DWELL_S))
    truck_min_samples: int = 3
    gap_tolerance_s: float = 20.0
    cooldown_s: float = 600.0
    place_iou: float = 0.2
    min_confidence: dict[str, float] = field(default_factory=dict)
    update_interval_s: float = 30.0


@dataclass(frozen=True)
class AllowArea:
    """An area where some violations are permitted (e.g. a licensed stall)."""

    zone: PolygonZone
    violations: frozenset[str]


@dataclass(frozen=True)
class ZoneSpec:
    """A watched zone of a camera."""

    id: str
    zone: PolygonZone
    violations: frozenset[str] = frozenset(VIOLATIONS)
    dwell_s: dict[str, float] = field(default_factory=dict)
    allow: tuple[AllowArea, ...] = ()
    smoke_means_barbecue: bool = False


@dataclass
class _Place:
    key: str
    zone: str
    violation: str
    box: npt.NDArray[np.float32]
    first_seen: float
    present_since: float
    last_seen: float
    best_conf: float
    best_box: Box
    best_ts: float
    samples: int = 0
    track_ids: set[int] = field(default_factory=set)
    started: bool = False
    ended_at: float | None = None
    last_emit: float = 0.0
    emitted_conf: float = 0.0


class ViolationRules:
    """Per-camera state machine turning detections into :class:`ViolationEvent` s."""

    def __init__(self, camera: str, zones: list[ZoneSpec], names: list[str],
                 settings: RuleSettings | None = None) -> None:
        self.camera = camera
        self.zones = zones
        self.names = names
        self.settings = settings or RuleSettings()
        self._places: list[_Place] = []
        self._counter = 0
        # Keys must never collide with an earlier run's (a restarted service shares the case store).
        self._session = uuid.uuid4().hex[:8]
        self.zone_tolerance_s: dict[str, float] = {}  # zone -> shortest absence that ends a violation there

    def tolerance(self, zone: str) -> float:
        """Longest absence that still counts as presence in a zone: the gap tolerance, or longer where
        the zone is looked at less often (per-zone detection rates)."""
        return max(self.settings.gap_tolerance_s, self.zone_tolerance_s.get(zone, 0.0))

    def dwell(self, zone: ZoneSpec, violation: str) -> float:
        """Return the dwell time of a violation in a zone (zone override, then settings)."""
        return zone.dwell_s.get(violation, self.settings.dwell_s.get(violation, DEFAULT_DWELL_S.get(violation, 0)))

    def _observations(self, det: Detections, width: int, height: int, zone: ZoneSpec
                      ) -> list[tuple[str, Box, float, int, bool]]:
        """Return (violation, box, confidence, track id, is_support_only) seen in a zone."""
        if len(det) == 0:
            return []
        inside = zone.zone.trigger(det, width, height)
        anchors = det.bottom_center()
        out = []
        for i in np.flatnonzero(inside):
            label = self.names[int(det.class_id[i])] if int(det.class_id[i]) < len(self.names) else ""
            violation = LABEL_TO_VIOLATION.get(label)
            if violation is None or violation not in zone.violations:
                continue
            conf = float(det.confidence[i])
            if conf < self.settings.min_confidence.get(violation, 0.0):
                continue
            if any(violation in a.violations and a.zone.contains(anchors[i : i + 1], width, height)[0]
                   for a in zone.allow):
                continue
            support = label == "smoke" and not zone.smoke_means_barbecue
            x1, y1, x2, y2 = (float(v) for v in det.xyxy[i])
            out.append((violation, (x1, y1, x2, y2), conf, int(det.tracker_id[i]), support))
        return out

    def _match(self, violation: str, zone: str, box: Box, track_id: int, support: bool,
               include_ended: bool) -> _Place | None:
        cands = [p for p in self._places if p.violation == violation and p.zone == zone
                 and (include_ended or p.ended_at is None)]
        if not cands:
            return None
        if violation in MOVING and track_id >= 0:
            for p in cands:
                if track_id in p.track_ids and p.ended_at is None:
                    return p
        b = np.asarray([box], np.float32)
        boxes = np.stack([p.box for p in cands]).astype(np.float32)
        ious = box_iou(b, boxes)[0]
        if support:
            # Smoke rises above its grill: match a barbecue place below it, expanded upwards.
            grown = boxes.copy()
            grown[:, 1] -= 3 * (boxes[:, 3] - boxes[:, 1])
            ious = np.maximum(ious, (box_iou(b, grown)[0] > 0).astype(np.float32) * self.settings.place_iou)
        best = int(np.argmax(ious))
        return cands[best] if ious[best] >= self.settings.place_iou else None

    def _event(self, p: _Place, state: EventState, ts: float) -> ViolationEvent:
        p.last_emit = ts
        p.emitted_conf = p.best_conf
        return ViolationEvent(state=state, key=p.key, camera=self.camera, zone=p.zone, violation=p.violation,
                              start_s=p.present_since, ts=ts, confidence=p.best_conf, box=p.best_box,
                              best_ts=p.best_ts, track_ids=tuple(sorted(p.track_ids)))

    def update(self, det: Detections, ts: float, width: int, height: int,
               zones: frozenset[str] | None = None) -> list[ViolationEvent]:
        """Feed one sampled frame's detections; return the lifecycle events it causes.

        ``zones``: the zones this frame was looked at for (per-zone detection rates with a crop); the
        others keep their state. None: every zone.
        """
        s = self.settings
        events: list[ViolationEvent] = []
        seen: set[str] = set()
        for zone in self.zones:
            if zones is not None and zone.id not in zones:
                continue
            for violation, box, conf, tid, support in self._observations(det, width, height, zone):
                place = self._match(violation, zone.id, box, tid, support, include_ended=not support)
                if place is None:
                    if support:
                        continue
                    self._counter += 1
                    cx, cy = (box[0] + box[2]) / 2 / max(width, 1), (box[1] + box[3]) / 2 / max(height, 1)
                    key = f"{self.camera}:{zone.id}:{violation}:{self._session}-{self._counter}@{cx:.2f},{cy:.2f}"
                    place = _Place(key=key, zone=zone.id, violation=violation, box=np.asarray(box, np.float32),
                                   first_seen=ts, present_since=ts, last_seen=ts, best_conf=conf, best_box=box,
                                   best_ts=ts)
                    self._places.append(place)
                elif place.ended_at is not None:
                    # Back within the cooldown: the same case continues, no second alert.
                    place.ended_at = None
                    place.last_seen = ts
                    events.append(self._event(place, EventState.UPDATE, ts))
                if place.key in seen and support:
                    continue
                gap = ts - place.last_seen
                if not place.started and gap > self.tolerance(place.zone):
                    place.present_since = ts
                if place.key not in seen:
                    place.samples += 1
                seen.add(place.key)
                place.last_seen = ts
                if tid >= 0:
                    place.track_ids.add(tid)
                if not support:
                    place.box = 0.7 * place.box + 0.3 * np.asarray(box, np.float32)
                    if conf > place.best_conf:
                        place.best_conf, place.best_box, place.best_ts = conf, box, ts
        for place in self._places:
            if place.ended_at is not None or place.key not in seen:
                continue
            zone_spec = next(z for z in self.zones if z.id == place.zone)
            if not place.started:
                ready = (place.samples >= s.truck_min_samples if place.violation in MOVING
                         else ts - place.present_since >= self.dwell(zone_spec, place.violation))
                if ready:
                    place.started = True
                    events.append(self._event(place, EventState.START, ts))
            elif place.best_conf > place.emitted_conf + 0.05 or ts - place.last_emit >= s.update_interval_s:
                events.append(self._event(place, EventState.UPDATE, ts))
        events.extend(self._expire(ts))
        return events

    def _expire(self, ts: float) -> list[ViolationEvent]:
        s = self.settings
        events = []
        keep = []
        for p in self._places:
            if p.ended_at is None and ts - p.last_seen > self.tolerance(p.zone):
                if not p.started:
                    continue  # never confirmed: forget it
                p.ended_at = p.last_seen
                events.append(self._event(p, EventState.END, p.last_seen))
            if p.ended_at is not None and ts - p.ended_at > s.cooldown_s:
                continue
            keep.append(p)
        self._places = keep
        return events

    def finish(self, ts: float) -> list[ViolationEvent]:
        """End every active violation at the end of the source (at its last sighting)."""
        events = [self._event(p, EventState.END, p.last_seen) for p in self._places
                  if p.started and p.ended_at is None]
        self._places = []
        return events
