"""Where the test data lives, the input size the bundled model gets on generated renders, and generated photos."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

#: The committed test data (clips, labels, baselines).
DATA = Path(__file__).resolve().parents[1] / "data"
#: The generated regression clips and their labels.
CLIPS = DATA / "clips"
#: The repository root.
ROOT = Path(__file__).resolve().parents[2]
#: Real data shared by the developers' machines, never in CI.
SHARED_DATA = ROOT.parent / "shared" / "data"

#: Input size for the bundled model on the generated 640x360 street renders. Their stalls and piles are a few
#: dozen pixels tall; the model (trained at 320 px on real photos, where it is best at 320) finds them at 480
#: (models/default/card.md: synthetic AP by input size). Real cameras choose theirs with --imgsz / model.imgsz.
RENDER_IMGSZ = 480


def shared_data_or_skip() -> Path:
    """Return ../shared/data, skipping where it is absent (never in CI)."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("../shared/data is required in CI")
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def textured_scene(seed: int, size: int = 480) -> npt.NDArray[np.uint8]:
    """A textured 'street': random filled shapes on noise, rich in corners as a photo is."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    for _ in range(80):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(10, 80, 2))
        color = tuple(int(c) for c in rng.integers(60, 256, 3))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + w, y + h), color, -1)
        else:
            cv2.circle(img, (x, y), w // 2, color, -1)
    return img


def augmented_copy(img: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """What a Roboflow export does to a training copy: shear with black borders, rescale, brighter."""
    h, w = img.shape[:2]
    shear = np.array([[1.0, 0.2, -0.1 * w], [0.15, 1.0, -0.05 * h]], np.float32)
    out = cv2.warpAffine(img, shear, (w, h))
    out = cv2.resize(out, (640, 640))
    return np.asarray(np.clip(out.astype(np.float32) * 1.2, 0, 255), np.uint8)
