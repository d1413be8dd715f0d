"""Scale-out on a real Ray cluster on 127.0.0.1 (a head and two worker nodes started here).

``analyze --ray`` must find exactly the cases of a local run, with their evidence, from tasks spread
over both workers; ``serve --ray`` must shard cameras over actors on both workers while cases,
evidence and the API stay in the service process, and must give a restarted shard its cameras back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from models import DEFAULT_MODEL
from pipelines.distributed import Applier, OpLog
from pipelines.sinks.store import CaseStore
from tests.helpers.data import RENDER_IMGSZ
from tests.helpers.net import free_port, wait_for
from tests.helpers.ray_cluster import RayCluster, ray_cluster

CLIPS = Path(__file__).resolve().parents[1] / "data" / "clips"
REGRESSION = CLIPS.parent / "regression.yaml"
STREETWATCH = Path(sys.executable).parent / "streetwatch"

if os.environ.get("CI") != "true":  # CI installs the ray extra: there a missing Ray is a failure
    pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with ray_cluster(workers=2, cpus_per_worker=1) as c:
        yield c


def _cases(out: Path) -> list[dict[str, object]]:
    return list(json.loads((out / "cases.json").read_text())["cases"])


def _key(c: dict[str, object]) -> tuple[object, ...]:
    return (c["source"].rsplit("/", 1)[-1], c["violation"], c["zone"], c["start_s"], c["end_s"])  # type: ignore[union-attr]


@pytest.mark.slow  # starts the cluster (about 20 s), then analyses locally and on Ray
def test_analyze_on_ray_matches_local_run(cluster: RayCluster, tmp_path: Path) -> None:
    clips = [str(CLIPS / n) for n in ("reg_violations_a.mp4", "reg_violations_b.mp4", "reg_distractors.mp4")]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    common = ["--config", str(REGRESSION), "--dwell", "3", "--imgsz", str(RENDER_IMGSZ), "-q"]
    local = subprocess.run([str(STREETWATCH), "analyze", *clips, "--out", str(tmp_path / "local"), *common],
                           capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr[-2000:]
    run = subprocess.run([str(STREETWATCH), "analyze", *clips, str(corrupt), "--out", str(tmp_path / "ray"),
                          "--ray", cluster.address, *common], env=cluster.env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ray_cases, local_cases = _cases(tmp_path / "ray"), _cases(tmp_path / "local")
    assert len(ray_cases) >= 6 and sorted(map(_key, ray_cases)) == sorted(map(_key, local_cases))
    models = {c["model"] for c in ray_cases}  # named by the model's file here, not by the node's scratch copy
    assert models == {c["model"] for c in local_cases} and str(models.pop()).startswith("default ")
    report = json.loads((tmp_path / "ray" / "cases.json").read_text())
    assert [e["source"] for e in report["errors"]] == [str(corrupt)]  # the bad file failed alone
    nodes = {s["ray_node"] for s in report["stats"]["sources"].values()}
    assert len(nodes) == 2  # the files went to both worker nodes
    for c in ray_cases:  # every case has its evidence here, byte for byte what the worker recorded
        for kind in ("snapshot", "clip"):
            path = tmp_path / "ray" / str(c[kind])
            assert path.is_file(), (c["id"], kind)
        snap = tmp_path / "ray" / str(c["snapshot"])
        assert hashlib.sha256(snap.read_bytes()).hexdigest() == c["sha256"]["snapshot"]  # type: ignore[index]


def test_analyze_on_an_unreachable_cluster_reports_every_input(tmp_path: Path) -> None:
    run = subprocess.run([str(STREETWATCH), "analyze", str(CLIPS / "reg_violations_a.mp4"), "--out",
                          str(tmp_path / "out"), "--ray", f"127.0.0.1:{free_port()}", "-q"],
                         capture_output=True, text=True, timeout=180,
                         env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert run.returncode == 2
    report = json.loads((tmp_path / "out" / "cases.json").read_text())
    assert "Ray cluster" in report["errors"][0]["error"]


def test_serve_with_an_unreachable_cluster_exits_with_a_clear_error(tmp_path: Path) -> None:
    run = subprocess.run([str(STREETWATCH), "serve", "--config", str(_service_config(tmp_path, free_port())),
                          "--ray", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SW_ADMIN": "ray-admin-token-0123456789",
                              "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert run.returncode != 0 and "cannot connect to the Ray cluster" in run.stderr


def test_oplog_keeps_ops_until_acknowledged(tmp_path: Path) -> None:
    from detector.events import EventState, ViolationEvent

    log = OpLog(tmp_path / "w")
    (tmp_path / "w" / "cam").mkdir(parents=True)
    (tmp_path / "w" / "cam" / "x_frame.jpg").write_bytes(b"jpeg")
    (tmp_path / "w" / "cam" / "x_frame.json").write_text('{"box": [1, 2, 3, 4]}')
    ev = ViolationEvent(EventState.START, "cam|z|garbage|1", "cam", "z", "garbage", 1.0, 4.0, 0.9, (1, 2, 3, 4), 4.0)
    cid = log.record(ev, "src")
    log.add_evidence(cid, "frame", "cam/x_frame.jpg", "ab" * 32)
    ops = log.take(0)
    assert [o.kind for o in ops] == ["record", "evidence"] and log.take(0) == ops  # resent until acknowledged
    store = CaseStore(tmp_path / "central.db")
    applier = Applier(store, tmp_path / "central")
    last = applier.apply(ops, 0)
    assert applier.apply(ops, last) == last  # a resent op is not applied twice
    assert store.get(cid) is not None and (tmp_path / "central" / "cam" / "x_frame.json").is_file()
    assert log.take(last) == [] and not (tmp_path / "w" / "cam" / "x_frame.jpg").exists()
    bad = OpLog(tmp_path / "w")
    (tmp_path / "w" / "evil.jpg").write_bytes(b"x")
    bad.add_evidence(cid, "snapshot", "evil.jpg", "0" * 64)
    op = bad.take(0)[0]
    op.args["path"] = "../../outside.jpg"  # a forged path never leaves the evidence folder
    applier.apply([op], 0)
    assert not (tmp_path / "outside.jpg").exists()
    store.close()


def _service_config(tmp_path: Path, port: int) -> Path:
    cams = []
    for i, name in enumerate(("reg_violations_a.mp4", "reg_violations_b.mp4")):
        src = tmp_path / name
        shutil.copy(CLIPS / name, src)
        own = {}
        if i == 1:  # a camera with a model of its own (a site model): here a copy of the default one
            (tmp_path / "site_north").mkdir()
            shutil.copy(DEFAULT_MODEL, tmp_path / "site_north" / "model.onnx")
            own = {"model": str(tmp_path / "site_north")}
        cams.append({"id": f"cam{i}", "source": str(src), "detect_fps": 2, **own,
                     "zones": [{"id": "pavement", "polygon": [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]],
                                "violations": ["street_stall", "garbage", "barbecue"],
                                "dwell_s": {"street_stall": 2, "garbage": 2, "barbecue": 2}}]})
    cfg = {"server": {"port": port}, "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "SW_ADMIN"}]},
           "storage": {"db": str(tmp_path / "cases.db"), "evidence": str(tmp_path / "evidence")},
           "cluster": {"shards": 2, "poll_s": 0.2}, "cameras": cams}
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow  # the service on the cluster, a shard killed and restarted
def test_serve_shards_cameras_over_ray_actors(cluster: RayCluster, tmp_path: Path) -> None:
    port = free_port()
    token = "ray-admin-token-0123456789"
    proc = subprocess.Popen([str(STREETWATCH), "serve", "--config", str(_service_config(tmp_path, port)),
                             "--ray", cluster.address], env={**cluster.env, "SW_ADMIN": token},
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "w"))
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                return False

        wait_for(ready, 120, "the service with its Ray shards")
        # Both cameras reported by their shards (until a shard's first report its camera is a bare "connecting").
        cams = wait_for(lambda: (lambda cs: cs if len(cs) == 2 and all(
            c["health"] == "live" and c["frames_inferred"] > 0 for c in cs) else None)(
            httpx.get(f"{base}/api/cameras", headers=auth).json()), 60, "both cameras live")
        assert len({c["node"] for c in cams}) == 2  # one shard per worker node, one camera each
        models = {c["id"]: c["model"].split()[0] for c in cams}
        assert models == {"cam0": "default", "cam1": "site_north"}  # each camera's detector, shipped to its shard
        bad = httpx.post(f"{base}/api/cameras", headers=auth, json={"id": "cam9", "source": cams[0]["source"],
                                                                    "model": str(tmp_path / "nowhere.onnx")})
        assert bad.status_code == 422 and "camera cam9: its model" in bad.text  # checked here, before any shard
        cases = wait_for(lambda: [c for c in httpx.get(f"{base}/api/cases", headers=auth).json()["items"]
                                  if "snapshot" in c["evidence"]] or None, 90, "a case with evidence")
        snap = httpx.get(f"{base}{cases[0]['evidence']['snapshot']}", headers=auth)
        assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"  # evidence is served centrally
        assert (tmp_path / "cases.db").is_file()
        metrics = httpx.get(f"{base}/metrics", headers=auth).text
        assert 'streetwatch_frames_inferred_total{camera="cam0"}' in metrics
        tile = httpx.get(f"{base}/api/cameras/cam1/frame.jpg", headers=auth)
        assert tile.status_code == 200 and tile.content[:2] == b"\xff\xd8"
        # A shard dies: Ray restarts the actor and the service gives it its camera back (its counters
        # start again from zero, which is how the camera on the new actor is told from the old one).
        before = wait_for(lambda: (lambda b: b if min(b.values()) > 30 else None)(
            {c["id"]: c["frames_decoded"] for c in httpx.get(f"{base}/api/cameras", headers=auth).json()}),
            60, "30 frames on each camera")
        open_before = wait_for(lambda: (lambda items: items if {x["camera"] for x in items} == {"cam0", "cam1"}
                                        else None)([x for x in httpx.get(f"{base}/api/cases", headers=auth).json()[
                                            "items"] if x["active"]]), 60, "an open case on each camera")
        _kill_one_shard(cluster)
        back = wait_for(lambda: [c["id"] for c in httpx.get(f"{base}/api/cameras", headers=auth).json()
                                 if 0 < c["frames_decoded"] < before[c["id"]] and c["health"] == "live"], 120,
                        "the restarted shard's camera live again")
        # Its open cases lost their tracking with the shard: they are no longer active (not open forever).
        now = {x["id"]: x for x in httpx.get(f"{base}/api/cases", headers=auth).json()["items"]}
        restarted = [x["id"] for x in open_before if x["camera"] in back]
        assert restarted and not any(now[i]["active"] for i in restarted)
        assert {x["camera"]: x["model"].split()[0] for x in open_before} == models  # cases name their model
        again = {c["id"]: c["model"].split()[0] for c in httpx.get(f"{base}/api/cameras", headers=auth).json()}
        assert again == models  # the restarted shard got the camera's own model back
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    log = (tmp_path / "serve.log").read_text()
    assert "Application shutdown complete" in log and "camera cam0: stopped" in log
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete
    assert proc.returncode in (0, -signal.SIGTERM), f"exit {proc.returncode}: {log[-3000:]}"


def _kill_one_shard(cluster: RayCluster) -> None:
    import psutil

    shards = [p for p in psutil.process_iter(["cmdline"]) if "CameraShard" in " ".join(p.info["cmdline"] or [])]
    assert shards, "no CameraShard actor process found"
    shards[0].kill()
