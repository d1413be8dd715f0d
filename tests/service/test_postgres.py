"""The service on PostgreSQL: same schema (Alembic), same API."""

from __future__ import annotations

from pathlib import Path

import httpx

from service.settings import ServiceConfig
from tests.helpers.data import DATA
from tests.helpers.net import free_port, wait_for
from tests.helpers.pg import postgres_cluster
from tests.helpers.service import TOKENS, running_service


def test_service_stores_cases_in_postgresql(tmp_path: Path) -> None:
    with postgres_cluster(free_port()) as url:
        cfg = ServiceConfig.model_validate({
            "server": {"port": free_port()},
            "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
            "storage": {"db": url, "evidence": str(tmp_path / "evidence")},
            "cameras": [{"id": "pg-cam", "source": str(DATA / "clips" / "reg_violations_b.mp4"),
                         "zones": [{"id": "all", "polygon": [[0.44, 0], [1, 0], [1, 1], [0.74, 1]],
                                    "violations": ["street_stall"]}]}],
            "rules": {"dwell_s": {"street_stall": 2}},
        })
        headers = {"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}
        with running_service(cfg) as base, httpx.Client(base_url=base, timeout=30, headers=headers) as c:
            def some_cases() -> dict | None:
                page: dict = c.get("/api/cases").json()
                return page if page["total"] >= 1 else None

            case = wait_for(some_cases, 60, "a case")["items"][0]
            assert case["violation"] == "street_stall"
            r = c.post(f"/api/cases/{case['id']}/transition", json={"to": "rejected", "note": "licensed"})
            assert r.status_code == 200 and r.json()["history"][-1]["who"] == "admin"
