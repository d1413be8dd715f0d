"""Fixtures for the service tests: a real service on 127.0.0.1 with real webhook receivers.

The helpers (``running_service``, ``Receiver``, ``wait_for``, the test tokens) are in ``tests.helpers.service``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.settings import ServiceConfig
from tests.helpers.data import CLIPS
from tests.helpers.net import free_port
from tests.helpers.service import Receiver, Service, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("service")
    ok, dead = Receiver(fail_first=2), Receiver(always_fail=True)
    ok.start()
    dead.start()
    port = free_port()
    cfg = ServiceConfig.model_validate({
        "server": {"port": port},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"},
                            {"name": "oper", "role": "operator", "env": "OPER_T"},
                            {"name": "viewer", "role": "viewer", "env": "VIEW_T"}]},
        "storage": {"db": str(tmp / "cases.db"), "evidence": str(tmp / "evidence")},
        "dispatch": {"public_url": f"http://127.0.0.1:{port}", "webhooks": [
            {"name": "city", "url": f"http://127.0.0.1:{ok.port}/cases", "backoff_s": 0.1},
            {"name": "broken", "url": f"http://127.0.0.1:{dead.port}/cases", "backoff_s": 0.05, "max_attempts": 2}]},
        "cameras": [{"id": "cam-b", "name": "B street", "source": str(CLIPS / "reg_violations_b.mp4"),
                     "location": {"address": "No. 1 Test Rd", "gps": [30.1, 120.2]},
                     "zones": [{"id": "pavement", "polygon": [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]],
                                "violations": ["street_stall", "garbage"]}]}],
        "rules": {"dwell_s": {"street_stall": 2, "garbage": 2}, "gap_tolerance_s": 3},
    })
    with running_service(cfg) as url:
        yield Service(url, cfg, ok, dead)
    ok.stop()
    dead.stop()
