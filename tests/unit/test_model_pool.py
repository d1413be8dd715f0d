"""A camera's own model: named in the camera file, loaded once, the run's model for every other camera."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from detector.backends.base import DetectorBackend, Image, ModelLoadError
from detector.types import Detections
from pipelines.config import RulesConfig, camera_rules, load_config
from pipelines.evaluation.thresholds import review_thresholds
from pipelines.model_pool import ModelPool


class Named(DetectorBackend):
    """A backend that only knows which file it was made from."""

    def __init__(self, path: Path) -> None:
        self.path, self.names, self.imgsz = path, ["garbage"], 320

    def detect(self, frames: list[Image], sizes: Sequence[int] | None = None) -> list[Detections]:
        raise AssertionError("not called here")


def test_each_model_is_loaded_once_and_shared(tmp_path: Path) -> None:
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "model.onnx").write_bytes(b"d")
    (tmp_path / "site.onnx").write_bytes(b"s")
    loads: list[Path] = []

    def load(path: Path) -> DetectorBackend:
        loads.append(path)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        return Named(path)

    default = Named(tmp_path / "default")
    pool = ModelPool(default, tmp_path / "default", load)
    assert pool.backend(None) is default
    assert pool.backend(tmp_path / "default" / "model.onnx") is default  # the folder and its file are one model
    site = pool.backend(tmp_path / "site.onnx")
    assert site is not default and pool.backend(tmp_path / "." / "site.onnx") is site
    assert loads == [tmp_path / "site.onnx"]
    for _ in range(2):  # a model that failed is tried again next time (it may have been fixed)
        with pytest.raises(ModelLoadError, match="not found"):
            pool.backend(tmp_path / "missing.onnx")
    assert loads[1:] == [tmp_path / "missing.onnx"] * 2 and pool.backend(tmp_path / "site.onnx") is site


def test_two_cameras_naming_a_new_model_at_once_load_it_once(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()
    loads: list[Path] = []

    def slow(path: Path) -> DetectorBackend:
        loads.append(path)
        started.set()
        release.wait(5)
        return Named(path)

    pool = ModelPool(Named(tmp_path / "d.onnx"), tmp_path / "d.onnx", slow)
    got: list[DetectorBackend] = []
    threads = [threading.Thread(target=lambda: got.append(pool.backend(tmp_path / "s.onnx"))) for _ in range(2)]
    threads[0].start()
    assert started.wait(5)
    threads[1].start()
    release.set()
    for t in threads:
        t.join(5)
    assert len(loads) == 1 and len(got) == 2 and got[0] is got[1]


def test_a_camera_model_in_a_camera_file_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    p = tmp_path / "conf" / "cams.yaml"
    p.write_text("cameras:\n  - id: north\n    model: ../models/site-north\n  - id: south\n"
                 f"  - id: east\n    model: {tmp_path / 'abs.onnx'}\n")
    cams = {c.id: c for c in load_config(p).cameras}
    assert cams["north"].model == tmp_path / "conf" / ".." / "models" / "site-north"
    assert cams["south"].model is None and cams["east"].model == tmp_path / "abs.onnx"
    assert '"model":"' in cams["north"].model_dump_json()  # the Ray shards and the API carry it


def test_one_cameras_verdicts_give_a_fragment_for_that_camera(tmp_path: Path) -> None:
    """`evaluate reviews --camera`: the thresholds go under that camera's entry; merged, they change only
    the violations they name."""
    reviews = [("garbage", 0.9, True), ("garbage", 0.8, True), ("garbage", 0.6, False), ("garbage", 0.5, True)]
    review_thresholds(reviews, tmp_path, 0.75, camera="gate-3")
    doc = yaml.safe_load((tmp_path / "thresholds.yaml").read_text())
    assert "rules" not in doc and doc["cameras"][0]["id"] == "gate-3"
    own = RulesConfig.model_validate(doc["cameras"][0]["rules"])
    base = RulesConfig.model_validate({"min_confidence": {"street_stall": 0.4}, "cooldown_s": 120})
    merged = camera_rules(base, own)
    assert merged.min_confidence == {"street_stall": 0.4, "garbage": pytest.approx(0.5)}
    assert merged.cooldown_s == 120


def test_a_camera_model_is_a_folder_or_an_onnx_file() -> None:
    from pydantic import ValidationError

    from pipelines.config import CameraConfig

    assert CameraConfig(id="a", model=Path("models/site-north")).model == Path("models/site-north")
    assert CameraConfig(id="a", model=Path("site.onnx")).model == Path("site.onnx")
    with pytest.raises(ValidationError, match=r"a model folder or an \.onnx file"):
        CameraConfig(id="a", model=Path("runs/site/best.pt"))  # never unpickled for a camera
    with pytest.raises(ValidationError, match="not a path"):
        CameraConfig.model_validate({"id": "a", "model": "bad\x00name"})


def test_a_model_file_replaced_is_loaded_again(tmp_path: Path) -> None:
    """A site model fine-tuned again and exported over the old file: cameras added or changed after that get it."""
    import os

    (tmp_path / "site.onnx").write_bytes(b"first")
    pool = ModelPool(Named(tmp_path / "d.onnx"), tmp_path / "d.onnx", Named)
    first = pool.backend(tmp_path / "site.onnx")
    assert pool.backend(tmp_path / "site.onnx") is first
    (tmp_path / "site.onnx").write_bytes(b"second weights")
    os.utime(tmp_path / "site.onnx", ns=(1, 2))  # a different time, whatever the file system's resolution
    second = pool.backend(tmp_path / "site.onnx")
    assert second is not first and pool.backend(tmp_path / "site.onnx") is second
