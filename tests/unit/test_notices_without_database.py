"""While the database cannot be reached, a shop's text and a voice warning are still sent, once each, without the
outbox, and the shop's reminder record waits in the case journal (it keeps its time); any other error still fails
loudly and sends nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from detector.events import EventState, ViolationEvent
from detector.reminders import ReminderAction
from detector.warnings import WarningAction
from pipelines.case_spool import CaseSpool
from pipelines.notifiers.notice import Delivery, Notice, NoticeKind, RetryPolicy
from pipelines.reminders import ShopReminder
from pipelines.shops import Shop
from service.runtime import JOURNAL_NAME, Runtime
from service.settings import ServiceConfig

PAVEMENT = [[0.4, 0.0], [1.0, 0.0], [1.0, 1.0], [0.7, 1.0]]
SHOP = Shop(id="fruit", name="水果店", phone="13812345678", camera="cam-b", frontage=[(0.4, 0), (1, 0), (1, 1)])


class Recorder:
    """A notifier that records what it is given (the SMS gateway or loudspeaker of these tests)."""

    def __init__(self, name: str, kind: NoticeKind) -> None:
        self.name, self.policy = name, RetryPolicy()
        self.kinds: frozenset[NoticeKind] = frozenset({kind})
        self.sent: list[tuple[Notice, str]] = []

    def deliver(self, notice: Notice, key: str) -> Delivery:
        self.sent.append((notice, key))
        return Delivery(True)

    def status(self) -> dict[str, object]:
        return {}

    def close(self) -> None:
        pass


class Switch:
    """Whether the database answers; while it does not, every call fails as an unreachable server's would."""

    def __init__(self) -> None:
        self.error: Exception | None = None

    def down(self, error: Exception | None = None) -> None:
        self.error = error or OperationalError("INSERT ...", {}, ConnectionRefusedError("connection refused"))

    def up(self) -> None:
        self.error = None


class Behind:
    """An object of the database (the case store, the shop registry) behind a :class:`Switch`."""

    def __init__(self, real: object, switch: Switch) -> None:
        self.real, self.switch = real, switch

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.real, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.switch.error is not None:
                raise self.switch.error
            return real(*args, **kwargs)
        return call


@pytest.fixture()
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    cfg = ServiceConfig.model_validate({
        "storage": {"db": str(tmp_path / "cases.db"), "evidence": str(tmp_path / "evidence")},
        "notifiers": [{"type": "sms", "name": "sms-http", "gateway": "http", "url": "http://127.0.0.1:9/send",
                       "body": {"PhoneNumbers": "{to}", "Content": "{text}"}}],
        "voice": {"cache": str(tmp_path / "tts"), "speakers": [
            {"name": "audit", "type": "file", "folder": str(tmp_path / "audit")}]},
        "cameras": [{"id": "cam-b", "source": "rtsp://127.0.0.1:9/none",
                     "zones": [{"id": "pavement", "polygon": PAVEMENT, "violations": ["garbage"],
                                "warnings": {"violations": ["garbage"], "speakers": ["audit"],
                                             "messages": {"garbage": "请勿乱堆垃圾"}}}]}],
    })
    rt = Runtime(cfg, {})
    rt.notifications.notifiers = {"sms-http": Recorder("sms-http", "sms"), "audit": Recorder("audit", "warning")}
    published: list[tuple[str, dict[str, object]]] = []
    rt.notifications.publish = lambda kind, data: published.append((kind, data))
    rt.published = published  # type: ignore[attr-defined]
    rt.shops.put([SHOP])
    yield rt
    rt.notifications.drain()
    rt.store.engine.dispose()


def behind(rt: Runtime, switch: Switch, outbox: bool = True) -> None:
    """Put the runtime's database behind ``switch`` (the spool's writes; the outbox too unless ``outbox`` False)."""
    rt.spool = CaseSpool(Behind(rt.store, switch), rt.evidence_root / JOURNAL_NAME,  # type: ignore[arg-type]
                         rt.evidence_root, Behind(rt.shops, switch))  # type: ignore[arg-type]
    if outbox:
        rt.notifications.store = Behind(rt.store, switch)  # type: ignore[assignment]


