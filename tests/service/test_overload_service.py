"""Graceful overload on real camera readers: a detector too slow for every camera's rate makes every camera
detect less often, by the same share, instead of losing frames from full queues."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from detector.backends.base import Image
from detector.rules import RuleSettings
from detector.types import Detections
from pipelines.config import CameraConfig
from pipelines.runner import build_pipeline
from pipelines.sinks.store import CaseStore
from pipelines.source_kinds import open_source, source_config
from pipelines.stages import LoadGovernor
from service.cameras import CameraWorker, InferenceEngine
from service.settings import IngestConfig
from tests.helpers.data import DATA
from tests.helpers.detections import FakeBackend
from tests.helpers.net import wait_for


class SlowBackend(FakeBackend):
    """A detector that takes 80 ms of CPU per frame: it stands in for a model too slow for the load."""

    def detect(self, frames: list[Image], sizes: Sequence[int] | None = None) -> list[Detections]:
        end = time.perf_counter() + 0.08 * len(frames)
        while time.perf_counter() < end:  # busy, like a real detector (not a sleep)
            pass
        return super().detect(frames, sizes)


def run(tmp_path: Path, governor: LoadGovernor) -> tuple[int, set[float], list[int]]:
    """Five cameras on one slow detector: drops after a warm-up of 100 detections, during the next 60; each
    camera's share of its rate; detections per camera."""
    backend = SlowBackend()
    engine = InferenceEngine(backend, batch=4, governor=governor)
    store = CaseStore(tmp_path / f"c{id(governor)}.db")
    clip = str(DATA / "clips" / "reg_violations_b.mp4")  # 5 fps
    workers = []
    for i, fps in enumerate([5.0, 5.0, 2.5, 5.0, 5.0]):  # asks for 22.5 detections/s; the detector does 12.5
        cam = CameraConfig(id=f"c{i}", source=clip, detect_fps=fps, decode="all")
        pipe = build_pipeline(cam, RuleSettings(), backend.names, store, clip)
        src = open_source(source_config(clip, live=True))
        workers.append(CameraWorker(cam.id, src, "all", pipe, IngestConfig(queue=2), lambda *a: None,
                                    engine.wakeup))
    engine.workers = {w.camera_id: w for w in workers}

    def inferred() -> int:
        return sum(w.pipeline.stats.frames_inferred for w in workers)

    engine.start()
    for w in workers:
        w.start()
    try:
        wait_for(lambda: inferred() >= 100 or None, 60, "a hundred detections")
        dropped = sum(w.stats.frames_dropped for w in workers)
        wait_for(lambda: inferred() >= 160 or None, 60, "sixty more detections")
        later = sum(w.stats.frames_dropped for w in workers) - dropped
        shares = {round(w.pipeline.sampler.effective_fps / w.pipeline.sampler.detect_fps, 6) for w in workers}
        return later, shares, [w.pipeline.stats.frames_inferred for w in workers]
    finally:
        for w in workers:
            w.stop()
        engine.stop()
        store.close()


def test_an_overloaded_detector_slows_every_camera_by_the_same_share(tmp_path: Path) -> None:
    dropped, shares, per_camera = run(tmp_path, LoadGovernor())
    assert len(shares) == 1 and next(iter(shares)) < 1.0  # one share for every camera, and it was cut
    assert dropped <= 6, f"{dropped} sampled frames dropped after the rates were cut"
    same_rate = per_camera[:2] + per_camera[3:]  # the cameras asking for 5 fps get alike shares of the detector
    assert min(same_rate) >= 0.6 * max(same_rate), per_camera
    # The same load without the governor (its share pinned at 1) loses frames from full queues all along.
    dropped_ungoverned, shares, _ = run(tmp_path, LoadGovernor(min_scale=1.0))
    assert shares == {1.0} and dropped_ungoverned > max(20, 3 * dropped), dropped_ungoverned
