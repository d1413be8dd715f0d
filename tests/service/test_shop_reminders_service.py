"""Shop reminders in the live service: the registry API (roles, masking, import, export), a text through a
provider's HTTP API, dispatch only after the reminder had no effect, and a real Kannel gateway with its
delivery reports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import ServiceConfig
from tests.helpers.data import CLIPS
from tests.helpers.kannel import kannel_or_skip, running_kannel
from tests.helpers.net import free_port, wait_for
from tests.helpers.service import TOKENS, Receiver, running_service

PAVEMENT = [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]]
REGISTRY = ("id,name,address,phone,camera,frontage,violations\n"
            "fruit,水果店,解放路12号,13812345678,cam-b,0.44 0; 1 0; 1 1; 0.74 1,street_stall garbage\n"
            "bad,面馆,,12345678901234,cam-b,0 0; 1 0; 1 1,garbage\n"
            "away,书店,,13900000000,no-such-cam,0 0; 1 0; 1 1,garbage\n")


def config(tmp_path: Path, port: int, hook: Receiver, sms: dict[str, Any], template: str | None = None
           ) -> ServiceConfig:
    reminders: dict[str, Any] = {"deadline_s": 3, "quiet_hours": [], "channels": [sms["name"]]}
    if template:
        reminders["template"] = template
    return ServiceConfig.model_validate({
        "server": {"port": port},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"},
                            {"name": "oper", "role": "operator", "env": "OPER_T"},
                            {"name": "viewer", "role": "viewer", "env": "VIEW_T"}]},
        "storage": {"db": str(tmp_path / "cases.db"), "evidence": str(tmp_path / "evidence")},
        "dispatch": {"public_url": f"http://127.0.0.1:{port}",
                     "webhooks": [{"name": "city", "url": f"http://127.0.0.1:{hook.port}/cases"}]},
        "notifiers": [{"type": "sms", **sms}],
        "reminders": reminders,
        "cameras": [{"id": "cam-b", "source": str(CLIPS / "reg_violations_b.mp4"),
                     "location": {"address": "解放路12号"},
                     "zones": [{"id": "pavement", "polygon": PAVEMENT, "violations": ["street_stall", "garbage"]}]}],
        "rules": {"dwell_s": {"street_stall": 2, "garbage": 2}, "gap_tolerance_s": 3},
    })


def clients(url: str) -> Iterator[httpx.Client]:
    for name in ("ADMIN_T", "OPER_T", "VIEW_T"):
        yield httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS[name]}"}, timeout=30)


def restart_camera(admin: httpx.Client, cfg: ServiceConfig) -> None:
    """Restart the camera's reader so that its clip plays again with the registry in place."""
    cam = cfg.cameras[0].model_dump(mode="json", exclude_defaults=True)
    assert admin.put("/api/cameras/cam-b", json=cam).status_code == 200


def test_registry_api_and_a_text_through_a_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMS_KEY", "provider-key-123")
    provider, hook = Receiver(answer={"Code": "OK"}), Receiver()
    provider.start()
    hook.start()
    sms = {"name": "sms-http", "gateway": "http", "url": f"http://127.0.0.1:{provider.port}/send",
           "secret_env": "SMS_KEY", "headers": {"Authorization": "Bearer {secret}"},
           "body": {"PhoneNumbers": "{to}", "Content": "{text}", "OutId": "{case}"}, "ok_json": {"Code": "OK"},
           "backoff_s": 0.1}
    cfg = config(tmp_path, free_port(), hook, sms)
    try:
        with running_service(cfg) as url:
            admin, oper, viewer = clients(url)
            imported = admin.post("/api/shop-imports", content=REGISTRY.encode(),
                                  headers={"Content-Type": "text/csv", "X-Filename": "shops.csv"}).json()
            assert imported["added"] == 1 and imported["replaced"] == 0
            assert [e.split(": ")[0] for e in imported["errors"]] == ["shops.csv:3", "shops.csv"]
            assert viewer.post("/api/shop-imports", content=REGISTRY.encode()).status_code == 403
            assert viewer.get("/api/shops").json()[0]["phone"] == "138****5678"
            assert oper.get("/api/shops/fruit").json()["phone"] == "13812345678"
            assert viewer.get("/api/shops.csv").status_code == 403
            assert "13812345678" in oper.get("/api/shops.csv").content.decode("utf-8-sig")
            shop = oper.get("/api/shops/fruit").json()
            assert admin.post("/api/shops", json=shop).status_code == 409
            assert admin.put("/api/shops/fruit", json={**shop, "camera": "nowhere"}).status_code == 422
            assert admin.put("/api/shops/fruit", json={**shop, "phone": "12"}).status_code == 422

            restart_camera(admin, cfg)
            sent = wait_for(lambda: provider.requests, 60, "a text at the provider")[0]
            assert sent["auth"] == "Bearer provider-key-123"
            assert sent["body"]["PhoneNumbers"] == "13812345678" and "水果店" in sent["body"]["Content"]
            case_id = sent["body"]["OutId"]
            assert case_id in sent["body"]["Content"]
            # The case waits for the deadline; the stall stays, so it is dispatched after reminder_no_effect.
            assert hook.requests == [] or all(r["body"]["case_id"] != case_id for r in hook.requests)
            wait_for(lambda: any(r["body"]["case_id"] == case_id for r in hook.requests), 60, "dispatch")
            notes = [h["note"] for h in admin.get(f"/api/cases/{case_id}").json()["history"]]
            assert "reminder_no_effect" in notes
            rem = wait_for(lambda: [r for r in viewer.get("/api/reminders", params={"case_id": case_id}).json()
                                    if r["outcome"]], 30, "the reminder's outcome")[0]
            assert rem["shop_id"] == "fruit" and rem["sent"] and rem["outcome"] == "reminder_no_effect"
            assert rem["channels"] == ["sms-http"]
            stats = viewer.get("/api/shop-stats").json()["fruit"]
            assert stats["reminders"] >= 1 and stats["no_effect"] >= 1
            assert viewer.get("/api/sms").json()[0]["sent"] >= 1
            metrics = viewer.get("/metrics").text
            assert 'streetwatch_shop_reminders_total{shop="fruit"}' in metrics
            assert 'streetwatch_sms_sent_total{notifier="sms-http"}' in metrics
            assert viewer.get("/api/sms/dlr", params={"reminder": rem["id"], "notifier": "sms-http",
                                                      "token": "forged", "type": 1}).status_code == 403
            assert admin.delete("/api/shops/fruit").status_code == 204
            assert viewer.get("/api/shops/fruit").status_code == 404
            assert viewer.get("/api/reminders", params={"shop": "fruit"}).json()  # the record stays
    finally:
        provider.stop()
        hook.stop()


