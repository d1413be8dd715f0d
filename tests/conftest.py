"""Shared fixtures: a generated street clip and the bundled model. Helpers live in ``tests.helpers``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datasets.clips import Actor, render_clip

os.environ.setdefault("YOLO_OFFLINE", "1")


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


@pytest.fixture(scope="session")
def default_model() -> Path:
    from models import DEFAULT_MODEL

    assert DEFAULT_MODEL.is_file(), "the default model must be committed"
    return DEFAULT_MODEL
