"""The service on PostgreSQL: same schema (Alembic), same API."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import uvicorn

from service.app import create_app
from service.settings import ServiceConfig
from tests.pg import postgres_cluster
from tests.service.conftest import DATA, TOKENS, free_port, wait_for


def test_service_stores_cases_in_postgresql(tmp_path: Path) -> None:
    with postgres_cluster(free_port()) as url:
        port = free_port()
        cfg = ServiceConfig.model_validate({
            "server": {"port": port},
            "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
            "storage": {"db": url, "evidence": str(tmp_path / "evidence")},
            "cameras": [{"id": "pg-cam", "source": str(DATA / "clips" / "reg_violations_b.mp4"),
                         "zones": [{"id": "all", "polygon": [[0.44, 0], [1, 0], [1, 1], [0.74, 1]],
                                    "violations": ["street_stall"]}]}],
            "rules": {"dwell_s": {"street_stall": 2}},
        })
        server = uvicorn.Server(uvicorn.Config(create_app(cfg, environ=dict(TOKENS)), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: server.started, 60, "server start")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                              headers={"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}) as c:
                page = wait_for(lambda: (p := c.get("/api/cases").json())["total"] >= 1 and p, 60, "a case")
                case = page["items"][0]
                assert case["violation"] == "street_stall"
                r = c.post(f"/api/cases/{case['id']}/transition", json={"to": "rejected", "note": "licensed"})
                assert r.status_code == 200 and r.json()["history"][-1]["who"] == "admin"
        finally:
            server.should_exit = True
            thread.join(30)