def test_a_text_through_a_real_kannel_and_its_delivery_report(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    kannel_or_skip()
    hook = Receiver()
    hook.start()
    with running_kannel(tmp_path / "kannel", max_messages=5) as kannel:  # a long text goes as concatenated parts
        monkeypatch.setenv("KANNEL_PW", kannel.password)
        sms = {"name": "sms-kannel", "gateway": "kannel", "url": kannel.sendsms_url, "username": kannel.username,
               "password_env": "KANNEL_PW", "sender": "10690001", "backoff_s": 0.1}
        cfg = config(tmp_path, free_port(), hook, sms)  # the default template: longer than one SMS
        try:
            with running_service(cfg) as url:
                admin, _, viewer = clients(url)
                assert admin.post("/api/shop-imports", content=REGISTRY.encode(),
                                  headers={"Content-Type": "text/csv"}).json()["added"] == 1
                restart_camera(admin, cfg)
                first = kannel.wait_received(1, 60)[0]
                total = first.udh[4] if first.udh else 1
                parts = kannel.wait_received(total, 30)[:total]
                assert {p.to for p in parts} == {"13812345678"} and {p.sender for p in parts} == {"10690001"}
                text = b"".join(p.payload for p in sorted(parts, key=lambda p: p.udh[5:6])).decode("utf-16-be") \
                    if first.udh else first.text
                assert text.startswith("【城市管理】水果店：您好，") and "门前三包" in text and total >= 2
                case_id = text.split("案件号", 1)[1][:16]
                rem = wait_for(lambda: [r for r in viewer.get("/api/reminders", params={"case_id": case_id}).json()
                                        if r["delivery"] == "delivered"], 30, "Kannel's delivery report")[0]
                assert rem["shop_id"] == "fruit" and rem["sent"] and rem["text"] == text
        finally:
            hook.stop()


def test_a_reminder_cut_short_by_a_restart_is_dispatched_at_the_next_start(tmp_path: Path) -> None:
    from detector.events import EventState, ViolationEvent
    from pipelines.shops import parse_shops
    from pipelines.sinks.shop_store import ShopBook
    from pipelines.sinks.store import CaseContext, CaseStore

    hook = Receiver()
    hook.start()
    cfg = config(tmp_path, free_port(), hook, {"name": "sms-http", "gateway": "http", "url": "http://127.0.0.1:9/"})
    # The previous run: a case held back for its shop's reminder, the text sent, then the service stopped.
    store = CaseStore(cfg.storage.db)
    event = ViolationEvent(EventState.START, "k1", "cam-b", "pavement", "garbage", 1.0, 3.0, 0.8, (1, 2, 3, 4), 3.0)
    case_id = store.record(event, "rtsp://cam-b", CaseContext(targets=("city",), defer_dispatch=True))
    book = ShopBook(store)
    book.put(parse_shops(REGISTRY.encode(), "shops.csv")[0])
    book.add_reminder(case_id, "fruit", "cam-b", "pavement", "garbage", sent=True, channels=["sms-http"],
                      message="水果店：请清理", deadline_in_s=600)
    assert store.outbox(case_id=case_id, kind="case") == []
    store.close()
    try:
        with running_service(cfg) as url:
            _, _, viewer = clients(url)
            wait_for(lambda: any(r["body"]["case_id"] == case_id for r in hook.requests), 30, "the late dispatch")
            (rem,) = viewer.get("/api/reminders", params={"case_id": case_id}).json()
            assert rem["outcome"] == "undecided"
            notes = [h["note"] for h in viewer.get(f"/api/cases/{case_id}").json()["history"]]
            assert any("service restarted before the deadline" in n for n in notes)
    finally:
        hook.stop()
