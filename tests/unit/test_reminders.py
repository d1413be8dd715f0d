"""The shop reminder loop: attribution by frontage, quiet hours, opt-out, daily limit, outcomes, statistics."""

from __future__ import annotations

import datetime as dt

import numpy as np

from detector.reminders import (
    DEFAULT_TEMPLATE,
    Frontage,
    ReminderLoop,
    ReminderSettings,
    render_text,
    shop_stats,
)
from detector.warnings import QuietHours
from detector.zones import PolygonZone

NOON = dt.datetime(2026, 12, 1, 12, 0)
NIGHT = dt.datetime(2026, 12, 1, 23, 0)


def frontage(shop: str, x0: float, x1: float, violations: tuple[str, ...] = ("garbage", "street_stall"),
             opted_out: bool = False) -> Frontage:
    poly = np.array([[x0, 0.5], [x1, 0.5], [x1, 1.0], [x0, 1.0]], np.float32)
    return Frontage(shop, PolygonZone(poly), frozenset(violations), opted_out)


def make_loop(**kw: object) -> ReminderLoop:
    policy = ReminderSettings(deadline_s=60, quiet_hours=(QuietHours.parse("21:00-08:00"),), max_per_day=2)
    shops = [frontage("bakery", 0.0, 0.5), frontage("grill", 0.5, 1.0, ("barbecue",)),
             frontage("corner", 0.4, 0.6)]
    return ReminderLoop(shops, {"pavement": policy}, **kw)  # type: ignore[arg-type]


def test_a_violation_is_the_shop_whose_frontage_holds_its_ground_point() -> None:
    loop = make_loop()
    assert loop.attribute("pavement", "garbage", (0.2, 0.8), NOON).shop == "bakery"  # type: ignore[union-attr]
    assert loop.attribute("pavement", "garbage", (0.2, 0.3), NOON) is None  # above the pavement
    assert loop.attribute("pavement", "garbage", (0.8, 0.8), NOON) is None  # the grill answers for barbecue only
    assert loop.attribute("pavement", "barbecue", (0.8, 0.8), NOON).shop == "grill"  # type: ignore[union-attr]
    assert loop.attribute("pavement", "garbage", (0.5, 0.9), NOON).shop == "corner"  # type: ignore[union-attr]
    assert loop.attribute("carriageway", "garbage", (0.2, 0.8), NOON) is None  # no policy in that zone


def test_quiet_hours_opt_out_and_daily_limit_skip_the_text() -> None:
    loop = make_loop()
    assert loop.attribute("pavement", "garbage", (0.2, 0.8), NIGHT).reason == "quiet_hours"  # type: ignore[union-attr]
    for i in range(2):
        found = loop.attribute("pavement", "garbage", (0.2, 0.8), NOON)
        assert found is not None and found.reason is None
        assert loop.start(f"k{i}", "pavement", "garbage", 10.0 * i, NOON, found).kind == "send"
    found = loop.attribute("pavement", "garbage", (0.2, 0.8), NOON)
    assert found is not None and found.reason == "daily_limit"
    skipped = loop.start("k2", "pavement", "garbage", 30.0, NOON, found)
    assert skipped.kind == "skipped" and skipped.offence == 3 and not loop.waiting("k2")
    assert loop.attribute("pavement", "garbage", (0.2, 0.8), NOON + dt.timedelta(days=1)).reason is None  # type: ignore[union-attr]
    out = ReminderLoop([frontage("quiet", 0.0, 1.0, opted_out=True)], {"pavement": ReminderSettings()})
    assert out.attribute("pavement", "garbage", (0.5, 0.8), NOON).reason == "opted_out"  # type: ignore[union-attr]


def test_cleared_by_the_deadline_is_resolved_and_still_there_is_no_effect() -> None:
    loop = make_loop(grace_s={"pavement": 5.0})
    for key, x in (("gone", 0.2), ("stays", 0.8)):
        found = loop.attribute("pavement", "garbage" if key == "gone" else "barbecue", (x, 0.8), NOON)
        assert found is not None
        sent = loop.start(key, "pavement", "garbage" if key == "gone" else "barbecue", 100.0, NOON, found)
        assert sent.kind == "send" and sent.deadline_ts == 160.0
    loop.on_end("gone", 150.0)
    assert loop.tick(162.0) == []  # the deadline has come, but an end is only known after the grace
    outcomes = {a.key: a for a in loop.tick(165.0)}
    assert outcomes["gone"].outcome == "resolved_by_reminder" and outcomes["gone"].time_to_clear_s == 50.0
    assert outcomes["stays"].outcome == "reminder_no_effect"
    assert not loop.waiting("gone") and not loop.waiting("stays")


def test_a_violation_that_comes_back_has_not_cleared_and_an_ended_source_is_undecided() -> None:
    loop = make_loop()
    for key in ("back", "cut"):
        found = loop.attribute("pavement", "garbage", (0.2, 0.8), NOON)
        assert found is not None
        loop.start(key, "pavement", "garbage", 0.0, NOON, found)
    loop.on_end("back", 20.0)
    loop.on_resume("back")
    assert [a.outcome for a in loop.tick(60.0)] == ["reminder_no_effect", "reminder_no_effect"]
    found = loop.attribute("pavement", "garbage", (0.2, 0.8), NOON + dt.timedelta(days=1))
    assert found is not None
    loop.start("late", "pavement", "garbage", 100.0, NOON, found)
    assert [a.outcome for a in loop.finish(120.0)] == ["undecided"]


def test_text_template_and_shop_statistics() -> None:
    text = render_text(DEFAULT_TEMPLATE, shop="老王水果店", violation="garbage", place="建设路6号",
                       time=NOON, deadline=NOON + dt.timedelta(minutes=30), case="c1")
    assert "老王水果店" in text and "乱堆乱放垃圾" in text and "12:30" in text and "c1" in text
    assert render_text("{shop} {unknown}", shop="A", violation="x", place="", time=NOON, deadline=NOON,
                       case="") == "A {unknown}"
    stats = shop_stats([
        {"shop": "a", "sent": True, "outcome": "resolved_by_reminder", "time_to_clear_s": 40.0},
        {"shop": "a", "sent": True, "outcome": "reminder_no_effect", "time_to_clear_s": None},
        {"shop": "a", "sent": False, "outcome": None, "time_to_clear_s": None},
        {"shop": "b", "sent": True, "outcome": "undecided", "time_to_clear_s": None},
    ])
    assert stats["a"] == {"violations": 3, "reminders": 2, "resolved": 1, "no_effect": 1, "share_resolved": 0.5,
                          "median_time_to_clear_s": 40.0, "repeat_offences": 2}
    assert stats["b"]["share_resolved"] is None and stats["b"]["repeat_offences"] == 0


def test_texts_of_an_earlier_run_count_against_the_daily_limit() -> None:
    loop = make_loop()
    loop.already_sent(NOON.date(), {"bakery": 2})
    assert loop.attribute("pavement", "garbage", (0.2, 0.8), NOON).reason == "daily_limit"  # type: ignore[union-attr]
    assert loop.attribute("pavement", "barbecue", (0.8, 0.8), NOON).reason is None  # type: ignore[union-attr]