def stored_case(rt: Runtime) -> str:
    ev = ViolationEvent(state=EventState.START, key="cam-b:pavement:garbage:1", camera="cam-b", zone="pavement",
                        violation="garbage", start_s=1.0, ts=12.0, confidence=0.7, box=(10, 20, 30, 40), best_ts=12.0,
                        track_ids=(3,))
    return rt.store.record(ev, "cam-b")


def garbage_seen(track: int) -> ViolationEvent:
    """A new garbage case on the pavement (one per track)."""
    return ViolationEvent(state=EventState.START, key=f"cam-b:pavement:garbage:{track}", camera="cam-b",
                          zone="pavement", violation="garbage", start_s=1.0, ts=12.0, confidence=0.7,
                          box=(10, 20, 30, 40), best_ts=12.0, track_ids=(track,))


def step(case_id: str, channels: tuple[str, ...] = ("sms-http",)) -> ShopReminder:
    action = ReminderAction(kind="send", key="cam-b:pavement:garbage:1", shop="fruit", zone="pavement",
                            violation="garbage", ts=12.0, deadline_ts=72.0)
    return ShopReminder(action, case_id, "cam-b", SHOP, channels, "请清理门前垃圾")


def sent(rt: Runtime, name: str) -> list[tuple[Notice, str]]:
    rt.notifications.drain()  # the direct sends are done
    recorder = rt.notifications.notifiers[name]
    assert isinstance(recorder, Recorder)
    return recorder.sent


def test_a_text_goes_out_while_its_record_waits_and_the_record_follows_after_a_restart(runtime: Runtime) -> None:
    case_id, switch = stored_case(runtime), Switch()
    behind(runtime, switch)
    switch.down()
    before = datetime.now(UTC)
    runtime._remind(step(case_id))
    [(notice, key)] = sent(runtime, "sms-http")
    assert notice.kind == "sms" and notice.to == "13812345678" and notice.reminder_id is None
    assert notice.text == "请清理门前垃圾" and key == f"sms:{case_id}:fruit:12.000:sms-http"
    [(kind, event)] = runtime.published  # type: ignore[attr-defined]
    assert kind == "sms" and event["ok"] and event["to"] == "138****5678" and event["attempts"] == 1
    assert runtime.spool.waiting() == 1 and runtime.shops.reminders(case_id=case_id) == []
    journal = runtime.evidence_root / JOURNAL_NAME
    line = json.loads(journal.read_text(encoding="utf-8"))
    assert before - timedelta(milliseconds=1) <= datetime.fromisoformat(line["args"]["created"]) <= datetime.now(UTC)
    # The service dies; the next start replays the journal with the database back. The record keeps the time it
    # happened (set back an hour here, to tell it from the replay's).
    line["args"]["created"] = (before - timedelta(hours=1)).isoformat()
    journal.write_text(json.dumps(line) + "\n", encoding="utf-8")
    again = CaseSpool(runtime.store, journal, runtime.evidence_root, runtime.shops)
    assert again.waiting() == 1 and again.flush()
    [record] = runtime.shops.reminders(case_id=case_id)
    created = datetime.fromisoformat(record["created_at"])
    assert record["sent"] and record["channels"] == ["sms-http"] and record["camera"] == "cam-b"
    assert abs(created - (before - timedelta(hours=1))) < timedelta(milliseconds=1)
    assert datetime.fromisoformat(record["deadline_at"]) - created == timedelta(seconds=60)
    assert runtime.shops.sent_since(before - timedelta(hours=2)) == {"fruit": 1}  # the day's limit counts it
    assert runtime.shops.open_reminders()[0]["case_id"] == case_id  # a restart before the deadline settles it


def test_a_recorded_text_goes_out_when_the_outbox_cannot_take_it(runtime: Runtime) -> None:
    case_id = stored_case(runtime)
    switch = Switch()
    runtime.notifications.store = Behind(runtime.store, switch)  # type: ignore[assignment]
    switch.down()
    runtime._remind(step(case_id))
    [(notice, key)] = sent(runtime, "sms-http")
    [record] = runtime.shops.reminders(case_id=case_id)
    assert notice.reminder_id == record["id"] and key == f"sms:{record['id']}:sms-http"


def test_with_the_database_up_the_text_waits_in_the_outbox(runtime: Runtime) -> None:
    runtime._remind(step(stored_case(runtime)))
    assert sent(runtime, "sms-http") == []
    [row] = runtime.store.outbox()
    assert row["target"] == "sms-http" and row["kind"] == "sms"


