"""A camera whose start fails for a reason no check foresees (here: its source cannot be set up) never takes the
service down and never disappears: at start-up it is listed as failed, a change that does not start brings the
previous settings back, and a new camera that does not start is refused with nothing of it left behind."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import service.cameras
from pipelines.source_kinds import open_source
from service.settings import load_service_config
from tests.helpers.data import CLIPS
from tests.helpers.net import free_port, wait_for
from tests.helpers.service import TOKENS, running_service

CONFIG = """\
server: {{port: {port}}}
auth:
  tokens:
    - {{name: admin, role: admin, env: ADMIN_T}}
storage:
  db: {tmp}/cases.db
  evidence: {tmp}/evidence
cameras:
  - id: east
    source: {tmp}/east.mp4
  - id: west
    source: {tmp}/west.mp4
"""


def listed(c: httpx.Client) -> dict[str, dict[str, Any]]:
    """The service's cameras by id."""
    return {x["id"]: x for x in c.get("/api/cameras").json()}


def test_a_camera_that_cannot_start_stays_listed_and_a_failed_change_keeps_the_old(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("east", "west", "north", "south"):
        shutil.copy(CLIPS / "reg_violations_b.mp4", tmp_path / f"{name}.mp4")
    broken = {tmp_path / "west.mp4", tmp_path / "south.mp4"}

    def opened(cfg: Any, epoch: float | None = None) -> Any:  # as when the process has run out of file handles
        if getattr(cfg, "path", None) in broken:
            raise OSError(24, "Too many open files")
        return open_source(cfg, epoch)

    monkeypatch.setattr(service.cameras, "open_source", opened)
    path = tmp_path / "service.yaml"
    path.write_text(CONFIG.format(port=free_port(), tmp=tmp_path))
    cfg, errors = load_service_config(path)
    assert errors == []
    with running_service(cfg, config_path=path) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}, timeout=30) as c:
            # The service started; east runs, west is listed as failed with why.
            cams = wait_for(lambda: (lambda cs: cs if cs[0]["frames_inferred"] > 0 else None)(
                c.get("/api/cameras").json()), 60, "east detecting")
            assert [(x["id"], x["health"]) for x in cams] == [("east", "live"), ("west", "failed")]
            assert "Too many open files" in cams[1]["detail"]

            # A change of the running camera that does not start: 503, and east runs again as before.
            east = c.get("/api/cameras/east/config").json()
            r = c.put("/api/cameras/east", json={**east, "source": str(tmp_path / "south.mp4")})
            assert r.status_code == 503 and "previous settings run again" in r.json()["error"]["message"]
            assert c.get("/api/cameras/east/config").json()["source"] == str(tmp_path / "east.mp4")
            wait_for(lambda: listed(c)["east"]["frames_inferred"] > 0, 60, "east detecting again")  # a new reader
            saved = yaml.safe_load(path.read_text())["cameras"]
            assert [x["source"] for x in saved] == [str(tmp_path / "east.mp4"), str(tmp_path / "west.mp4")]

            # A change of the camera that did not start, which does not start either: still listed, as before.
            west = c.get("/api/cameras/west/config").json()
            r = c.put("/api/cameras/west", json={**west, "name": "West gate"})
            assert r.status_code == 503 and "listed as failed" in r.json()["error"]["message"]
            now = listed(c)
            assert now["west"]["health"] == "failed" and now["west"]["name"] == ""
            assert "before it: [Errno 24]" in now["west"]["detail"]

            # A new camera that does not start is refused; nothing of it is left.
            r = c.post("/api/cameras", json={"id": "south", "source": str(tmp_path / "south.mp4")})
            assert r.status_code == 503 and "camera south did not start" in r.json()["error"]["message"]
            assert [x["id"] for x in c.get("/api/cameras").json()] == ["east", "west"]
            assert c.post("/api/cameras", json={"id": "north", "source": str(tmp_path / "north.mp4")}).status_code \
                == 201

            # Once its source can be set up, a change starts the failed camera.
            broken.clear()
            assert c.put("/api/cameras/west", json={**west, "name": "West gate"}).status_code == 200
            wait_for(lambda: listed(c)["west"]["frames_inferred"] > 0, 60, "west detecting")
            saved = yaml.safe_load(path.read_text())["cameras"]
            assert {x["id"]: x.get("name") for x in saved} == {"east": None, "west": "West gate", "north": None}
