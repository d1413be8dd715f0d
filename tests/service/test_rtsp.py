"""A real RTSP server on 127.0.0.1 (GStreamer) read by the service; the server dies and comes back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import ServiceConfig
from tests.helpers.data import DATA
from tests.helpers.net import free_port, wait_for
from tests.helpers.rtsp import RtspServer, gst_or_skip
from tests.helpers.service import TOKENS, running_service


@pytest.fixture()
def rtsp(tmp_path: Path) -> Iterator[RtspServer]:
    gst_or_skip()
    server = RtspServer(DATA / "clips" / "reg_violations_b.mp4", free_port())
    server.start()
    yield server
    server.kill()


@pytest.mark.slow  # live, killed, reconnected, then 8 s more of video
def test_rtsp_camera_survives_a_server_restart_without_losing_or_duplicating_cases(
        rtsp: RtspServer, tmp_path: Path) -> None:
    cfg = ServiceConfig.model_validate({
        "server": {"port": free_port()},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
        "storage": {"db": str(tmp_path / "cases.db"), "evidence": str(tmp_path / "evidence")},
        "ingest": {"open_timeout_s": 5, "read_timeout_s": 3, "backoff_s": 0.5, "max_backoff_s": 2, "stall_s": 2},
        "cameras": [{"id": "rtsp-cam", "source": rtsp.url,
                     "zones": [{"id": "pavement", "polygon": [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]],
                                "violations": ["street_stall", "garbage"]}]}],
        "rules": {"dwell_s": {"street_stall": 2, "garbage": 2}, "gap_tolerance_s": 3},
    })
    headers = {"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}
    with running_service(cfg) as url, httpx.Client(base_url=url, timeout=30, headers=headers) as c:
        def camera() -> dict:
            cams: list[dict] = c.get("/api/cameras").json()
            return cams[0]

        def some_cases() -> list[dict] | None:
            items: list[dict] = c.get("/api/cases").json()["items"]
            return items or None

        wait_for(lambda: camera()["health"] == "live", 60, "live")
        before = wait_for(some_cases, 60, "a case")
        rtsp.kill()
        wait_for(lambda: camera()["health"] in ("stalled", "connecting", "failed"), 30, "camera down")
        rtsp.start()
        wait_for(lambda: camera()["health"] == "live" and camera()["reconnects"] >= 1, 60, "live again")
        inferred = camera()["frames_inferred"]
        wait_for(lambda: camera()["frames_inferred"] >= inferred + 16, 60, "8 s more of video")
        after = c.get("/api/cases").json()["items"]
        assert {x["id"] for x in before} <= {x["id"] for x in after}, "a reported case was lost"
        kinds = [x["violation"] for x in after]
        assert len(kinds) == len(set(kinds)), f"duplicated cases after the restart: {kinds}"
        assert 'streetwatch_reconnects_total{camera="rtsp-cam"}' in c.get("/metrics").text
