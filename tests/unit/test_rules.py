"""Violation lifecycle: dwell, track switches, occlusion, allowlist, cooldown, trucks, smoke."""

from __future__ import annotations

import numpy as np

from detector.events import EventState, ViolationEvent
from detector.rules import AllowArea, RuleSettings, ViolationRules, ZoneSpec
from detector.types import CANONICAL_LABELS
from detector.zones import PolygonZone
from tests.conftest import make_detections

W, H = 1000, 1000
FRAME = PolygonZone(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32))
PILE = (400, 400, 500, 500)


def rules(zone: ZoneSpec | None = None, **kw: object) -> ViolationRules:
    settings = RuleSettings(**{"dwell_s": {"garbage": 10.0, "street_stall": 10.0, "barbecue": 5.0},
                               "gap_tolerance_s": 5.0, "cooldown_s": 60.0, **kw})  # type: ignore[arg-type]
    return ViolationRules("cam", [zone or ZoneSpec("frame", FRAME)], list(CANONICAL_LABELS), settings)


def feed(r: ViolationRules, frames: list[tuple[float, list[tuple[float, float, float, float, float, str]], list[int]]]
         ) -> list[ViolationEvent]:
    events = []
    for ts, rows, ids in frames:
        events += r.update(make_detections(rows, ids if rows else None), ts, W, H)
    return events


def states(events: list[ViolationEvent]) -> list[str]:
    return [e.state.value for e in events]


def test_dwell_then_start_once_and_end_after_gap() -> None:
    r = rules()
    frames = [(float(t), [(*PILE, 0.8, "garbage")], [1]) for t in range(0, 16)]
    frames += [(float(t), [], []) for t in range(16, 23)]
    ev = feed(r, frames)
    assert states(ev).count("start") == 1
    start = next(e for e in ev if e.state is EventState.START)
    assert start.ts == 10.0 and start.start_s == 0.0 and start.violation == "garbage"
    end = ev[-1]
    assert end.state is EventState.END and end.ts == 15.0


def test_track_switch_and_short_occlusion_keep_one_case() -> None:
    r = rules()
    frames = []
    for t in range(0, 30):
        if 12 <= t < 15:  # occluded for 3 s (< 5 s gap tolerance)
            frames.append((float(t), [], []))
            continue
        tid = 1 if t < 12 else 7  # the tracker hands out a new id after the occlusion
        jitter = 8 if t % 2 else 0
        frames.append((float(t), [(400 + jitter, 400, 500 + jitter, 500, 0.7, "garbage")], [tid]))
    ev = feed(r, frames)
    assert states(ev).count("start") == 1
    assert states(ev).count("end") == 0
    assert len({e.key for e in ev}) == 1
    assert set(r.finish(29.0)[0].track_ids) == {1, 7}


def test_presence_interrupted_before_dwell_restarts_the_clock() -> None:
    r = rules()
    frames = [(float(t), [(*PILE, 0.8, "garbage")], [1]) for t in range(0, 8)]
    frames += [(float(t), [], []) for t in range(8, 15)]  # gone 7 s > gap tolerance: candidate dropped
    frames += [(float(t), [(*PILE, 0.8, "garbage")], [2]) for t in range(15, 24)]
    assert feed(r, frames) == []


def test_cooldown_revives_the_same_case_instead_of_realerting() -> None:
    r = rules()
    on = [(float(t), [(*PILE, 0.8, "garbage")], [1]) for t in range(0, 12)]
    off = [(float(t), [], []) for t in range(12, 20)]
    back = [(float(t), [(*PILE, 0.8, "garbage")], [3]) for t in range(20, 40)]
    ev = feed(r, on + off + back)
    assert states(ev)[:2] == ["start", "end"]
    assert states(ev).count("start") == 1
    assert ev[2].state is EventState.UPDATE and ev[2].key == ev[0].key


def test_after_cooldown_a_new_case_starts() -> None:
    r = rules(cooldown_s=5.0)
    on = [(float(t), [(*PILE, 0.8, "garbage")], [1]) for t in range(0, 12)]
    off = [(float(t), [], []) for t in range(12, 30)]
    back = [(float(t), [(*PILE, 0.8, "garbage")], [3]) for t in range(30, 42)]
    ev = feed(r, on + off + back)
    assert states(ev).count("start") == 2
    assert len({e.key for e in ev if e.state is EventState.START}) == 2


