"""Cameras with a model of their own (a site model) in a running service: each camera is detected by its model,
its cases name it, and a model that does not load never stops the service or a running camera."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from models import DEFAULT_MODEL
from service.settings import ServiceConfig
from tests.helpers.data import CLIPS
from tests.helpers.net import free_port, wait_for
from tests.helpers.service import TOKENS, running_service

ZONE = {"id": "pavement", "polygon": [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]],
        "violations": ["street_stall", "garbage"]}


def resaved(path: Path, version: str) -> None:
    """The model at ``path`` saved again as another version (new bytes, as a new export would be)."""
    import onnx

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "streetwatch_version":
            prop.value = version
    path.unlink()
    onnx.save(model, str(path))


def test_each_camera_runs_its_own_model(tmp_path: Path) -> None:
    (tmp_path / "site_north").mkdir()
    shutil.copy(DEFAULT_MODEL, tmp_path / "site_north" / "model.onnx")  # a site model: here the default's bytes
    clip = str(CLIPS / "reg_violations_b.mp4")
    cfg = ServiceConfig.model_validate({
        "server": {"port": free_port()},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
        "storage": {"db": str(tmp_path / "cases.db"), "evidence": str(tmp_path / "evidence")},
        "cameras": [{"id": "south", "source": clip, "zones": [ZONE]},
                    {"id": "north", "source": clip, "zones": [ZONE], "model": str(tmp_path / "site_north")},
                    {"id": "lost", "source": clip, "model": str(tmp_path / "nowhere.onnx")}],
        "rules": {"dwell_s": {"street_stall": 2, "garbage": 2}, "gap_tolerance_s": 3},
    })
    with running_service(cfg) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}, timeout=30) as c:
            # The camera whose model is missing did not start; the others did. It is listed as failed, with why.
            cams = wait_for(lambda: (lambda cs: cs if all(x["frames_inferred"] > 0 for x in cs[:2]) else None)(
                c.get("/api/cameras").json()), 60, "both cameras detecting")
            assert {x["id"]: x["model"].split()[0] for x in cams[:2]} == {"south": "default", "north": "site_north"}
            lost = cams[2]
            assert lost["id"] == "lost" and lost["health"] == "failed" and lost["frames_decoded"] == 0
            assert "its model: model file not found" in lost["detail"] and lost["model"].endswith("nowhere.onnx")
            assert c.get("/api/cameras/lost/frame.jpg").status_code == 204
            assert c.get("/api/cameras/lost/config").json()["model"].endswith("nowhere.onnx")
            assert 'streetwatch_camera_health{camera="lost",state="failed"} 1.0' in c.get("/metrics").text
            lost_cfg = next(x for x in cfg.cameras if x.id == "lost").model_dump(mode="json")
            assert c.post("/api/cameras", json={**lost_cfg, "model": None}).status_code == 409  # its id is taken
            cases = wait_for(lambda: (lambda items: items if {x["camera"] for x in items} == {"south", "north"}
                                      else None)(c.get("/api/cases").json()["items"]), 60, "a case on each camera")
            assert {(x["camera"], x["model"].split()[0]) for x in cases} == {("south", "default"),
                                                                               ("north", "site_north")}
            assert len({x["model_sha256"] for x in cases}) == 1  # the same bytes: the same weights
            # A new camera, or a change, naming a model that does not load is refused; the running camera stays.
            bad = {"id": "east", "source": clip, "model": str(tmp_path / "nowhere.onnx")}
            r = c.post("/api/cameras", json=bad)
            assert r.status_code == 422 and "camera east: its model: model file not found" in r.text
            r = c.put("/api/cameras/north", json={**bad, "id": "north"})
            assert r.status_code == 422 and "its model" in r.text
            now = {x["id"]: x for x in c.get("/api/cameras").json()}
            assert list(now) == ["south", "north", "lost"] and now["north"]["health"] == "live"
            assert now["north"]["model"].split()[0] == "site_north"
            assert c.get("/readyz").json()["ready"] is True
            # The site model fine-tuned again and exported over the old file: a change of the camera loads it.
            resaved(tmp_path / "site_north" / "model.onnx", "0.4.0-b")
            north_cfg = next(x for x in cfg.cameras if x.id == "north").model_dump(mode="json")
            assert c.put("/api/cameras/north", json=north_cfg).status_code == 200
            now = {x["id"]: x["model"] for x in c.get("/api/cameras").json()}
            assert now["north"] == "site_north 0.4.0-b" and now["south"].split()[0] == "default"
            metrics = c.get("/metrics").text
            assert 'streetwatch_camera_model_info{camera="north",model="site_north ' in metrics
            assert 'streetwatch_camera_model_info{camera="south",model="default ' in metrics
            # The lost camera's model put in place: changing the camera (as it is) starts it; or it is removed.
            shutil.copy(DEFAULT_MODEL, tmp_path / "nowhere.onnx")
            assert c.put("/api/cameras/lost", json=lost_cfg).status_code == 200
            lost = wait_for(lambda: (lambda x: x if x["frames_inferred"] > 0 else None)(
                {x["id"]: x for x in c.get("/api/cameras").json()}["lost"]), 60, "the lost camera detecting")
            assert lost["model"].split()[0] == "nowhere" and lost["health"] != "failed"
            assert c.delete("/api/cameras/lost").status_code == 204
            assert [x["id"] for x in c.get("/api/cameras").json()] == ["south", "north"]


def test_a_camera_that_did_not_start_can_be_removed(tmp_path: Path) -> None:
    cfg = ServiceConfig.model_validate({
        "server": {"port": free_port()},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
        "storage": {"db": str(tmp_path / "cases.db"), "evidence": str(tmp_path / "evidence")},
        "cameras": [{"id": "lost", "source": str(CLIPS / "reg_violations_b.mp4"),
                     "model": str(tmp_path / "nowhere.onnx")}],
    })
    with running_service(cfg) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}, timeout=30) as c:
            assert [(x["id"], x["health"]) for x in c.get("/api/cameras").json()] == [("lost", "failed")]
            assert c.delete("/api/cameras/lost").status_code == 204
            assert c.get("/api/cameras").json() == []
            assert c.get("/api/cameras/lost/frame.jpg").status_code == 404
