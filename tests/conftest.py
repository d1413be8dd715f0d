"""Shared fixtures: generated clips, hand-made detections, a fake detector backend."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from datasets.clips import Actor, render_clip
from detector.backends.base import DetectorBackend, Frame
from detector.types import CANONICAL_LABELS, Detections

os.environ.setdefault("YOLO_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_detections(rows: list[tuple[float, float, float, float, float, str]], tracker_ids: list[int] | None = None
                    ) -> Detections:
    """Build detections from ``(x1, y1, x2, y2, conf, label)`` rows."""
    if not rows:
        return Detections.empty()
    arr = np.array([r[:5] for r in rows], np.float32)
    cls = np.array([CANONICAL_LABELS.index(r[5]) for r in rows], np.int64)
    det = Detections(xyxy=arr[:, :4], confidence=arr[:, 4], class_id=cls)
    return det.with_tracker_ids(np.array(tracker_ids, np.int64)) if tracker_ids is not None else det


class FakeBackend(DetectorBackend):
    """A detector that returns scripted detections, for pipeline tests without a model."""

    def __init__(self, script: list[Detections] | None = None, fixed: Detections | None = None) -> None:
        self.names = list(CANONICAL_LABELS)
        self.imgsz = 320
        self.script = list(script or [])
        self.fixed = fixed if fixed is not None else Detections.empty()
        self.calls = 0

    def detect(self, frames: list[Frame], sizes: list[int] | None = None) -> list[Detections]:
        out = []
        for _ in frames:
            out.append(self.script[self.calls] if self.calls < len(self.script) else self.fixed)
            self.calls += 1
        return out


@pytest.fixture(scope="session")
def street_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """A 12 s 640x360 generated street clip with garbage, a stall and a passing muck truck."""
    out = tmp_path_factory.mktemp("clips") / "street.mp4"
    script = [
        Actor("garbage", 1.0, 12.0, 6.2, 14.0),
        Actor("street_stall", 2.0, 12.0, 6.0, 20.0),
        Actor("uncovered_truck", 3.0, 7.0, -1.5, 30.0, speed=3.5),
    ]
    entry = render_clip(out, duration=12.0, fps=5.0, width=640, height=360, seed=3, script=script)
    return out, entry


#: Input size for the bundled model on the generated 640x360 street renders. Their stalls and piles are a few
#: dozen pixels tall; the model (trained at 320 px on real photos, where it is best at 320) finds them at 480
#: (models/default/card.md: synthetic AP by input size). Real cameras choose theirs with --imgsz / model.imgsz.
RENDER_IMGSZ = 480


@pytest.fixture(scope="session")
def default_model() -> Path:
    from models import DEFAULT_MODEL

    assert DEFAULT_MODEL.is_file(), "the default model must be committed"
    return DEFAULT_MODEL


def shared_data_or_skip() -> Path:
    """Return ../shared/data, skipping where it is absent (never in CI)."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("../shared/data is required in CI")
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
