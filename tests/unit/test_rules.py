"""Violation lifecycle: dwell, track switches, occlusion, allowlist, cooldown, trucks, smoke."""

from __future__ import annotations

import numpy as np
import pytest

from detector.events import Alternative, EventState, LoadState, ViolationEvent
from detector.rules import AllowArea, RuleSettings, StallContext, ViolationRules, ZoneSpec
from detector.types import CANONICAL_LABELS, Detections
from detector.zones import PolygonZone
from tests.helpers.detections import make_detections

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


def truck_rows(evidence: list[float], conf: float = 0.8) -> list[Detections]:
    """One truck moving right, one frame per evidence value (the scene stage's P(uncovered))."""
    out = []
    for i, p in enumerate(evidence):
        x = 100 + 40 * i
        det = make_detections([(x, 300, x + 100, 380, conf, "truck")], [5])
        out.append(Detections(det.xyxy, det.confidence, det.class_id, det.tracker_id,
                              {"uncovered": np.array([p], np.float32)}))
    return out


def test_a_truck_is_an_uncovered_truck_once_its_load_state_over_its_frames_is_uncovered() -> None:
    r = rules()
    events = []
    # The detector flips between classes as the truck turns: the mean over the track decides.
    for i, det in enumerate(truck_rows([0.9, 0.3, 0.8, 0.7, 0.9])):
        events += r.update(det, i * 0.5, W, H)
    start = [e for e in events if e.state is EventState.START]
    assert len(start) == 1 and start[0].violation == "uncovered_truck" and start[0].ts == 1.0
    d = start[0].details
    assert d.load_state is LoadState.UNCOVERED and d.load_samples == 3
    assert d.load_probability["uncovered"] == pytest.approx((0.9 + 0.3 + 0.8) / 3, abs=1e-3)


def test_a_covered_or_hidden_truck_never_opens_a_case() -> None:
    for evidence in ([0.1, 0.2, 0.0, 0.3, 0.1, 0.2], [-1.0] * 6, [0.9, 0.1, 0.1, 0.2]):
        r = rules()
        events = []
        for i, det in enumerate(truck_rows(evidence)):
            events += r.update(det, i * 0.5, W, H)
        assert not events, evidence


def stall_frames(rows: list[tuple[float, float, float, float, float, str]], seconds: int
                 ) -> list[tuple[float, list[tuple[float, float, float, float, float, str]], list[int]]]:
    return [(float(t), rows, list(range(len(rows)))) for t in range(seconds)]


UMBRELLA = (300, 300, 420, 360, 0.7, "umbrella")
VENDOR = (430, 320, 470, 440, 0.8, "person")


def test_people_staying_with_stall_furniture_are_a_stall_by_the_second_path() -> None:
    zone = ZoneSpec("walk", FRAME, stall_context=StallContext())
    ev = feed(rules(zone), stall_frames([UMBRELLA, VENDOR], 12))
    start = [e for e in ev if e.state is EventState.START]
    assert len(start) == 1 and start[0].violation == "street_stall" and start[0].ts == 10.0
    assert start[0].details.paths == ("context",) and start[0].details.context_objects == ("umbrella",)
    assert start[0].box == (300.0, 300.0, 420.0, 360.0)  # the furniture's box: people come and go


def test_the_second_path_keeps_one_place_while_people_come_and_go_and_honours_licensed_stalls() -> None:
    zone = ZoneSpec("walk", FRAME, stall_context=StallContext())
    frames = [(float(t), [UMBRELLA, VENDOR] if t % 3 else [UMBRELLA, (250, 320, 290, 440, 0.8, "person")],
               [0, 1]) for t in range(12)]
    assert [e.state for e in feed(rules(zone), frames)] == [EventState.START]
    licensed = AllowArea(PolygonZone(np.array([[0.25, 0.25], [0.45, 0.25], [0.45, 0.4], [0.25, 0.4]], np.float32)),
                         frozenset({"street_stall"}))
    zone = ZoneSpec("walk", FRAME, allow=(licensed,), stall_context=StallContext())
    assert not feed(rules(zone), stall_frames([UMBRELLA, VENDOR], 14))


@pytest.mark.parametrize("rows", [
    [VENDOR],  # a person alone
    [UMBRELLA],  # an umbrella alone
    [UMBRELLA, (800, 300, 840, 420, 0.8, "person")],  # a person far from the umbrella
    [UMBRELLA, (430, 320, 470, 440, 0.3, "person")],  # a doubtful person
    [(300, 300, 420, 360, 0.7, "chair"), VENDOR],  # a chair is not stall furniture by default
    [(425, 290, 475, 320, 0.8, "umbrella"), VENDOR],  # an umbrella held over a head in the rain
])
def test_the_second_path_needs_people_next_to_stall_furniture(rows: list) -> None:
    zone = ZoneSpec("walk", FRAME, stall_context=StallContext())
    assert not feed(rules(zone), stall_frames(rows, 14))


def test_the_second_path_is_configurable_per_zone() -> None:
    assert not feed(rules(ZoneSpec("walk", FRAME, stall_context=None)), stall_frames([UMBRELLA, VENDOR], 14))
    chairs = ZoneSpec("walk", FRAME, stall_context=StallContext(objects=frozenset({"chair"})))
    ev = feed(rules(chairs), stall_frames([(300, 300, 420, 360, 0.7, "chair"), VENDOR], 12))
    assert [e.details.context_objects for e in ev if e.state is EventState.START] == [("chair",)]
    no_stalls = ZoneSpec("road", FRAME, violations=frozenset({"garbage"}), stall_context=StallContext())
    assert not feed(rules(no_stalls), stall_frames([UMBRELLA, VENDOR], 14))


