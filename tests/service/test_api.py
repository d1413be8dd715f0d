"""The live service end to end: a looping file camera, the real model, real HTTP peers on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from pipelines.config import ConfigError
from pipelines.notifiers.payload import DispatchPayload
from service.app import create_app
from service.settings import ServiceConfig, resolve_tokens
from tests.helpers.data import DATA
from tests.helpers.net import wait_for
from tests.helpers.service import Service


def cases(svc: Service, **params: str) -> dict:
    with svc.client("VIEW_T") as c:
        r = c.get("/api/cases", params=params)
        assert r.status_code == 200, r.text
        return r.json()


def at_least(svc: Service, n: int) -> dict | None:
    page = cases(svc)
    return page if page["total"] >= n else None


def test_cases_appear_with_location_and_evidence(service: Service) -> None:
    page = wait_for(lambda: at_least(service, 2), 90, "two cases")
    kinds = {c["violation"] for c in page["items"]}
    assert kinds == {"street_stall", "garbage"}
    c = page["items"][0]
    assert c["camera"] == "cam-b" and c["address"] == "No. 1 Test Rd" and c["gps"] == [30.1, 120.2]
    with service.client("VIEW_T") as client:
        snap = client.get(f"/api/cases/{c['id']}/evidence/snapshot")
        assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"
        def clip_ready() -> httpx.Response | None:
            r = client.get(f"/api/cases/{c['id']}/evidence/clip")
            return r if r.status_code == 200 else None

        clip = wait_for(clip_ready, 60, "clip")
        assert clip.headers["content-type"] == "video/mp4" and len(clip.content) > 1000
        # A viewer gets the masked copy and never the original; an operator may ask for the original.
        assert client.get(f"/api/cases/{c['id']}/evidence/snapshot", params={"original": "true"}).status_code == 403
        with service.client("OPER_T") as oper:
            orig = oper.get(f"/api/cases/{c['id']}/evidence/snapshot", params={"original": "true"})
            assert orig.status_code == 200 and orig.content[:2] == b"\xff\xd8" and orig.content != snap.content
            assert oper.get(f"/api/cases/{c['id']}/evidence/snapshot").content == snap.content  # masked by default
        cam = next(x for x in client.get("/api/cameras").json() if x["id"] == "cam-b")
        # Stationary violations only, but key frames every 2 s are too rare for detection every 0.5 s.
        assert cam["decode"] == "all" and "key frames every 2.00 s" in cam["decode_detail"], cam
        live = client.get("/api/cameras/cam-b/frame.jpg")  # a viewer's live view is masked too
        assert live.status_code == 200 and live.content[:2] == b"\xff\xd8"
        assert client.get("/api/cases/nope/evidence/snapshot").status_code == 404
        assert client.get(f"/api/cases/{c['id']}/evidence/..%2F..%2Fcases.db").status_code in (404, 422)
        assert client.get("/api/cases/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_auth_roles_and_error_shape(service: Service) -> None:
    with service.client(None) as anon:
        r = anon.get("/api/cases")
        assert r.status_code == 401 and r.json() == {"error": {"status": 401, "message": "a bearer token is required"}}
        assert anon.get("/api/cases", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert anon.get("/healthz").json() == {"status": "ok"}
    with service.client("VIEW_T") as viewer:
        assert viewer.get("/api/outbox").status_code == 403
        assert viewer.post("/api/cameras", json={"id": "x", "source": "a.mp4"}).status_code == 403
        assert viewer.get("/api/cases", params={"limit": 0}).json()["error"]["status"] == 422
    with service.client("OPER_T") as oper:
        assert oper.delete("/api/cameras/cam-b").status_code == 403
        big = oper.post("/api/cases/x/transition", content=b"x" * 2_000_001,
                        headers={"content-type": "application/json"})
        assert big.status_code == 413


def test_filters_and_paging(service: Service) -> None:
    wait_for(lambda: cases(service)["total"] >= 2, 90, "two cases")
    only = cases(service, violation="garbage")
    assert only["total"] == 1 and only["items"][0]["violation"] == "garbage"
    first, second = cases(service, limit="1"), cases(service, limit="1", offset="1")
    assert first["total"] == second["total"] >= 2
    assert first["items"][0]["id"] != second["items"][0]["id"]
    assert cases(service, camera="nobody")["total"] == 0
    assert cases(service, since="2999-01-01")["total"] == 0


def test_webhook_retries_with_one_idempotency_key_then_dispatches(service: Service) -> None:
    wait_for(lambda: cases(service)["total"] >= 1, 90, "a case")
    rec = service.receiver
    delivered = wait_for(lambda: [r for r in rec.requests[2:]] or None, 60, "delivery after two failures")
    case_id = delivered[0]["body"]["case_id"]
    attempts = [r for r in rec.requests if r["body"]["case_id"] == case_id]
    assert len({r["key"] for r in attempts}) == 1 and attempts[0]["key"] == f"{case_id}:city"
    body = delivered[0]["body"]
    DispatchPayload.model_validate(body)  # what was sent follows the documented schema
    assert body["model"].startswith("default ")  # the model that raised the case goes with it
    assert body["address"] == "No. 1 Test Rd" and body["evidence"]["snapshot"].endswith(
        f"/api/cases/{case_id}/evidence/snapshot")
    with service.client("OPER_T") as oper:
        def dispatched() -> dict | None:
            d = oper.get(f"/api/cases/{case_id}").json()
            return d if d["state"] == "dispatched" else None

        detail = wait_for(dispatched, 30, "dispatched state")
        assert [h["to"] for h in detail["history"]] == ["registered", "dispatched"]
        assert detail["model"] == body["model"] and len(detail["model_sha256"]) == 64
        city = next(d for d in detail["dispatch"] if d["target"] == "city")
        assert city["state"] == "delivered" and city["attempts"] == 3


def test_dead_letters_are_visible_and_can_be_retried(service: Service) -> None:
    wait_for(lambda: cases(service)["total"] >= 1, 90, "a case")
    with service.client("OPER_T") as oper:
        dead = wait_for(lambda: oper.get("/api/outbox", params={"state": "dead"}).json(), 60, "a dead letter")
        assert dead[0]["target"] == "broken" and dead[0]["attempts"] == 2 and "HTTP 500" in dead[0]["last_error"]
        r = oper.post(f"/api/outbox/{dead[0]['id']}/retry")
        assert r.status_code == 200 and r.json()["state"] == "pending"
        assert oper.post("/api/outbox/999999/retry").status_code == 404
        assert oper.post("/api/outbox/12525146909515809030144/retry").status_code == 422  # past SQLite integers


def test_case_flow_transitions_record_who(service: Service) -> None:
    page = wait_for(lambda: at_least(service, 2), 90, "two cases")
    target = next(c for c in page["items"] if c["violation"] == "street_stall")
    with service.client("OPER_T") as oper:
        wait_for(lambda: oper.get(f"/api/cases/{target['id']}").json()["state"] == "dispatched", 60, "dispatch")
        r = oper.post(f"/api/cases/{target['id']}/transition", json={"to": "handled", "note": "vendor left"})
        assert r.status_code == 200 and r.json()["state"] == "handled"
        r = oper.post(f"/api/cases/{target['id']}/transition", json={"to": "closed"})
        assert r.json()["history"][-1]["who"] == "oper" and r.json()["history"][-1]["to"] == "closed"
        bad = oper.post(f"/api/cases/{target['id']}/transition", json={"to": "handled"})
        assert bad.status_code == 409 and "closed" in bad.json()["error"]["message"]
        assert oper.post("/api/cases/none/transition", json={"to": "closed"}).status_code == 404
        assert oper.post(f"/api/cases/{target['id']}/transition", json={"to": "eaten"}).status_code == 422


def test_events_stream_and_camera_changes_at_run_time(service: Service) -> None:
    headers = {"Authorization": "Bearer admin-token-0123456789"}
    seen: list[dict] = []
    with httpx.Client(base_url=service.url, headers=headers, timeout=60) as c:
        with c.stream("GET", "/api/events") as stream:
            r = c.post("/api/cameras", json={"id": "cam-a", "source": str(DATA / "clips" / "reg_violations_a.mp4"),
                                              "zones": [{"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}]})
            assert r.status_code == 201, r.text
            assert c.post("/api/cameras", json={"id": "cam-a", "source": "x.mp4"}).status_code == 409
            event = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    seen.append({"event": event, **json.loads(line[6:])})
                    if event == "camera" and seen[-1]["camera"] == "cam-a" and seen[-1]["state"] == "live":
                        break
        assert any(e["event"] == "camera" and e["camera"] == "cam-a" and e["state"] == "live" for e in seen), (
            f"the event stream ended before cam-a went live: {seen}")
        assert any(e["event"] == "camera" and e["state"] == "connecting" for e in seen)
        ids = [cam["id"] for cam in c.get("/api/cameras").json()]
        assert ids == ["cam-b", "cam-a"]
        metrics = c.get("/metrics").text
        assert 'streetwatch_frames_decoded_total{camera="cam-a"}' in metrics
        assert 'streetwatch_camera_health{camera="cam-b",state="live"} 1.0' in metrics
        assert c.delete("/api/cameras/cam-a").status_code == 204
        assert [cam["id"] for cam in c.get("/api/cameras").json()] == ["cam-b"]
        assert c.delete("/api/cameras/cam-a").status_code == 404
        assert c.get("/readyz").json()["ready"] is True


def test_violation_events_reach_sse(service: Service) -> None:
    headers = {"Authorization": "Bearer viewer-token-0123456"}
    violation: dict | None = None
    with httpx.Client(base_url=service.url, headers=headers, timeout=90) as c, c.stream("GET", "/api/events") as s:
        event = None
        for line in s.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "violation":
                violation = json.loads(line[6:])
                break
    assert violation is not None, "the event stream ended without a violation event"
    assert violation["camera"] == "cam-b" and violation["state"] in ("start", "update", "end")
    assert violation["case_id"]


def test_no_token_no_service(tmp_path: Path) -> None:
    cfg = ServiceConfig.model_validate({"auth": {"tokens": [{"name": "a", "role": "admin", "env": "NOPE"}]}})
    with pytest.raises(ConfigError, match="set NOPE"):
        create_app(cfg, environ={})
    with pytest.raises(ConfigError, match=r"add auth\.tokens"):
        resolve_tokens(ServiceConfig().auth, environ={})
    with pytest.raises(ConfigError, match="at least 16"):
        resolve_tokens(cfg.auth, environ={"NOPE": "short"})


def test_documented_payload_schema_is_current() -> None:
    committed = json.loads((Path(__file__).resolve().parents[2] / "docs" / "dispatch-payload.schema.json").read_text())
    assert committed == DispatchPayload.model_json_schema(), (
        "regenerate: python -m pipelines.notifiers.payload > docs/...")


def test_evidence_cannot_leave_its_folder_and_ids_cannot_be_probed(service: Service) -> None:
    from pipelines.sinks.store import CaseStore

    page = wait_for(lambda: at_least(service, 1), 90, "a case")
    case_id = page["items"][0]["id"]
    # A tampered evidence row that points outside the evidence folder is never served.
    store = CaseStore(service.config.storage.db)
    try:
        store.add_evidence(case_id, "frame", "../cases.db", "00" * 32)
    finally:
        store.close()
    with service.client("VIEW_T") as client:
        r = client.get(f"/api/cases/{case_id}/evidence/frame")
        assert r.status_code == 404 and b"SQLite" not in r.content
        for path in ("/static/..%2F..%2Fservice%2Fapp.py", "/static/%2e%2e/dashboard.py", "/static/../deps.py",
                     "/api/cases/%2e%2e%2f%2e%2e%2fcases.db/evidence/snapshot"):
            r = client.get(path)
            assert r.status_code == 404 and b"import" not in r.content, path
        # Unknown and malformed ids look alike; without a token nothing tells whether an id exists.
        unknown = client.get("/api/cases/0123456789abcdef/evidence/snapshot").json()
        malformed = client.get("/api/cases/%00%ff/evidence/snapshot").json()
        assert unknown == malformed == {"error": {"status": 404, "message": "no such case"}}
    with service.client(None) as anon:
        assert anon.get(f"/api/cases/{case_id}/evidence/snapshot").status_code == 401
        assert anon.get("/api/cases/0123456789abcdef/evidence/snapshot").status_code == 401