def test_any_other_error_is_raised_and_sends_nothing(runtime: Runtime) -> None:
    switch = Switch()
    behind(runtime, switch)
    switch.down(ValueError("bad shop row"))
    with pytest.raises(ValueError, match="bad shop row"):
        runtime._remind(step(stored_case(runtime)))
    assert sent(runtime, "sms-http") == [] and runtime.spool.waiting() == 0


def test_an_outbox_that_refuses_the_row_for_another_reason_sends_nothing(runtime: Runtime) -> None:
    case_id, switch = stored_case(runtime), Switch()
    runtime.notifications.store = Behind(runtime.store, switch)  # type: ignore[assignment]
    switch.down(IntegrityError("INSERT INTO outbox ...", {}, ValueError("constraint")))
    runtime._remind(step(case_id))
    assert sent(runtime, "sms-http") == [] and len(runtime.shops.reminders(case_id=case_id)) == 1


def test_a_gateway_not_configured_is_not_tried(runtime: Runtime) -> None:
    switch = Switch()
    behind(runtime, switch)
    switch.down()
    runtime._remind(step(stored_case(runtime), ("sms-gone",)))
    assert sent(runtime, "sms-http") == [] and runtime.published == []  # type: ignore[attr-defined]


def test_an_outcome_waits_with_the_record_and_is_announced(runtime: Runtime) -> None:
    case_id, switch = stored_case(runtime), Switch()
    behind(runtime, switch)
    switch.down()
    runtime._remind(step(case_id))
    outcome = ReminderAction(kind="outcome", key="cam-b:pavement:garbage:1", shop="fruit", zone="pavement",
                             violation="garbage", ts=80.0, outcome="resolved_by_reminder", time_to_clear_s=30.0)
    bus: list[str] = []
    runtime.bus.publish = lambda kind, data: bus.append(f"{kind}:{data['step']}")  # type: ignore[method-assign]
    runtime._remind(ShopReminder(outcome, case_id, "cam-b", SHOP))
    assert bus == ["reminder:outcome"] and runtime.spool.waiting() == 2
    switch.up()
    assert runtime.spool.flush()
    [record] = runtime.shops.reminders(case_id=case_id)
    assert record["outcome"] == "resolved_by_reminder" and record["time_to_clear_s"] == 30.0


def test_a_warning_is_played_once_when_the_outbox_cannot_take_it(runtime: Runtime) -> None:
    switch = Switch()
    runtime.notifications.store = Behind(runtime.store, switch)  # type: ignore[assignment]
    switch.down()
    camera = runtime.config.cameras[0]
    runtime.notifications.warn(camera, WarningAction("play", "k", "pavement", "garbage", 5.0, "请勿乱堆垃圾"), "case-2")
    [(notice, _)] = sent(runtime, "audit")
    assert notice.kind == "warning" and notice.case_id == "case-2" and notice.text == "请勿乱堆垃圾"


def test_a_case_and_its_reminder_wait_together_and_a_second_replay_stores_nothing_twice(runtime: Runtime) -> None:
    switch = Switch()
    behind(runtime, switch)
    switch.down()
    case_id = runtime.spool.record(garbage_seen(9), "cam-b")  # a new case: its id is chosen while the database is away
    runtime._remind(step(case_id))
    journal = runtime.evidence_root / JOURNAL_NAME
    lines = journal.read_text(encoding="utf-8")
    assert [json.loads(x)["kind"] for x in lines.splitlines()] == ["record", "reminder"]
    switch.up()
    assert runtime.spool.flush() and runtime.store.get(case_id) is not None
    # The journal could not be removed (or the process died after the database took it): replayed again.
    journal.write_text(lines, encoding="utf-8")
    assert CaseSpool(runtime.store, journal, runtime.evidence_root, runtime.shops).flush()
    assert len(runtime.shops.reminders(case_id=case_id)) == 1


def test_a_reminder_the_database_refuses_is_skipped_and_holds_up_nothing(runtime: Runtime) -> None:
    case_id, switch = stored_case(runtime), Switch()
    behind(runtime, switch)
    switch.down()
    runtime._remind(step("no-such-case"))  # its case's record was lost: the reminder's foreign key fails
    runtime.spool.annotate(case_id, "operator", "seen on patrol")
    switch.up()
    assert runtime.spool.flush() and runtime.spool.waiting() == 0
    assert runtime.shops.reminders(case_id="no-such-case") == []
    assert runtime.store.history(case_id)[-1]["note"] == "seen on patrol"


