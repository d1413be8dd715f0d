"""While the database (the outbox) cannot be reached, a shop's text and a voice warning are still sent, once each,
without the outbox; any other error still fails loudly and sends nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from detector.events import EventState, ViolationEvent
from detector.reminders import ReminderAction
from detector.warnings import WarningAction
from pipelines.notifiers.notice import Delivery, Notice, NoticeKind, RetryPolicy
from pipelines.reminders import ShopReminder
from pipelines.shops import Shop
from service.runtime import Runtime
from service.settings import ServiceConfig

PAVEMENT = [[0.4, 0.0], [1.0, 0.0], [1.0, 1.0], [0.7, 1.0]]


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


class Down:
    """An object whose every call fails as an unreachable database server's would (or with ``error``)."""

    def __init__(self, real: object, error: Exception | None = None) -> None:
        self.real = real
        self.error = error or OperationalError("INSERT ...", {}, ConnectionRefusedError("connection refused"))

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise self.error
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
    yield rt
    rt.notifications.drain()
    rt.store.engine.dispose()


SHOP = Shop(id="fruit", name="水果店", phone="13812345678", camera="cam-b", frontage=[(0.4, 0), (1, 0), (1, 1)])


def step(case_id: str = "case-1") -> ShopReminder:
    action = ReminderAction(kind="send", key="cam-b:pavement:garbage:1", shop="fruit", zone="pavement",
                            violation="garbage", ts=12.0, deadline_ts=72.0)
    return ShopReminder(action, case_id, "cam-b", SHOP, ("sms-http",), "请清理门前垃圾")


def stored_case(rt: Runtime) -> str:
    """A case and the shop in the store (a reminder's record names both)."""
    rt.shops.put([SHOP])
    ev = ViolationEvent(state=EventState.START, key="cam-b:pavement:garbage:1", camera="cam-b", zone="pavement",
                        violation="garbage", start_s=1.0, ts=12.0, confidence=0.7, box=(10, 20, 30, 40), best_ts=12.0,
                        track_ids=(3,))
    return rt.store.record(ev, "cam-b")


def sent(rt: Runtime, name: str) -> list[tuple[Notice, str]]:
    rt.notifications.drain()  # the direct sends are done
    recorder = rt.notifications.notifiers[name]
    assert isinstance(recorder, Recorder)
    return recorder.sent


def test_a_text_goes_out_when_its_reminder_cannot_be_recorded(runtime: Runtime) -> None:
    runtime.shops = Down(runtime.shops)  # type: ignore[assignment]
    runtime._remind(step())
    [(notice, key)] = sent(runtime, "sms-http")
    assert notice.kind == "sms" and notice.to == "13812345678" and notice.reminder_id is None
    assert notice.text == "请清理门前垃圾" and key == "sms:case-1:fruit:12.000:sms-http"
    [(kind, event)] = runtime.published  # type: ignore[attr-defined]
    assert kind == "sms" and event["ok"] and event["to"] == "138****5678" and event["attempts"] == 1


def test_a_recorded_text_goes_out_when_the_outbox_cannot_take_it(runtime: Runtime) -> None:
    case_id = stored_case(runtime)
    runtime.notifications.store = Down(runtime.store)  # type: ignore[assignment]
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
    runtime.shops = Down(runtime.shops, ValueError("bad shop row"))  # type: ignore[assignment]
    with pytest.raises(ValueError, match="bad shop row"):
        runtime._remind(step())
    assert sent(runtime, "sms-http") == []


def test_an_outbox_that_refuses_the_row_for_another_reason_sends_nothing(runtime: Runtime) -> None:
    case_id = stored_case(runtime)
    refused = IntegrityError("INSERT INTO outbox ...", {}, ValueError("constraint"))
    runtime.notifications.store = Down(runtime.store, refused)  # type: ignore[assignment]
    runtime._remind(step(case_id))
    assert sent(runtime, "sms-http") == [] and len(runtime.shops.reminders(case_id=case_id)) == 1


def test_a_gateway_not_configured_is_not_tried(runtime: Runtime) -> None:
    runtime.shops = Down(runtime.shops)  # type: ignore[assignment]
    s = step()
    runtime._remind(ShopReminder(s.action, s.case_id, s.camera, s.shop, ("sms-gone",), s.text))
    assert sent(runtime, "sms-http") == [] and runtime.published == []  # type: ignore[attr-defined]


def test_an_outcome_that_cannot_be_recorded_is_still_announced(runtime: Runtime) -> None:
    runtime.shops = Down(runtime.shops)  # type: ignore[assignment]
    s = step()
    outcome = ReminderAction(kind="outcome", key=s.action.key, shop="fruit", zone="pavement", violation="garbage",
                             ts=80.0, outcome="resolved_by_reminder", time_to_clear_s=30.0)
    bus: list[str] = []
    runtime.bus.publish = lambda kind, data: bus.append(f"{kind}:{data['step']}:{data['outcome']}")  # type: ignore[method-assign]
    runtime._remind(ShopReminder(outcome, s.case_id, s.camera, s.shop))
    assert bus == ["reminder:outcome:resolved_by_reminder"] and sent(runtime, "sms-http") == []


def test_a_warning_is_played_once_when_the_outbox_cannot_take_it(runtime: Runtime) -> None:
    runtime.notifications.store = Down(runtime.store)  # type: ignore[assignment]
    camera = runtime.config.cameras[0]
    runtime.notifications.warn(camera, WarningAction("play", "k", "pavement", "garbage", 5.0, "请勿乱堆垃圾"), "case-2")
    [(notice, _)] = sent(runtime, "audit")
    assert notice.kind == "warning" and notice.case_id == "case-2" and notice.text == "请勿乱堆垃圾"
