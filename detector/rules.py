"""Violation rules: from per-frame detections to violation lifecycle events.

A violation is keyed to its *place* (camera, zone, violation type, location in
the frame), not to a track id, so a track switch or a short occlusion never
opens a second case, and a stationary pile that flickers out of detection is
revived within the re-alert cooldown instead of alerting again.

Rules, per zone and violation:
    * Stationary violations (stall, garbage, barbecue, overflowing bin) start
      once the place has been present for its dwell time, with gaps no longer
      than ``gap_tolerance_s``.
    * Trucks pass by: every truck is followed, and it starts an uncovered-truck
      violation once seen in ``truck_min_samples`` sampled frames with its load
      state, aggregated over those frames, uncovered (:mod:`detector.loadstate`).
    * Where a zone lists ``unlicensed_muck_truck``, a loaded truck (covered or
      uncovered) seen in ``truck_min_samples`` frames whose plate the
      muck-transport register does not license now (``data["unlicensed"]`` = 1,
      written by the plate stage) starts that violation. One truck is one case:
      an uncovered load in a zone that watches uncovered trucks is an
      uncovered-truck case (marked unlicensed on the case), and no truck opens a
      second case in a zone while another of its cases there is open. A truck
      without a read plate is never called unlicensed.
    * Street stalls have a second path beside the learned class: people staying
      next to stall furniture (an umbrella, a table, chairs; per zone) in a zone
      that watches stalls form a stall of their own, which starts after the same
      dwell time (``ZoneSpec.stall_context``).
    * A violation ends when its place has not been seen for ``gap_tolerance_s``.
    * Detections whose ground anchor lies in an allowlisted area (a licensed
      stall, a fixed bin) never count for the listed violations.

All times are the source's timestamps in seconds; nothing counts frames.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detector.events import VIOLATIONS, Alternative, EventDetails, EventState, LoadState, ViolationEvent
from detector.loadstate import Evidence, LoadVotes, detector_evidence
from detector.postprocess import box_gap, box_iou
from detector.types import Detections
from detector.zones import PolygonZone

log = logging.getLogger(__name__)

#: Detector label -> violation it is evidence of. Labels not listed (garbage_bin, fire, the context
#: classes) never open a case by themselves. ``smoke`` supports a barbecue place and starts one only in
#: zones that say so; a ``truck`` is an uncovered-truck candidate whose load state decides.
LABEL_TO_VIOLATION: dict[str, str] = {
    "street_stall": "street_stall",
    "uncovered_truck": "uncovered_truck",
    "truck": "uncovered_truck",
    "garbage": "garbage",
    "overflowing_bin": "overflowing_bin",
    "barbecue": "barbecue",
    "smoke": "barbecue",
}

MOVING = frozenset({"uncovered_truck", "unlicensed_muck_truck"})
#: Detector labels of trucks: each is a candidate of every truck violation its zone watches.
TRUCK_LABELS = frozenset({"truck", "uncovered_truck"})
#: Load states of a loaded truck (today's detector cannot tell an empty body from a covered load: see
#: :mod:`detector.loadstate`).
LOADED = frozenset({LoadState.COVERED, LoadState.UNCOVERED})

DEFAULT_DWELL_S: dict[str, float] = {
    "street_stall": 120.0,
    "garbage": 300.0,
    "barbecue": 60.0,
    "overflowing_bin": 300.0,
    "uncovered_truck": 0.0,
    "unlicensed_muck_truck": 0.0,
}

Box = tuple[float, float, float, float]

#: A stall's umbrella is at least this many person widths wide (narrower: one held by a passer-by).
UMBRELLA_MIN_WIDTH = 1.5


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
class StallContext:
    """The second path to a street stall: people staying with stall furniture.

    Attributes:
        objects: Context labels that make a stall with people next to them.
        min_people: People needed next to one such object.
        reach: A person is next to an object when the gap between their boxes is at most this many
            person heights.
        min_confidence: People and objects count from this detection score on.
    """

    objects: frozenset[str] = frozenset({"umbrella", "dining_table"})
    min_people: int = 1
    reach: float = 0.5
    min_confidence: float = 0.4


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
    stall_context: StallContext | None = None


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
    paths: set[str] = field(default_factory=set)
    context_objects: set[str] = field(default_factory=set)
    alternatives: dict[str, float] = field(default_factory=dict)
    load: LoadVotes | None = None
    unlicensed: bool | None = None  # the register's word on the truck's plate (None: no plate read yet)


@dataclass(frozen=True)
class _Obs:
    """One detection's observation of a violation in a zone."""

    violation: str
    box: Box
    conf: float
    track_id: int
    support: bool = False
    path: str = "detector"
    context_objects: tuple[str, ...] = ()
    alternative: Alternative | None = None
    load: Evidence | None = None
    unlicensed: int = -1  # trucks: 1 unlicensed, 0 licensed, -1 not known


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
        for z in zones:
            ctx = z.stall_context
            if ctx is not None and "street_stall" in z.violations and (
                    "person" not in names or not ctx.objects & set(names)):
                log.warning("%s/%s: the model has no %s class: stalls are found by the learned class only", camera,
                            z.id, "person" if "person" not in names else " or ".join(sorted(ctx.objects)))

    def tolerance(self, zone: str) -> float:
        """Longest absence that still counts as presence in a zone: the gap tolerance, or longer where
        the zone is looked at less often (per-zone detection rates)."""
        return max(self.settings.gap_tolerance_s, self.zone_tolerance_s.get(zone, 0.0))

    def dwell(self, zone: ZoneSpec, violation: str) -> float:
        """Return the dwell time of a violation in a zone (zone override, then settings)."""
        return zone.dwell_s.get(violation, self.settings.dwell_s.get(violation, DEFAULT_DWELL_S.get(violation, 0)))

    def _observations(self, det: Detections, width: int, height: int, zone: ZoneSpec) -> list[_Obs]:
        """The violations (and their support) a frame's detections show in a zone."""
        if len(det) == 0:
            return []
        inside = zone.zone.trigger(det, width, height)
        anchors = det.bottom_center()
        out = []
        for i in np.flatnonzero(inside):
            label = self._label(int(det.class_id[i]))
            candidates = sorted(MOVING) if label in TRUCK_LABELS else [LABEL_TO_VIOLATION.get(label)]
            for violation in candidates:
                if violation is None or violation not in zone.violations:
                    continue
                ob = self._observation(det, i, label, violation, zone, anchors, width, height)
                if ob is not None:
                    out.append(ob)
        if zone.stall_context is not None and "street_stall" in zone.violations:
            out.extend(self._stall_context(det, inside, zone, zone.stall_context, width, height))
        return out

    def _observation(self, det: Detections, i: int, label: str, violation: str, zone: ZoneSpec,
                     anchors: npt.NDArray[np.float32], width: int, height: int) -> _Obs | None:
        """Detection ``i`` as an observation of ``violation`` in ``zone`` (None: too unsure, or allowed there)."""
        conf = float(det.confidence[i])
        if conf < self.settings.min_confidence.get(violation, 0.0):
            return None
        if any(violation in a.violations and a.zone.contains(anchors[i : i + 1], width, height)[0]
               for a in zone.allow):
            return None
        support = label == "smoke" and not zone.smoke_means_barbecue
        alt = int(det.data["alt_class_id"][i]) if "alt_class_id" in det.data else -1
        alternative = None
        if alt >= 0:
            alt_label = self._label(alt)
            alternative = Alternative(LABEL_TO_VIOLATION.get(alt_label, alt_label),
                                      float(det.data["alt_confidence"][i]))
        load = self._load_evidence(det, i, label) if violation in MOVING else None
        unlicensed = int(det.data["unlicensed"][i]) if "unlicensed" in det.data else -1
        x1, y1, x2, y2 = (float(v) for v in det.xyxy[i])
        return _Obs(violation, (x1, y1, x2, y2), conf, int(det.tracker_id[i]), support,
                    alternative=alternative, load=load, unlicensed=unlicensed)

    def _label(self, class_id: int) -> str:
        return self.names[class_id] if 0 <= class_id < len(self.names) else ""

    @staticmethod
    def _load_evidence(det: Detections, i: int, label: str) -> Evidence:
        """A truck detection's evidence on its load: the scene stage's share of the uncovered score (or, without
        the scene stage, the detector's class)."""
        if "uncovered" in det.data:
            return detector_evidence(float(det.data["uncovered"][i]))
        return detector_evidence(1.0 if label == "uncovered_truck" else 0.0)

    def _stall_context(self, det: Detections, inside: npt.NDArray[np.bool_], zone: ZoneSpec, ctx: StallContext,
                       width: int, height: int) -> list[_Obs]:
        """Stalls made of people in the zone next to stall furniture, one observation per piece of furniture.

        The observation's box is the furniture's, so the place stays put while people come and go; furniture
        standing in an allowlisted stall area does not count.
        """
        labels = [self._label(int(c)) for c in det.class_id]
        sure = det.confidence >= ctx.min_confidence
        people = np.asarray([i for i in np.flatnonzero(inside & sure) if labels[i] == "person"], np.int64)
        if len(people) < ctx.min_people:
            return []
        floor = max(ctx.min_confidence, self.settings.min_confidence.get("street_stall", 0.0))
        furniture = np.asarray([j for j, n in enumerate(labels)
                                if n in ctx.objects and det.confidence[j] >= floor], np.int64)
        if not len(furniture):
            return []
        gaps = box_gap(det.xyxy[furniture], det.xyxy[people])
        heights = det.xyxy[people, 3] - det.xyxy[people, 1]
        anchors = det.bottom_center()
        out = []
        for k, j in enumerate(furniture):
            near = people[gaps[k] <= ctx.reach * heights]
            if len(near) < ctx.min_people:
                continue
            ob = det.xyxy[j]
            if labels[j] == "umbrella":  # a market umbrella, not one held over a head in the rain
                widths = det.xyxy[near, 2] - det.xyxy[near, 0]
                if ob[2] - ob[0] < UMBRELLA_MIN_WIDTH * float(np.median(widths)):
                    continue
            if any("street_stall" in a.violations and a.zone.contains(anchors[j : j + 1], width, height)[0]
                   for a in zone.allow):
                continue
            conf = min(float(det.confidence[j]), float(det.confidence[near].max()))
            box = (float(ob[0]), float(ob[1]), float(ob[2]), float(ob[3]))
            out.append(_Obs("street_stall", box, conf, -1, path="context", context_objects=(labels[j],)))
        return out

    def _match(self, violation: str, zone: str, box: Box, track_id: int, support: bool,
               include_ended: bool, frame_ids: frozenset[int] = frozenset()) -> _Place | None:
        cands = [p for p in self._places if p.violation == violation and p.zone == zone
                 and (include_ended or p.ended_at is None)]
        if not cands:
            return None
        if violation in MOVING and track_id >= 0:
            for p in cands:
                if track_id in p.track_ids and p.ended_at is None:
                    return p
            # Another vehicle id. The box may still be the same vehicle after an id switch, but never one whose
            # vehicle is in this very frame, and a gone vehicle's ended case is never revived by the next truck.
            cands = [p for p in cands if p.ended_at is None and not (p.track_ids & frame_ids)]
            if not cands:
                return None
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
        alts = tuple(Alternative(v, round(c, 4)) for v, c in sorted(p.alternatives.items(), key=lambda kv: -kv[1]))
        details = EventDetails(paths=tuple(sorted(p.paths)) or ("detector",),
                               context_objects=tuple(sorted(p.context_objects)), alternatives=alts,
                               load_state=p.load.state() if p.load is not None else None,
                               load_probability=p.load.probability() if p.load is not None else {},
                               load_samples=p.load.samples if p.load is not None else 0)
        return ViolationEvent(state=state, key=p.key, camera=self.camera, zone=p.zone, violation=p.violation,
                              start_s=p.present_since, ts=ts, confidence=p.best_conf, box=p.best_box,
                              best_ts=p.best_ts, track_ids=tuple(sorted(p.track_ids)), details=details)

    def update(self, det: Detections, ts: float, width: int, height: int,
               zones: frozenset[str] | None = None) -> list[ViolationEvent]:
        """Feed one sampled frame's detections; return the lifecycle events it causes.

        ``zones``: the zones this frame was looked at for (per-zone detection rates with a crop); the
        others keep their state. None: every zone.
        """
        s = self.settings
        events: list[ViolationEvent] = []
        seen: set[str] = set()
        frame_ids = frozenset(int(v) for v in det.tracker_id if v >= 0)  # the vehicles in this frame
        for zone in self.zones:
            if zones is not None and zone.id not in zones:
                continue
            for ob in self._observations(det, width, height, zone):
                violation, box, conf, tid, support = ob.violation, ob.box, ob.conf, ob.track_id, ob.support
                place = self._match(violation, zone.id, box, tid, support, include_ended=not support,
                                    frame_ids=frame_ids)
                if place is None:
                    if support:
                        continue
                    self._counter += 1
                    cx, cy = (box[0] + box[2]) / 2 / max(width, 1), (box[1] + box[3]) / 2 / max(height, 1)
                    key = f"{self.camera}:{zone.id}:{violation}:{self._session}-{self._counter}@{cx:.2f},{cy:.2f}"
                    place = _Place(key=key, zone=zone.id, violation=violation, box=np.asarray(box, np.float32),
                                   first_seen=ts, present_since=ts, last_seen=ts, best_conf=conf, best_box=box,
                                   best_ts=ts,
                                   load=LoadVotes(min_samples=s.truck_min_samples) if violation in MOVING else None)
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
                    if place.load is not None and ob.load is not None:
                        place.load.add(ob.load, conf)
                if ob.unlicensed >= 0:
                    place.unlicensed = bool(ob.unlicensed)
                seen.add(place.key)
                place.last_seen = ts
                if tid >= 0:
                    place.track_ids.add(tid)
                if not support:
                    place.paths.add(ob.path)
                    place.context_objects.update(ob.context_objects)
                    if ob.alternative is not None and ob.alternative.violation != violation:
                        a = ob.alternative
                        place.alternatives[a.violation] = max(place.alternatives.get(a.violation, 0.0), a.confidence)
                    place.box = 0.7 * place.box + 0.3 * np.asarray(box, np.float32)
                    if conf > place.best_conf:
                        place.best_conf, place.best_box, place.best_ts = conf, box, ts
        for place in self._places:
            if place.ended_at is not None or place.key not in seen:
                continue
            zone_spec = next(z for z in self.zones if z.id == place.zone)
            if not place.started:
                ready = (self._truck_ready(place, zone_spec) if place.violation in MOVING
                         else ts - place.present_since >= self.dwell(zone_spec, place.violation))
                if ready:
                    place.started = True
                    events.append(self._event(place, EventState.START, ts))
            elif place.best_conf > place.emitted_conf + 0.05 or ts - place.last_emit >= s.update_interval_s:
                events.append(self._event(place, EventState.UPDATE, ts))
        events.extend(self._expire(ts))
        return events

    def _truck_ready(self, place: _Place, zone: ZoneSpec) -> bool:
        """Whether a truck place starts its violation now (see the module docstring: one truck, one case)."""
        if place.samples < self.settings.truck_min_samples or place.load is None:
            return False
        state = place.load.state()
        if place.violation == "uncovered_truck":
            ready = state is LoadState.UNCOVERED
        else:
            ready = (place.unlicensed is True and state in LOADED
                     and not (state is LoadState.UNCOVERED and "uncovered_truck" in zone.violations))
        return ready and not any(p is not place and p.started and p.ended_at is None and p.zone == place.zone
                                 and p.violation in MOVING and p.track_ids & place.track_ids for p in self._places)

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