def test_a_previous_runs_writes_refused_at_start_are_settled_when_they_get_in(runtime: Runtime) -> None:
    """A restart while the database refuses the previous run's journal: when the writes get in later, that run's
    case is ended and its text's re-check settled, as a start would have done; this run's own stay as they are."""
    switch = Switch()
    behind(runtime, switch)
    switch.down()
    old_case = runtime.spool.record(garbage_seen(7), "cam-b")
    runtime._remind(step(old_case))
    # The service dies; the next run starts with the database still away.
    journal = runtime.evidence_root / JOURNAL_NAME
    runtime.started_at = datetime.now(UTC).timestamp() + 0.5  # clearly after the old run's writes
    runtime.spool = CaseSpool(Behind(runtime.store, switch), journal, runtime.evidence_root,  # type: ignore[arg-type]
                              Behind(runtime.shops, switch))  # type: ignore[arg-type]
    runtime.spool.on_previous_run_applied = runtime._settle_previous_run
    runtime.spool.start()
    assert runtime.spool.waiting() == 2
    # This run's own case and text, once the database answers, are tracked by this run: left alone.
    new_case = runtime.store.record(garbage_seen(8), "cam-b")
    runtime.shops.add_reminder(new_case, "fruit", "cam-b", "pavement", "garbage", sent=True, reason="",
                               channels=["sms-http"], message="请清理门前垃圾", offence=1, deadline_in_s=600,
                               created=datetime.fromtimestamp(runtime.started_at + 1, UTC))
    switch.up()
    runtime.spool.stop()  # its last replay (or the background one it waits for) applies the journal
    assert runtime.spool.waiting() == 0
    old, new = runtime.store.get(old_case), runtime.store.get(new_case)
    assert old is not None and new is not None and not old.active and new.active
    assert {r["case_id"]: r["outcome"] for r in runtime.shops.reminders()} == {old_case: "undecided", new_case: None}
    assert [r["case_id"] for r in runtime.shops.open_reminders()] == [new_case]


def test_a_start_that_loses_the_database_after_the_replay_settles_the_previous_run_once_it_is_back(
        runtime: Runtime) -> None:
    """The previous run's journal gets in at start, then the database drops before the start settles that run: the
    settling waits, and once the database answers it ends the old run's case (stored only at this start) and the
    case stored before it, while this run's case, stored late too, stays."""
    before = stored_case(runtime)  # the previous run's case stored while the database answered (a day before)
    with runtime.store.engine.begin() as db:
        db.execute(text("UPDATE cases SET created_at = :t WHERE id = :id"),
                   {"t": (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="milliseconds"), "id": before})
    switch = Switch()
    behind(runtime, switch)
    switch.down()
    journalled = runtime.spool.record(garbage_seen(7), "cam-b")  # ... and one that waited in its journal
    journal = runtime.evidence_root / JOURNAL_NAME
    runtime.started_at = datetime.now(UTC).timestamp()  # the next run starts
    runtime.spool = CaseSpool(Behind(runtime.store, switch), journal, runtime.evidence_root,  # type: ignore[arg-type]
                              Behind(runtime.shops, switch))  # type: ignore[arg-type]
    real_store = runtime.store
    runtime.store = Behind(real_store, switch)  # type: ignore[assignment]
    switch.up()
    runtime.spool.start()  # the journal gets in (under this run's clock)...
    assert runtime.spool.waiting() == 0 and real_store.get(journalled) is not None
    switch.down()  # ... and the database drops before the start settles
    runtime._settle_at_start()
    this_run = runtime.spool.record(garbage_seen(8), "cam-b")  # this run's case waits
    switch.up()
    runtime.spool.stop()  # its last replay applies the waiting write, then the settling
    runtime.store = real_store
    cases = {c: real_store.get(c) for c in (before, journalled, this_run)}
    assert all(c is not None for c in cases.values())
    assert not cases[before].active and not cases[journalled].active  # type: ignore[union-attr]
    assert cases[this_run].active  # type: ignore[union-attr]
