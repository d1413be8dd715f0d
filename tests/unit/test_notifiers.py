"""Notifiers: one outbox, one payload type, targets per camera and zone, configs told apart by ``type``.

A fake notifier stands in for the network: these tests check what the outbox hands out, retries and
dead-letters, and what the configs accept; the real webhook and speakers are exercised in tests/service and
tests/integration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from detector.events import EventState, ViolationEvent
from pipelines.notifiers.notice import Delivery, Notice, NoticeKind, RetryPolicy
from pipelines.notifiers.outbox import Attempt, deliver_due
from pipelines.notifiers.webhook import WebhookNotifier, WebhookNotifierConfig
from pipelines.sinks.store import CaseContext, CaseStore
from service.settings import ServiceConfig


class FakeNotifier:
    """Delivers nothing anywhere: fails its first ``fail`` notices, then records the rest."""

    def __init__(self, name: str, kinds: frozenset[NoticeKind] = frozenset({"case"}), fail: int = 0,
                 policy: RetryPolicy | None = None) -> None:
        self.name, self.kinds, self.fail = name, kinds, fail
        self.policy = policy or RetryPolicy(max_attempts=3, backoff_s=1.0)
        self.got: list[tuple[Notice, str]] = []

    def deliver(self, notice: Notice, key: str) -> Delivery:
        if self.fail > 0:
            self.fail -= 1
            return Delivery(False, "HTTP 503")
        self.got.append((notice, key))
        return Delivery(True)

    def status(self) -> dict[str, object]:
        return {"name": self.name}

    def close(self) -> None:
        pass


def event(zone: str, key: str = "cam:z:garbage:1") -> ViolationEvent:
    return ViolationEvent(state=EventState.START, key=key, camera="cam", zone=zone, violation="garbage",
                          start_s=1.0, ts=4.0, confidence=0.7, box=(10, 20, 30, 40), best_ts=4.0, track_ids=(2,))


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    return CaseStore(tmp_path / "cases.db")


def test_cases_go_to_the_camera_notifiers_or_the_zone_own(store: CaseStore) -> None:
    ctx = CaseContext(address="No. 8 Jianshe Rd", targets=("city",), zone_targets={"market": ("district",)},
                      payload_extra={"camera_name": "Gate 3"})
    street = store.record(event("street", "k1"), "clip", ctx)
    market = store.record(event("market", "k2"), "clip", ctx)
    rows = {(r["case_id"], r["target"], r["kind"]) for r in store.outbox()}
    assert rows == {(street, "city", "case"), (market, "district", "case")}
    city, district = FakeNotifier("city"), FakeNotifier("district")
    assert deliver_due(store, city) == 1 and deliver_due(store, district) == 1
    notice, key = city.got[0]
    assert (notice.kind, notice.case_id, notice.zone, notice.address, notice.camera_name) == (
        "case", street, "street", "No. 8 Jianshe Rd", "Gate 3")
    assert key == f"{street}:city"
    assert store.get(street).state == store.get(market).state == "dispatched"  # type: ignore[union-attr]


def test_a_failing_notifier_is_retried_after_its_backoff_then_dead_lettered(store: CaseStore) -> None:
    case_id = store.record(event("z"), "clip", CaseContext(targets=("city",)))
    city = FakeNotifier("city", fail=5)
    attempts: list[Attempt] = []
    now = 1000.0
    assert deliver_due(store, city, now=now, on_attempt=attempts.append) == 1
    assert deliver_due(store, city, now=now + 0.5) == 0  # not due before the 1 s backoff
    assert deliver_due(store, city, now=now + 1.0, on_attempt=attempts.append) == 1
    assert deliver_due(store, city, now=now + 10.0, on_attempt=attempts.append) == 1
    assert [(a.attempts, a.ok, a.dead) for a in attempts] == [(1, False, False), (2, False, False), (3, False, True)]
    assert [r["state"] for r in store.outbox(case_id=case_id)] == ["dead"]
    assert store.get(case_id).state == "registered"  # type: ignore[union-attr]
    assert store.retry_dead(int(store.outbox(case_id=case_id)[0]["id"]))
    city.fail = 0
    assert deliver_due(store, city, now=now + 20.0) == 1 and store.get(case_id).state == "dispatched"  # type: ignore[union-attr]


def _warning(store: CaseStore, case_id: str, speaker: str, key: str) -> None:
    notice = Notice(kind="warning", case_id=case_id, violation="garbage", camera="cam", zone="z", text="请勿乱扔垃圾")
    store.enqueue_notice(case_id, speaker, "warning", key, notice.model_dump(mode="json", exclude={"kind"}))


def test_warnings_share_the_outbox_but_never_dispatch_the_case(store: CaseStore) -> None:
    case_id = store.record(event("z"), "clip", CaseContext(targets=("city",), defer_dispatch=True))
    assert store.outbox() == []  # the warning comes first: no dispatch yet
    _warning(store, case_id, "pole-1", "w1")
    pole = FakeNotifier("pole-1", frozenset({"warning"}))
    assert deliver_due(store, pole) == 1 and pole.got[0][0].text == "请勿乱扔垃圾"
    assert store.get(case_id).state == "registered"  # type: ignore[union-attr]
    assert store.outbox(kind="case") == []
    store.enqueue_dispatch(case_id, CaseContext(targets=("city",)), "warned_no_effect")  # no effect: dispatch now
    assert [r["target"] for r in store.outbox(kind="case")] == ["city"]


def test_stale_warnings_and_notices_of_the_wrong_kind_are_dead_lettered_unsent(store: CaseStore) -> None:
    case_id = store.record(event("z"), "clip", CaseContext(targets=("pole-1",)))  # a case sent to a speaker
    _warning(store, case_id, "pole-1", "w1")
    pole = FakeNotifier("pole-1", frozenset({"warning"}), policy=RetryPolicy(max_age_s=60.0))
    deliver_due(store, pole, now=1e12)  # long after the warning was queued
    assert pole.got == []
    errors = sorted(str(r["last_error"]) for r in store.outbox(state="dead"))
    assert errors[0].startswith("expired") and "does not take case notices" in errors[1]


def test_webhook_body_is_the_documented_dispatch_payload() -> None:
    hook = WebhookNotifier(WebhookNotifierConfig(name="city", url="http://127.0.0.1:9/cases"),
                           public_url="https://sw.example/")
    body = hook.payload(Notice(kind="case", case_id="c1", violation="garbage", camera="cam", zone="z",
                               registered_at="2026-11-30T00:00:00Z", alternatives=["overflowing_bin"]))
    hook.close()
    assert body["evidence"] == {"snapshot": "https://sw.example/api/cases/c1/evidence/snapshot",
                                "clip": "https://sw.example/api/cases/c1/evidence/clip"}
    assert "kind" not in body and "text" not in body and body["alternatives"] == ["overflowing_bin"]


def _config(**extra: Any) -> dict[str, Any]:
    return {"cameras": [{"id": "a", "source": "a.mp4", "zones": [
        {"id": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "warnings": {"speakers": ["pole-1"]}}]}], **extra}


def test_notifier_configs_new_and_earlier_files_alike() -> None:
    cfg = ServiceConfig.model_validate(_config(
        dispatch={"webhooks": [{"name": "city", "url": "http://x/cases"}]},  # earlier files: no type
        voice={"speakers": [{"name": "pole-1", "type": "rtp", "host": "192.0.2.20", "port": 5004}]},
        notifiers=[{"type": "webhook", "name": "district", "url": "http://y/cases", "max_attempts": 3}]))
    assert [(n.type, n.name) for n in cfg.all_notifiers()] == [("webhook", "city"), ("voice", "pole-1"),
                                                                ("webhook", "district")]
    assert cfg.case_notifiers() == ("city", "district")
    new = ServiceConfig.model_validate(_config(notifiers=[
        {"type": "voice", "name": "pole-1", "transport": "file", "folder": "/tmp/audit"}]))
    assert new.all_notifiers()[0].type == "voice"


@pytest.mark.parametrize(("extra", "error"), [
    ({"notifiers": [{"type": "fax", "name": "s"}]}, "does not match any of the expected tags"),
    ({"notifiers": [{"type": "webhook", "name": "c", "url": "http://x", "timeout_s": "5"}]}, "is not a number"),
    ({"notifiers": [{"type": "voice", "name": "pole-1", "transport": "rtp", "host": "h"}]}, "needs port"),
    ({"notifiers": [{"type": "webhook", "name": "pole-1", "url": "http://x"}]}, "unknown speakers"),
    ({"notifiers": [{"type": "voice", "name": "pole-1", "transport": "file", "folder": "/a"},
                    {"type": "webhook", "name": "pole-1", "url": "http://x"}]}, "duplicate notifier names"),
])
def test_bad_notifier_configs_are_refused(extra: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        ServiceConfig.model_validate(_config(**extra))


def test_a_camera_may_only_send_cases_to_notifiers_of_cases() -> None:
    base = _config(notifiers=[{"type": "voice", "name": "pole-1", "transport": "file", "folder": "/a"},
                              {"type": "webhook", "name": "city", "url": "http://x"}])
    cfg = ServiceConfig.model_validate(base)
    cam = cfg.cameras[0]
    assert cam.case_targets(cfg.case_notifiers()) == (("city",), {})
    for notify in (["pole-1"], ["nowhere"]):
        with pytest.raises(ValueError, match="no notifier of cases"):
            cfg.check_targets(cam.model_copy(update={"notify": notify}))
