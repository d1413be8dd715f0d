"""The shared detector and the rules run in two threads: the detector goes on with its next batch while the rules
of its last one work (the tracker, a case being stored), each camera's samples still reach its rules in order, and
a camera removed or a fleet stopped lets its queued samples through before its violations end."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from detector.rules import RuleSettings
from detector.types import Detections
from pipelines.config import CameraConfig
from pipelines.runner import CameraPipeline, build_pipeline
from pipelines.sinks.store import CaseStore
from pipelines.sources import Frame
from pipelines.stages import Sample
from service.cameras import CameraWorker, InferenceEngine, LocalCameras
from service.settings import IngestConfig, ServiceConfig
from tests.helpers.net import wait_for
from tests.helpers.video import CountingBackend


class IdleSource:
    """A camera that sends nothing until its reader is stopped (the test queues the samples itself)."""

    name = "idle"
    paced_s = 0.0

    def frames(self, _mode: str, stop: threading.Event, *_: object) -> Iterator[Frame]:
        stop.wait(30)
        return iter(())


class GatedBackend(CountingBackend):
    """Finds the red square, but only once ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def detect(self, frames: list[npt.NDArray[np.uint8]], sizes: Sequence[int] | None = None) -> list[Detections]:
        assert self.go.wait(20), "the test never let the detector go"
        return super().detect(frames, sizes)


def red_frame(ts: float, scale: int = 1) -> Frame:
    """A 320x180 frame (times ``scale``) with a red square at (100, 60)-(200, 120) (times ``scale``)."""
    img = np.full((180 * scale, 320 * scale, 3), 110, np.uint8)
    img[60 * scale:120 * scale, 100 * scale:200 * scale] = (40, 40, 220)
    return Frame(img, ts)


def camera(cam_id: str, store: CaseStore, backend: CountingBackend, wakeup: threading.Event) -> CameraWorker:
    cam = CameraConfig(id=cam_id, detect_fps=1, decode="all")
    pipe = build_pipeline(cam, RuleSettings(dwell_s={"garbage": 2.0}), backend.names, store, cam_id)
    return CameraWorker(cam_id, IdleSource(), "all", pipe, IngestConfig(queue=8),  # type: ignore[arg-type]
                        lambda *_: None, wakeup)


def queue(worker: CameraWorker, times: Sequence[float], scale: int = 1) -> None:
    for ts in times:
        sample = worker.pipeline.admit(red_frame(ts, scale))
        assert sample is not None
        worker._queue(sample)


def recording(pipe: CameraPipeline, seen: list[tuple[str, float]],
              before: Callable[[], None] = lambda: None) -> None:
    """Make ``pipe.process`` note (camera, time) of each sample it gets, after ``before``."""
    original = pipe.process

    def process(sample: Sample, detections: Detections | None = None, imgsz: int = 0) -> list:
        seen.append((pipe.camera.id, sample.frame.ts))
        before()
        return original(sample, detections, imgsz)

    pipe.process = process  # type: ignore[method-assign]


def test_the_detector_goes_on_while_the_rules_of_its_last_batch_work(tmp_path: Path) -> None:
    backend = CountingBackend()
    engine = InferenceEngine(backend, batch=1)
    store = CaseStore(tmp_path / "cases.db")
    a, b = (camera(c, store, backend, engine.wakeup) for c in "ab")
    engine.workers = {"a": a, "b": b}
    entered, release = threading.Event(), threading.Event()
    seen: list[tuple[str, float]] = []

    def hold_first() -> None:
        if not entered.is_set():
            entered.set()
            assert release.wait(20)

    recording(a.pipeline, seen, hold_first)
    recording(b.pipeline, seen)
    engine.start()
    try:
        queue(a, [0.0])
        assert entered.wait(20)  # camera a's rules are busy (a slow case write, say)
        queue(b, [0.0, 1.0])
        queue(a, [1.0])
        # The detector answers three more samples meanwhile: it never waited for the rules.
        wait_for(lambda: backend.calls == 4 or None, 20, "the detector's next batches")
        assert seen == [("a", 0.0)]
        release.set()
        wait_for(lambda: len(seen) == 4 or None, 20, "the rules catching up")
        # Each camera's samples reached its rules in order, the detector's order.
        assert [s for s in seen if s[0] == "a"] == [("a", 0.0), ("a", 1.0)]
        assert [s for s in seen if s[0] == "b"] == [("b", 0.0), ("b", 1.0)]
    finally:
        release.set()
        engine.stop()
        store.close()


