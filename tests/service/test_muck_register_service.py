"""The muck-transport register in the service: list, export, import (roles, errors, written back), and the
trucks' record per company."""

from __future__ import annotations

from pathlib import Path

import httpx

from detector.events import EventState, ViolationEvent
from pipelines.sinks.store import CaseStore
from service.settings import ServiceConfig
from tests.helpers.net import free_port
from tests.helpers.service import TOKENS, running_service

REGISTER = "plate,company,permit,valid_from,valid_to\n晋HA6021,太原建运,TY-1,2026-01-01,2026-12-31\n"
NEW = ("plate,company,permit,valid_from,valid_to,hours\n"
       "晋HB1234,晋阳渣土,JY-7,2026-01-01,2026-12-31,20:00-06:00\n"
       "晋HC5555,晋阳渣土,JY-8,2026-01-01,2026-12-31,\n"
       "晋HO0000,某公司,X,2026-01-01,2026-12-31,\n")


def test_register_api_and_company_record(tmp_path: Path) -> None:
    register = tmp_path / "trucks.csv"
    register.write_text(REGISTER, encoding="utf-8")
    db = tmp_path / "cases.db"
    store = CaseStore(db)  # a truck case of an earlier run, its plate read and checked
    case = store.record(ViolationEvent(EventState.START, "k", "road", "z", "uncovered_truck", 1.0, 2.0, 0.8,
                                       (1, 2, 3, 4), 2.0), "rtsp://road")
    store.set_vehicle(case, {"plate": "晋HA6021", "plate_confidence": 0.9, "readings": 2, "licence": "expired",
                             "unlicensed": True, "company": "太原建运", "permit": "TY-1"})
    store.close()
    cfg = ServiceConfig.model_validate({
        "server": {"port": free_port()},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"},
                            {"name": "viewer", "role": "viewer", "env": "VIEW_T"}]},
        "storage": {"db": str(db), "evidence": str(tmp_path / "evidence")},
        "muck_register": str(register)})
    with running_service(cfg) as url:
        admin, viewer = (httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS[t]}"}, timeout=30)
                         for t in ("ADMIN_T", "VIEW_T"))
        assert [v["plate"] for v in viewer.get("/api/muck-register").json()] == ["晋HA6021"]
        assert viewer.get("/api/muck-companies").json() == {
            "太原建运": {"truck_cases": 1, "uncovered_loads": 1, "unlicensed": 1}}
        assert viewer.post("/api/muck-register-imports", content=NEW.encode()).status_code == 403
        assert admin.post("/api/muck-register-imports", content=b"plate,company\nx,y\n").status_code == 400
        done = admin.post("/api/muck-register-imports", content=NEW.encode(),
                          headers={"Content-Type": "text/csv", "X-Filename": "new.csv"}).json()
        assert done["vehicles"] == 2 and done["saved"] is True
        assert [e.split(": ")[:2] for e in done["errors"]] == [["new.csv:4", "plate"]]
        plates = [v["plate"] for v in viewer.get("/api/muck-register").json()]
        assert plates == ["晋HB1234", "晋HC5555"]
        assert "晋HB1234" in register.read_text(encoding="utf-8-sig")  # written back...
        assert "晋HA6021" in (tmp_path / "trucks.csv.bak").read_text(encoding="utf-8")  # ...the old one kept
        assert viewer.get("/api/muck-register.csv").content.decode("utf-8-sig").splitlines()[1].startswith("晋HB1234")
