"""The warning and reminder sinks on a real case store: no held-back case is left undispatched."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from detector.events import EventState, ViolationEvent
from detector.reminders import ReminderSettings
from detector.warnings import QuietHours, WarningAction, WarningLoop, WarningSettings
from pipelines.event_sinks import WarningSink
from pipelines.reminders import ReminderSink
from pipelines.shops import Shop
from pipelines.sinks.store import CaseContext, CaseStore
from pipelines.sources import Frame

CTX = CaseContext(targets=("city",))
FRAME = Frame(np.zeros((100, 200, 3), np.uint8), 0.0)
SHOP = Shop(id="fruit", name="水果店", phone="13812345678", camera="cam", frontage=[(0, 0.5), (1, 0.5), (1, 1), (0, 1)])


def event(state: EventState, ts: float) -> ViolationEvent:
    return ViolationEvent(state, "k", "cam", "pavement", "garbage", 1.0, ts, 0.8, (90.0, 50.0, 110.0, 95.0), ts)


def warnings(store: CaseStore, quiet: bool, played: list[WarningAction]) -> WarningSink:
    policy = WarningSettings(violations=frozenset({"garbage"}), recheck_s=10,
                             quiet_hours=(QuietHours.parse("00:00-23:59"),) if quiet else ())
    return WarningSink(WarningLoop({"pavement": policy}), store, CTX, lambda a, _c: played.append(a),
                       lambda: dt.time(12, 0), "test")


def record(store: CaseStore, sinks: list, ev: ViolationEvent) -> str:  # type: ignore[type-arg]
    """What the pipeline does: ask every sink, commit (held back if any defers), fan out."""
    deferred = [s.defers_dispatch(ev) for s in sinks]
    ctx = CaseContext(targets=CTX.targets, defer_dispatch=any(deferred))
    case_id = store.record(ev, "src", ctx)
    for s in sinks:
        s.on_event(ev, case_id, FRAME)
    return case_id


def test_a_case_not_warned_in_quiet_hours_is_dispatched_at_once(tmp_path: Path) -> None:
    store = CaseStore(tmp_path / "c.db")
    played: list[WarningAction] = []
    case_id = record(store, [warnings(store, quiet=True, played=played)], event(EventState.START, 3.0))
    assert played == [] and [r["target"] for r in store.outbox(case_id=case_id, kind="case")] == ["city"]
    assert "not warned" in store.history(case_id)[-1]["note"]


def test_a_reminder_without_effect_hands_over_to_the_warning_then_dispatch(tmp_path: Path) -> None:
    store = CaseStore(tmp_path / "c.db")
    played: list[WarningAction] = []
    warn = warnings(store, quiet=False, played=played)
    remind = ReminderSink("cam", [SHOP], {"pavement": ReminderSettings(deadline_s=5)}, store, CTX, "",
                          lambda ts: dt.datetime(2026, 12, 1, 12, 0) + dt.timedelta(seconds=ts), warnings=warn)
    remind.observe(FRAME)
    case_id = record(store, [remind, warn], event(EventState.START, 3.0))
    assert played == [] and store.outbox(case_id=case_id, kind="case") == []  # the text goes first
    remind.tick(8.0)  # the deadline: still there
    assert [a.kind for a in played] == ["play"]  # now the voice warning
    assert store.outbox(case_id=case_id, kind="case") == []  # ...which has its own re-check
    warn.tick(18.0)
    assert [r["target"] for r in store.outbox(case_id=case_id, kind="case")] == ["city"]
    notes = [h["note"] for h in store.history(case_id)]
    assert "reminder_no_effect" in notes and "warned_no_effect" in notes


def test_an_undecided_reminder_is_dispatched_without_a_warning(tmp_path: Path) -> None:
    store = CaseStore(tmp_path / "c.db")
    played: list[WarningAction] = []
    warn = warnings(store, quiet=False, played=played)
    remind = ReminderSink("cam", [SHOP], {"pavement": ReminderSettings(deadline_s=60)}, store, CTX, "",
                          lambda ts: dt.datetime(2026, 12, 1, 12, 0), warnings=warn)
    remind.observe(FRAME)
    case_id = record(store, [remind, warn], event(EventState.START, 3.0))
    remind.tick(10.0)
    remind.finish()  # the camera stopped before the deadline
    assert played == [] and [r["target"] for r in store.outbox(case_id=case_id, kind="case")] == ["city"]
    assert remind.rows[0]["outcome"] == "undecided"