@pytest.mark.parametrize("how", ["remove", "stop"])
def test_queued_samples_go_through_before_the_cameras_violations_end(tmp_path: Path, how: str) -> None:
    store = CaseStore(tmp_path / "cases.db")
    cams = LocalCameras(ServiceConfig(), store, tmp_path / "ev", on_event=lambda *_: None,
                        on_health=lambda *_: None, on_warn=lambda *_: None)
    backend = GatedBackend()
    cams.engine = InferenceEngine(backend, batch=2)  # type: ignore[arg-type]
    worker = camera("a", store, backend, cams.engine.wakeup)
    cams.engine.workers["a"] = worker
    cams.start()
    worker.start()
    queue(worker, [0.0, 1.0, 2.0, 3.0, 4.0])  # garbage from 0 s, confirmed at 2 s
    ending = threading.Thread(target=cams.remove if how == "remove" else lambda _: cams.stop(), args=("a",))
    ending.start()
    wait_for(lambda: worker.stop_event.is_set() or None, 20, "the camera being stopped")
    backend.go.set()  # only now does the detector answer: every sample was still waiting
    ending.join(30)
    assert not ending.is_alive()
    assert worker.pipeline.stats.frames_inferred == 5
    (case,) = store.cases()
    assert case.violation == "garbage" and case.confirmed_s == pytest.approx(2.0)
    assert case.end_s == pytest.approx(4.0)  # ended by the camera's end, after its last sample
    if how == "remove":
        assert "a" not in cams.engine.workers
        cams.stop()
    store.close()


def test_boxes_come_back_to_frame_pixels_across_the_two_threads(tmp_path: Path) -> None:
    """A 1280x720 frame reaches the detector made 320 px small; the rules thread scales its boxes back."""
    backend = CountingBackend()  # finds the red square in what it is given: input pixels
    engine = InferenceEngine(backend, batch=2)
    store = CaseStore(tmp_path / "cases.db")
    worker = camera("a", store, backend, engine.wakeup)
    engine.workers = {"a": worker}
    engine.start()
    try:
        queue(worker, [0.0, 1.0, 2.0], scale=4)
        wait_for(lambda: store.cases() or None, 20, "the case")
        (case,) = store.cases()
        assert case.box == pytest.approx([400, 240, 800, 480], abs=4)
    finally:
        engine.stop()
        store.close()


class BrokenBackend(CountingBackend):
    """A camera's own model that fails on every call."""

    def detect(self, frames: list[npt.NDArray[np.uint8]], sizes: Sequence[int] | None = None) -> list[Detections]:
        self.calls += 1
        raise RuntimeError("the site model's session failed")


def test_cameras_with_their_own_model_are_detected_by_it(tmp_path: Path) -> None:
    """A round's samples go to each camera's model, each answer to the rules at that model's input size; a
    model that fails costs only its cameras' frames."""
    shared, site, broken = CountingBackend(), CountingBackend(), BrokenBackend()
    site.imgsz = 480
    engine = InferenceEngine(shared, batch=4)
    store = CaseStore(tmp_path / "cases.db")
    a, b, c = (camera(cam, store, shared, engine.wakeup) for cam in "abc")
    b.backend, c.backend = site, broken
    engine.workers = {"a": a, "b": b, "c": c}
    sizes: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    for w in (a, b, c):
        original = w.pipeline.process

        def process(sample: Sample, detections: Detections | None = None, imgsz: int = 0, *,
                    _cam: str = w.camera_id, _orig: Callable[..., list] = original) -> list:
            sizes[_cam].append(imgsz)
            return _orig(sample, detections, imgsz)

        w.pipeline.process = process  # type: ignore[method-assign]
    engine.start()
    try:
        for w in (a, b, c):
            queue(w, [0.0, 1.0])
        wait_for(lambda: len(sizes["a"]) == len(sizes["b"]) == 2 or None, 20, "both cameras' samples")
        assert (shared.calls, site.calls) == (2, 2) and broken.calls >= 1 and engine.errors == broken.calls
        assert sizes == {"a": [320, 320], "b": [480, 480], "c": []}
    finally:
        engine.stop()
        store.close()