def test_allowlisted_area_never_counts() -> None:
    licensed = AllowArea(PolygonZone(np.array([[0.3, 0.3], [0.6, 0.3], [0.6, 0.6], [0.3, 0.6]], np.float32)),
                         frozenset({"street_stall"}))
    r = rules(ZoneSpec("frame", FRAME, allow=(licensed,)))
    stall_inside = (350, 350, 450, 450, 0.9, "street_stall")  # anchor (400, 450): inside the licensed area
    stall_outside = (700, 700, 800, 800, 0.9, "street_stall")
    garbage_inside = (350, 350, 450, 450, 0.9, "garbage")  # garbage is not allowed there
    frames = [(float(t), [stall_inside, stall_outside, garbage_inside], [1, 2, 3]) for t in range(0, 12)]
    ev = feed(r, frames)
    started = sorted((e.violation, e.box[0]) for e in ev if e.state is EventState.START)
    assert started == [("garbage", 350.0), ("street_stall", 700.0)]


def test_zone_filters_by_anchor_and_watched_violations() -> None:
    bottom = PolygonZone(np.array([[0, 0.5], [1, 0.5], [1, 1], [0, 1]], np.float32))
    r = rules(ZoneSpec("pavement", bottom, violations=frozenset({"garbage"})))
    top_pile = (100, 100, 200, 200, 0.9, "garbage")  # anchor y=200: outside
    stall = (600, 600, 700, 700, 0.9, "street_stall")  # inside, but not watched
    pile = (400, 600, 500, 700, 0.9, "garbage")
    ev = feed(r, [(float(t), [top_pile, stall, pile], [1, 2, 3]) for t in range(12)])
    started = [(e.violation, e.zone, e.box[1]) for e in ev if e.state is EventState.START]
    assert started == [("garbage", "pavement", 600)]


def test_uncovered_truck_needs_min_samples_and_follows_its_track() -> None:
    r = rules(truck_min_samples=3)
    frames = []
    for i in range(6):  # the truck moves fast: boxes barely overlap, the track id links them
        x = 100 + i * 90
        frames.append((i * 0.5, [(x, 300, x + 100, 380, 0.8, "uncovered_truck")], [5]))
    ev = feed(r, frames)
    starts = [e for e in ev if e.state is EventState.START]
    assert len(starts) == 1 and starts[0].ts == 1.0
    assert len({e.key for e in ev}) == 1


def test_covered_truck_is_not_a_violation() -> None:
    r = rules()
    ev = feed(r, [(float(t), [(100, 100, 300, 200, 0.9, "truck")], [1]) for t in range(10)])
    assert ev == []


def test_smoke_supports_a_barbecue_but_does_not_start_one_alone() -> None:
    grill = (400, 500, 460, 540, 0.8, "barbecue")
    smoke = (390, 380, 470, 500, 0.8, "smoke")
    r = rules()
    # Grill seen 0-3 s, then only its smoke: the place stays present through the smoke.
    frames = [(float(t), [grill, smoke] if t < 3 else [smoke], [1, 2] if t < 3 else [2]) for t in range(0, 8)]
    ev = feed(r, frames)
    assert [e.violation for e in ev if e.state is EventState.START] == ["barbecue"]
    alone = rules()
    assert feed(alone, [(float(t), [smoke], [2]) for t in range(0, 10)]) == []
    kerbside = rules(ZoneSpec("frame", FRAME, smoke_means_barbecue=True))
    assert states(feed(kerbside, [(float(t), [smoke], [2]) for t in range(0, 10)])) == ["start"]


def test_finish_ends_active_violations() -> None:
    r = rules()
    feed(r, [(float(t), [(*PILE, 0.8, "garbage")], [1]) for t in range(0, 12)])
    ev = r.finish(11.0)
    assert states(ev) == ["end"] and ev[0].ts == 11.0


def test_keys_of_a_restarted_camera_never_collide_with_earlier_runs() -> None:
    frames = [(float(t), [(*PILE, 0.8, "garbage")], [1]) for t in range(0, 12)]
    first, second = feed(rules(), frames), feed(rules(), frames)
    assert first[0].key != second[0].key  # the store keys cases by it: a restart must not reopen old cases
