"""The service on PostgreSQL: same schema (Alembic), same API; cases outlive a database outage."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx

from detector.events import EventState, ViolationEvent
from pipelines.sinks.store import CaseStore
from service.fleet import UNTRACKED_NOTE
from service.runtime import JOURNAL_NAME
from service.settings import ServiceConfig
from tests.helpers.data import DATA
from tests.helpers.net import free_port, wait_for
from tests.helpers.pg import postgres_cluster, restartable_postgres
from tests.helpers.service import TOKENS, Receiver, running_service


def service_on(url: str, tmp: Path, zone: dict[str, Any], **sections: Any) -> ServiceConfig:
    """A service storing cases in the database at ``url``, with one camera looping the stall clip and one zone
    over its pavement (``zone``: its violations, warnings...); ``sections``: the rest of the configuration."""
    return ServiceConfig.model_validate({
        "server": {"port": free_port()},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
        "storage": {"db": url, "evidence": str(tmp / "evidence")},
        "cameras": [{"id": "pg-cam", "source": str(DATA / "clips" / "reg_violations_b.mp4"),
                     "zones": [{"id": "pavement", "polygon": [[0.44, 0], [1, 0], [1, 1], [0.74, 1]], **zone}]}],
        **sections})


def test_service_stores_cases_in_postgresql(tmp_path: Path) -> None:
    with postgres_cluster(free_port()) as url:
        cfg = service_on(url, tmp_path, {"violations": ["street_stall"]}, rules={"dwell_s": {"street_stall": 2}})
        headers = {"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}
        with running_service(cfg) as base, httpx.Client(base_url=base, timeout=30, headers=headers) as c:
            def some_cases() -> dict[str, Any] | None:
                page: dict[str, Any] = c.get("/api/cases").json()
                return page if page["total"] >= 1 else None

            case = wait_for(some_cases, 60, "a case")["items"][0]
            assert case["violation"] == "street_stall"
            r = c.post(f"/api/cases/{case['id']}/transition", json={"to": "rejected", "note": "licensed"})
            assert r.status_code == 200 and r.json()["history"][-1]["who"] == "admin"


def metric(text: str, name: str) -> float:
    """The value of an unlabelled metric in a Prometheus text page."""
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " "))


def test_cases_confirmed_while_postgresql_is_down_reach_it_when_it_is_back(tmp_path: Path) -> None:
    hook = Receiver()
    hook.start()
    with restartable_postgres(free_port()) as pg:
        cfg = service_on(pg.url, tmp_path, {"violations": ["street_stall", "garbage"]},
                         dispatch={"webhooks": [{"name": "city", "url": f"http://127.0.0.1:{hook.port}/cases",
                                                 "backoff_s": 0.2}]},
                         rules={"dwell_s": {"street_stall": 1, "garbage": 1}, "gap_tolerance_s": 3})
        journal = tmp_path / "evidence" / JOURNAL_NAME
        headers = {"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}
        reported: set[str] = set()
        try:
            with running_service(cfg) as base, httpx.Client(base_url=base, timeout=30, headers=headers) as c:
                def listen() -> None:
                    with httpx.Client(base_url=base, headers=headers, timeout=None) as sse, \
                            sse.stream("GET", "/api/events") as s:
                        for line in s.iter_lines():
                            if line.startswith("data: ") and '"case_id"' in line:
                                reported.add(json.loads(line[6:])["case_id"])

                threading.Thread(target=listen, daemon=True).start()
                wait_for(lambda: c.get("/api/cameras").json()[0]["frames_inferred"] > 0, 60, "camera detecting")
                assert not reported
                pg.stop()  # as if the database server crashed, before the first case
                # The cameras go on: cases are confirmed and announced, their writes wait in the journal.
                wait_for(lambda: reported and journal.is_file(), 60, "a case confirmed while the database is down")
                assert c.get("/healthz").status_code == 200
                down = c.get("/api/cases")  # the API's own reads need the database: a clear 503, not a 500
                assert down.status_code == 503 and down.json()["error"]["message"].startswith("case store unavailable")
                assert c.get("/api/cameras").json()[0]["health"] == "live"
                waiting = {json.loads(line)["case_id"] for line in journal.read_text().splitlines()}
                # Monitoring still works, and says what waits.
                assert c.get("/readyz").json()["checks"]["database"] is False
                metrics = c.get("/metrics").text
                assert "streetwatch_database_up 0.0" in metrics and "streetwatch_cases{" not in metrics
                assert metric(metrics, "streetwatch_case_writes_waiting") >= 1
                pg.start()
                wait_for(lambda: not journal.exists(), 90, "the waiting writes applied")
                metrics = c.get("/metrics").text
                assert "streetwatch_database_up 1.0" in metrics
                assert metric(metrics, "streetwatch_case_writes_waiting") == 0
                assert metric(metrics, "streetwatch_case_writes_replayed_total") >= 1
                ids = {x["id"] for x in c.get("/api/cases", params={"limit": 500}).json()["items"]}
                assert reported <= ids and waiting <= ids, f"lost: {(reported | waiting) - ids}"
                first = c.get(f"/api/cases/{sorted(waiting)[0]}").json()
                assert first["camera"] == "pg-cam" and first["history"][0]["to"] == "registered"
                # Their dispatch was queued with them: the city platform hears of each.
                wait_for(lambda: waiting <= {r["body"]["case_id"] for r in hook.requests}, 60, "cases dispatched")
        finally:
            hook.stop()


def test_loudspeakers_keep_warning_while_postgresql_is_down(tmp_path: Path) -> None:
    speaker = Receiver()
    speaker.start()
    with restartable_postgres(free_port()) as pg:
        cfg = service_on(pg.url, tmp_path, {
            "violations": ["street_stall"],
            "warnings": {"violations": ["street_stall"], "speakers": ["pole-1"], "recheck_s": 4, "max_repeats": 1,
                         "messages": {"street_stall": "请勿占道经营"}}},
            voice={"cache": str(tmp_path / "tts"), "speakers": [
                {"name": "pole-1", "type": "http", "url": f"http://127.0.0.1:{speaker.port}/play"}]},
            rules={"dwell_s": {"street_stall": 2}, "gap_tolerance_s": 3})
        journal = tmp_path / "evidence" / JOURNAL_NAME
        headers = {"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}
        try:
            with running_service(cfg) as base, httpx.Client(base_url=base, timeout=30, headers=headers) as c:
                wait_for(lambda: c.get("/api/cameras").json()[0]["frames_inferred"] > 0, 60, "camera detecting")
                pg.stop()
                # The stall is confirmed while the database is away: its warning is played all the same.
                wait_for(lambda: speaker.requests, 60, "the warning played while the database is down")
                assert speaker.requests[0]["body"] == {"text": "请勿占道经营", "volume": 1.0}
                assert journal.is_file()
                case_id = json.loads(journal.read_text().splitlines()[0])["case_id"]
                pg.start()
                wait_for(lambda: not journal.exists(), 90, "the waiting writes applied")
                assert c.get(f"/api/cases/{case_id}").json()["violation"] == "street_stall"
        finally:
            speaker.stop()


def test_the_service_starts_while_postgresql_is_down_and_catches_up_when_it_is_back(tmp_path: Path) -> None:
    """A restart while the database is away: the service starts and its cameras confirm cases (their writes wait);
    once PostgreSQL answers, they are stored, and the case the previous run left active is ended, this run's not."""
    with restartable_postgres(free_port()) as pg:
        previous = CaseStore(pg.url)  # the previous run: one case still active when it died
        left_open = previous.record(ViolationEvent(
            state=EventState.START, key="pg-cam:pavement:garbage:1", camera="pg-cam", zone="pavement",
            violation="garbage", start_s=1.0, ts=5.0, confidence=0.8, box=(500, 100, 600, 200), best_ts=5.0), "pg-cam")
        previous.engine.dispose()
        pg.stop()
        cfg = service_on(pg.url, tmp_path, {"violations": ["street_stall"]},
                         rules={"dwell_s": {"street_stall": 1}, "gap_tolerance_s": 3})
        journal = tmp_path / "evidence" / JOURNAL_NAME
        headers = {"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}
        with running_service(cfg) as base, httpx.Client(base_url=base, timeout=30, headers=headers) as c:
            assert c.get("/api/cases").status_code == 503
            assert c.get("/readyz").json()["checks"]["database"] is False
            wait_for(lambda: journal.is_file(), 60, "a case confirmed while the database is down")
            waiting = {json.loads(line)["case_id"] for line in journal.read_text().splitlines()}
            pg.start()
            wait_for(lambda: not journal.exists(), 90, "the waiting writes applied")

            def ended() -> dict[str, Any] | None:
                case: dict[str, Any] = c.get(f"/api/cases/{left_open}").json()
                return case if not case["active"] else None

            old = wait_for(ended, 60, "the previous run's case ended")
            assert old["history"][-1]["note"] == UNTRACKED_NOTE
            for case_id in waiting:  # this run's cases: stored, and not taken for the previous run's
                case = c.get(f"/api/cases/{case_id}").json()
                assert case["violation"] == "street_stall"
                assert all(h["note"] != UNTRACKED_NOTE for h in case["history"])
