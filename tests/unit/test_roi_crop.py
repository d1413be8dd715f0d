"""Regions of interest and per-zone detection rates: the detector sees only the zones' bounding box (a view
of the frame, at the frame's scale or zoomed), boxes come back in frame coordinates, and a zone with its own
rate is looked at only when due, without its violations ending in between."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detector.rules import RuleSettings
from pipelines.config import CameraConfig
from pipelines.runner import CameraPipeline, build_pipeline, run_source
from pipelines.sinks.store import CaseStore
from pipelines.sources import Frame, read_frames
from pipelines.stages import RoiPlanner, Sample
from tests.helpers.video import CountingBackend, write_h264

ZONE = {"id": "pavement", "polygon": [[0.5, 0.4], [0.9, 0.4], [0.9, 0.9], [0.5, 0.9]], "violations": ["garbage"]}
ROAD = {"id": "road", "polygon": [[0.0, 0.0], [0.3, 0.0], [0.3, 1.0], [0.0, 1.0]], "violations": ["garbage"]}


class ShapeBackend(CountingBackend):
    """The red-square detector, remembering the shapes and input sides it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []
        self.sizes: list[int] = []

    def detect(self, frames: list[np.ndarray], sizes: list[int] | None = None) -> list:
        self.shapes += [f.shape for f in frames]
        self.sizes += list(sizes or [self.imgsz] * len(frames))
        return super().detect(frames)


def _video(path: Path, seconds: int = 8) -> Path:
    rng = np.random.default_rng(1)
    base = rng.normal(110, 8, (180, 320, 3)).clip(0, 255).astype(np.uint8)
    frames = []
    for i in range(seconds * 10):
        img = base.copy()
        if i >= 10:
            cv2.rectangle(img, (200, 100), (240, 130), (40, 40, 220), -1)  # inside the pavement zone
        frames.append(img)
    return write_h264(path, frames, 10)


def _run(tmp: Path, camera: dict, name: str, seconds: int = 8) -> tuple[ShapeBackend, CameraPipeline, CaseStore]:
    cam = CameraConfig.model_validate({"id": "c", "detect_fps": 2, **camera})
    store = CaseStore(tmp / f"{name}.db")
    backend = ShapeBackend()
    pipe = build_pipeline(cam, RuleSettings(dwell_s={"garbage": 2.0}, gap_tolerance_s=1.0), backend.names, store,
                          "v.mp4")
    run_source(read_frames(_video(tmp / f"{name}.mp4", seconds)), pipe, backend)
    return backend, pipe, store


def test_detector_sees_the_zone_and_boxes_come_back_in_frame_coordinates(tmp_path: Path) -> None:
    whole, whole_pipe, whole_store = _run(tmp_path, {"zones": [ZONE]}, "whole")
    assert set(whole.shapes) == {(180, 320, 3)} and set(whole.sizes) == {320}
    for mode in ("zoom", "crop"):
        backend, pipe, store = _run(tmp_path, {"roi": mode, "zones": [ZONE]}, mode)
        x1, y1, x2, y2 = pipe.roi.crop(320, 180) or (0, 0, 0, 0)
        assert (x1, y1) == (int((0.5 - 0.04) * 320), int((0.4 - 0.04) * 180)) and x2 <= 320 and y2 <= 180
        assert set(backend.shapes) == {(y2 - y1, x2 - x1, 3)}  # every call got the crop, never the whole frame
        # zoom: the crop fills the model's input; crop: it keeps the frame's scale, a smaller input
        assert set(backend.sizes) == ({320} if mode == "zoom" else {round(320 * (x2 - x1) / 320)})
        cases, whole_cases = store.cases(), whole_store.cases()
        assert len(cases) == len(whole_cases) == 1
        assert np.allclose(cases[0].box, whole_cases[0].box, atol=1.0)  # same box in frame pixels either way
        assert np.allclose(pipe.last_detections.xyxy, whole_pipe.last_detections.xyxy, atol=1.0)
        store.close()
    whole_store.close()


def test_no_crop_when_the_zones_cover_most_of_the_frame_or_there_are_none() -> None:
    big = {**ZONE, "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 0.95], [0.0, 0.95]]}
    for zones in ([big], []):
        cam = CameraConfig.model_validate({"id": "c", "roi": "crop", "zones": zones})
        planner = RoiPlanner(cam)
        image = np.zeros((90, 160, 3), np.uint8)
        crop = planner.crop(160, 90)
        assert crop is None
        assert Sample(Frame(image, 0.0, 0, True), crop=crop).detector_input(320, planner.same_scale) == (image, 320)


def test_the_crop_is_a_view_not_a_copy() -> None:
    cam = CameraConfig.model_validate({"id": "c", "roi": "crop", "zones": [ZONE]})
    planner = RoiPlanner(cam)
    image = np.zeros((180, 320, 3), np.uint8)
    crop = planner.crop(320, 180)
    assert crop is not None
    assert np.shares_memory(Sample(Frame(image, 0.0, 0, True), crop=crop).detector_input(320, True)[0], image)


def test_per_zone_rates_look_at_each_zone_when_due_and_keep_its_violations(tmp_path: Path) -> None:
    # The road (trucks) at 2 frames/s, the pavement (garbage) at 0.5/s: 3 of 4 detector calls see the road only.
    camera = {"roi": "crop", "zones": [{**ROAD, "detect_fps": 2}, {**ZONE, "detect_fps": 0.5}]}
    backend, pipe, store = _run(tmp_path, camera, "rates", seconds=12)
    road = pipe.roi.crop(320, 180, frozenset({"road"}))
    both = pipe.roi.crop(320, 180)
    assert road is not None and both is None  # the two zones together span most of the frame: no crop
    road_shape = (road[3] - road[1], road[2] - road[0], 3)
    calls = len(backend.shapes)
    assert calls == 24  # 12 s at the fastest zone's 2/s
    assert backend.shapes.count((180, 320, 3)) == 6 and backend.shapes.count(road_shape) == 18
    cases = store.cases()
    # Garbage seen every 2 s with a 1-s gap tolerance is still one violation (the zone's own period counts).
    assert len(cases) == 1 and cases[0].zone == "pavement"
    assert cases[0].end_s == 10.0  # present until its last look (t = 10 s), never ended in between
    store.close()
