"""`make soak` in small: the service as its own process on two RTSP streams for half a minute."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers.data import DATA, ROOT
from tests.helpers.rtsp import gst_or_skip


@pytest.mark.slow  # half a minute of soak plus start and stop
def test_soak_writes_its_report_and_judges_it(tmp_path: Path) -> None:
    gst_or_skip()
    sys.path.insert(0, str(ROOT / "bench"))
    import soak  # bench/soak.py

    report = soak.run(minutes=0.5, streams=2, interval=5, out=tmp_path, max_growth_pct=5.0,
                      clip=DATA / "clips" / "reg_violations_b.mp4")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["streams"] == 2 and len(saved["samples"]) >= 5
    for key in ("rss_growth_pct", "max_rss_mb", "failed_cameras", "cases"):
        assert key in saved
    assert saved["failed_cameras"] == [] and saved["cases"] >= 1 and saved["max_rss_mb"] > 50
    assert saved["passed"] == (saved["rss_growth_pct"] <= 5.0) == report["passed"]
    assert all(s["open_files"] > 0 and s["threads"] > 1 for s in saved["samples"])
    assert (tmp_path / "report.svg").read_text().count("<polyline") == 3
