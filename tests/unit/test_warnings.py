"""The warning policy and closed loop, on a controllable clock and time of day."""

from __future__ import annotations

import datetime as dt

import pytest

from detector.warnings import DEFAULT_MESSAGES, QuietHours, WarningLoop, WarningSettings, warning_stats

NOON, NIGHT = dt.time(12, 0), dt.time(23, 30)


def loop(**kw: object) -> WarningLoop:
    s = WarningSettings(violations=frozenset({"street_stall", "barbecue"}),
                        quiet_hours=(QuietHours.parse("22:00-07:00"),), cooldown_s=100, max_repeats=2,
                        recheck_s=30, **kw)  # type: ignore[arg-type]
    return WarningLoop({"pavement": s})


def test_quiet_hours_parse_and_cross_midnight() -> None:
    q = QuietHours.parse("22:00-07:00")
    assert q.contains(NIGHT) and q.contains(dt.time(6, 59)) and not q.contains(NOON)
    assert QuietHours.parse("12:00-13:00").contains(NOON)
    with pytest.raises(ValueError, match="22:00-07:00"):
        QuietHours.parse("late")


def test_warning_then_cleared_is_resolved_by_warning() -> None:
    w = loop()
    (play,) = w.on_start("k1", "pavement", "street_stall", 10.0, NOON)
    assert play.kind == "play" and play.text == DEFAULT_MESSAGES["street_stall"] and play.repeat == 1
    assert w.tick(39.0, NOON) == []  # before the re-check
    w.on_end("k1", 25.0)
    (outcome,) = w.tick(40.0, NOON)
    assert outcome.outcome == "resolved_by_warning" and outcome.time_to_clear_s == 15.0
    assert w.pending() == 0


def test_warning_without_effect_escalates_and_repeats_up_to_the_limit() -> None:
    w = loop()
    w.on_start("k1", "pavement", "street_stall", 0.0, NOON)
    first = w.tick(30.0, NOON)
    assert [(a.kind, a.outcome, a.repeat) for a in first] == [("outcome", "warned_no_effect", 0), ("play", "", 2)]
    assert w.tick(60.0, NOON) == []  # no repeats left: no third warning, no second escalation
    assert w.pending() == 0


def test_quiet_hours_cooldown_and_unwatched_violations() -> None:
    w = loop()
    assert w.on_start("k1", "pavement", "street_stall", 0.0, NIGHT) == []
    assert w.on_start("k2", "pavement", "garbage", 0.0, NOON) == []  # not in the zone's warned violations
    assert w.on_start("k3", "other-zone", "street_stall", 0.0, NOON) == []
    assert len(w.on_start("k4", "pavement", "street_stall", 10.0, NOON)) == 1
    assert w.on_start("k5", "pavement", "street_stall", 50.0, NOON) == []  # zone cooling down (100 s)
    assert len(w.on_start("k6", "pavement", "barbecue", 50.0, NOON)) == 1  # other violation: own cooldown
    assert len(w.on_start("k7", "pavement", "street_stall", 111.0, NOON)) == 1


def test_a_violation_that_resumes_is_not_resolved() -> None:
    w = loop()
    w.on_start("k1", "pavement", "street_stall", 0.0, NOON)
    w.on_end("k1", 10.0)
    w.on_resume("k1")  # back within the cooldown: the same case, not cleared
    assert [a.outcome for a in w.tick(30.0, NOON) if a.kind == "outcome"] == ["warned_no_effect"]


def test_stats() -> None:
    w = loop()
    acts = w.on_start("a", "pavement", "street_stall", 0.0, NOON)
    w.on_end("a", 12.0)
    acts += w.tick(30.0, NOON)
    acts += w.on_start("b", "pavement", "barbecue", 0.0, NOON)
    acts += w.tick(30.0, NOON)
    s = warning_stats(acts)
    assert s["pavement/street_stall"] == {"played": 1, "resolved": 1, "no_effect": 0, "share_resolved": 1.0,
                                          "median_time_to_clear_s": 12.0}
    assert s["pavement/barbecue"]["played"] == 2 and s["pavement/barbecue"]["share_resolved"] == 0.0
