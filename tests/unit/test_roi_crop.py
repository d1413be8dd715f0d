"""Region-of-interest crops: the detector sees only the zones' bounding box (a view of the frame), and
its boxes come back in frame coordinates, so tracking, rules, cases and evidence are unchanged."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detector.rules import RuleSettings
from pipelines.config import CameraConfig
from pipelines.runner import CameraPipeline, run_source
from pipelines.sinks.store import CaseStore
from tests.media import write_h264
from tests.unit.test_motion_gate import CountingBackend

ZONE = {"id": "pavement", "polygon": [[0.5, 0.4], [0.9, 0.4], [0.9, 0.9], [0.5, 0.9]], "violations": ["garbage"]}


class ShapeBackend(CountingBackend):
    """The red-square detector, remembering the shapes it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, frames: list[np.ndarray]) -> list:
        self.shapes += [f.shape for f in frames]
        return super().detect(frames)


def _video(path: Path) -> Path:
    rng = np.random.default_rng(1)
    base = rng.normal(110, 8, (180, 320, 3)).clip(0, 255).astype(np.uint8)
    frames = []
    for i in range(80):
        img = base.copy()
        if i >= 10:
            cv2.rectangle(img, (200, 100), (240, 130), (40, 40, 220), -1)  # inside the zone
        frames.append(img)
    return write_h264(path, frames, 10)


def _run(tmp: Path, crop: bool) -> tuple[ShapeBackend, CameraPipeline, CaseStore]:
    cam = CameraConfig.model_validate({"id": "c", "detect_fps": 2, "roi_crop": crop, "zones": [ZONE]})
    store = CaseStore(tmp / f"roi{crop}.db")
    backend = ShapeBackend()
    pipe = CameraPipeline(cam, RuleSettings(dwell_s={"garbage": 2.0}), backend.names, store, "v.mp4")
    run_source(_video(tmp / "v.mp4"), pipe, backend)
    return backend, pipe, store


def test_detector_sees_the_zone_and_boxes_come_back_in_frame_coordinates(tmp_path: Path) -> None:
    backend, pipe, store = _run(tmp_path, crop=True)
    x1, y1, x2, y2 = pipe.roi(320, 180) or (0, 0, 0, 0)
    assert (x1, y1) == (int((0.5 - 0.04) * 320), int((0.4 - 0.04) * 180)) and x2 <= 320 and y2 <= 180
    assert set(backend.shapes) == {(y2 - y1, x2 - x1, 3)}  # every call got the crop, never the whole frame
    whole_backend, whole_pipe, whole_store = _run(tmp_path, crop=False)
    assert set(whole_backend.shapes) == {(180, 320, 3)}
    cases, whole_cases = store.cases(), whole_store.cases()
    assert len(cases) == len(whole_cases) == 1
    assert np.allclose(cases[0].box, whole_cases[0].box, atol=1.0)  # same box in frame pixels either way
    assert np.allclose(pipe.last_detections.xyxy, whole_pipe.last_detections.xyxy, atol=1.0)
    store.close()
    whole_store.close()


def test_no_crop_when_the_zones_cover_most_of_the_frame_or_there_are_none() -> None:
    big = {**ZONE, "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 0.95], [0.0, 0.95]]}
    for zones in ([big], []):
        cam = CameraConfig.model_validate({"id": "c", "roi_crop": True, "zones": zones})
        pipe = CameraPipeline(cam, RuleSettings(), ["garbage"], None, "x")  # type: ignore[arg-type]
        image = np.zeros((90, 160, 3), np.uint8)
        assert pipe.roi(160, 90) is None and pipe.detector_input(image) is image


def test_the_crop_is_a_view_not_a_copy() -> None:
    cam = CameraConfig.model_validate({"id": "c", "roi_crop": True, "zones": [ZONE]})
    pipe = CameraPipeline(cam, RuleSettings(), ["garbage"], None, "x")  # type: ignore[arg-type]
    image = np.zeros((180, 320, 3), np.uint8)
    assert np.shares_memory(pipe.detector_input(image), image)