def test_learned_stall_and_second_path_at_one_place_are_one_case() -> None:
    zone = ZoneSpec("walk", FRAME, stall_context=StallContext())
    ev = feed(rules(zone), stall_frames([UMBRELLA, VENDOR, (290, 290, 480, 450, 0.6, "street_stall")], 12))
    start = [e for e in ev if e.state is EventState.START]
    assert len(start) == 1 and start[0].details.paths == ("context", "detector")


def test_alternative_classes_reach_the_event() -> None:
    det = make_detections([(*PILE, 0.8, "garbage")], [1])
    det = Detections(det.xyxy, det.confidence, det.class_id, det.tracker_id,
                     {"alt_class_id": np.array([CANONICAL_LABELS.index("overflowing_bin")]),
                      "alt_confidence": np.array([0.42], np.float32)})
    r = rules()
    ev = [e for t in range(12) for e in r.update(det, float(t), W, H)]
    assert ev[0].details.alternatives == (Alternative("overflowing_bin", pytest.approx(0.42)),)


def test_the_next_truck_on_the_same_spot_neither_joins_nor_revives_another_vehicles_case() -> None:
    r = rules(truck_min_samples=3, cooldown_s=600.0)
    box = (100, 300, 200, 380)
    events = []
    for i in range(4):  # an uncovered truck waits at the lights, then leaves
        events += r.update(make_detections([(*box, 0.8, "uncovered_truck")], [5]), float(i), W, H)
    for t in (10.0, 11.0):  # gone longer than the gap tolerance: its case ends
        events += r.update(make_detections([], None), t, W, H)
    for i in range(4):  # a covered truck stops on the same spot under a new track id
        events += r.update(make_detections([(*box, 0.8, "truck")], [9]), 12.0 + i, W, H)
    assert states(events) == ["start", "end"]
    both = [(100, 300, 200, 380, 0.8, "uncovered_truck"), (110, 300, 210, 380, 0.8, "truck")]
    side = rules(truck_min_samples=3)  # two vehicles in one frame never share a place
    events = []
    for i in range(4):
        events += side.update(make_detections(both, [1, 2]), float(i), W, H)
    starts = [e for e in events if e.state is EventState.START]
    assert len(starts) == 1 and starts[0].track_ids == (1,)


def licensed_rows(evidence: list[float], unlicensed: list[int]) -> list[Detections]:
    """A truck's frames with the plate stage's word (1 unlicensed, 0 licensed, -1 no plate read yet)."""
    return [Detections(d.xyxy, d.confidence, d.class_id, d.tracker_id,
                       {**d.data, "unlicensed": np.array([u], np.int64)})
            for d, u in zip(truck_rows(evidence), unlicensed, strict=True)]


def starts(zone: ZoneSpec, frames: list[Detections]) -> list[ViolationEvent]:
    r = rules(zone)
    events = []
    for i, det in enumerate(frames):
        events += r.update(det, i * 0.5, W, H)
    return [e for e in events if e.state is EventState.START]


WATCHING = frozenset({"uncovered_truck", "unlicensed_muck_truck"})


def test_a_loaded_truck_without_a_licence_is_an_unlicensed_muck_truck_where_a_zone_watches_for_it() -> None:
    covered = [0.1, 0.2, 0.1, 0.1, 0.2]
    found = starts(ZoneSpec("road", FRAME, violations=WATCHING), licensed_rows(covered, [-1, 1, 1, 1, 1]))
    assert [(e.violation, e.ts) for e in found] == [("unlicensed_muck_truck", 1.0)]
    assert found[0].details.load_state is LoadState.COVERED and found[0].track_ids == (5,)
    # Licensed, or no plate read at all: no case. A zone that does not list it: no case either.
    assert not starts(ZoneSpec("road", FRAME, violations=WATCHING), licensed_rows(covered, [0] * 5))
    assert not starts(ZoneSpec("road", FRAME, violations=WATCHING), licensed_rows(covered, [-1] * 5))
    assert not starts(ZoneSpec("road", FRAME), licensed_rows(covered, [1] * 5))
    # A truck whose load is unknown (hidden) is not known to be loaded.
    assert not starts(ZoneSpec("road", FRAME, violations=WATCHING), licensed_rows([-1.0] * 5, [1] * 5))


def test_one_truck_is_one_case_uncovered_and_unlicensed() -> None:
    uncovered = [0.9, 0.8, 0.9, 0.9, 0.8]
    found = starts(ZoneSpec("road", FRAME, violations=WATCHING), licensed_rows(uncovered, [1] * 5))
    assert [e.violation for e in found] == ["uncovered_truck"]  # the case is marked unlicensed by its plate
    only_licences = ZoneSpec("road", FRAME, violations=frozenset({"unlicensed_muck_truck"}))
    found = starts(only_licences, licensed_rows(uncovered, [1] * 5))
    assert [e.violation for e in found] == ["unlicensed_muck_truck"]
    # Covered first (an unlicensed case opens), uncovered later: still one case for the truck.
    flips = [0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    found = starts(ZoneSpec("road", FRAME, violations=WATCHING), licensed_rows(flips, [1] * 10))
    assert [e.violation for e in found] == ["unlicensed_muck_truck"]
