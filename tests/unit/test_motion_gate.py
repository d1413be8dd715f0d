"""Motion gating: the detector is skipped on sampled frames that did not change, refreshed on a timer,
and run at once when something appears; a stationary violation is still confirmed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detector.rules import RuleSettings
from detector.types import CANONICAL_LABELS, Detections
from pipelines.config import CameraConfig
from pipelines.runner import CameraPipeline, run_source
from pipelines.sinks.store import CaseStore
from tests.media import write_h264


class CountingBackend:
    """Finds a "garbage" box wherever the frame has its red square; counts its calls."""

    def __init__(self) -> None:
        self.names = list(CANONICAL_LABELS)
        self.imgsz = 320
        self.calls = 0

    def detect(self, frames: list[np.ndarray], sizes: list[int] | None = None) -> list[Detections]:
        out = []
        for img in frames:
            self.calls += 1
            red = (img[..., 2] > 150) & (img[..., 0] < 80)
            ys, xs = np.nonzero(red)
            if len(xs):
                box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
                out.append(Detections(box, np.array([0.9], np.float32), np.array([3], np.int64),
                                      np.array([-1], np.int64)))
            else:
                out.append(Detections.empty())
        return out

    def close(self) -> None:
        pass


def _video(path: Path, seconds: int, square_from: float) -> Path:
    """A still street (grey, fixed noise) where a red square appears at ``square_from`` and stays."""
    rng = np.random.default_rng(0)
    base = (rng.normal(110, 8, (180, 320, 3))).clip(0, 255).astype(np.uint8)
    frames = []
    for i in range(seconds * 10):
        img = base.copy()
        if i / 10 >= square_from:
            cv2.rectangle(img, (200, 100), (240, 130), (40, 40, 220), -1)
        frames.append(img)
    return write_h264(path, frames, 10)


def _run(tmp: Path, video: Path, gate: bool) -> tuple[CountingBackend, CameraPipeline, CaseStore]:
    cam = CameraConfig(id="c", detect_fps=2, motion_gate=gate, motion_refresh_s=5)
    store = CaseStore(tmp / f"gate{gate}.db")
    backend = CountingBackend()
    pipe = CameraPipeline(cam, RuleSettings(dwell_s={"garbage": 3}, gap_tolerance_s=2), backend.names, store,
                          str(video))
    run_source(video, pipe, backend)  # type: ignore[arg-type]
    return backend, pipe, store


def test_gating_skips_unchanged_frames_and_still_confirms_a_stationary_violation(tmp_path: Path) -> None:
    video = _video(tmp_path / "still.mp4", 30, square_from=12.0)
    plain, _, plain_store = _run(tmp_path, video, gate=False)
    gated, pipe, store = _run(tmp_path, video, gate=True)
    assert plain.calls == 60  # 30 s at 2 samples per second
    # Still street: one call, then one per 5 s refresh; the square's arrival triggers a call at once.
    assert gated.calls <= 10 and pipe.stats.frames_gated == 60 - gated.calls
    assert pipe.stats.frames_inferred == gated.calls
    cases = store.cases()
    assert [c.violation for c in cases] == [c.violation for c in plain_store.cases()] == ["garbage"]
    # Confirmed as quickly as without gating: the change was seen on the first sampled frame showing it.
    assert abs(cases[0].start_s - plain_store.cases()[0].start_s) < 0.01
    assert abs(cases[0].confirmed_s - plain_store.cases()[0].confirmed_s) < 0.01


def test_gating_is_off_by_default() -> None:
    assert CameraConfig(id="c").motion_gate is False
