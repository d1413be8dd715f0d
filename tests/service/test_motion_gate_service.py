"""Motion gating in the live service: unchanged frames skip the shared detector, in order, and a
stationary violation still becomes a case."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import service.cameras
from service.settings import ServiceConfig
from tests.helpers.net import free_port, wait_for
from tests.helpers.service import TOKENS, running_service
from tests.helpers.video import CountingBackend, still_street_video


def test_a_still_camera_mostly_skips_the_detector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = CountingBackend()
    monkeypatch.setattr(service.cameras, "create_backend", lambda _cfg: backend)
    clip = still_street_video(tmp_path / "still.mp4", 12, square_from=3.0)
    cfg = ServiceConfig.model_validate({
        "server": {"port": free_port()},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
        "storage": {"db": str(tmp_path / "cases.db"), "evidence": str(tmp_path / "evidence")},
        "cameras": [{"id": "still", "source": str(clip), "detect_fps": 4, "motion_gate": True,
                     "motion_refresh_s": 3}],
        "rules": {"dwell_s": {"garbage": 2}, "gap_tolerance_s": 3},
    })
    with running_service(cfg) as url, httpx.Client(base_url=url, timeout=30,
                                                   headers={"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}) as api:
        cases = wait_for(lambda: api.get("/api/cases").json()["items"], 60, "a case")
        assert cases[0]["violation"] == "garbage"
        cam = wait_for(lambda: (c := api.get("/api/cameras").json()[0])["frames_gated"] >= 20 and c, 60,
                       "gated frames")
        assert cam["frames_gated"] > 2 * cam["frames_inferred"]
        assert "streetwatch_frames_gated_total" in api.get("/metrics").text
