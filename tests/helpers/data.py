"""Where the test data lives, and the input size the bundled model gets on generated renders."""

from __future__ import annotations

import os
from pathlib import Path

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
